import pytest

from bench.errors import ConfigError, UnknownNameError
from bench.registry import ATTACKS, DEFENSES
from bench.spec import Spec, base_name, expand_specs, is_configured, parse_spec, split_top_level


def test_split_respects_brackets():
    assert split_top_level("a,b[x=1,2;y=3],c") == ["a", "b[x=1,2;y=3]", "c"]
    with pytest.raises(ConfigError, match="unbalanced"):
        split_top_level("a[x=1")


def test_parse_sweep_is_cartesian():
    name, cfgs = parse_spec("soft_label[queries=10,all;temperature=1,7]")
    assert name == "soft_label"
    assert cfgs == [{"queries": 10, "temperature": 1}, {"queries": 10, "temperature": 7},
                    {"queries": None, "temperature": 1}, {"queries": None, "temperature": 7}]


def test_expand_specs_validates_and_labels():
    specs = expand_specs("identity,soft_label[temperature=7]", ATTACKS)
    assert [s.label for s in specs] == ["identity", "soft_label[temperature=7]"]
    assert expand_specs("*", DEFENSES)[0] == Spec(DEFENSES.list()[0])
    with pytest.raises(ConfigError, match="temperature=-1.0 is invalid"):
        expand_specs("soft_label[temperature=-1]", ATTACKS)
    with pytest.raises(UnknownNameError, match="did you mean content"):
        expand_specs("contnet", DEFENSES)


def test_a_default_value_adds_no_column():
    # prune's default rate is 0.5 and soft_label's default budget is the whole pool ("all")
    specs = expand_specs("prune[rate=0.5],prune,prune[rate=0.3],soft_label[queries=1000,all;temperature=1,7]",
                         ATTACKS)
    assert [s.label for s in specs] == ["prune", "prune[rate=0.3]", "soft_label[queries=1000]",
                                        "soft_label[queries=1000;temperature=7]", "soft_label",
                                        "soft_label[temperature=7]"]
    # a value equal to the default but of another type still means the same config: 1 and 1.0
    assert expand_specs("soft_label[temperature=1.0]", ATTACKS) == [Spec("soft_label")]


@pytest.mark.parametrize(("label", "name", "configured"), [
    ("content", "content", False),
    ("content[rate=0.1]", "content", True),
    ("mea_defender_official[anchor_batch=64;epochs=36]", "mea_defender_official", True),
    ("soft_label>prune", "soft_label>prune", False),
    ("soft_label[arch=vgg_like]", "soft_label", True),
])
def test_base_name_and_is_configured_read_a_card_label(label, name, configured):
    assert base_name(label) == name
    assert is_configured(label) is configured
