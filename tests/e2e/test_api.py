"""``import wmbench``: the public Python API runs, loads and renders without the generic package names."""

from __future__ import annotations

import subprocess
import sys

import wmbench


def test_version_is_the_distributions():
    import bench

    assert wmbench.__version__ == bench.__version__


def test_run_load_and_render_through_the_api(tmp_path):
    summary = wmbench.run("none,content[rate=0.1]", "identity", seeds=[0], dataset="synthetic", profile="test",
                          results=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"), device="cpu",
                          progress=False)
    assert summary.counts["ok"] == 2 and not summary.errors
    cards = wmbench.load_results(tmp_path / "results")
    assert sorted(cards.defense) == ["content[rate=0.1]", "none"]
    paths = wmbench.render_leaderboard(str(tmp_path / "results"), str(tmp_path / "board"))
    assert paths["markdown"].read_text().count("content") > 0
    again = wmbench.run("none,content[rate=0.1]", "identity", seeds=[0], dataset="synthetic", profile="test",
                        results=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"), device="cpu",
                        progress=False)
    assert again.counts["skipped"] == 2 and again.counts["ok"] == 0  # resumes from the cards


def test_registries_and_listings():
    assert "soft_label" in wmbench.list_attacks("soft_*") and "content" in wmbench.list_defenses()
    assert wmbench.DEFENSES.get("content").name == "content"
    assert wmbench.register_attack.__self__ is wmbench.ATTACKS


def test_importing_wmbench_is_light():
    code = "import sys, wmbench; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
