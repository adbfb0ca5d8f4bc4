"""Download Meta's official SAM weights into the cache folder, verified by their hash.

Bytes stream into a hidden ``.part`` file beside the destination while their sha256 is
computed, so a multi-GB file never sits in memory and is never read twice. The file gets its
official name only once it is complete and its hash starts with the prefix Meta put in that
name (``sam_vit_b_01ec64.pth`` -> ``01ec64``). Anything interrupted or wrong is removed, so
the cache never holds a half-written or corrupt file under an official name.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from geosam.errors import DownloadError, ModelError
from geosam.model.checkpoints import cache_dir
from geosam.model.registry import get_spec

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20


def download_weights(
    model_type: str,
    dest_dir: str | os.PathLike[str] | None = None,
    url: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 60,
) -> Path:
    """Download the official weights of `model_type`; return their path.

    Args:
        model_type: a registered type with official weights (vit_b, vit_l, vit_h).
        dest_dir: folder for the file; default `cache_dir()`, where `load_sam` finds it.
        url: where to download from instead of the official URL (a mirror).
        progress: called as ``progress(done_bytes, total_bytes)`` after each chunk;
            total_bytes is 0 when the server does not say.
        timeout: seconds to wait for the server on connect and on each read.

    Returns:
        ``dest_dir / official_filename``; an existing file there is returned as is.
    """
    spec = get_spec(model_type)
    if spec.official_filename is None or spec.official_url is None:
        raise ModelError(f"{spec.name} has no official weights; it is trained from scratch")
    folder = Path(dest_dir).expanduser() if dest_dir is not None else cache_dir()
    final = folder / spec.official_filename
    if final.exists():
        log.info("%s already exists; not downloading", final)
        return final
    source = url or spec.official_url
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, part_name = tempfile.mkstemp(
            prefix=f".{spec.official_filename}.", suffix=".part", dir=folder
        )
    except OSError as exc:
        raise DownloadError(f"{folder}: cannot write ({exc.strerror or exc})") from exc
    part = Path(part_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(source, out, progress, timeout)
        expected = spec.sha256_prefix
        if expected and not digest.startswith(expected):
            raise DownloadError(
                f"{source}: sha256 starts with {digest[: len(expected)]}, expected {expected} "
                f"for {spec.official_filename}; the file was removed, run again (or check --url)"
            )
        part.chmod(0o644)  # mkstemp makes it private; weights are not secret
        os.replace(part, final)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    log.info("downloaded %s to %s", spec.official_filename, final)
    return final


def _stream(
    url: str,
    out: BinaryIO,
    progress: Callable[[int, int], None] | None,
    timeout: float,
) -> str:
    """Copy `url` into the open binary file `out`; return the hex sha256 of the bytes."""
    digest = hashlib.sha256()
    done = 0
    log.info("downloading %s", url)
    try:
        with contextlib.closing(urllib.request.urlopen(url, timeout=timeout)) as response:
            total = int(response.headers.get("Content-Length") or 0)
            while chunk := response.read(CHUNK_SIZE):
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise DownloadError(
                        f"cannot write the download ({exc.strerror or exc}); free space and "
                        "run again"
                    ) from exc
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL") from exc
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or repr(exc)
        raise DownloadError(
            f"{url}: download failed after {done} bytes ({reason}); run again"
        ) from exc
    if total and done < total:
        raise DownloadError(f"{url}: download interrupted after {done} of {total} bytes; run again")
    return digest.hexdigest()
