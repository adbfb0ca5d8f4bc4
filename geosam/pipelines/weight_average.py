"""An exponential moving average of the trainable weights, validated and saved in their place.

A small model trained from scratch on a few hundred chips moves a lot from one step to the
next, so the model of any one step, and the choice among them by a few dozen validation ships,
is noisy. The average of the last few hundred steps' weights (Polyak averaging, as YOLO and
timm train by default) is a smoother model; training itself goes on with the live weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """Shadow copies of `params`, moved towards them after every optimiser step.

    The decay ramps up as (1 + n) / (10 + n) over the first updates (n counts them), so the
    average forgets the random start quickly, and is capped at `decay`: an average over about
    1 / (1 - decay) steps. A decay of 0 keeps no copy: the live weights are used as they are.
    """

    def __init__(self, params: list[nn.Parameter], decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"weight average decay must be in [0, 1), got {decay}")
        self.params, self.decay, self.updates = params, decay, 0
        self.shadow = [p.detach().clone() for p in params] if decay > 0 else []

    def update(self) -> None:
        """Move the average towards the live weights (call after each optimiser step)."""
        if not self.shadow:
            return
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            live = [p.detach().to(s.dtype) for p, s in zip(self.params, self.shadow, strict=True)]
            torch._foreach_lerp_(self.shadow, live, 1.0 - decay)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model during the block, the live ones after it."""
        if not self.shadow:
            yield
            return
        with torch.no_grad():
            live = [p.detach().clone() for p in self.params]
            for p, s in zip(self.params, self.shadow, strict=True):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, saved in zip(self.params, live, strict=True):
                    p.copy_(saved)

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue the same average."""
        return {"updates": self.updates, "shadow": [s.clone() for s in self.shadow]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of `state_dict`; a state without a shadow (an older run) starts one anew."""
        if not self.shadow:
            return
        shadow = state.get("shadow") or []
        if len(shadow) != len(self.shadow):
            self.shadow = [p.detach().clone() for p in self.params]
            self.updates = 0
            return
        for s, saved in zip(self.shadow, shadow, strict=True):
            s.copy_(saved)
        self.updates = int(state["updates"])
