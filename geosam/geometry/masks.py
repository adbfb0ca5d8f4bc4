"""Chip masks: cropping to their boxes, pixel overlaps, duplicate suppression, and polygons.

A ship covers a few hundred pixels of a 1024 px chip, so masks are handled as `MaskCrop`s
(the mask cut to its bounding box) as soon as they leave the model: every later step costs
what the ships cover, not P x the chip. Polygons for all masks of a chip come from one GDAL
polygonize call over an *atlas*, an image where the crops sit side by side, each with its own
label value; each polygon is then moved back to its crop's place and through the chip transform
in one vectorised step. For stitched ships (`one_part`), pixels of a crop that touch only at a
corner are first joined through one of the two pixels between them, so a body that is one
8-connected part polygonises as one ring, and each crop keeps only its largest part's outline.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray
from rasterio.features import shapes

Labels = TypeVar("Labels", bound=np.generic)

ATLAS_WIDTH = 2048
ATLAS_CROPS = 4096  # crops per polygonize call: bounds the atlas to a few MB


@dataclass(frozen=True)
class MaskCrop:
    """One chip mask cut to its bounding box.

    Attributes:
        row: chip row of the crop's top-left pixel.
        col: chip column of the crop's top-left pixel.
        pixels: (h, w) bool; (0, 0) for an empty mask.
    """

    row: int
    col: int
    pixels: NDArray[np.bool_]

    @property
    def empty(self) -> bool:
        """True when the mask has no pixel."""
        return self.pixels.size == 0

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(row0, col0, row1, col1), end exclusive, in chip pixels."""
        h, w = self.pixels.shape
        return self.row, self.col, self.row + h, self.col + w


def crop_masks(masks: NDArray[np.bool_]) -> list[MaskCrop]:
    """(P, H, W) bool masks to P tight crops (two vectorised passes over the stack)."""
    rows = np.asarray(masks.any(axis=2))
    cols = np.asarray(masks.any(axis=1))
    found = np.asarray(rows.any(axis=1))
    top = rows.argmax(axis=1)
    bottom = rows.shape[1] - rows[:, ::-1].argmax(axis=1)
    left = cols.argmax(axis=1)
    right = cols.shape[1] - cols[:, ::-1].argmax(axis=1)
    crops = []
    for k in range(len(masks)):
        if not found[k]:
            crops.append(MaskCrop(0, 0, np.zeros((0, 0), dtype=bool)))
            continue
        r0, r1, c0, c1 = int(top[k]), int(bottom[k]), int(left[k]), int(right[k])
        crops.append(MaskCrop(r0, c0, masks[k, r0:r1, c0:c1]))
    return crops


def suppress_duplicates(
    masks: NDArray[np.bool_], scores: NDArray[np.floating], max_iou: float = 0.5
) -> list[int]:
    """Indices of masks to keep, best first; a mask with IoU > max_iou to a kept one is dropped.

    Only pairs whose bounding boxes overlap are compared, on the overlap of their boxes.

    Args:
        masks: (P, H, W) bool.
        scores: (P,) higher is better.
        max_iou: IoU above which two masks are the same ship.
    """
    if len(masks) == 0:
        return []
    crops = crop_masks(masks)
    areas = [int(np.count_nonzero(c.pixels)) for c in crops]
    order = np.argsort(-np.asarray(scores), kind="stable")
    kept: list[int] = []
    for i in order.tolist():
        if areas[i] == 0:
            continue
        if not any(_iou(crops[i], crops[j], areas[i], areas[j]) > max_iou for j in kept):
            kept.append(i)
    return kept


def _iou(a: MaskCrop, b: MaskCrop, area_a: int, area_b: int) -> float:
    inter = shared_pixels(a, b)
    return inter / (area_a + area_b - inter) if inter else 0.0


