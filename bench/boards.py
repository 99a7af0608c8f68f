"""Declared boards: which schemes, which columns, on which data, profile and seeds a published board holds.

A board is data, next to the profiles. ``main`` is the one the README and the leaderboard answer the question
with: every registered defense at its registered default (``none`` as the control) except the ablation variants,
which belong to the MEA-Defender study, crossed with every registered attack at its default, the chains that
attack a stolen copy, the calibrated Neural Cleanse beside the paper's raw one, and one cross-architecture
extraction (a substitute of another architecture than the victim's, which the paper claims its watermark
survives). ``wmbench run --board main`` runs exactly the missing cells of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import ConfigError, UnknownNameError, shorten, suggest

__all__ = ["Board", "BOARDS", "get_board"]


@dataclass(frozen=True)
class Board:
    name: str
    dataset: str
    arch: str
    profile: str
    seeds: tuple[int, ...]
    left_out: tuple[str, ...] = ()  # registered defenses that belong to a study, not to this board
    extra_columns: tuple[str, ...] = ()  # specs beside every registered attack at its default
    description: str = ""

    def schemes(self, defenses) -> list[str]:
        """``none`` first, then every registered defense not left out, by name."""
        unknown = [n for n in self.left_out if n not in defenses]
        if unknown:
            raise ConfigError(f"board {self.name!r} leaves out {unknown[0]!r}, which is not a registered defense; "
                              f"{suggest(unknown[0], defenses.list())}fix bench/boards.py")
        names = [n for n in defenses.list() if n not in self.left_out]
        return ["none", *(n for n in names if n != "none")]

    def columns(self, attacks) -> list[str]:
        """Every registered attack at its default, then the extra columns; each validated, none twice."""
        from bench.spec import expand_chains

        cols = [*attacks.list(), *self.extra_columns]
        seen: set[str] = set()
        for col in cols:
            label = ">".join(step.label for step in expand_chains(col, attacks)[0].steps)  # validates the spec
            if label in seen:
                raise ConfigError(f"board {self.name!r} lists the column {shorten(label)!r} twice; fix "
                                  "bench/boards.py")
            seen.add(label)
        return cols

    def select(self, defenses, attacks, defense: str = "*", attack: str = "*") -> tuple[str, str]:
        """The board's schemes and columns as ``--defense``/``--attack`` strings, narrowed to those ``defense``
        and ``attack`` (comma-separated names or wildcards) pick, so that a board can be run in chunks."""
        import fnmatch

        from bench.registry import split_patterns

        schemes, columns = self.schemes(defenses), self.columns(attacks)
        if defense.strip() not in ("", "*"):
            picked = defenses.expand(defense)
            off = [n for n in picked if n not in schemes]
            if off:
                raise ConfigError(f"{shorten(off[0])} is not on board {self.name!r} (it belongs to a study); its "
                                  f"schemes: {', '.join(schemes)}")
            schemes = [n for n in schemes if n in picked]
        if attack.strip() not in ("", "*"):
            wanted = split_patterns(attack)

            def hit(column: str, pattern: str) -> bool:  # a spec's [...] is a config, not a character class
                return column == pattern or ("[" not in pattern and fnmatch.fnmatchcase(column, pattern))

            for p in wanted:
                if not any(hit(c, p) for c in columns):
                    raise ConfigError(f"no column of board {self.name!r} matches {shorten(p)!r}; its columns: "
                                      f"{', '.join(columns)}")
            columns = [c for c in columns if any(hit(c, p) for p in wanted)]
        return ",".join(schemes), ",".join(columns)


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board(
            "main", dataset="fashion-mnist", arch="small_cnn", profile="quick", seeds=(0, 1, 2),
            left_out=("mea_defender_fixed", "mea_defender_no_eva", "mea_defender_paper_mgda",
                      "mea_defender_ver_only"),
            extra_columns=("soft_label>fine_tune", "soft_label>prune", "soft_label>neural_cleanse",
                           "neural_cleanse[reference=true]", "soft_label[arch=vgg_like]"),
            description="every registered scheme at its default against every registered attack, the chains, "
                        "calibrated Neural Cleanse and a cross-architecture extraction",
        ),
    )
}


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise UnknownNameError(f"unknown board {shorten(name)!r}; {suggest(name, BOARDS)}choose one of "
                               f"{', '.join(BOARDS)}") from None
