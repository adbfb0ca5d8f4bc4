"""Write an output folder completely or not at all.

A command that writes many files (`geosam tile`) writes them into a hidden staging folder
beside the output folder, and moves them in only once every file is written. A run that
fails, is interrupted or is killed leaves at most the staging folder, which the next run
with the same output removes, so running the same command again gives the same output as
one uninterrupted run. When the output folder already exists (empty, or replaced with
`--overwrite`), the previous outputs are removed and the new ones moved in; the completion
marker (for `tile`, metadata.json) is removed first and moved in last, so a folder without
it is never mistaken for a finished one.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from geosam.errors import GeosamError
from geosam.io.atomic import write_errors

log = logging.getLogger(__name__)

NOTHING_WRITTEN = " (nothing was written)"


def staging_folder(out: Path) -> Path:
    """The hidden staging folder of output folder `out` (same parent, same filesystem)."""
    folder = out.resolve()  # "." or "run/" name their folder too
    return folder.parent / f".{folder.name}.geosam-partial"


@contextmanager
def staged_output(out: Path, owned: Sequence[str], marker: str) -> Iterator[Path]:
    """Yield a fresh staging folder; on success its contents replace `owned` names in `out`.

    Args:
        out: the output folder (created if missing).
        owned: the names (files or folders) this command writes into `out`; only these are
            replaced, anything else the user keeps in `out` stays.
        marker: the owned name written last and moved in last (completion marker).

    Raises:
        OutputWriteError: the staging folder or the move failed for lack of space or rights;
            the message names `out`.
    """
    staging = staging_folder(out)
    # The folder is made inside the `try`: an interrupt (Ctrl-C, the QGIS plugin's Cancel)
    # that lands just after it exists still removes it.
    try:
        with write_errors(out, NOTHING_WRITTEN):
            if staging.exists():
                log.info("%s: removing the unfinished output of an interrupted run", staging)
                shutil.rmtree(staging)
            staging.mkdir(parents=True)
            yield staging
            _move_in(staging, out, owned, marker)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_in(staging: Path, out: Path, owned: Sequence[str], marker: str) -> None:
    """Replace `owned` names in `out` with those in `staging`, the marker last."""
    if not out.exists():
        os.replace(staging, out)
        return
    for name in (marker, *(n for n in owned if n != marker)):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for name in (*(n for n in owned if n != marker), marker):
        if (staging / name).exists():
            os.replace(staging / name, out / name)


class StagedFiles:
    """Several output files written under hidden names and renamed together when all exist.

    `with StagedFiles() as staged:` `geosam detect` writes a ship layer and, per scene, a mask
    raster and a preview, each to `staged.path(final)` (a hidden name beside it, the same every
    run, so a killed run's leftovers are simply overwritten). When the block ends all are
    renamed, the first registered last; when it fails they are removed, and an error that
    names a hidden file names its final path instead. A run that fails or is killed leaves no
    file under a final name.
    """

    def __init__(self) -> None:
        self._pairs: list[tuple[Path, Path]] = []

    def path(self, final: str | os.PathLike[str]) -> Path:
        """The hidden name to write `final` under (its extension kept for format drivers)."""
        target = Path(final)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.stem}.geosam-partial{target.suffix}")
        self._pairs.append((staged, target))
        return staged

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.commit()
            return
        error = self.public_error(exc)
        self.discard()
        if error is not exc:
            raise error from exc

    def commit(self) -> None:
        """Rename every staged file to its final name; the first registered goes last."""
        for staged, final in [*self._pairs[1:], *self._pairs[:1]]:
            os.replace(staged, final)
        self._pairs.clear()

    def public_error(self, exc: BaseException) -> BaseException:
        """`exc` with hidden names in its message replaced by the final ones the user gave."""
        message = str(exc)
        for staged, final in self._pairs:
            message = message.replace(str(staged), str(final))
        if not isinstance(exc, GeosamError) or message == str(exc):
            return exc
        return type(exc)(message)

    def discard(self) -> None:
        """Remove whatever was staged."""
        for staged, _ in self._pairs:
            if staged.is_dir():
                shutil.rmtree(staged, ignore_errors=True)
            else:
                staged.unlink(missing_ok=True)
        self._pairs.clear()
