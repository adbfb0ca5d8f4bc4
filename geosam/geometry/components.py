"""One ship per mask: a decoder mask cleaned to the one connected body under its prompt.

A decoder mask may come with specks, holes and stray parts that reach a neighbouring ship.
Before stitching, each mask is cut down to a single body: its 8-connected parts (pixels that
touch at an edge or a corner are one body) are labelled, the part under the mask's prompt is
kept, pixels that touch that part only at a corner are joined through one of the two pixels
between them (so the body is also 4-connected and its outline is one ring), and its holes are
filled. A hole is a background region not 4-connected to the outside of the crop, the dual of
8-connectivity for the body.

Labelling is exact and needs no scipy: each set pixel starts with its own index, takes the
smallest label of its neighbourhood, then follows labels to their labels (pointer jumping),
until nothing changes. The work is on the set pixels of a crop only, so a ship of a few
hundred pixels costs a few vectorised steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray

from geosam.geometry.masks import MaskCrop, bridge_diagonals


@dataclass(frozen=True)
class MaskPrompts:
    """The prompt behind each of P masks of one chip.

    Attributes:
        boxes: (P, 4) float XYXY, chip pixels; NaN rows for masks prompted by a point.
        points: (P, 2) float (x, y), chip pixels; NaN rows for masks prompted by a box.
        keys: (P,) int64 row of the prompt in the user's prompt layer; -1 for prompts made
            by the model (prompter boxes, point grid).
    """

    boxes: NDArray[np.float64]
    points: NDArray[np.float64]
    keys: NDArray[np.int64]

    @classmethod
    def stack(
        cls,
        boxes: NDArray[np.floating] | None = None,
        points: NDArray[np.floating] | None = None,
        keys: NDArray[np.integer] | None = None,
    ) -> MaskPrompts:
        """Box prompts (K, 4) then point prompts (M, 2), with keys (K + M,) or none (-1)."""
        box = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4)
        pt = np.zeros((0, 2)) if points is None else np.asarray(points, np.float64).reshape(-1, 2)
        k, m = len(box), len(pt)
        return cls(
            np.concatenate([box, np.full((m, 4), np.nan)]),
            np.concatenate([np.full((k, 2), np.nan), pt]),
            np.full(k + m, -1, np.int64) if keys is None else np.asarray(keys, np.int64),
        )

    def take(self, index: NDArray[np.integer] | list[int]) -> MaskPrompts:
        """The prompts of the masks at `index`."""
        return MaskPrompts(self.boxes[index], self.points[index], self.keys[index])


def label_components(
    pixels: NDArray[np.bool_], connectivity: int = 8
) -> tuple[NDArray[np.int32], int]:
    """Connected parts of an (h, w) bool image.

    Args:
        pixels: (h, w) bool.
        connectivity: 8 (edges and corners) or 4 (edges only).

    Returns:
        Labels (h, w) int32, 0 for background and 1..n numbered in raster order of each
        part's first pixel, and n.
    """
    h, w = pixels.shape
    padded = np.zeros((h + 2, w + 2), dtype=bool)
    padded[1:-1, 1:-1] = pixels
    flat = np.flatnonzero(padded)  # raster order
    n = flat.size
    out = np.zeros(padded.size, dtype=np.int32)
    if n == 0:
        return out.reshape(h + 2, w + 2)[1:-1, 1:-1], 0
    s = w + 2
    steps = [-s, -1, 1, s] if connectivity == 4 else [-s - 1, -s, -s + 1, -1, 1, s - 1, s, s + 1]
    ordinal = np.full(padded.size, n, dtype=np.int32)  # n: background
    ordinal[flat] = np.arange(n, dtype=np.int32)
    neighbours = ordinal[flat[:, None] + np.array(steps)]  # (n, 4 or 8)
    label = np.arange(n, dtype=np.int32)
    extended = np.empty(n + 1, dtype=np.int32)
    while True:
        extended[:n], extended[n] = label, n
        new = np.minimum(label, extended[neighbours].min(axis=1))
        new = new[new[new]]  # labels are indices of pixels of the same part, never larger
        if np.array_equal(new, label):
            break
        label = new
    roots, number = np.unique(label, return_inverse=True)
    out[flat] = number.ravel() + 1
    return out.reshape(h + 2, w + 2)[1:-1, 1:-1], len(roots)


def fill_holes(pixels: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """(h, w) bool with every background region not 4-connected to the outside set."""
    h, w = pixels.shape
    background = np.ones((h + 2, w + 2), dtype=bool)
    background[1:-1, 1:-1] = ~pixels
    labels, _ = label_components(background, connectivity=4)
    return np.asarray(labels[1:-1, 1:-1] != labels[0, 0])


def one_body(pixels: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """An 8-connected (h, w) bool body made 4-connected (corner contacts joined), holes filled."""
    body = pixels
    while True:
        bridged = bridge_diagonals(body)
        if np.array_equal(bridged, body):
            break
        body = bridged
    return fill_holes(body)


def prompted_body(
    crop: MaskCrop,
    box: NDArray[np.floating] | None = None,
    point: NDArray[np.floating] | None = None,
) -> MaskCrop:
    """The mask's one connected body under its prompt, holes filled, cut to its box.

    The kept 8-connected part is, for a box prompt, the one with most pixels (centres) inside
    the box, ties to the larger part; for a point prompt, the one with a pixel under the
    point, else the one nearest to it (distance to pixel squares), ties to the larger; without
    a prompt, the largest. Remaining ties go to the first part in raster order. A mask with
    no pixel inside its box prompt segmented something else: it becomes empty.

    Args:
        crop: the mask cut to its box; row and col in chip pixels.
        box: (4,) XYXY in chip pixels, or None.
        point: (2,) (x, y) in chip pixels, or None.
    """
    if crop.empty:
        return crop
    labels, n = label_components(crop.pixels)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    rows = np.arange(labels.shape[0]) + crop.row + 0.5  # pixel centres, chip pixels
    cols = np.arange(labels.shape[1]) + crop.col + 0.5
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        inside = ((rows >= y0) & (rows <= y1))[:, None] & ((cols >= x0) & (cols <= x1))
        counts = np.bincount(labels[inside], minlength=n + 1)[1:]
        if not counts.any():
            return MaskCrop(0, 0, np.zeros((0, 0), dtype=bool))
        keep = _first_max(counts, sizes)
    elif point is not None and n > 1:
        r, c = np.nonzero(labels)
        dy = np.maximum(np.abs(rows[r] - float(point[1])) - 0.5, 0)
        dx = np.maximum(np.abs(cols[c] - float(point[0])) - 0.5, 0)
        nearest = np.full(n, np.inf)
        np.minimum.at(nearest, labels[r, c] - 1, dx**2 + dy**2)  # 0 under the point
        keep = _first_max(-nearest, sizes)
    else:
        keep = _first_max(sizes, sizes)
    body = one_body(labels == keep)
    rows_any, cols_any = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
    r0, r1, c0, c1 = rows_any[0], rows_any[-1] + 1, cols_any[0], cols_any[-1] + 1
    return MaskCrop(crop.row + int(r0), crop.col + int(c0), body[r0:r1, c0:c1])


def prompted_bodies(crops: list[MaskCrop], prompts: MaskPrompts) -> list[MaskCrop]:
    """`prompted_body` of each of P crops with its prompt (P rows of `prompts`)."""
    out = []
    for crop, box, point in zip(crops, prompts.boxes, prompts.points, strict=True):
        has_box, has_point = not np.isnan(box).any(), not np.isnan(point).any()
        out.append(prompted_body(crop, box if has_box else None, point if has_point else None))
    return out


def feret_length(pixels: NDArray[np.bool_]) -> float:
    """Longest distance between two points of an (h, w) bool mask's pixel squares, in pixels."""
    rows = np.flatnonzero(pixels.any(axis=1))
    if rows.size == 0:
        return 0.0
    w = pixels.shape[1]
    left = pixels[rows].argmax(axis=1)
    right = w - pixels[rows, ::-1].argmax(axis=1)  # end exclusive: the right pixel edge
    xs = np.concatenate([left, left, right, right]).astype(np.float64)
    ys = np.concatenate([rows, rows + 1, rows, rows + 1]).astype(np.float64)
    hull = shapely.get_coordinates(shapely.convex_hull(shapely.multipoints(np.c_[xs, ys])))
    gaps = hull[:, None, :] - hull[None, :, :]
    return float(np.sqrt((gaps**2).sum(axis=2)).max())


def _first_max(primary: NDArray[np.generic], secondary: NDArray[np.generic]) -> int:
    """Label (1-based) of the best part: largest `primary`, then `secondary`, then first."""
    order = np.lexsort((np.arange(len(primary)), -secondary.astype(float), -primary.astype(float)))
    return int(order[0]) + 1
