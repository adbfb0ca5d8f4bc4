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

Candidates come from a shapely STRtree over all detections, so the work grows with the number of
ships, not its square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray

from geosam.geometry.grid import Chip
from geosam.geometry.masks import MaskCrop, crop_masks, masks_to_polygons, touches_interior_edge

DEFAULT_MIN_OVERLAP = 0.3
DEFAULT_PIECE_OVERLAP = 0.1


@dataclass(frozen=True)
class Detection:
    """One ship mask from one chip, as a polygon in the scene CRS.

    Attributes:
        geometry: Polygon or MultiPolygon, scene CRS.
        score: confidence in [0, 1].
        complete: True when the mask does not touch an interior chip edge.
    """

    geometry: shapely.Geometry
    score: float
    complete: bool


def masks_to_detections(
    masks: np.ndarray, scores: np.ndarray, chip: Chip, width: int, height: int
) -> list[Detection]:
    """Chip masks (P, S, S) bool to scene-CRS detections; see `crops_to_detections`."""
    return crops_to_detections(crop_masks(masks), scores, chip, width, height)


def crops_to_detections(
    crops: list[MaskCrop], scores: np.ndarray, chip: Chip, width: int, height: int
) -> list[Detection]:
    """Cropped chip masks to scene-CRS detections, flagging those cut by an interior edge.

    Args:
        crops: P masks of one chip, each cut to its box.
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
    geoms = masks_to_polygons(crops, chip.transform)
    return [
        Detection(geom, float(score), not touches_interior_edge(crop, chip.size, interior))
        for crop, geom, score in zip(crops, geoms, scores, strict=True)
        if not crop.empty
    ]


def stitch(
    detections: list[Detection],
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    piece_overlap: float = DEFAULT_PIECE_OVERLAP,
) -> tuple[list[shapely.Geometry], NDArray[np.float64]]:
    """One geometry and score per ship, following the module's rule."""
    if not detections:
        return [], np.zeros(0)
    geoms = np.array([d.geometry for d in detections], dtype=object)
    scores = np.array([d.score for d in detections], dtype=np.float64)
    complete = np.array([d.complete for d in detections], dtype=bool)
    areas = shapely.area(geoms)
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    inter = shapely.area(shapely.intersection(geoms[left], geoms[right]))
    ratio = inter / np.maximum(np.minimum(areas[left], areas[right]), 1e-12)
    close = ratio >= min(min_overlap, piece_overlap)
    neighbours: dict[int, list[tuple[int, float]]] = {}
    for a, b, r in zip(
        left[close].tolist(), right[close].tolist(), ratio[close].tolist(), strict=True
    ):
        neighbours.setdefault(a, []).append((b, r))
        neighbours.setdefault(b, []).append((a, r))

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
    merged = [
        geoms[members[0]] if len(members) == 1 else shapely.union_all(geoms[members])
        for members in ships
    ]
    best = np.array([scores[members].max() for members in ships])
    return merged, best
