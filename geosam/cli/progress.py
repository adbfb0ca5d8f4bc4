"""Progress bars for long commands; the library only reports ``(done, total)``."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from tqdm import tqdm


class ProgressBar:
    """A `progress(done, total)` callback that draws a tqdm bar, created on first call."""

    def __init__(self, description: str, unit: str, quiet: bool = False) -> None:
        self.description, self.unit, self.quiet = description, unit, quiet
        self._bar: tqdm[Any] | None = None

    def __call__(self, done: int, total: int) -> None:
        """Move the bar to `done` of `total`."""
        bar = self._bar
        if bar is None:
            bar = tqdm(
                total=total, desc=self.description, unit=self.unit, disable=self.quiet, leave=False
            )
            self._bar = bar
        bar.update(done - bar.n)

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
