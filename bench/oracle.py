"""The black-box API an extraction attacker queries.

It counts every image it answers, enforces the query budget, and answers in one of four output modes:
``probs`` (full probability vector), ``topk`` (the k largest probabilities, the rest zero),
``rounded`` (probabilities rounded to ``decimals`` places) or ``label`` (one-hot top-1 label).

An attack that queries images of the attacker's own pool asks :meth:`Oracle.ask_pool` for their rows: the answers
are the same as for the images themselves, counted and budgeted alike, but the model answers the whole pool only
once, and the runner keeps that table in the cache, so every attack on the same model, whatever its output mode,
budget or subset, reads it instead of querying the model again (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from bench.errors import ConfigError, WmbenchError

__all__ = ["Oracle", "BudgetExceeded", "OUTPUT_MODES"]

OUTPUT_MODES = ("probs", "topk", "rounded", "label")


class BudgetExceeded(WmbenchError):
    """An attack asked for more queries than its budget."""


class Oracle:
    """Serve ``model`` as a prediction API. The model is private: attacks see only answers."""

    def __init__(
        self,
        model: nn.Module,
        *,
        num_classes: int,
        mode: str = "probs",
        top_k: int = 1,
        decimals: int = 2,
        budget: int | None = None,
        batch_size: int = 512,
        serve: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        pool: torch.Tensor | None = None,
        remember: Callable[[Callable[[], torch.Tensor]], torch.Tensor] | None = None,
    ) -> None:
        """``pool`` is the attacker's pool (for :meth:`ask_pool`); ``remember(build)`` returns the table of
        served answers to it, built by ``build`` once and kept by the caller (the runner's cache)."""
        if mode not in OUTPUT_MODES:
            raise ConfigError(f"oracle mode {mode!r} is invalid; use one of {', '.join(OUTPUT_MODES)}")
        if not 1 <= top_k <= num_classes:
            raise ConfigError(f"oracle top_k={top_k} must be between 1 and {num_classes}")
        if decimals < 0:
            raise ConfigError(f"oracle decimals={decimals} must be >= 0")
        if budget is not None and budget < 0:
            raise ConfigError(f"oracle budget={budget} must be >= 0 or None (unlimited)")
        self.__model = model
        self.num_classes = num_classes
        self.mode = mode
        self.top_k = top_k
        self.decimals = decimals
        self.budget = budget
        self.batch_size = batch_size
        self._serve = serve
        self._pool = pool
        self._remember = remember
        self._table: torch.Tensor | None = None
        self.queries = 0

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.queries

    def describe(self) -> dict:
        return {"mode": self.mode, "top_k": self.top_k, "decimals": self.decimals, "budget": self.budget}

    def _charge(self, n: int) -> None:
        if self.budget is not None and self.queries + n > self.budget:
            raise BudgetExceeded(
                f"query budget exhausted: {self.queries} used + {n} asked > budget {self.budget}"
            )
        self.queries += n

    @torch.no_grad()
    def _served(self, x: torch.Tensor) -> torch.Tensor:
        """The served probabilities (the model's softmax, then the API's ``serve`` hook) for ``x``, on CPU,
        before the output mode formats them; in batches of ``batch_size``, always in fp32."""
        model = self.__model
        was_training = model.training
        model.eval()
        dev = next(model.parameters()).device
        outs = []
        try:
            for i in range(0, len(x), self.batch_size):
                xb = x[i : i + self.batch_size].to(dev)
                probs = torch.softmax(model(xb).float(), dim=1)
                if self._serve is not None:
                    probs = self._serve(xb, probs)
                outs.append(probs.cpu())
        finally:
            model.train(was_training)
        return torch.cat(outs) if outs else torch.empty(0, self.num_classes)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Answer a batch of pixel-space images (N x C x H x W in [0, 1]); returns N x classes on CPU."""
        self._charge(len(x))
        return self._format(self._served(x))

    @property
    def has_pool(self) -> bool:
        """Whether the oracle was given the attacker's pool (and so answers :meth:`ask_pool`)."""
        return self._pool is not None

    def ask_pool(self, idx: torch.Tensor) -> torch.Tensor:
        """Answer the attacker's pool images ``pool[idx]``: the answers ``self(pool[idx])`` gives, counted and
        budgeted the same, read from the table of the model's answers to the whole pool (built on first use,
        kept by ``remember`` when the oracle has one)."""
        if self._pool is None:
            raise WmbenchError("this oracle was made without the attacker's pool; query it with oracle(images)")
        idx = torch.as_tensor(idx, dtype=torch.long)
        self._charge(len(idx))
        if self._table is None:
            build = lambda: self._served(self._pool)  # noqa: E731
            table = self._remember(build) if self._remember is not None else build()
            if not isinstance(table, torch.Tensor) or table.shape != (len(self._pool), self.num_classes):
                raise WmbenchError("the cached table of the oracle's answers does not fit the pool (a cache "
                                   "written by something else?); run again with an empty --cache-dir")
            self._table = table
        return self._format(self._table[idx])

    def _format(self, probs: torch.Tensor) -> torch.Tensor:
        if self.mode == "probs":
            return probs
        if self.mode == "label":
            return torch.nn.functional.one_hot(probs.argmax(1), self.num_classes).float()
        if self.mode == "topk":
            vals, idx = probs.topk(self.top_k, dim=1)
            return torch.zeros_like(probs).scatter_(1, idx, vals)
        scale = 10.0**self.decimals
        return torch.round(probs * scale) / scale

    def __repr__(self) -> str:  # never reveal the model
        return f"Oracle(mode={self.mode!r}, queries={self.queries}, budget={self.budget})"

    def __getstate__(self):  # an oracle is not something an attack can ship elsewhere
        raise TypeError("an Oracle cannot be pickled")
