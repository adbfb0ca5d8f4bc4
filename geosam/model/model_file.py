"""`model.pt`: the fine-tuned weights and everything that made them.

A model file holds only changed weights (see `ShipSam.saved_parts`) plus metadata: model type,
base-weights hash, chip settings (size, overlap, bands, stretch), prompt settings, geosam
version and final metrics, so `detect` needs no flag that training already decided.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from geosam import __version__
from geosam.errors import CheckpointError, InputNotFoundError
from geosam.io.atomic import atomic_path

log = logging.getLogger(__name__)

FORMAT_NAME = "geosam-model"
FORMAT_VERSION = 1
FORMAT = f"{FORMAT_NAME}/{FORMAT_VERSION}"
"""Bumped when a file can no longer be read as before; a newer geosam with the same format
writes files this one reads."""

REQUIRED_METADATA = ("model_type", "base_hash", "chip_settings")


def save_model_file(
    path: str | os.PathLike[str], state: dict[str, torch.Tensor], metadata: dict[str, Any]
) -> None:
    """Write weights and metadata atomically."""
    payload = {
        "format": FORMAT,
        "geosam_version": __version__,
        "metadata": metadata,
        "state": {k: v.detach().cpu() for k, v in state.items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model_file(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read (state, metadata) from a model file, with errors that name the file and the fix."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such model file; give the model.pt of a finetune run")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(
            f"{p}: not a readable geosam model file (corrupt or truncated?); train it again "
            "or copy it anew"
        ) from exc
    if not isinstance(payload, dict) or not str(payload.get("format")).startswith(
        f"{FORMAT_NAME}/"
    ):
        raise CheckpointError(
            f"{p}: not a geosam model file (expected {FORMAT}); pass the model.pt written by "
            "`geosam finetune`, or an official SAM checkpoint with --checkpoint"
        )
    _check_format(p, str(payload["format"]), str(payload.get("geosam_version", "unknown")))
    state, metadata = payload.get("state"), payload.get("metadata")
    damaged = "the file was edited or damaged; use the model.pt of a finetune run"
    if not isinstance(state, dict) or not isinstance(metadata, dict):
        raise CheckpointError(f"{p}: holds no weights or no metadata; {damaged}")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise CheckpointError(f"{p}: its metadata lacks {', '.join(missing)}; {damaged}")
    return state, metadata


def _check_format(path: Path, written: str, version: str) -> None:
    """Refuse a format this geosam cannot read; note a newer geosam that wrote a readable one."""
    number = written.removeprefix(f"{FORMAT_NAME}/")
    if number.isdigit() and int(number) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer geosam ({version}, format {written}); this geosam "
            f"{__version__} reads {FORMAT}: upgrade geosam (pip install -U geosam-ships)"
        )
    if number != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: unknown model file format {written!r}; this geosam reads {FORMAT}: "
            "use the model.pt of a finetune run"
        )
    if _release(version) > _release(__version__):
        log.warning(
            "%s: written by geosam %s, newer than this %s; its format %s is read as usual",
            path.name,
            version,
            __version__,
            written,
        )


def _release(version: str) -> tuple[int, ...]:
    """The leading numbers of a version string: ``"1.10.0rc1"`` -> (1, 10, 0)."""
    match = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()
