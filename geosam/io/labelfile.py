"""Per-chip label files: boxes, instance masks and ship ids in one compressed ``.npz``.

Masks are bit-packed along rows (`numpy.packbits`), so a chip with hundreds of ships stays
small on disk. The arrays mean what `geosam.data.labels.ChipLabels` documents.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class LabelArrays:
    """Arrays of one label file.

    Attributes:
        ship_ids: (N,) int64.
        boxes: (N, 4) float32 XYXY, chip pixels.
        masks: (N, H, W) bool.
        visible: (N,) float32, share of each ship's area on the chip.
    """

    ship_ids: NDArray[np.int64]
    boxes: NDArray[np.float32]
    masks: NDArray[np.bool_]
    visible: NDArray[np.float32]


def write_labels(path: str | os.PathLike[str], labels: LabelArrays) -> None:
    """Write one chip's labels in place.

    `geosam tile` writes into a staging folder that becomes the output only when complete
    (`geosam.io.staging`), as it does chip files, so no per-file rename is needed.
    """
    n, height, width = labels.masks.shape
    with open(path, "wb") as fh:
        np.savez_compressed(
            fh,
            ship_ids=labels.ship_ids,
            boxes=labels.boxes,
            visible=labels.visible,
            masks=np.packbits(labels.masks, axis=-1),
            mask_shape=np.array([n, height, width], dtype=np.int64),
        )


def read_labels(path: str | os.PathLike[str]) -> LabelArrays:
    """Read a label file written by `write_labels`."""
    with np.load(path) as data:
        n, height, width = (int(v) for v in data["mask_shape"])
        masks = np.unpackbits(data["masks"], axis=-1, count=width).astype(bool)
        return LabelArrays(
            ship_ids=data["ship_ids"],
            boxes=data["boxes"],
            masks=masks.reshape(n, height, width),
            visible=data["visible"],
        )
