"""CLI: every bad input exits 2 with one clear line and no traceback."""

import json
import re

import pytest

from wmbench.cli import main


def _err(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["run", "--defense", "contnet"], "unknown defense 'contnet'; did you mean content"),
        (["run", "--attack", "soft_lable"], "unknown attack 'soft_lable'; did you mean soft_label?"),
        (["run", "--attack", "zz_*"], "no attack matches 'zz_*'"),
        (["run", "--dataset", "fashion_mnist"], "unknown dataset 'fashion_mnist'; did you mean fashion-mnist?"),
        (["run", "--profile", "huge"], "unknown profile 'huge'; choose one of smoke, quick, paper"),
        (["run", "--seeds", "a,b"], "--seeds 'a,b' must be comma-separated integers"),
        (["run", "--jobs", "0"], "--jobs 0 must be >= 1"),
        (["run", "--device", "tpu"], "--device 'tpu' is invalid; use auto, cpu or cuda"),
        (["run", "--precision", "fp16"], "--precision 'fp16' is invalid; use fp32 or bf16"),
        (["run", "--attack", "soft_label[temperature=0]"], "soft_label: temperature=0.0 is invalid; it must be > 0"),
        (["run", "--attack", "soft_label[tempreature=2]"], "did you mean temperature?"),
        (["run", "--arch", "resnet1"], "unknown architecture 'resnet1'"),
        (["--plugin", "nowhere.py", "list"], "plugin 'nowhere.py' does not exist"),
        (["show", "missing.json"], "missing.json: no such card"),
        (["leaderboard", "--results", "no_such_dir"], "no_such_dir"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    if argv[0] == "run":
        argv = argv + ["--cache-dir", str(tmp_path / "c"), "-q"]
        argv += [] if "--dataset" in argv else ["--dataset", "synthetic"]
        argv += [] if "--profile" in argv else ["--profile", "test"]
    code, _, err = _err(capsys, argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wmbench: error: "), err
    assert needle in lines[0]
    assert "Traceback" not in err


def test_unwritable_results_dir(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _err(capsys, ["run", "--dataset", "synthetic", "--profile", "test", "--attack", "identity",
                                 "--defense", "none", "--results", str(blocker / "sub"), "-q",
                                 "--cache-dir", str(tmp_path / "c")])
    assert code == 2 and "pass a writable --results" in err and len(err.strip().splitlines()) == 1


def test_missing_data_is_one_line(capsys, tmp_path, monkeypatch):
    import bench.data as data

    def no_data(name, root=None):
        raise data.DataError("Fashion-MNIST not found; install it with `apt-get install dataset-fashion-mnist`")

    monkeypatch.setattr(data, "load_raw", no_data)
    code, _, err = _err(capsys, ["run", "--profile", "smoke", "--results", str(tmp_path / "r"),
                                 "--cache-dir", str(tmp_path / "c"), "-q"])
    assert code == 2 and "apt-get install dataset-fashion-mnist" in err


def test_list_shows_components(capsys):
    code, out, _ = _err(capsys, ["list"])
    assert code == 0
    assert "content" in out and "soft_label" in out and "extraction" in out
    assert "fashion-mnist" in out and "small_cnn" in out and "quick" in out


def test_help_everywhere(capsys):
    for argv in (["--help"], ["run", "--help"], ["leaderboard", "--help"], ["list", "--help"], ["show", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        assert "usage: wmbench" in capsys.readouterr().out


def test_run_show_and_leaderboard(capsys, tmp_path):
    code, out, _ = _err(capsys, ["run", "--dataset", "synthetic", "--profile", "test", "--defense", "none",
                                 "--attack", "identity", "--results", str(tmp_path / "r"),
                                 "--cache-dir", str(tmp_path / "c"), "--device", "cpu", "-q"])
    assert code == 0 and "1 cells: 1 ok" in out
    card = next((tmp_path / "r").rglob("seed-0.json"))
    code, out, _ = _err(capsys, ["show", str(card)])
    assert code == 0 and json.loads(out)["defense"] == "none"
    code, out, _ = _err(capsys, ["leaderboard", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "lb")])
    assert code == 0
    assert (tmp_path / "lb" / "LEADERBOARD.md").exists() and (tmp_path / "lb" / "index.html").exists()


def test_dry_run_says_what_would_run_and_runs_nothing(capsys, tmp_path):
    argv = ["run", "--dataset", "synthetic", "--profile", "test", "--defense", "none,content[rate=0.1]",
            "--attack", "identity,soft_label>prune", "--results", str(tmp_path / "r"), "--cache-dir",
            str(tmp_path / "c"), "--device", "cpu", "-q"]
    code, out, _ = _err(capsys, [*argv, "--dry-run"])
    assert code == 0 and "nothing was run" in out
    assert "4 cells to run, 0 already done" in out
    # victims: none, content and the profile's one null model; attacks: identity and the two chain steps on the
    # two victims, and on the null model for content's cells
    assert "3 victims and null models (0 cached), 9 attack steps (0 cached)" in out
    assert "attack steps to run: identity 3, prune 3, soft_label 3" in out
    # soft_label on the two victims and the null model reads one table of answers per model; content's two cells
    # share its verification on the null model, and each verifies on its own copy of it
    assert "oracle passes over the attacker's pool: at most 3 (one per attacked model" in out
    assert ("evaluations: 2 victims on the test set (0 cached), 3 verifications of a watermark on a null model "
            "(0 cached), 4 suspects scored (one per cell)") in out
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()  # nothing written, not even folders
    one = [*argv]
    one[one.index("--defense") + 1], one[one.index("--attack") + 1] = "none", "identity"
    code, out, _ = _err(capsys, one)
    assert code == 0 and "1 cells: 1 ok" in out
    code, out, _ = _err(capsys, [*argv, "--dry-run"])
    assert "3 cells to run, 1 already done" in out and "(1 cached)" in out
    assert "time: no estimate (none of the 10 models to train was timed at another seed)" in out
    # the same two jobs at another seed: estimated from the ones just timed
    code, out, _ = _err(capsys, [*one, "--seeds", "1", "--dry-run"])
    assert re.search(r"time: about \d+ s of single-job wall time for 2 of the 2 models to train \(each the mean "
                     r"recorded time of the same job at other seeds\)$", out.strip()), out
    # the entries record where they were built; a record from another device times nothing here
    from bench.cache import entry_exists, entry_meta
    from bench.planning import estimate, plan_matrix
    from bench.results import card_path
    from bench.settings import device_name, make_settings

    st = make_settings(dataset="synthetic", profile="test", results_dir=str(tmp_path / "r"),
                       cache_dir=str(tmp_path / "c"), device="cpu")
    todo, ref = (plan_matrix(st, "none", "identity", seeds, force=True) for seeds in ([1], [0, 1]))
    here = device_name("cpu")
    assert {entry_meta(st.cache_dir, k)["device"] for k in ref.victims if entry_exists(st.cache_dir, k)} == {here}
    card = json.loads(card_path(tmp_path / "r", "synthetic", "small_cnn", "none", "identity", 0).read_text())
    assert (card["device"], card["extras"]["victim_device"]) == (here, here)  # the card names its victim's too

    def has(key):
        return entry_exists(st.cache_dir, key)

    def meta(key):
        return entry_meta(st.cache_dir, key)

    assert estimate(todo, ref, has, meta, here).timed == 2
    other = estimate(todo, ref, has, meta, "cuda:Some GPU")
    assert (other.timed, other.untimed) == (0, 2)
    old = estimate(todo, ref, has, lambda key: {k: v for k, v in (meta(key) or {}).items() if k != "device"},
                   "cuda:Some GPU")
    assert old.timed == 2  # an entry made before entries recorded their device still counts


def test_plugin_flag_registers_a_loose_file(capsys, tmp_path):
    from bench.registry import ATTACKS

    f = tmp_path / "loose.py"
    f.write_text(
        "from dataclasses import dataclass\n"
        "from bench.api import Attack, Outcome\n"
        "from bench.config import ComponentConfig\n"
        "from bench.registry import register_attack\n\n"
        "@register_attack('loose_demo')\n"
        "class LooseDemo(Attack):\n"
        "    '''A loose-file attack (CLI test).'''\n"
        "    kind = 'removal'\n\n"
        "    @dataclass(frozen=True, kw_only=True)\n"
        "    class Config(ComponentConfig):\n"
        "        pass\n\n"
        "    def run(self, target, ctx):\n"
        "        return Outcome(model=target.model)\n"
    )
    try:
        code, out, _ = _err(capsys, ["--plugin", str(f), "list", "loose_*"])
        assert code == 0 and "loose_demo" in out and "A loose-file attack" in out
        code, out, _ = _err(capsys, ["run", "--plugin", str(f), "--dataset", "synthetic", "--profile", "test",
                                     "--defense", "none", "--attack", "loose_demo", "--device", "cpu", "-q",
                                     "--results", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")])
        assert code == 0 and "1 ok" in out
    finally:
        ATTACKS.unregister("loose_demo")


def test_a_closed_pipe_ends_the_listing_quietly():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "wmbench", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves before the first line, as `| head` does
    err = proc.stderr.read().decode()
    assert proc.wait() == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_a_board_fills_the_run_and_is_narrowed_by_the_flags():
    from wmbench.cli import _board_run, _parser

    args = _parser().parse_args(["run", "--board", "main", "--defense", "ewe", "--attack", "identity,prune",
                                 "--seeds", "1"])
    args.plugin = []
    assert _board_run(args) == ("ewe", "identity,prune", [1])
    assert (args.dataset, args.arch, args.profile) == ("fashion-mnist", "small_cnn", "quick")
    whole = _parser().parse_args(["run", "--board", "main"])
    whole.plugin = []
    defenses, attacks, seeds = _board_run(whole)
    assert seeds == [0, 1, 2] and defenses.startswith("none,") and "soft_label[arch=vgg_like]" in attacks
    plain = _parser().parse_args(["run"])
    plain.plugin = []
    assert _board_run(plain) == ("*", "*", [0]) and (plain.dataset, plain.profile) == ("fashion-mnist", "quick")


def test_verify_reruns_a_card_and_catches_an_edited_number(capsys, tmp_path):
    from bench.results import read_card, write_card

    code, _, _ = _err(capsys, ["run", "--dataset", "synthetic", "--profile", "test", "--defense", "content",
                               "--attack", "soft_label", "--results", str(tmp_path / "r"), "--cache-dir",
                               str(tmp_path / "c"), "--device", "cpu", "-q"])
    assert code == 0
    card = next((tmp_path / "r").rglob("seed-0.json"))
    cached = sorted((tmp_path / "c").rglob("*.wm"))
    code, out, _ = _err(capsys, ["verify", str(card), "--device", "cpu", "-q", "--cache-dir", str(tmp_path / "c")])
    assert code == 0, out
    assert "from scratch" in out and "the card agrees with a re-run (11 fields)" in out
    assert sorted((tmp_path / "c").rglob("*.wm")) == cached  # trained in a temporary cache, not in --cache-dir
    edited = read_card(card)
    edited["wsr_suspect"] = min(1.0, edited["wsr_suspect"] + 0.2) if edited["wsr_suspect"] < 0.8 else 0.5
    write_card(card, edited)
    code, out, _ = _err(capsys, ["verify", str(card), "--device", "cpu", "-q", "--reuse-cache", "--cache-dir",
                                 str(tmp_path / "c")])
    assert code == 1
    assert "wsr_suspect differs from a re-run (numbers beyond their tolerance" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("wsr_suspect"))
    assert "DIFFERS (|Δ| <= 0.02)" in line and f"{edited['wsr_suspect']:.4f}" in line


def test_verify_says_which_cards_it_cannot_verify_and_goes_on(capsys, tmp_path):
    from cardfactory import make_card

    from bench.results import write_card

    error = write_card(tmp_path / "a" / "seed-0.json", make_card(status="error"))
    stale = write_card(tmp_path / "b" / "seed-0.json", make_card(run_id="0" * 32))  # not what the registry makes
    code, out, err = _err(capsys, ["verify", str(error), str(stale), "-q", "--device", "cpu"])
    assert code == 1 and out.count("re-running the cell") == 2  # the first card's refusal did not stop the second
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "an error card has no numbers to verify" in lines[0]
    assert "its run id differs" in lines[1] and "Traceback" not in err
    assert not list(tmp_path.rglob("*.wm"))  # refused before anything was trained


def test_a_bf16_run_writes_its_own_cards_and_verify_reruns_them_at_bf16(capsys, tmp_path):
    from bench.results import read_card

    base = ["run", "--dataset", "synthetic", "--profile", "test", "--defense", "content", "--attack", "identity",
            "--results", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), "--device", "cpu", "-q"]
    assert _err(capsys, base)[0] == 0 and _err(capsys, [*base, "--precision", "bf16"])[0] == 0
    fp32 = read_card(next((tmp_path / "r").rglob("seed-0.json")))
    path = next((tmp_path / "r").rglob("seed-0.bf16.json"))
    bf16 = read_card(path)
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16") and fp32["run_id"] != bf16["run_id"]
    assert bf16["profile_config"]["precision"] == "bf16" and "precision" not in fp32["profile_config"]
    assert bf16["cpu_s"] > 0 and bf16["threads"] >= 1
    # verify re-runs the cell at the card's own precision (at fp32 its run id would differ and it would refuse)
    code, out, _ = _err(capsys, ["verify", str(path), "--device", "cpu", "-q"])
    assert code == 0 and "the card agrees with a re-run" in out, out
    code, _, err = _err(capsys, ["run", "--board", "main", "--precision", "bf16", "--dry-run"])
    assert code == 2 and "board 'main' is declared on --precision fp32; drop --precision bf16" in err
