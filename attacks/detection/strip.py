"""STRIP as an API-side filter (Gao et al., "STRIP: A Defence Against Trojan Attacks on Deep Neural
Networks", ACSAC 2019, https://arxiv.org/abs/1902.06531).

STRIP superimposes an input on clean images (by default as the paper's code does: the pixel sum, clipped)
and measures the mean entropy of the predictions: a trojaned (here: watermark) input keeps its label
whatever it is superimposed on, so its entropy is abnormally low. The
attacker serves its stolen copy behind STRIP: inputs whose entropy falls below a threshold calibrated on
clean images of its own pool (``frr`` of them would be refused) get another answer — the second most likely
class (``refuse=second``) or a pseudo-random other class derived from the input (``refuse=random``).

It removes *verification*, not the watermark, so it is a removal attack: the suspect is the filtered API,
and the scorer measures the WSR the owner observes through it. The false-refusal rate on a held-out part of
the pool (never the test set) is in the extras; the scorer's fidelity shows the damage to clean traffic.
The overlay images are fixed at attack time, so the filter is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attacks._common import batched, holdout_split
from bench.api import Attack, Context, Outcome, Target
from bench.codec import CodecError, cache_codec
from bench.config import ComponentConfig, param
from bench.errors import ConfigError
from bench.registry import register_attack

REFUSALS = ("second", "random")
SUPERIMPOSE = ("add", "blend")


def _strip_state(f: StripFilter) -> dict:
    return {"model": f.model, "overlays": f.overlays, "alpha": f.alpha, "threshold": f.threshold,
            "refuse": f.refuse, "superimpose": f.superimpose}


def _strip_from_state(state: dict) -> StripFilter:
    if not isinstance(state.get("model"), nn.Module) or not isinstance(state.get("overlays"), torch.Tensor):
        raise CodecError("malformed STRIP filter in cache entry")
    return StripFilter(state["model"], state["overlays"], float(state["alpha"]), float(state["threshold"]),
                       str(state["refuse"]), str(state["superimpose"])).eval()


class StripFilter(nn.Module):
    """Answer like ``model`` except on inputs whose STRIP entropy is below ``threshold``."""

    overlays: torch.Tensor

    def __init__(self, model: nn.Module, overlays: torch.Tensor, alpha: float, threshold: float,
                 refuse: str, superimpose: str = "add") -> None:
        super().__init__()
        self.model = model
        self.register_buffer("overlays", overlays.clone())
        self.alpha = float(alpha)
        self.threshold = float(threshold)
        self.refuse = refuse
        self.superimpose = superimpose

    def entropy(self, x: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """Mean prediction entropy of each input blended with every overlay (natural log)."""
        m = len(self.overlays)
        out = []
        for i in range(0, len(x), chunk):
            xb = x[i : i + chunk]
            ov = self.overlays[None].to(xb.dtype)
            if self.superimpose == "add":
                blend = (xb[:, None] + self.alpha * ov).clamp(0, 1)
            else:
                blend = (1 - self.alpha) * xb[:, None] + self.alpha * ov
            probs = torch.softmax(self.model(blend.flatten(0, 1)).float(), dim=1)
            ent = -(probs * probs.clamp_min(1e-12).log()).sum(1)
            out.append(ent.view(len(xb), m).mean(1))
        return torch.cat(out) if out else torch.empty(0, device=x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        with torch.no_grad():  # the filter's decision is not differentiable anyway
            flag = self.entropy(x) < self.threshold
        if not bool(flag.any()):
            return logits
        out = logits.clone()
        top2 = logits.topk(2, dim=1).indices
        if self.refuse == "second":
            swapped = logits.clone()
            rows = torch.arange(len(x), device=x.device)
            swapped[rows, top2[:, 0]] = logits[rows, top2[:, 1]]
            swapped[rows, top2[:, 1]] = logits[rows, top2[:, 0]]
        else:
            k = logits.shape[1]
            # a class other than the top one, drawn from the input's own pixels (deterministic)
            shift = 1 + (x.flatten(1).sum(1) * 1000).long() % (k - 1)
            label = (top2[:, 0] + shift) % k
            swapped = torch.nn.functional.one_hot(label, k).to(logits.dtype) * 10.0
        out[flag] = swapped[flag]
        return out

    def extra_repr(self) -> str:
        return f"overlays={len(self.overlays)}, alpha={self.alpha}, threshold={self.threshold:.4f}, " \
               f"refuse={self.refuse}"


cache_codec("strip_filter", _strip_state, _strip_from_state)(StripFilter)


@register_attack("strip")
class Strip(Attack):
    """Serve the copy behind a STRIP filter that refuses low-entropy (trojan-like) inputs (Gao et al. 2019)."""

    kind = "removal"
    version = "1"

    @dataclass(frozen=True, kw_only=True)
    class Config(ComponentConfig):
        overlays: int = param(16, "clean images each input is superimposed on", ge=2)
        superimpose: str = param("add", "add: x + alpha * overlay clipped to [0, 1] (the paper's code); blend: "
                                 "(1 - alpha) * x + alpha * overlay", choices=SUPERIMPOSE)
        alpha: float = param(1.0, "weight of the overlay image", gt=0, le=1)
        frr: float = param(0.05, "target false-refusal rate on clean inputs (sets the entropy threshold)", gt=0, lt=1)
        holdout_frac: float = param(0.5, "share of the pool held out: half calibrates, half measures the "
                                    "false-refusal rate", gt=0, lt=1)
        max_calibration: int = param(2000, "clean images used to calibrate (and, as many, to measure)", ge=10)
        refuse: str = param("second", "answer to a refused input: the second most likely class, or a "
                            "pseudo-random other class", choices=REFUSALS)

        def validate(self) -> None:
            if self.superimpose == "blend" and self.alpha == 1:
                raise ConfigError("strip: superimpose=blend with alpha=1 would replace the input by the overlay; "
                                  "use alpha < 1")

    def run(self, target: Target, ctx: Context) -> Outcome:
        c = self.config
        model = target.model.eval()
        rest, held = holdout_split(len(target.x_pool), c.holdout_frac, ctx)
        if len(rest) < c.overlays or len(held) < 2:
            raise ConfigError(f"strip: the attacker's pool ({len(target.x_pool)} images) is too small for "
                              f"{c.overlays} overlays; lower overlays or holdout_frac")
        overlays = target.x_pool[rest[: c.overlays]]
        half = len(held) // 2
        cal, ev = held[:half][: c.max_calibration], held[half:][: c.max_calibration]
        filt = StripFilter(model, overlays.to(ctx.device), c.alpha, float("-inf"), c.refuse, c.superimpose)
        ent_cal = batched(filt.entropy, target.x_pool[cal], ctx.device, batch_size=128)
        threshold = float(torch.quantile(ent_cal, c.frr))
        filt.threshold = threshold
        ent_ev = batched(filt.entropy, target.x_pool[ev], ctx.device, batch_size=128)
        frr = float((ent_ev < threshold).float().mean())
        return Outcome(model=filt.eval(), extras={
            "entropy_threshold": threshold, "false_refusal_rate": frr, "false_refusal_rate_calibration":
            float((ent_cal < threshold).float().mean()), "calibration_images": len(cal), "evaluation_images": len(ev)})
