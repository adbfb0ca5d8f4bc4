"""How many training rounds fit in a time budget (`geosam finetune --minutes`).

A from-scratch `tiny` is trained for a fixed number of steps, which takes 13 minutes on one
two-core machine and 30 on a slower one. A user who has twenty minutes gives a budget instead,
and the run's length (and with it the learning-rate schedule) is fitted to what the machine
manages: after each round, the rounds still affordable are judged from the mean time of the
rounds so far. The run then ends on a finished, validated round with its schedule run out,
rather than being cut off at a high learning rate. The count only ever shrinks, so a run never
trains longer than its `steps` ask.
"""

from __future__ import annotations

from collections.abc import Sequence


def rounds_within(budget_seconds: float, round_seconds: Sequence[float], planned: int) -> int:
    """Rounds in all (done ones included) a run can finish within `budget_seconds`.

    Args:
        budget_seconds: time allowed for training and validation rounds.
        round_seconds: wall time of each round done so far.
        planned: the rounds the run would train without a budget.

    Returns:
        Between the rounds done (stop now) and `planned`; `planned` before any round is done.
    """
    done = len(round_seconds)
    if done == 0:
        return planned
    spent = float(sum(round_seconds))
    per_round = spent / done
    affordable = done + int(max(0.0, budget_seconds - spent) // max(per_round, 1e-9))
    return max(done, min(planned, affordable))
