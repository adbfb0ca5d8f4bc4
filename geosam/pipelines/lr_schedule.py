"""The learning rate over a fine-tuning run: a linear warm-up, then a cosine decay to zero.

The rate climbs over the first steps (`FinetuneSettings.warmup_steps`, at most a quarter of
the run) and its decay ends exactly at the run's last step. The run's length is read
at every step, not fixed at the start, because a time budget may shorten it mid-run
(`geosam.pipelines.time_budget`), and the decay must then end with the shortened run.
"""

from __future__ import annotations

import math


def warmup_length(warmup_steps: int, total_steps: int) -> int:
    """Warm-up steps actually taken: as asked, but at most a quarter of the run (and >= 1)."""
    return max(1, min(warmup_steps, total_steps // 4))


def warmup_cosine(step: int, warm: int, total_steps: int) -> float:
    """The factor on the peak rate at `step` (0-based) of a run of `total_steps`."""
    if step < warm:
        return (step + 1) / warm
    span = max(1, total_steps - warm)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / span)))
