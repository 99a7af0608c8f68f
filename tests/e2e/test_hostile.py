"""Bad inputs get one line on stderr and exit status 2, never a traceback (the fuzz of the 'safe to share'
review, kept)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wmbench.cli import main


def _plugin(tmp_path: Path, body: str) -> str:
    p = tmp_path / "plug.py"
    p.write_text(body)
    return str(p)


def _deep_card(tmp_path: Path) -> str:
    p = tmp_path / "deep" / "seed-0.json"
    p.parent.mkdir()
    p.write_text("[" * 100_000 + "]" * 100_000)
    return str(p)


def _loop(tmp_path: Path) -> str:
    a = tmp_path / "seed-0.json"
    os.symlink(a, a)
    return str(a)


def _a_file(tmp_path: Path) -> str:
    f = tmp_path / "file.txt"
    f.write_text("x")
    return str(f)


def _results_with_a_card(tmp_path: Path) -> str:
    from cardfactory import make_card

    from bench.results import write_card

    write_card(tmp_path / "r" / "synthetic" / "small_cnn" / "content" / "identity" / "seed-0.json", make_card())
    return str(tmp_path / "r")


RUN = ["run", "--dataset", "synthetic", "--profile", "test", "-q"]  # each test adds its own --results


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Every command of this module runs in a temporary folder, so its default ./results and cache land there."""
    monkeypatch.chdir(tmp_path)
