"""Progress for long commands: tqdm bars for people, JSON lines for programs.

The library only reports ``(done, total)``; this module draws it. ``geosam --progress json``
(used by the QGIS plugin, which runs geosam in a subprocess) prints one JSON object per line
to stderr instead of a bar, e.g. ``{"progress": 0.42, "message": "tiling scene.tif: 21/50
chips"}``, so a caller never has to parse tqdm's redrawn line.
"""

from __future__ import annotations

import json
import sys
from types import TracebackType
from typing import Any

import click
from tqdm import tqdm

PROGRESS_MODES = ("bar", "json")
"""Values of the global ``--progress`` option."""


def progress_mode(ctx: click.Context | None) -> str:
    """The ``--progress`` mode recorded by the command group ("bar" when run without it)."""
    obj = ctx.find_root().obj if ctx is not None else None
    return str(obj.get("progress", "bar")) if isinstance(obj, dict) else "bar"


def emit_json(progress: float, message: str, **extra: Any) -> None:
    """Print one progress line: ``{"progress": 0..1, "message": ..., **extra}`` on stderr."""
    record = {"progress": round(min(max(progress, 0.0), 1.0), 4), "message": message, **extra}
    sys.stderr.write(json.dumps(record) + "\n")
    sys.stderr.flush()


class ProgressBar:
    """A `progress(done, total)` callback that draws a tqdm bar, created on first call.

    With ``mode="json"`` it prints a JSON line (`emit_json`) instead, only when the whole
    percentage changes, so a scene of 100 000 chips does not flood the reader.
    """

    def __init__(self, description: str, unit: str, quiet: bool = False, mode: str = "bar") -> None:
        if mode not in PROGRESS_MODES:
            raise ValueError(f"progress mode {mode!r}; expected one of {PROGRESS_MODES}")
        self.description, self.unit, self.quiet, self.mode = description, unit, quiet, mode
        self._bar: tqdm[Any] | None = None
        self._percent: int | None = None

    def __call__(self, done: int, total: int) -> None:
        """Move the bar to `done` of `total`.

        The bar starts at the first report's `done`: the work before it (opening the scene,
        the first reads) took an unknown time, so counting it as done in no time would show a
        rate of tens of thousands per second; the rate is measured from the second report on.
        """
        if self.mode == "json":
            self._json(done, total)
            return
        bar = self._bar
        if bar is None:
            bar = tqdm(
                total=total,
                initial=done,
                desc=self.description,
                unit=self.unit,
                disable=self.quiet,
                leave=False,
            )
            self._bar = bar
        bar.update(done - bar.n)

    def _json(self, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        percent = int(100 * fraction)
        if self.quiet or percent == self._percent:
            return
        self._percent = percent
        emit_json(fraction, f"{self.description}: {done}/{total} {self.unit}s")

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
