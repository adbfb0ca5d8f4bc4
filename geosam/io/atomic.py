"""Write outputs so that nothing half-written is ever left under the final name.

Every output goes to a hidden temporary file in the destination folder (same filesystem, so
the final `os.replace` is atomic) and is renamed only once complete. A failure (disk full,
Ctrl-C) removes the temporary file and leaves any previous output untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from geosam.errors import OutputExistsError, OutputWriteError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` if the block succeeds.

    The temporary name keeps the suffix so that drivers chosen by extension (GDAL) still work.
    It is a fresh random name that nothing creates before the writer does (GDAL wants to
    create the file itself), so an interrupt that lands anywhere leaves no file behind.
    """
    final = Path(path)
    tmp = final.with_name(f".{final.stem}.{secrets.token_hex(6)}.tmp{final.suffix}")
    try:
        with write_errors(final):
            final.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def write_errors(output: Path, note: str = "") -> Iterator[None]:
    """A full disk or missing rights in the block become one `OutputWriteError` naming `output`.

    An `OutputWriteError` from a nested write (naming a file inside `output`) is named again
    after `output`, the path the user gave; other errors pass unchanged. `note` ends the
    message (e.g. that nothing was written).
    """
    try:
        yield
    except OSError as exc:
        code = exc.errno or getattr(exc.__cause__ or exc.__context__, "errno", None)
        if code == errno.ENOSPC:
            raise OutputWriteError(f"{output}: disk full; free space and run again{note}") from exc
        if code in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise OutputWriteError(
                f"{output}: permission denied; choose a folder you may write to{note}"
            ) from exc
        raise


def _remove(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def refuse_existing(path: str | os.PathLike[str], overwrite: bool) -> None:
    """Raise `OutputExistsError` if `path` exists (a non-empty folder for folders)."""
    p = Path(path)
    exists = any(p.iterdir()) if p.is_dir() else p.exists()
    if exists and not overwrite:
        kind = "folder is not empty" if p.is_dir() else "file exists"
        raise OutputExistsError(f"{p}: {kind}; choose another output or pass --overwrite")
