"""Make `segment_anything` importable where torchvision's compiled ops cannot load.

The CPU wheel of torch paired with the only matching torchvision build (a CUDA build) fails
at `import torchvision` with ``operator torchvision::nms does not exist``, because its `_C.so`
needs CUDA libraries. segment-anything imports torchvision for resizing and box NMS only, so
declaring the two missing op schemas is enough: resize and box_iou work, the compiled NMS does
not (geosam never calls it). Where torchvision loads normally this module does nothing.
"""

from __future__ import annotations

import logging
import sys

import torch

log = logging.getLogger(__name__)

_library: torch.library.Library | None = None


def _declare_missing_ops() -> None:
    global _library
    _library = torch.library.Library("torchvision", "DEF")  # type: ignore[no-untyped-call]
    for name in ("nms", "qnms"):
        schema = f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
        _library.define(schema)  # type: ignore[no-untyped-call]


def ensure_torchvision() -> None:
    """Import torchvision, declaring its NMS ops first if its compiled library cannot load."""
    if "torchvision.ops" in sys.modules:
        return
    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _declare_missing_ops()
        import torchvision  # noqa: F401

        log.debug("torchvision's compiled ops are unavailable; declared their schemas")
