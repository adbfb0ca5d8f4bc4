"""Progress of `geosam finetune`: a bar per validation round, or JSON lines for programs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from geosam.cli.progress import emit_json
from geosam.pipelines.finetune_settings import EpochEvent


def training_progress(quiet: bool, mode: str = "bar") -> Callable[[EpochEvent], None]:
    """A progress bar per validation round with the running loss, closed with its scores.

    With ``mode="json"``: a JSON line per step (`emit_json`) with the share of all planned
    steps done; a validation's line also carries its ``metrics``.
    """
    if mode == "json":
        return _json_lines(quiet)
    bars: dict[int, tqdm[Any]] = {}

    def report(event: EpochEvent) -> None:
        bar = bars.get(event.epoch)
        if bar is None:  # starts at the first step reported, so its rate is not a blur
            bar = tqdm(
                total=event.steps,
                initial=event.step,
                desc=f"round {event.epoch}/{event.epochs}",
                unit="step",
                disable=quiet,
            )
            bars[event.epoch] = bar
        bar.update(event.step - bar.n)
        postfix = {"loss": f"{event.loss:.3f}"}
        if event.metrics:
            postfix["val_iou"] = f"{event.metrics['val_iou']:.3f}"
            postfix["val_f1"] = f"{event.metrics.get('val_f1', 0):.3f}"
            bar.set_postfix(postfix)
            bar.close()
        else:
            bar.set_postfix(postfix)

    return report


def _json_lines(quiet: bool) -> Callable[[EpochEvent], None]:
    """`training_progress` for programs: rounds are equally long, early stopping ends before 1.0."""

    def report(event: EpochEvent) -> None:
        if quiet:
            return
        done = (event.epoch - 1 + event.step / max(event.steps, 1)) / max(event.epochs, 1)
        message = (
            f"round {event.epoch}/{event.epochs}, step {event.step}/{event.steps}: "
            f"loss {event.loss:.3f}"
        )
        if not event.metrics:
            emit_json(done, message)
            return
        metrics = {k: float(v) for k, v in event.metrics.items()}
        message += (
            f", validation IoU {metrics.get('val_iou', 0):.3f}, F1 {metrics.get('val_f1', 0):.3f}"
        )
        emit_json(done, message, metrics=metrics)

    return report
