"""An exponential moving average of the weights (train.ema), kept beside them and evaluated beside them.

After every optimizer step, ema = decay * ema + (1 - decay) * weights, in float32 on the training device. Plain
EMA, no bias correction: the average starts at the weights it is given (stage 0: the initial ones from the
seed), so its horizon 1/(1 - decay) should be well below the run's iterations. Every rank keeps the same
average, because DDP keeps the weights the same on every rank.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from model.gpt import GPT


class WeightAverage:
    """The average of `model`'s parameters, by parameter name (the tied embedding/head matrix once)."""

    def __init__(self, model: GPT, decay: float, start: dict[str, torch.Tensor] | None = None):
        named = dict(model.named_parameters())
        self.decay = decay
        self.names = list(named)
        self.params: list[torch.Tensor] = list(named.values())
        if start is None:
            self.average = [p.detach().float().clone() for p in self.params]
        else:
            self.average = [start[name].to(device=p.device, dtype=torch.float32).clone()
                            for name, p in zip(self.names, self.params, strict=True)]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average towards the current weights."""
        # lerp_(avg, w, 1 - d) = avg + (1 - d) * (w - avg) = d * avg + (1 - d) * w, one fused kernel per group.
        torch._foreach_lerp_(self.average, [p.float() for p in self.params], 1.0 - self.decay)

    def state(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.average, strict=True))

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the average inside, its own weights again (bit for bit) after: the optimizer, its
        moments and the RNG are not touched, so training goes on as if nothing had happened."""
        with torch.no_grad():
            raw = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, raw)
