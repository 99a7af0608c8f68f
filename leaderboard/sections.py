"""Which page each card is shown on: the declared board (:data:`bench.boards.BOARDS`), the declared studies
(:data:`bench.boards.STUDIES`) and "other runs", built by :func:`sections`.

* A **board** group holds exactly the board's cells: its schemes (rows, in rank order once ranked), its
  columns (every one, run or not) and its seeds (every cell is expected at each of them). When the cards hold
  no cell of any declared board (a user's own run on other data, the test suite's synthetic cards), one
  *ad-hoc board* per data set, architecture and profile takes its place: every scheme run, under the attacks
  at their default configuration (no ``[...]`` in the column), so the page still ranks what was run (a
  configured scheme is shown, not ranked).
* A **study** group holds the cards its declaration matches, per data set and architecture; a card may be on
  the board and in several studies.
* **Other runs**: the cards on no board and in no study, listed so that nothing run is silently dropped.

Cards of the tuning seeds (:data:`bench.tuning.TUNING_SEEDS`) are never on a board; they mark the schemes whose
registered defaults missed the victim-side gate (:func:`gate_marks`) and form the
``tuning`` study.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.spec import base_name, is_configured
from leaderboard.summary import CONTROL_DEFENSE, Group, _group, _records, _summarize

__all__ = ["Sections", "StudyView", "gate_marks", "sections", "summarize"]


@dataclass
class StudyView:
    study: object  # bench.boards.Study
    groups: list[Group]

    @property
    def n_cards(self) -> int:
        return sum(g.n_cards for g in self.groups)


@dataclass
class Sections:
    boards: list[Group]  # the declared boards with a card, else the ad-hoc boards
    declared: bool  # whether ``boards`` are declared boards (False: ad-hoc)
    studies: list[StudyView] = field(default_factory=list)  # every declared study with a card
    other: list[dict] = field(default_factory=list)  # cards on no board and in no study, sorted


def gate_marks(tuning) -> dict[tuple[str, str], dict[str, str]]:
    """{(dataset, arch): {scheme: why}} for every scheme whose identity cards on the tuning seeds are
    complete and fail the gate (:mod:`bench.tuning`); a registered scheme's own embedding rule is used."""
    from bench.registry import DEFENSES
    from bench.tuning import gate

    out: dict[tuple[str, str], dict[str, str]] = {}
    if tuning is None or tuning.empty:
        return out
    for (dataset, arch), part in tuning.groupby(["dataset", "arch"], sort=True):
        for name in sorted(set(part.defense[part.attack == "identity"]) - {CONTROL_DEFENSE}):
            base = base_name(name)
            embedding = DEFENSES.get(base).embedding if base in DEFENSES else "model"
            profile = part.profile[part.defense == name].iloc[0]
            r = gate(part, name, embedding=embedding, profile=profile)
            if r.complete and not r.passes:
                # the board's sign: accuracy against none (a cost of 9.81 points reads -9.81 pts, as Acc Δ)
                why = [w for w, ok in ((f"accuracy {-100 * r.cost:+.2f} pts against none on the tuning seeds",
                                        r.passes_cost),
                                       (f"victim WSR {100 * r.wsr:.2f}% on the tuning seeds", r.passes_wsr)) if not ok]
                out.setdefault((dataset, arch), {})[name] = "; ".join(why)
    return out


def summarize(df) -> list[Group]:
    """Aggregate a ``load_results`` DataFrame into one :class:`Group` per (dataset, arch). Cards of the
    tuning seeds (``bench.tuning.TUNING_SEEDS``) are not on the board; they mark the schemes that failed the
    tuning gate."""
    from bench.tuning import TUNING_SEEDS

    tuning = df[df.seed.isin(TUNING_SEEDS)]
    df = df[~df.seed.isin(TUNING_SEEDS)]
    marks = gate_marks(tuning) if len(tuning) else {}
    groups = _summarize(df)
    for g in groups:
        _mark(g, marks)
    return groups


