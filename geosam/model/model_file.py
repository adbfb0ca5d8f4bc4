"""`model.pt`: the fine-tuned weights and everything that made them.

A model file holds only changed weights (see `ShipSam.saved_parts`) plus metadata: model type,
base-weights hash, chip settings (size, overlap, bands, stretch), prompt settings, geosam
version and final metrics, so `detect` needs no flag that training already decided.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from geosam import __version__
from geosam.errors import CheckpointError, InputNotFoundError
from geosam.io.atomic import atomic_path

FORMAT = "geosam-model/1"


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
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{p}: not a geosam model file (expected {FORMAT}); pass the model.pt written by "
            "`geosam finetune`, or an official SAM checkpoint with --checkpoint"
        )
    return payload["state"], payload["metadata"]
