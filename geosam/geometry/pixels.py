"""Conversions between scene-CRS geometries and chip pixels.

Boxes are XYXY floats in chip pixels: x is the column, y the row, (0, 0) the top-left corner
of the chip's top-left pixel, (size, size) the bottom-right corner of the last pixel.
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray


def geometry_to_pixels(geom: shapely.Geometry, transform: Affine) -> shapely.Geometry:
    """The geometry in pixel coordinates (col, row) of the grid described by `transform`."""
    inverse = ~transform
    return shapely.transform(geom, lambda xy: np.column_stack(inverse @ (xy[:, 0], xy[:, 1])))


def pixel_box(geom: shapely.Geometry, transform: Affine, size: int) -> NDArray[np.float32]:
    """XYXY box (float32, chip pixels) of a scene-CRS geometry, clipped to [0, size]."""
    col0, row0, col1, row1 = shapely.bounds(geometry_to_pixels(geom, transform))
    box = np.array([min(col0, col1), min(row0, row1), max(col0, col1), max(row0, row1)])
    return np.clip(box, 0, size).astype(np.float32)


def mask_to_box(mask: NDArray[np.bool_]) -> NDArray[np.float32]:
    """XYXY box (float32, pixel edges) enclosing the True pixels of an (H, W) mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.zeros(4, dtype=np.float32)
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)
