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
from bench.tuning import TUNING_SEEDS

__all__ = ["Board", "BOARDS", "STUDIES", "Study", "get_board", "get_study", "spec_match"]


@dataclass(frozen=True)
class Board:
    name: str
    dataset: str
    arch: str
    profile: str
    seeds: tuple[int, ...]
    precision: str = "fp32"  # the training precision its cards were made at (bench.profiles.PRECISIONS)
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

    def labels(self, attacks) -> list[tuple[str, str]]:
        """(card label, threat class) of every column, in :meth:`columns` order: the label a card of that column
        carries in its ``attack`` field, and the class its chain is judged in (``bench.planning.chain_kind``)."""
        from bench.planning import chain_kind
        from bench.spec import expand_chains

        out = []
        for col in self.columns(attacks):
            chain = expand_chains(col, attacks)[0]
            out.append((chain.label, chain_kind(chain)))
        return out

    def holds(self, card: dict, schemes, labels) -> bool:
        """Whether ``card`` is one of this board's cells (data set, architecture, profile, precision, seed, scheme,
        column)."""
        return ((card["dataset"], card["arch"], card["profile"], card.get("precision") or "fp32")
                == (self.dataset, self.arch, self.profile, self.precision)
                and card["seed"] in self.seeds and card["defense"] in schemes and card["attack"] in labels)

    def select(self, defenses, attacks, defense: str = "*", attack: str = "*") -> tuple[str, str]:
        """The board's schemes and columns as ``--defense``/``--attack`` strings, narrowed to those ``defense``
        and ``attack`` (comma-separated names or wildcards) pick, so that a board can be run in chunks."""
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
            for p in wanted:
                if not any(spec_match(c, p) for c in columns):
                    raise ConfigError(f"no column of board {self.name!r} matches {shorten(p)!r}; its columns: "
                                      f"{', '.join(columns)}")
            columns = [c for c in columns if any(spec_match(c, p) for p in wanted)]
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


def spec_match(label: str, pattern: str) -> bool:
    """Whether a card's spec label matches a study's pattern: ``*`` matches any run of characters and ``?`` any
    one character, as in fnmatch; everything else (brackets included: a spec's ``[...]`` is a config, not a
    character class) matches itself."""
    import re

    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, label) is not None


@dataclass(frozen=True)
class Study:
    """A declared study: the cards whose scheme matches one of ``defenses`` and whose column matches one of
    ``attacks`` (:func:`spec_match` patterns), at ``seeds`` (any seed when empty) and on the data set,
    architecture, profile and precision given (any when None). A card may belong to the board and to several studies; a
    card that belongs to none is listed on the leaderboard's "other runs" page."""

    name: str
    title: str
    question: str  # what the study answers, one or two sentences
    defenses: tuple[str, ...]
    attacks: tuple[str, ...]
    seeds: tuple[int, ...] = ()
    dataset: str | None = None
    arch: str | None = None
    profile: str | None = None
    precision: str | None = "fp32"  # training precision of its cards (None: any)
    see_also: tuple[str, ...] = ()  # pages of the repository that discuss it (relative to the repository root)
    swept: bool = False  # a sweep: only the schemes with a card at one of its configured points (``[...]``)

    def validate(self, defenses, attacks) -> None:
        """Raise a one-line :class:`ConfigError` when a pattern names no registered component (a typo would
        otherwise match no card and the study would silently be empty)."""
        for patterns, registry, what in ((self.defenses, defenses, "scheme"), (self.attacks, attacks, "column")):
            for pattern in patterns:
                for step in pattern.split(">"):
                    base = step.split("[", 1)[0]
                    if "*" in base:
                        continue
                    if base not in registry:
                        raise ConfigError(f"study {self.name!r}: the {what} pattern {shorten(pattern)!r} names "
                                          f"{base!r}, which is not registered; {suggest(base, registry.list())}"
                                          "fix bench/boards.py")

    def holds(self, card: dict) -> bool:
        return ((not self.seeds or card["seed"] in self.seeds)
                and all(want is None or have == want
                        for have, want in ((card["dataset"], self.dataset), (card["arch"], self.arch),
                                           (card["profile"], self.profile),
                                           (card.get("precision") or "fp32", self.precision)))
                and any(spec_match(card["defense"], p) for p in self.defenses)
                and any(spec_match(card["attack"], p) for p in self.attacks))


_MEA_VARIANTS = ("mea_defender", "mea_defender_official", "mea_defender_fixed", "mea_defender_no_eva",
                 "mea_defender_ver_only", "mea_defender_paper_mgda")

STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study(
            "mea-defender", "MEA-Defender: reproduction and central ablation",
            "Does the seed paper's watermark carry into extracted copies, at its published weights and at the "
            "weights tuned here, and which of its losses does the work (no evasion set, a fixed weight instead "
            "of MGDA, the target-label loss alone, the paper's text)?",
            defenses=("none", *_MEA_VARIANTS, "mea_defender_ver_only[*"),
            attacks=("*",), seeds=(0, 1, 2),
            see_also=("docs/reproductions/mea-defender.md", "results/reproductions/mea-defender-fmnist.md",
                      "results/reproductions/mea-defender-ablation.md"),
        ),
        Study(
            "mea-loss-weights", "MEA-Defender: loss-weight sweeps",
            "How the combination-loss weight (the tuned scheme's kl_weight, the public code's extra KL weight) and "
            "the balancing rule trade the victim's accuracy against its WSR and the soft-label copy's.",
            defenses=("none", "mea_defender", "mea_defender[kl_weight=*", "mea_defender_official",
                      "mea_defender_official[com_extra=*", "mea_defender_official[aux_weight=*",
                      "mea_defender_official[com_target=*", "mea_defender_official[stage2_*",
                      "mea_defender_official[epochs=*", "mea_defender_paper_mgda"),
            attacks=("identity", "soft_label", "hard_label"),
            see_also=("docs/protocol.md", "results/reproductions/tuning.md"),
        ),
        Study(
            "mea-anchors", "MEA-Defender: anchor sets and training budget",
            "Whether the public code's weights embed once the anchor watermarks are forwarded whole, in smaller "
            "sets, or trained for longer.",
            defenses=("none", "mea_defender_official", "mea_defender_official[anchor*",
                      "mea_defender_official[anchors*"),
            attacks=("identity", "soft_label"),
            see_also=("docs/reproductions/mea-defender.md",),
        ),
        Study(
            "query-budget", "Query budget of extraction",
            "How a stolen copy's WSR grows with the attacker's query budget (MEA-Defender's Fig. 2).",
            defenses=("*",), attacks=("soft_label", "soft_label[*queries=*", "hard_label", "hard_label[*queries=*"),
            seeds=(0, 1, 2), swept=True,
        ),
        Study(
            "pruning-rate", "Pruning rate",
            "How much of the network a pruning attacker must remove before the watermark goes, and what the copy's "
            "accuracy pays for it.",
            defenses=("*",), attacks=("prune", "prune[*rate=*"), seeds=(0, 1, 2), swept=True,
        ),
        Study(
            "extraction-settings", "Extraction epochs, temperature and transfer data",
            "Whether a soft-label copy trained longer, on softened outputs, or on another data set (MNIST queries "
            "to a Fashion-MNIST API) carries the watermark more or less.",
            defenses=("*",), attacks=("soft_label", "soft_label[*epochs=*", "soft_label[*temperature=*", "knockoff",
                                      "knockoff[*pool=*"),
            seeds=(0, 1, 2), swept=True,
        ),
        Study(
            "detection", "Detection: Neural Cleanse calibration and patch size",
            "Whether the paper's raw Neural Cleanse, the calibrated one (MAD against clean reference models) and "
            "the random-mix probe find patch watermarks, and at which patch size.",
            defenses=("content", "content[*", "dawn", "none"),
            attacks=("identity", "neural_cleanse", "neural_cleanse[*", "soft_label>neural_cleanse", "nc_unlearn",
                     "random_mix_probe"),
            seeds=(0, 1, 2),
        ),
        Study(
            "tuning", "Tuning gate (tuning seeds)",
            "Whether each scheme's registered defaults meet the victim-side gate (accuracy cost against none of "
            "at most 2 points, victim WSR of at least 90%) on seeds the board never shows.",
            defenses=("*",), attacks=("identity",), seeds=TUNING_SEEDS,
            see_also=("docs/protocol.md", "results/reproductions/tuning.md"),
        ),
    )
}


def _lookup(table: dict, name: str, what: str):
    try:
        return table[name]
    except KeyError:
        raise UnknownNameError(f"unknown {what} {shorten(name)!r}; {suggest(name, table)}choose one of "
                               f"{', '.join(table)}") from None


def get_study(name: str) -> Study:
    return _lookup(STUDIES, name, "study")


def get_board(name: str) -> Board:
    return _lookup(BOARDS, name, "board")
