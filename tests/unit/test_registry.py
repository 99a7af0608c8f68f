import dataclasses
import textwrap
from pathlib import Path

import pytest

from bench.api import Attack, Outcome
from bench.config import ComponentConfig, param
from bench.errors import ConfigError, UnknownNameError, WmbenchError
from bench.registry import (
    ATTACKS,
    DEFENSES,
    Registry,
    create_attack,
    list_attacks,
    list_defenses,
    load_plugin_file,
)


def _attack_cls(doc="Demo attack."):
    class Demo(Attack):
        __doc__ = doc
        kind = "removal"

        @dataclasses.dataclass(frozen=True, kw_only=True)
        class Config(ComponentConfig):
            rate: float = param(0.5, "a rate", gt=0, le=1)
            mode: str = param("a", "a mode", choices=("a", "b"))

        def run(self, target, ctx):
            return Outcome(model=target.model)

    return Demo


def test_register_create_list_and_wildcards():
    reg = Registry("attack", (), "wmbench.none")
    reg.register("alpha_one")(_attack_cls())
    reg.register("alpha_two")(_attack_cls())
    reg.register("beta")(_attack_cls())
    assert reg.list("alpha_*") == ["alpha_one", "alpha_two"]
    assert reg.list("beta,alpha_two") == ["alpha_two", "beta"]
    assert reg.expand("beta,alpha_*") == ["beta", "alpha_one", "alpha_two"]
    obj = reg.create("beta", rate=0.25)
    assert obj.config.rate == 0.25 and obj.name == "beta"


def test_duplicate_name_raises():
    reg = Registry("attack", (), "wmbench.none")
    reg.register("dup")(_attack_cls())
    with pytest.raises(WmbenchError, match="already registered"):
        reg.register("dup")(_attack_cls())


def test_unknown_name_suggests_close_match():
    with pytest.raises(UnknownNameError, match=r"unknown attack 'soft_lable'; did you mean soft_label\?"):
        create_attack("soft_lable")
    with pytest.raises(UnknownNameError, match="no attack matches 'zzz_\\*'"):
        ATTACKS.expand("zzz_*")


def test_bad_names_rejected():
    reg = Registry("attack", (), "wmbench.none")
    with pytest.raises(WmbenchError, match="snake_case"):
        reg.register("Bad-Name")


def test_config_validation_names_field_and_range():
    reg = Registry("attack", (), "wmbench.none")
    reg.register("demo")(_attack_cls())
    with pytest.raises(ConfigError, match=r"demo: rate=2.0 is invalid; it must be > 0 and <= 1"):
        reg.create("demo", rate=2.0)
    with pytest.raises(ConfigError, match=r"mode='c' is invalid; allowed: one of 'a', 'b'"):
        reg.create("demo", mode="c")
    with pytest.raises(ConfigError, match=r"has no parameter 'rat'; did you mean rate\?"):
        reg.create("demo", rat=0.1)
    with pytest.raises(ConfigError, match="must be a number"):
        reg.create("demo", rate="high")
    assert reg.create("demo", rate=None).config.rate == 0.5  # None keeps the default
    assert reg.create("demo", rate=1).config.rate == 1.0  # ints are accepted for float fields


def test_configs_are_frozen_and_keyword_only():
    cfg = create_attack("soft_label").config
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.temperature = 3.0
    with pytest.raises(TypeError):
        type(cfg)(2.0)


def test_builtins_registered_with_docs_and_versions():
    assert {"none", "content"} <= set(list_defenses())
    assert {"identity", "soft_label"} <= set(list_attacks())
    for reg in (DEFENSES, ATTACKS):
        for name in reg.list():
            cls = reg.get(name)
            assert cls.describe(), f"{name} needs a docstring"
            assert isinstance(cls.version, str) and cls.version


def test_plugin_file_registers(tmp_path):
    f = tmp_path / "my_attack.py"
    f.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from bench.api import Attack, Outcome
        from bench.config import ComponentConfig
        from bench.registry import register_attack

        @register_attack("plugin_file_demo")
        class PluginDemo(Attack):
            """Plugin demo."""
            kind = "removal"

            @dataclass(frozen=True, kw_only=True)
            class Config(ComponentConfig):
                pass

            def run(self, target, ctx):
                return Outcome(model=target.model)
    '''))
    try:
        load_plugin_file(f)
        load_plugin_file(f)  # idempotent
        assert "plugin_file_demo" in list_attacks("plugin_*")
    finally:
        ATTACKS.unregister("plugin_file_demo")


def test_plugin_file_errors_are_one_line(tmp_path):
    with pytest.raises(WmbenchError, match="missing.py' does not exist"):
        load_plugin_file(tmp_path / "missing.py")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(WmbenchError, match="is not a .py file"):
        load_plugin_file(tmp_path / "notes.txt")
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(WmbenchError, match="failed to import: RuntimeError: boom"):
        load_plugin_file(bad)


def test_entry_point_plugin(tmp_path, monkeypatch):
    pkg = tmp_path / "wmb_ep_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from bench.api import Defense, Protected
        from bench.config import ComponentConfig

        class EpDefense(Defense):
            """Entry-point demo defense."""

            @dataclass(frozen=True, kw_only=True)
            class Config(ComponentConfig):
                pass

            def embed(self, task, ctx):
                raise NotImplementedError
    '''))
    dist = tmp_path / "wmb_ep_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wmb-ep-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[wmbench.defenses]\nep_demo = wmb_ep_demo:EpDefense\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("defense", (), "wmbench.defenses")
    assert reg.list() == ["ep_demo"]
    assert reg.get("ep_demo").describe() == "Entry-point demo defense."


def test_a_shadowing_attacks_package_is_reported_not_used(tmp_path):
    """A folder with its own ``attacks`` package must not silently give zero attacks."""
    import subprocess
    import sys

    foreign = tmp_path / "attacks"
    foreign.mkdir()
    (foreign / "__init__.py").write_text("")
    proc = subprocess.run([sys.executable, "-m", "wmbench", "list"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "shadows wmbench's built-in attacks" in lines[0], proc.stderr
    import bench  # the built-ins sit beside the bench this interpreter imports, wherever it is installed

    assert str(foreign) in lines[0] and str(Path(bench.__file__).resolve().parent.parent / "attacks") in lines[0]


def test_suggest_names_the_closest_registered_names():
    from bench.errors import suggest

    assert suggest("soft_lable", ["soft_label", "soft_labels", "prune"]) == "did you mean soft_label, soft_labels? "
    assert suggest("zzz", ["soft_label"]) == ""
    assert suggest("dsak", ["loky", "dask", "ray"], n=1) == "did you mean dask? "
