"""What a run records about the code that made it: the commit, in a checkout and in a copy without git."""

import subprocess

from bench.settings import git_sha


def test_git_sha_of_a_checkout_ignores_the_override(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t", "-c",
                    "commit.gpgsign=false", "commit", "-qm", "m"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    monkeypatch.setenv("WMBENCH_GIT_SHA", "f" * 40)
    assert git_sha(tmp_path) == head


def test_git_sha_of_a_copy_without_git_reads_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("WMBENCH_GIT_SHA", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_sha(tmp_path) is None
    monkeypatch.setenv("WMBENCH_GIT_SHA", " abc123 \n")
    assert git_sha(tmp_path) == "abc123"