def shared_pixels(a: MaskCrop, b: MaskCrop) -> int:
    """Pixels set in both masks (both on the same grid), counted on the overlap of their boxes."""
    a0, a1, a2, a3 = a.box
    b0, b1, b2, b3 = b.box
    r0, c0, r1, c1 = max(a0, b0), max(a1, b1), min(a2, b2), min(a3, b3)
    if r0 >= r1 or c0 >= c1:
        return 0
    window_a = a.pixels[r0 - a0 : r1 - a0, c0 - a1 : c1 - a1]
    window_b = b.pixels[r0 - b0 : r1 - b0, c0 - b1 : c1 - b1]
    return int(np.count_nonzero(window_a & window_b))


def pixels_in(mask: MaskCrop, window: tuple[int, int, int, int]) -> int:
    """Set pixels of `mask` inside `window` (row0, col0, row1, col1, end exclusive, one grid)."""
    m0, m1, m2, m3 = mask.box
    r0, c0 = max(m0, window[0]), max(m1, window[1])
    r1, c1 = min(m2, window[2]), min(m3, window[3])
    if r0 >= r1 or c0 >= c1:
        return 0
    return int(np.count_nonzero(mask.pixels[r0 - m0 : r1 - m0, c0 - m1 : c1 - m1]))


def touching(a: MaskCrop, b: MaskCrop) -> bool:
    """Whether two masks on one grid share a pixel or have 8-adjacent pixels."""
    h, w = a.pixels.shape
    grown = np.zeros((h + 2, w + 2), dtype=bool)
    for dr in range(3):
        for dc in range(3):
            grown[dr : dr + h, dc : dc + w] |= a.pixels
    return shared_pixels(MaskCrop(a.row - 1, a.col - 1, grown), b) > 0


def touches_interior_edge(
    crop: MaskCrop, size: int, interior: tuple[bool, bool, bool, bool], margin: int = 0
) -> bool:
    """Whether a mask reaches a chip edge that is not the scene border.

    Args:
        crop: the mask, cut to its (tight) box.
        size: chip side in pixels.
        interior: (top, bottom, left, right) edges that lie inside the scene.
        margin: also count a mask that ends this many pixels or fewer short of such an edge.
    """
    if crop.empty:
        return False
    r0, c0, r1, c1 = crop.box
    top, bottom, left, right = interior
    near, far = margin, size - margin
    return (
        (top and r0 <= near)
        or (bottom and r1 >= far)
        or (left and c0 <= near)
        or (right and c1 >= far)
    )


def bridge_diagonals(image: NDArray[Labels]) -> NDArray[Labels]:
    """A copy of an (h, w) bool or label image with corner-only contacts of one label joined.

    Where two pixels of the same non-zero value touch only at a corner (the other two pixels of
    their 2 x 2 block are 0), the upper of those two 0 pixels gets that value. Every pair of
    8-adjacent pixels of one value is then 4-connected; the new pixel lies inside the box of
    the two it joins, so crops packed side by side keep to their own boxes.
    """
    out = image.copy()
    a, b, c, d = image[:-1, :-1], image[:-1, 1:], image[1:, :-1], image[1:, 1:]
    main = (a != 0) & (d == a) & (b == 0) & (c == 0)  # "\" contact: set the top-right pixel
    anti = (b != 0) & (c == b) & (a == 0) & (d == 0)  # "/" contact: set the top-left pixel
    out[:-1, 1:][main] = a[main]
    out[:-1, :-1][anti] = b[anti]
    return out


