"""Chip masks: duplicate suppression, chip-edge contact, and polygons in the scene CRS."""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray
from rasterio.features import shapes


def suppress_duplicates(
    masks: NDArray[np.bool_], scores: NDArray[np.floating], max_iou: float = 0.5
) -> list[int]:
    """Indices of masks to keep, best first; a mask with IoU > max_iou to a kept one is dropped.

    Args:
        masks: (P, H, W) bool.
        scores: (P,) higher is better.
        max_iou: IoU above which two masks are the same ship.
    """
    if len(masks) == 0:
        return []
    order = np.argsort(-np.asarray(scores), kind="stable")
    flat = masks.reshape(len(masks), -1)
    areas = flat.sum(1)
    kept: list[int] = []
    for i in order.tolist():
        if areas[i] == 0:
            continue
        if kept:
            inter = (flat[kept] & flat[i]).sum(1)
            iou = inter / (areas[kept] + areas[i] - inter)
            if (iou > max_iou).any():
                continue
        kept.append(i)
    return kept


def touches_interior_edge(mask: NDArray[np.bool_], interior: tuple[bool, bool, bool, bool]) -> bool:
    """Whether a (H, W) mask reaches a chip edge that is not the scene border.

    Args:
        mask: (H, W) bool.
        interior: (top, bottom, left, right) edges that lie inside the scene.
    """
    top, bottom, left, right = interior
    return bool(
        (top and mask[0].any())
        or (bottom and mask[-1].any())
        or (left and mask[:, 0].any())
        or (right and mask[:, -1].any())
    )


def mask_to_polygon(mask: NDArray[np.bool_], transform: Affine) -> shapely.Geometry:
    """The True pixels of a (H, W) mask as one (Multi)Polygon through the chip transform."""
    parts = [
        shapely.geometry.shape(geom)
        for geom, value in shapes(mask.astype(np.uint8), mask=mask, transform=transform)
        if value == 1
    ]
    return shapely.union_all(parts) if parts else shapely.Polygon()