CASES = {
    "jobs not a number": lambda t: ["run", "--jobs", "abc"],
    "unknown subcommand": lambda t: ["frobnicate"],
    "empty chain step": lambda t: [*RUN, "--attack", "prune>"],
    "empty chain start": lambda t: [*RUN, "--attack", ">prune"],
    "empty defense list": lambda t: [*RUN, "--defense", ""],
    "comma-only defense": lambda t: [*RUN, "--defense", ","],
    "blank attack list": lambda t: [*RUN, "--attack", " "],
    "seed too large": lambda t: [*RUN, "--seeds", "99999999999999999999"],
    "negative seed": lambda t: [*RUN, "--seeds", "-1"],
    "seeds not numbers": lambda t: [*RUN, "--seeds", "a,b"],
    "very long name": lambda t: [*RUN, "--defense", "x" * 100_000],
    "plugin exits": lambda t: [*RUN, "--plugin", _plugin(t, "import sys\nsys.exit(3)\n"), "--defense", "content"],
    "plugin raises": lambda t: [*RUN, "--plugin", _plugin(t, "raise RuntimeError('boom')\n")],
    "plugin missing": lambda t: [*RUN, "--plugin", str(t / "missing.py")],
    "plugin not python": lambda t: [*RUN, "--plugin", _a_file(t)],
    "data root missing": lambda t: [*RUN, "--data-root", str(t / "nowhere")],
    "unknown dataset": lambda t: ["run", "--dataset", "imagenet"],
    "unknown board": lambda t: ["run", "--board", "mian"],
    "board with another dataset": lambda t: ["run", "--board", "main", "--dataset", "mnist"],
    "board without that scheme": lambda t: ["run", "--board", "main", "--defense", "mea_defender_no_eva"],
    "unknown profile": lambda t: [*RUN, "--profile", "huge"],
    "bad config value": lambda t: [*RUN, "--attack", "prune[rate=7]"],
    "unknown config field": lambda t: [*RUN, "--attack", "prune[rat=0.5]"],
    "unbalanced bracket": lambda t: [*RUN, "--attack", "prune[rate=0.5"],
    "detection mid-chain": lambda t: [*RUN, "--attack", "neural_cleanse>prune"],
    "zero jobs": lambda t: [*RUN, "--jobs", "0"],
    "leaderboard out is a file": lambda t: ["leaderboard", "--results", _results_with_a_card(t), "--out", _a_file(t)],
    "readme missing": lambda t: ["leaderboard", "--results", _results_with_a_card(t), "--out", str(t / "lb"),
                                 "--readme", str(t / "NOPE.md")],
    "leaderboard results is a file": lambda t: ["leaderboard", "--results", _a_file(t), "--out", str(t / "o")],
    "leaderboard results missing": lambda t: ["leaderboard", "--results", str(t / "none"), "--out", str(t / "o")],
    "show a folder": lambda t: ["show", str(t)],
    "show a missing card": lambda t: ["show", str(t / "seed-0.json")],
    "show a symlink loop": lambda t: ["show", _loop(t)],
    "show deeply nested JSON": lambda t: ["show", _deep_card(t)],
    "unknown reproduction": lambda t: ["reproduce", "nope"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_line_and_status_2(case, tmp_path, capsys):
    argv = CASES[case](tmp_path)
    rc = main(argv) if case not in ("jobs not a number", "unknown subcommand") else _exits(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, (case, err)
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("wmbench: error:") and len(err[0]) < 400, err[0][:500]


def _exits(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code


def test_connect_timeout_from_the_environment(monkeypatch):
    from bench.backends import connect_timeout
    from bench.errors import WmbenchError

    monkeypatch.setenv("WMBENCH_CONNECT_TIMEOUT", "abc")
    with pytest.raises(WmbenchError, match="WMBENCH_CONNECT_TIMEOUT='abc' must be a positive number"):
        connect_timeout()
    monkeypatch.setenv("WMBENCH_CONNECT_TIMEOUT", "2.5")
    assert connect_timeout() == 2.5


def test_a_backtick_in_a_name_stays_inside_its_code_span():
    from leaderboard.markdown import code

    assert code("content") == "`content`"
    span = code("x`<img src=y onerror=alert(1)>`")
    assert span.startswith("`` ") and span.endswith(" ``") and span.count("``") == 2
    assert json.dumps(span)  # plain text


def test_a_dollar_in_a_name_draws_as_text(tmp_path):
    from cardfactory import make_card

    from bench.results import write_card
    from leaderboard.render import render

    for defense in ("$x^2$", "none"):
        write_card(tmp_path / "r" / "synthetic" / "small_cnn" / defense.replace("$", "_") / "identity" / "seed-0.json",
                   make_card(defense=defense))
    paths = render(tmp_path / "r", tmp_path / "out")
    assert paths["heatmap"].read_bytes()[:4] == b"\x89PNG" and paths["markdown"].exists()
    assert not list((tmp_path / "out").glob(".tmp-render-*"))


BROKEN_ATTACK = '''
from dataclasses import dataclass
from bench.api import Attack, Outcome
from bench.config import ComponentConfig
from bench.registry import register_attack


def helper(x):
    raise RuntimeError("my bug")


@register_attack("broken_attack")
class Broken(Attack):
    kind = "removal"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        pass

    def run(self, target, ctx):
        return Outcome(model=helper(target.model))
'''


def test_a_plugin_bug_names_its_own_line_and_the_card_keeps_the_traceback(tmp_path, capsys):
    from bench.results import read_card

    plugin = tmp_path / "broken_attack.py"
    plugin.write_text(BROKEN_ATTACK)
    rc = main([*RUN, "--plugin", str(plugin), "--defense", "content", "--attack", "broken_attack",
               "--results", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), "--device", "cpu"])
    assert rc == 1
    card = read_card(next((tmp_path / "r").rglob("seed-0.json")))
    assert card["status"] == "error" and "RuntimeError: my bug (at broken_attack.py:9 in helper)" in card["error"]
    assert "Traceback" in card["extras"]["traceback"] and 'line 9, in helper' in card["extras"]["traceback"]
    assert "\n" not in card["error"]
    recorded = {k: v for k, v in card["versions"].items() if k.startswith("plugin ")}
    assert list(recorded) == [f"plugin {plugin.resolve()}"] and recorded[f"plugin {plugin.resolve()}"].startswith(
        "sha256:")
    capsys.readouterr()
    # without the plugin (a new process would not have it), the name is unknown, and the message says where
    # a plugin's components come from
    from bench.registry import ATTACKS

    ATTACKS.unregister("broken_attack")
    assert main([*RUN, "--attack", "broken_attack"]) == 2
    assert "needs its --plugin FILE.py" in capsys.readouterr().err


def test_a_bad_kind_is_refused_at_registration(tmp_path, capsys):
    plugin = tmp_path / "typo.py"
    plugin.write_text(BROKEN_ATTACK.replace('"broken_attack"', '"typo_attack"').replace('"removal"', '"removel"'))
    assert main([*RUN, "--plugin", str(plugin)]) == 2
    err = capsys.readouterr().err
    assert "kind='removel'" in err and "extraction, removal, detection, control" in err


def test_different_specs_never_share_a_card_path():
    from bench.results import slug

    names = ["xssd[tag=a/b]", "xssd[tag=a_b]", "xssd[tag=a?b]", "xssd[tag=a b]"]
    assert len({slug(n) for n in names}) == len(names)
    assert slug("mea_defender[kl_weight=0.05;com_extra=0]") == "mea_defender(kl_weight=0.05_com_extra=0)"  # as before
