"""Which torch device runs the model: the user's choice, checked before any work starts."""

from __future__ import annotations

import torch

from geosam.errors import DeviceError


def pick_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA GPU is available here; use --device cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise DeviceError(f"--device {name!r}: choose auto, cpu or cuda")
    return torch.device(name)
