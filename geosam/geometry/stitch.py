"""Chip detections to one polygon per ship across overlapping chips.

Every ship near a seam is seen by two to four chips. The rule, in order of preference:

1. A detection is *complete* when its mask does not touch an interior chip edge (an edge that
   is not the scene border): the chip saw the whole ship.
2. Detections are taken by (complete first, then score). One that overlaps a ship seen whole
   (intersection / smaller area >= `min_overlap`) is a duplicate of it and is dropped.
3. Otherwise, one that overlaps cut pieces of a ship (intersection / smaller area >=
   `piece_overlap`, lower because two pieces share only the overlap strip) is merged with them
   (union), so a ship longer than the overlap, cut in every chip that sees it, is reassembled
   instead of split; a piece touching several such ships joins them into one.
4. A merged ship keeps the highest score of its parts.

All chips are windows on one pixel grid, so the rule works on masks placed on that grid:
overlaps are exact pixel counts and a union is a logical OR. Candidate pairs come from a
shapely STRtree of the masks' boxes, so the work grows with the number of ships, not its
square, and each ship is polygonised once, after stitching.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray

from geosam.geometry.grid import Chip
from geosam.geometry.masks import (
    MaskCrop,
    crop_masks,
    masks_to_polygons,
    shared_pixels,
    touches_interior_edge,
)

DEFAULT_MIN_OVERLAP = 0.3
DEFAULT_PIECE_OVERLAP = 0.1


@dataclass(frozen=True)
class Detection:
    """One ship mask from one chip, placed on the scene's pixel grid.

    Attributes:
        mask: the mask cut to its box; row and col are scene-grid pixels.
        score: confidence in [0, 1].
        complete: True when the mask does not touch an interior chip edge.
    """

    mask: MaskCrop
    score: float
    complete: bool


def masks_to_detections(
    masks: np.ndarray, scores: np.ndarray, chip: Chip, width: int, height: int
) -> list[Detection]:
    """Chip masks (P, S, S) bool to detections on the scene grid; see `crops_to_detections`."""
    return crops_to_detections(crop_masks(masks), scores, chip, width, height)


def crops_to_detections(
    crops: list[MaskCrop], scores: np.ndarray, chip: Chip, width: int, height: int
) -> list[Detection]:
    """Cropped chip masks to detections on the scene grid, flagging those cut by an interior edge.

    Args:
        crops: P masks of one chip, each cut to its box (row and col in chip pixels).
        scores: (P,) their scores.
        chip: the chip.
        width: columns of the chipped grid (to tell interior edges from the scene border).
        height: rows of the chipped grid.
    """
    interior = (
        chip.row_off > 0,
        chip.row_off + chip.size < height,
        chip.col_off > 0,
        chip.col_off + chip.size < width,
    )
    return [
        Detection(
            MaskCrop(crop.row + chip.row_off, crop.col + chip.col_off, crop.pixels),
            float(score),
            not touches_interior_edge(crop, chip.size, interior),
        )
        for crop, score in zip(crops, scores, strict=True)
        if not crop.empty
    ]


def stitch(
    detections: list[Detection],
    transform: Affine,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    piece_overlap: float = DEFAULT_PIECE_OVERLAP,
) -> tuple[list[shapely.Geometry], NDArray[np.float64]]:
    """One geometry and score per ship, following the module's rule.

    Args:
        detections: chip detections on the scene grid.
        transform: the scene grid's affine transform (pixel -> scene CRS).
        min_overlap: overlap share that makes a detection a duplicate of a complete ship.
        piece_overlap: overlap share that joins cut pieces into one ship.
    """
    if not detections:
        return [], np.zeros(0)
    masks = [d.mask for d in detections]
    scores = np.array([d.score for d in detections], dtype=np.float64)
    complete = np.array([d.complete for d in detections], dtype=bool)
    neighbours = _overlapping(masks, min(min_overlap, piece_overlap))

    order = np.lexsort((-scores, ~complete))  # complete first, then by score
    owner = np.full(len(detections), -1)
    ships: list[list[int]] = []
    ship_complete: list[bool] = []
    for i in order.tolist():
        near = [(int(owner[j]), r) for j, r in neighbours.get(i, []) if owner[j] >= 0]
        finished = sorted({o for o, r in near if ship_complete[o] and r >= min_overlap})
        hits = sorted({o for o, r in near if not ship_complete[o] and r >= piece_overlap})
        if finished:  # a duplicate of a ship some chip saw whole
            owner[i] = finished[0]
            continue
        if not hits:
            owner[i] = len(ships)
            ships.append([i])
            ship_complete.append(bool(complete[i]))
            continue
        target = hits[0]  # pieces of one cut ship: join them all
        for other in hits[1:]:
            ships[target] += ships[other]
            ships[other] = []
            for j in ships[target]:
                owner[j] = target
        ships[target].append(i)
        owner[i] = target
    ships = [members for members in ships if members]
    merged = [_union([masks[j] for j in members]) for members in ships]
    best = np.array([scores[members].max() for members in ships])
    return masks_to_polygons(merged, transform), best


def _overlapping(masks: list[MaskCrop], min_ratio: float) -> dict[int, list[tuple[int, float]]]:
    """For each mask, the others sharing >= min_ratio of the smaller one's pixels, and the ratio."""
    boxes = np.array([m.box for m in masks], dtype=np.float64)  # row0, col0, row1, col1
    tree = shapely.STRtree(shapely.box(boxes[:, 1], boxes[:, 0], boxes[:, 3], boxes[:, 2]))
    left, right = tree.query(tree.geometries, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    # Boxes that only touch share no pixel.
    inside = (
        np.maximum(boxes[left, 0], boxes[right, 0]) < np.minimum(boxes[left, 2], boxes[right, 2])
    ) & (np.maximum(boxes[left, 1], boxes[right, 1]) < np.minimum(boxes[left, 3], boxes[right, 3]))
    areas = [int(np.count_nonzero(m.pixels)) for m in masks]
    neighbours: dict[int, list[tuple[int, float]]] = {}
    for a, b in zip(left[inside].tolist(), right[inside].tolist(), strict=True):
        ratio = shared_pixels(masks[a], masks[b]) / max(1, min(areas[a], areas[b]))
        if ratio >= min_ratio:
            neighbours.setdefault(a, []).append((b, ratio))
            neighbours.setdefault(b, []).append((a, ratio))
    return neighbours


def _union(masks: list[MaskCrop]) -> MaskCrop:
    """Logical OR of masks on one grid, cut to the union of their boxes."""
    if len(masks) == 1:
        return masks[0]
    boxes = np.array([m.box for m in masks])
    r0, c0 = boxes[:, 0].min(), boxes[:, 1].min()
    out = np.zeros((boxes[:, 2].max() - r0, boxes[:, 3].max() - c0), dtype=bool)
    for m in masks:
        h, w = m.pixels.shape
        out[m.row - r0 : m.row - r0 + h, m.col - c0 : m.col - c0 + w] |= m.pixels
    return MaskCrop(int(r0), int(c0), out)