def _mark(g: Group, marks) -> Group:
    """Mark the group's schemes whose registered defaults missed the tuning gate (:func:`gate_marks`)."""
    g.gate = {d: why for d, why in marks.get((g.dataset, g.arch), {}).items() if d in g.defenses}
    return g


def _board_group(board, schemes: list[str], columns: list[tuple[str, str]], cards: list[dict], marks,
                 reference: list[dict]) -> Group:
    g = _group(board.dataset, board.arch, cards, defenses=tuple(schemes), columns=columns, seeds=tuple(board.seeds),
               has_watermark={d: d != CONTROL_DEFENSE for d in schemes}, profiles=(board.profile,),
               reference=reference)
    g.board = board.name
    return _mark(g, marks)


def _default_column(card: dict) -> bool:
    """An ad-hoc board's columns are the attacks at their default configuration (a configured attack is a
    sweep point, which belongs to a study); its rows are every scheme run, configured or not."""
    return not is_configured(card["attack"])


def sections(df) -> Sections:
    """Split a ``load_results`` DataFrame into the board(s), the studies and the other runs."""
    from bench.boards import BOARDS, STUDIES
    from bench.registry import ATTACKS, DEFENSES
    from bench.results import slug
    from bench.tuning import TUNING_SEEDS

    cards = _records(df.drop(columns="path")) if "path" in df.columns else _records(df)
    marks = gate_marks(df[df.seed.isin(TUNING_SEEDS)])
    out = Sections([], True)
    on_board: set[int] = set()
    for board in BOARDS.values():
        schemes, columns = board.schemes(DEFENSES), board.labels(ATTACKS)
        in_schemes, labels = set(schemes), {lab for lab, _ in columns}
        mine = [i for i, c in enumerate(cards) if board.holds(c, in_schemes, labels)]
        if mine:
            on_board.update(mine)
            out.boards.append(_board_group(board, schemes, columns, [cards[i] for i in mine], marks, cards))
    if not out.boards:  # no declared board's cell: rank what was run at default configurations
        out.declared = False
        by_key: dict[tuple, list[int]] = {}
        for i, c in enumerate(cards):
            if c["seed"] not in TUNING_SEEDS and _default_column(c):
                by_key.setdefault((c["dataset"], c["arch"], c["profile"]), []).append(i)
        for (dataset, arch, _profile), idx in sorted(by_key.items()):
            on_board.update(idx)
            out.boards.append(_mark(_group(dataset, arch, [cards[i] for i in idx], reference=cards), marks))
    for g in out.boards:
        if g.board != "main" and (out.declared or len(out.boards) > 1):
            g.heatmap = f"figures/wsr_heatmap-{slug(g.board or '-'.join((g.dataset, g.arch, *g.profiles)))}.png"
    in_study: set[int] = set()
    for study in STUDIES.values():
        study.validate(DEFENSES, ATTACKS)
        mine = [i for i, c in enumerate(cards) if study.holds(c)]
        if study.swept:  # the schemes run at a configured point of the sweep, with their default points
            swept = {cards[i]["defense"] for i in mine if is_configured(cards[i]["attack"])}
            mine = [i for i in mine if cards[i]["defense"] in swept or cards[i]["defense"] == CONTROL_DEFENSE]
        if all(cards[i]["defense"] == CONTROL_DEFENSE for i in mine):  # nothing studied, the control alone
            continue
        in_study.update(mine)
        by_group: dict[tuple[str, str], list[dict]] = {}
        for i in mine:
            by_group.setdefault((cards[i]["dataset"], cards[i]["arch"]), []).append(cards[i])
        groups = [_mark(_group(dataset, arch, part, reference=cards), marks)
                  for (dataset, arch), part in sorted(by_group.items())]
        out.studies.append(StudyView(study, groups))
    out.other = sorted((c for i, c in enumerate(cards) if i not in on_board and i not in in_study),
                       key=lambda c: (c["dataset"], c["arch"], c["profile"], c["defense"], c["attack"], c["seed"]))
    return out
