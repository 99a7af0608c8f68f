"""``index.html``: the ranked summary first and in rank order, sortable tables with their sort keys, cells coloured
by their evidence (a rejected cell never green), per-seed detail with card links, escaping and determinism."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cardfactory import make_card

from bench.results import card_path, load_results, write_card
from leaderboard import render
from leaderboard.sections import sections

SCRIPT_NAME = "<script>alert(1)</script>"


VICTIM_ACC = {"none": 0.9, "content": 0.89, "noise": 0.88}


def _card(defense: str, attack: str = "identity", kind: str = "control", seed: int = 0, **kw) -> dict:
    kw.setdefault("clean_acc_victim", VICTIM_ACC.get(defense, 0.9))
    return make_card(defense=defense, attack=attack, attack_kind=kind, seed=seed, **kw)


def board_cards() -> list[dict]:
    """`noise` keeps both columns, `content` loses the removal one; a scheme named like a script tag ran only the
    control (not ranked); `none` is the control. Two seeds for some cells (a t interval), one for others (Wilson)."""
    det = {"wsr_suspect": None, "retained": None, "removed_cheaply": None, "p_value": None, "wsr_null": None}
    cards = []
    for seed in (0, 1):
        cards += [
            _card("none", seed=seed, clean_acc_suspect=0.9),
            _card("none", "soft_label", "extraction", seed, clean_acc_suspect=0.86),
            _card("content", seed=seed, wsr_suspect=0.97),
            _card("content", "soft_label", "extraction", seed, wsr_suspect=0.6 + 0.1 * seed,
                  p_value=3e-18 if seed else 1.5e-20),
            _card("noise", seed=seed, wsr_victim=0.99, wsr_suspect=0.99),
            _card("noise", "soft_label", "extraction", seed, wsr_suspect=0.8, p_value=2.5e-30),
        ]
    cards += [
        # removed: far above the threshold in WSR, but the suspect gives the label to everything
        _card("content", "fine_tune", "removal", wsr_suspect=0.95, retained=False, p_value=0.4,
              extras={"suspect_label_rate": 0.9}),
        _card("noise", "fine_tune", "removal", wsr_suspect=0.7),
        _card("none", "fine_tune", "removal", clean_acc_suspect=0.88),
        _card("none", "fine_tune", "removal", 1, clean_acc_suspect=0.87),  # the others' seed 1 is not run
        _card("content", "neural_cleanse", "detection", detected=True, **det),
        _card("noise", "neural_cleanse", "detection", detected=False, **det),
        _card(SCRIPT_NAME, wsr_suspect=0.9),
    ]
    return cards


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for c in board_cards():
        write_card(card_path(root, c["dataset"], c["arch"], c["defense"], c["attack"], c["seed"]), c)
    return root


class Tables(HTMLParser):
    """Every table of a page: its class, its header cells and its rows (section, cells as (attrs, text))."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []
        self._stack: list[dict] = []
        self._part = ""
        self._cell: tuple[dict, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._stack.append({"class": a.get("class", ""), "head": [], "rows": []})
            self.tables.append(self._stack[-1])
        elif tag in ("thead", "tbody", "tfoot"):
            self._part = tag
        elif tag == "tr" and self._stack:
            self._stack[-1]["rows"].append((self._part, []))
        elif tag in ("td", "th") and self._stack:
            self._cell = ({**a, "tag": tag}, [])

    def handle_endtag(self, tag):
        if tag == "table":
            self._stack.pop()
        elif tag in ("td", "th") and self._cell is not None and self._stack:
            attrs, text = self._cell
            part, cells = self._stack[-1]["rows"][-1]
            cells.append((attrs, "".join(text).strip()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1].append(data)


def parse(page: str) -> list[dict]:
    p = Tables()
    p.feed(page)
    for t in p.tables:
        head = [r for part, r in t["rows"] if part == "thead"]
        t["head"] = head[0] if head else []
        t["body"] = [r for part, r in t["rows"] if part == "tbody"]
        t["foot"] = [r for part, r in t["rows"] if part == "tfoot"]
    return p.tables


def page_of(results: Path, out: Path, **kw) -> str:
    return render(results, out, **kw)["html"].read_text(encoding="utf-8")


def rgb(style: str) -> tuple[int, int, int]:
    hexa = re.search(r"background:#([0-9a-f]{6})", style).group(1)
    return int(hexa[0:2], 16), int(hexa[2:4], 16), int(hexa[4:6], 16)


def test_ranked_summary_comes_first_and_in_rank_order(results: Path, tmp_path: Path):
    from leaderboard.ranking import RANKED_HEAD, rank_order

    page = page_of(results, tmp_path / "out")
    tables = parse(page)
    assert tables[0]["class"] == "sortable ranked"
    assert page.index('class="sortable ranked"') < page.index('class="sortable threat"') < page.index(
        'class="sortable attacks"') < page.index("<h2>Studies</h2>")
    ranked = tables[0]
    assert [text for _, text in ranked["head"]] == list(RANKED_HEAD)
    (g,) = sections(load_results(results)).boards
    names = [cells[1][1].replace(" ⚠", "") for cells in ranked["body"]]
    assert names == rank_order(g) == ["noise", "content", SCRIPT_NAME]
    assert [cells[0][1] for cells in ranked["body"]] == ["1", "2", "—"]
    assert "Not ranked: <code>&lt;script&gt;" in page
    # the rest of the board in the Markdown's order
    order = ["Ranked by robustness", "A cell: the suspect", "null/control", "<h3>Extraction</h3>",
             "<h3>Removal</h3>", "<h3>Detection</h3>", "<h3>Attacks</h3>", "WSR after attack", "<h2>Studies</h2>",
             "Other runs</a>"]
    where = [page.index(s) for s in order]
    assert where == sorted(where)


def test_every_header_sorts_and_numeric_cells_carry_their_keys(results: Path, tmp_path: Path):
    from leaderboard.text import pct_stat

    page = page_of(results, tmp_path / "out")
    tables = parse(page)
    sortable = [t for t in tables if "sortable" in t["class"].split()]
    assert [t["class"] for t in sortable] == ["sortable ranked", "sortable threat", "sortable threat",
                                             "sortable threat", "sortable attacks"]
    for t in sortable:  # one header row of <th> cells only: the script makes each one a sort button
        assert t["head"] and all(attrs["tag"] == "th" for attrs, _ in t["head"])
    # the inline script, no external resource
    scripts = re.findall(r"<script[^>]*>", page)
    assert scripts == ["<script>"] and 'querySelectorAll("table.sortable")' in page
    assert "aria-sort" in page and "tHead.rows[0].cells" in page
    assert "http://" not in page and "https://" not in page and " src=\"http" not in page
    ranked = sortable[0]
    assert ranked["head"][0][0].get("aria-sort") == "ascending"  # the static table is in rank order
    rows = {cells[1][1]: cells for cells in ranked["body"]}
    assert rows["noise"][0][0]["data-sort"] == "1" and rows[f"{SCRIPT_NAME}"][0][0]["data-sort"] == ""
    (g,) = sections(load_results(results)).boards
    noise = next(r for r in g.defense_rows if r.name == "noise")
    assert float(rows["noise"][4][0]["data-sort"]) == pytest.approx(100 * noise.victim_wsr.mean, abs=1e-4)
    assert rows["noise"][4][1] == pct_stat(noise.victim_wsr)  # the text as the Markdown has it, the key exact
    assert float(rows["content"][3][0]["data-sort"]) == pytest.approx(-1.0)  # accuracy cost in points
    extraction = sortable[1]
    cells = {row[0][1]: row[1] for row in extraction["body"]}
    assert float(cells["content"][0]["data-sort"]) == pytest.approx(65.0)  # mean WSR over the seeds
    assert cells["content"][1].startswith("65.0% [")
    assert cells[SCRIPT_NAME][0]["data-sort"] == "" and cells[SCRIPT_NAME][1] == "·"  # not run: sorts last
    # the control stays in the footer, out of the sort
    assert [row[0][1] for row in extraction["foot"]] == ["none (control)"]


def test_a_rejected_cell_is_never_green_and_detection_is_red_or_green(results: Path, tmp_path: Path):
    from leaderboard.html import NEVER_GREEN, cell_colour, wsr_colour
    from leaderboard.summary import CellSummary

    page = page_of(results, tmp_path / "out")
    threat = [t for t in parse(page) if t["class"] == "sortable threat"]
    marked = {"✗": 0, "✓": 0}
    for t in threat:
        for row in t["body"]:
            for attrs, text in row[1:]:
                if "style" not in attrs:
                    continue
                r, g, _b = rgb(attrs["style"])
                if "✗" in text:
                    marked["✗"] += 1
                    assert r >= g, (row[0][1], text)  # red to yellow, never green
                elif "✓" in text:
                    marked["✓"] += 1
    assert marked["✗"] >= 2 and marked["✓"] >= 2
    removal = {row[0][1]: row[1] for row in threat[1]["body"]}
    assert "✗" in removal["content"][1] and rgb(removal["content"][0]["style"])[0] > 0xF0  # WSR 95%, yet red
    detection = {row[0][1]: row[1] for row in threat[2]["body"]}
    assert f"background:{wsr_colour(0.0)}" in detection["content"][0]["style"]  # detected: red
    assert f"background:{wsr_colour(1.0)}" in detection["noise"][0]["style"]  # undetected: green
    # a rejected cell whose evidence is above the yellow point is still held at yellow
    weak = make_card(attack="ext", attack_kind="extraction", wsr_suspect=0.95, threshold=0.9, p_value=0.3,
                     retained=False)
    assert cell_colour(CellSummary("content", "ext", "extraction", (0,), [weak]), True) == wsr_colour(NEVER_GREEN)
    # ERR, n/a, not run and the control each have their own look, and no colour of the scale
    for cls in ('class="nr"', 'class="ctl"'):
        assert cls in page


def test_each_cell_has_its_seeds_and_each_card_its_link(results: Path, tmp_path: Path):
    page = page_of(results, tmp_path / "out", card_base="../published/results")
    threat = [t for t in parse(page) if t["class"] == "sortable threat"]
    extraction = {row[0][1]: row[1] for row in threat[0]["body"]}
    title = extraction["content"][0]["title"]
    assert title.splitlines()[0] == "content × soft_label"
    assert "seed 0: WSR 60.0%, label rate 2.0%, null 5.0%, p 1.5e-20, acc 90.0%" in title
    assert "seed 1: WSR 70.0%" in title
    assert "95% interval [" in title and "Student-t over 2 seeds" in title
    removal = {row[0][1]: row[1] for row in threat[1]["body"]}
    assert "Wilson on one model's verification hits" in removal["noise"][0]["title"]
    assert "seed 1: not run" in removal["noise"][0]["title"]
    # the collapsed per-scheme detail: every card linked from the given base, with its p-value
    hrefs = re.findall(r'<a href="([^"]+\.json)">card</a>', page)
    cards = [c for c in board_cards() if c["defense"] != SCRIPT_NAME and c["attack"] != "identity"]
    expected = {card_path("../published/results", c["dataset"], c["arch"], c["defense"], c["attack"],
                          c["seed"]).as_posix() for c in cards}
    assert set(hrefs) == expected
    assert all(h.startswith("../published/results/synthetic/small_cnn/") for h in hrefs)
    details = re.findall(r"<details><summary><code>([^<]*)</code>", page)
    assert details.count("content") == 3 and details.count("none") == 3  # one per threat table
    assert "<td>1.5e-20</td>" in page and "<td>2.5e-30</td>" in page
    assert re.search(r"<td>fine_tune</td><td>1</td><td colspan=\"7\">· not run</td>", page)


def test_card_links_default_to_the_results_folder_relative_to_the_page(results: Path, tmp_path: Path):
    from leaderboard.render import card_base_of

    page = page_of(results, tmp_path / "site" / "board")
    assert card_base_of(results, tmp_path / "site" / "board") == "../../results"
    assert '<a href="../../results/synthetic/small_cnn/content/soft_label/seed-0.json">card</a>' in page
    assert str(tmp_path) not in page


def test_check_compares_the_links_of_the_published_folder(results: Path, tmp_path: Path):
    from leaderboard.check import check_leaderboard

    out = tmp_path / "deep" / "er" / "board"
    render(results, out)
    assert not [p for p in check_leaderboard(results, out) if "index.html" in p]


def test_the_page_is_escaped(results: Path, tmp_path: Path):
    page = page_of(results, tmp_path / "out", title="<b>board</b> & co")
    assert "<title>&lt;b&gt;board&lt;/b&gt; &amp; co</title>" in page
    assert "alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script") == 1


def test_two_renders_are_byte_identical(results: Path, tmp_path: Path):
    a = render(results, tmp_path / "a")["html"].read_bytes()
    b = render(results, tmp_path / "b")["html"].read_bytes()
    assert a == b


def test_heatmap_at_natural_size_and_studies_with_their_summaries(results: Path, tmp_path: Path):
    from leaderboard.plots import heatmap_name
    from leaderboard.studypages import study_name, study_summary

    page = page_of(results, tmp_path / "out")
    sec = sections(load_results(results))
    for g in sec.boards:
        name = heatmap_name(g)
        assert f'<div class="scroll figure"><a href="{name}"><img src="{name}"' in page
    assert "div.figure img { display: block; max-width: none;" in page  # never shrunk
    assert sec.studies
    for view in sec.studies:
        assert f'<a href="{study_name(view.study.name)}">' in page
        block = page.split(f'<a href="{study_name(view.study.name)}">', 1)[1].split("</ul>", 1)[0]
        assert block.count("<li>") == len(study_summary(view))
    assert '<a href="studies/other-runs.md">Other runs</a>' in page


def test_markdown_lines_read_back_as_html():
    from leaderboard.html import md_to_html
    from leaderboard.markdown import code, escape_md

    assert md_to_html(f"{code('a_b')} says {escape_md('x_y [1] <z> | w')}") == (
        "<code>a_b</code> says x_y [1] &lt;z&gt; | w")
    assert md_to_html(code("we`ird|<i>")) == "<code>we`ird|&lt;i&gt;</code>"