def masks_to_polygons(
    crops: list[MaskCrop], transform: Affine, one_part: bool = False
) -> list[shapely.Geometry]:
    """Each crop's True pixels as one geometry through `transform` (pixel -> CRS).

    Crops are on the grid `transform` describes (a chip's, or the scene's). By default holes
    are kept and a mask of several 4-connected parts becomes a MultiPolygon. With `one_part`,
    each crop becomes one Polygon without holes: corner-only contacts are joined first (see
    `bridge_diagonals`), then the exterior ring of its largest part is kept. An empty crop
    gives an empty Polygon. Polygons are built from the outlines in bulk, without a GeoJSON
    detour per ship.
    """
    out: list[shapely.Geometry] = [shapely.Polygon()] * len(crops)
    filled = [k for k, c in enumerate(crops) if not c.empty]
    for start in range(0, len(filled), ATLAS_CROPS):
        batch = filled[start : start + ATLAS_CROPS]
        geoms = _polygonize([crops[k] for k in batch], transform, one_part)
        for k, geom in zip(batch, geoms, strict=True):
            out[k] = geom
    return out


def _polygonize(crops: list[MaskCrop], transform: Affine, one_part: bool) -> list[shapely.Geometry]:
    atlas, places = _atlas(crops)
    if one_part:
        atlas = bridge_diagonals(atlas)
    xy: list[tuple[float, float]] = []
    ring_sizes, rings_per_part, part_label = [], [], []
    for geom, value in shapes(atlas, mask=atlas > 0, connectivity=4):
        rings = geom["coordinates"][:1] if one_part else geom["coordinates"]
        for ring in rings:
            xy.extend(ring)
            ring_sizes.append(len(ring))
        rings_per_part.append(len(rings))
        part_label.append(int(value) - 1)
    labels = np.array(part_label)
    flat = itertools.chain.from_iterable(xy)  # much faster than np.array on a list of tuples
    coords = np.fromiter(flat, dtype=np.float64, count=2 * len(xy)).reshape(-1, 2)
    # Atlas pixel -> grid pixel (shift by the crop's place) -> CRS (the grid transform).
    ring_part = np.repeat(np.arange(len(labels)), rings_per_part)
    shift = np.repeat(places[labels[ring_part]], ring_sizes, axis=0)
    col, row = coords[:, 0] + shift[:, 0], coords[:, 1] + shift[:, 1]
    a, b, c, d, e, f = transform[:6]
    world = np.column_stack([a * col + b * row + c, d * col + e * row + f])
    rings = shapely.linearrings(world, indices=np.repeat(np.arange(len(ring_sizes)), ring_sizes))
    parts = shapely.polygons(rings, indices=ring_part)
    if one_part:  # per crop, its largest part; every crop has at least one
        order = np.lexsort((-shapely.area(parts), labels))
        first = np.r_[True, labels[order][1:] != labels[order][:-1]]
        return list(parts[order[first]])
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(len(crops) + 1))
    result = []
    for n in range(len(crops)):
        members = parts[order[bounds[n] : bounds[n + 1]]]
        result.append(members[0] if len(members) == 1 else shapely.multipolygons(members))
    return result


def _atlas(crops: list[MaskCrop]) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """Crops packed in shelves, tallest first, into one label image (crop k has value k + 1).

    Returns the atlas and, per crop, (col, row) to add to atlas pixels to get grid pixels.
    """
    shapes_ = np.array([c.pixels.shape for c in crops])
    width = max(ATLAS_WIDTH, int(shapes_[:, 1].max()))
    spots: list[tuple[int, int]] = [(0, 0)] * len(crops)
    x = y = shelf = 0
    for k in np.argsort(-shapes_[:, 0], kind="stable").tolist():
        h, w = shapes_[k]
        if x + w > width:
            x, y, shelf = 0, y + shelf, 0
        spots[k] = (y, x)
        x, shelf = x + w, max(shelf, h)
    atlas = np.zeros((y + shelf, width), dtype=np.int32)
    places = np.empty((len(crops), 2))
    for k, (crop, (y0, x0)) in enumerate(zip(crops, spots, strict=True)):
        h, w = crop.pixels.shape
        atlas[y0 : y0 + h, x0 : x0 + w][crop.pixels] = k + 1
        places[k] = (crop.col - x0, crop.row - y0)
    return atlas, places
