"""Speed of the hot paths, kept small: a round takes about a second or less on a quiet 2-core CPU.

* one training epoch (``bench.train.fit``, ``small_cnn`` on 384 random 28x28 images);
* one oracle query batch (``bench.oracle.Oracle``, 1,024 images answered as probabilities);
* watermark generation: a MEA-Defender top/bottom mix of a 512-image batch, a content-patch stamp of 512
  images, the blend trigger on the synthetic test split;
* verification (``Protected.verify`` of a content-watermarked model on the synthetic data set);
* card loading (``bench.results.load_results`` over 200 cards) and leaderboard rendering
  (``leaderboard.render.render`` of the same 200 cards).

By default (``--benchmark-disable`` in pyproject's addopts) each runs once as a plain test, with its
assertions. To time them against the committed baseline (recorded on a shared 2-core machine)::

    .venv/bin/pytest tests/benchmarks/test_hot_paths.py --benchmark-enable \\
        --benchmark-storage=file://tests/benchmarks/.baseline --benchmark-compare=0001 \\
        --benchmark-compare-fail=mean:25%

See docs/development.md, "Benchmarks".
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cardfactory import make_card

from bench.api import Context, Protected
from bench.models import create_model
from bench.oracle import Oracle
from bench.profiles import get_profile
from bench.results import card_path, load_results, write_card
from bench.train import fit, predict_labels
from defenses._mixing import mix
from defenses._triggers import verification_from_test
from defenses.blend import Blend
from defenses.content import Content, checker_patch, stamp
from leaderboard import render

ROUNDS = 5
FAST_ROUNDS = 20  # for the paths that take milliseconds, where one scheduling hiccup would swamp a mean
IMAGE = (1, 28, 28)
CLASSES = 10


def _bench(benchmark, fn, *, setup=None, rounds: int = ROUNDS):
    """A fixed, small number of rounds (one untimed warm-up); as a plain test, one call."""
    return benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1, warmup_rounds=1)


def _cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("small_cnn", in_channels=IMAGE[0], num_classes=CLASSES, image_size=IMAGE[1:],
                        mean=(0.5,), std=(0.25,))


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *IMAGE, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------- training
def test_training_epoch(benchmark):
    n = 384
    x = _images(n)
    y = torch.randint(CLASSES, (n,), generator=torch.Generator().manual_seed(1))
    profile = get_profile("test")
    before: dict[str, torch.Tensor] = {}

    def setup():
        model = _cnn()
        before.clear()
        before.update({k: v.clone() for k, v in model.state_dict().items()})
        return (model,), {}

    def epoch(model):
        return fit(model, x, y, ctx=Context(torch.device("cpu"), 0, profile), epochs=1,
                   batch_size=profile.batch_size, lr=profile.lr, desc="bench")

    model = _bench(benchmark, epoch, setup=setup)
    assert not model.training
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed, "one epoch of Adam left every weight as it was"
    with torch.no_grad():
        logits = model(x[:8])
    assert logits.shape == (8, CLASSES) and torch.isfinite(logits).all()
    benchmark.extra_info.update(images=n, batch_size=profile.batch_size, threads=torch.get_num_threads())


# --------------------------------------------------------------------------------------------- oracle
def test_oracle_query_batch(benchmark):
    n = 1024
    model, x = _cnn().eval(), _images(n)

    def setup():
        return (Oracle(model, num_classes=CLASSES, mode="probs", budget=n),), {}

    def query(oracle):
        return oracle, oracle(x)

    oracle, answers = _bench(benchmark, query, setup=setup)
    assert answers.shape == (n, CLASSES)
    assert torch.allclose(answers.sum(1), torch.ones(n), atol=1e-5)
    assert oracle.queries == n and oracle.remaining == 0
    benchmark.extra_info.update(images=n, mode="probs")


# ------------------------------------------------------------------------------------------ watermarks
def test_mea_mix_batch(benchmark):
    n = 512
    a, b = _images(n, 1), _images(n, 2)

    def setup():
        return (torch.Generator().manual_seed(0),), {}

    out = _bench(benchmark, lambda g: mix("top_bottom", a, b, g), setup=setup, rounds=FAST_ROUNDS)
    assert out.shape == a.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, mix("top_bottom", a, b, torch.Generator().manual_seed(0)))  # the generator decides
    # every row of a composite is a row of one of its two sources
    for i in range(4):
        rows = torch.cat([a[i, 0], b[i, 0]])
        assert all((rows == r).all(1).any() for r in out[i, 0])
    benchmark.extra_info.update(images=n, mixer="top_bottom")


def test_content_stamp(benchmark):
    n = 512
    x, patch = _images(n), checker_patch(7, IMAGE[0])
    out = _bench(benchmark, lambda: stamp(x, patch, "bottom_right"), rounds=FAST_ROUNDS)
    assert out.shape == x.shape
    assert torch.equal(out[:, :, -7:, -7:], patch.expand(n, *patch.shape))
    assert torch.equal(out[:, :, :-7], x[:, :, :-7]) and torch.equal(x, _images(n))  # the input is untouched
    benchmark.extra_info.update(images=n, patch=7)


def test_blend_trigger(benchmark, task, ctx):
    blend = Blend()
    key = blend.pattern(task, ctx)
    alpha = blend.config.alpha

    def trigger():
        return verification_from_test(task, ctx, -1, 0, lambda x: alpha * key + (1 - alpha) * x)

    vx, vy = _bench(benchmark, trigger, rounds=FAST_ROUNDS)
    eligible = task.x_test[task.y_test != 0][: ctx.profile.verify_max]
    assert vx.shape == eligible.shape and set(vy.tolist()) == {0}
    assert torch.allclose(vx, alpha * key + (1 - alpha) * eligible)
    benchmark.extra_info.update(images=len(vx), alpha=alpha)


# ---------------------------------------------------------------------------------------- verification
@pytest.fixture(scope="module")
def protected(task, profile) -> Protected:
    return Content(rate=0.1).embed(task, Context(torch.device("cpu"), 0, profile))


def test_verify(benchmark, protected: Protected):
    wsr, n = _bench(benchmark, lambda: protected.verify(protected.model), rounds=FAST_ROUNDS)
    assert n == len(protected.verify_y) > 0
    hits = int((predict_labels(protected.model, protected.verify_x) == protected.verify_y).sum())
    assert wsr == hits / n
    assert wsr >= 0.8  # the owner's own model carries its watermark
    benchmark.extra_info.update(verify_samples=n, wsr=round(wsr, 4))


# --------------------------------------------------------------------------------- cards and rendering
DEFENSES = ("none", "content", "noise", "unrelated", "adi", "ewe", "blend", "dawn", "composite_backdoor",
            "mea_defender")
ATTACKS = (("identity", "control"), ("soft_label", "extraction"), ("hard_label", "extraction"),
           ("knockoff", "extraction"), ("fine_tune", "removal"), ("prune", "removal"), ("fine_prune", "removal"),
           ("nad", "removal"), ("neural_cleanse", "detection"), ("strip", "detection"))
SEEDS = (0, 1)
N_CARDS = len(DEFENSES) * len(ATTACKS) * len(SEEDS)


def many_cards() -> list[dict]:
    """200 varied, deterministic cards: 10 schemes x 10 attacks x 2 seeds, a few of them errors."""
    cards = []
    for i, d in enumerate(DEFENSES):
        for j, (a, kind) in enumerate(ATTACKS):
            for s in SEEDS:
                base = dict(defense=d, attack=a, attack_kind=kind, seed=s)
                if (3 * i + 5 * j + s) % 23 == 0:
                    cards.append(make_card(**base, status="error", error=f"RuntimeError: {a} failed on {d}"))
                    continue
                h = (37 * i + 11 * j + 5 * s) % 100
                wsr = h / 100
                cost = {"wall_s": 0.05 + 2.0 ** j * (1 + 0.1 * i + 0.05 * s),
                        "queries": 10000 * j if kind == "extraction" else 0,
                        "epochs": 2 + j % 3 if kind in ("extraction", "removal") else 0,
                        "peak_mem_mb": 300.0 + 10 * j + i}
                acc = {"clean_acc_victim": 0.85 + 0.005 * i, "clean_acc_suspect": 0.80 + 0.002 * h / 10}
                if kind == "detection":
                    wm = {"wsr_suspect": None, "retained": None, "removed_cheaply": None, "fidelity": None,
                          "clean_acc_suspect": None, "detected": h % 3 == 0, "detected_target": 0}
                elif d == "none":
                    wm = {}
                else:
                    wm = {"wsr_suspect": wsr, "retained": wsr >= 0.3, "removed_cheaply": wsr < 0.3,
                          "p_value": 1e-6 if wsr >= 0.3 else 0.5, "wsr_null": 0.05}
                cards.append(make_card(**base, **cost, **{**acc, **wm}))
    return cards


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cards")
    for c in many_cards():
        write_card(card_path(root, c["dataset"], c["arch"], c["defense"], c["attack"], c["seed"]), c)
    return root


def test_load_results(benchmark, results_dir: Path):
    df = _bench(benchmark, lambda: load_results(results_dir), rounds=FAST_ROUNDS)
    assert len(df) == N_CARDS
    assert set(df.defense) == set(DEFENSES) and set(df.attack) == {a for a, _ in ATTACKS}
    assert (df.status == "error").sum() == sum(c["status"] == "error" for c in many_cards()) > 0
    benchmark.extra_info.update(cards=len(df))


def test_render(benchmark, results_dir: Path, tmp_path: Path):
    paths = _bench(benchmark, lambda: render(results_dir, tmp_path / "out"), rounds=3)
    assert set(paths) == {"markdown", "html", "heatmap", "cost"}
    text = paths["markdown"].read_text(encoding="utf-8")
    assert f"**Cards:** {N_CARDS} (" in text
    assert all(p.stat().st_size > 0 for p in paths.values())
    benchmark.extra_info.update(cards=N_CARDS)
