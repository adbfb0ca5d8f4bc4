"""Which torch device runs the model: the user's choice, checked before any work starts."""

from __future__ import annotations

import torch

from geosam.errors import DeviceError


def pick_device(name: str, local_rank: int | None = None) -> torch.device:
    """`auto` -> CUDA when available, else CPU; `cuda` without a GPU is an error.

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        local_rank: the process's rank on its node when `torchrun` started several; then
            `auto` and `cuda` mean its own GPU, cuda:LOCAL_RANK.
    """
    if name != "cpu" and name != "auto" and not name.startswith("cuda"):
        raise DeviceError(f"--device {name!r}: choose auto, cpu or cuda")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA GPU is available here; use --device cpu or auto")
    if local_rank is None:
        return torch.device("cuda" if name == "auto" else name)
    if name not in ("auto", "cuda"):
        raise DeviceError(
            f"--device {name}: under torchrun each process uses the GPU of its LOCAL_RANK; "
            "use --device cuda or auto"
        )
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise DeviceError(
            f"LOCAL_RANK {local_rank} but this node has {count} GPUs; "
            f"start torchrun with --nproc-per-node {count} or fewer"
        )
    return torch.device("cuda", local_rank)
