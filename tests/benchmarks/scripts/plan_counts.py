"""How many evaluations and oracle passes a board's cells need, counted per cell (what each cell did before they
were shared) and per distinct input (what the runner does now): docs/performance.md, "Work done once". Plans
only; trains nothing.

    PYTHONPATH=. .venv/bin/python tests/benchmarks/scripts/plan_counts.py [BOARD]
"""

import sys
import tempfile

from bench.boards import get_board
from bench.planning import plan_matrix
from bench.registry import ATTACKS, DEFENSES
from bench.settings import make_settings

POOL_QUERYING = ("soft_label", "hard_label", "knockoff", "jacobian")  # extractions that query pool images


def main(board_name: str = "main") -> None:
    board = get_board(board_name)
    with tempfile.TemporaryDirectory() as tmp:  # an empty results folder: every cell of the board is planned
        settings = make_settings(dataset=board.dataset, arch=board.arch, profile=board.profile,
                                 results_dir=f"{tmp}/r", cache_dir=f"{tmp}/c")
        defenses, attacks = board.select(DEFENSES, ATTACKS)
        matrix = plan_matrix(settings, defenses, attacks, list(board.seeds))
    scored = [c for c in matrix.cells if c.attack_keys]
    marked = [c for c in scored if c.null_keys]
    steps = [j for j in matrix.attacks.values() if j.attack.name in POOL_QUERYING]
    print(f"board {board_name}: {len(scored)} scored cells, {len(marked)} of a watermarked scheme")
    print(f"victim test-set evaluations: {len(scored)} per cell, {len({(c.victim_key, c.seed) for c in scored})} "
          "distinct")
    print(f"victim verifications: {len(marked)} per cell, {len({c.victim_key for c in marked})} distinct")
    print(f"null-model verifications: {sum(len(c.null_keys) for c in marked)} per cell, "
          f"{len({(c.victim_key, k) for c in marked for k in c.null_keys})} distinct")
    print(f"extraction steps querying pool images: {len(steps)}; models whose pool answers they need: "
          f"{len({(j.parent_key, j.seed) for j in steps})}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
