"""Chip detections to one polygon per ship across overlapping chips.

Every ship near a seam is seen by two to four chips. Masks reach this module as single bodies
(`geosam.geometry.components`); a detection is *complete* when its mask does not reach an
interior chip edge (an edge that is not the scene border) or stop one pixel short of it (a
ragged mask may have lost its edge pixels): the chip saw the whole ship.

With user prompts (detections carrying a `prompt` key, the prompt's row in the prompt layer),
a prompt promises one ship: detections of one key become one ship, those of different keys
never join. A key's ship is its best-scoring complete detection, or else the OR of all its
pieces.

Without keys (prompter, point grid), detections are taken by (complete first, then score):

1. One that overlaps a ship seen whole (shared pixels / the smaller mask's pixels >=
   `min_overlap`) is a duplicate of it and is dropped.
2. A cut piece that overlaps cut ships (ratio >= `piece_overlap`, lower because two pieces
   share only the overlap strip) joins, of those, the one whose mask it shares most pixels
   with, among those it is plausibly one ship with:
   - the two chips agree: where both chips saw the scene (the overlap of the two chip
     windows), the piece and a piece of that ship it overlaps have IoU >= `piece_agreement`
     (two pieces of one ship show the same pixels there, a piece of a neighbour does not);
   - the union is one 8-connected body on the scene grid;
   - the union's length, its maximum Feret diameter (the longest distance between two points
     of its pixel squares), is <= `max_ship_length_px` (None: no limit).
   A piece joins one ship at most: two ships are never merged, so joins cannot chain.
3. A piece that joins no ship is dropped as a duplicate when >= `min_overlap` of its pixels
   lie in the cut ship it overlaps most, or as a fragment when it lies inside the window of
   another chip, touches or overlaps a ship made with a detection of that chip, and every
   detection of that chip that overlaps it has been decided (that chip saw every pixel of
   the piece and the ships it found there do not take it: a sliver at a chip edge, or a
   ragged piece of a ship whose pieces agree better among themselves). Otherwise it starts a
   ship of its own.
4. A ship keeps the highest score of its parts.

All chips are windows on one pixel grid, so the rule works on masks placed on that grid:
overlaps are exact pixel counts and a union is a logical OR. Candidate pairs come from a
shapely STRtree of the masks' boxes, so the work grows with the number of ships, not its
square. Each ship is polygonised once, after stitching, as one Polygon without holes (the
outline of its largest 4-connected part after corner contacts are joined; see
`geosam.geometry.masks.masks_to_polygons`). Keyed ships come first, by key, then the others
in the order they were found.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray

from geosam.geometry.components import feret_length, label_components
from geosam.geometry.detections import Detection
from geosam.geometry.masks import (
    MaskCrop,
    masks_to_polygons,
    pixels_in,
    shared_pixels,
    touching,
)

DEFAULT_MIN_OVERLAP = 0.3
DEFAULT_PIECE_OVERLAP = 0.1
DEFAULT_PIECE_AGREEMENT = 0.5


def stitch(
    detections: list[Detection],
    transform: Affine,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    piece_overlap: float = DEFAULT_PIECE_OVERLAP,
    max_ship_length_px: float | None = None,
    piece_agreement: float = DEFAULT_PIECE_AGREEMENT,
) -> tuple[list[shapely.Polygon], NDArray[np.float64]]:
    """One Polygon and score per ship, following the module's rule.

    Args:
        detections: chip detections on the scene grid.
        transform: the scene grid's affine transform (pixel -> scene CRS).
        min_overlap: overlap share that makes a detection a duplicate of a ship.
        piece_overlap: overlap share that makes a cut piece a candidate to join a cut ship.
        max_ship_length_px: longest ship (maximum Feret diameter, scene pixels) a join may
            make; None for no limit.
        piece_agreement: IoU two pieces must have where both chips saw them to be one ship.

    Returns:
        Ship polygons (no holes) in the scene CRS and their scores (N,).
    """
    keyed = [d for d in detections if d.prompt is not None]
    free = [d for d in detections if d.prompt is None]
    ships = (
        _prompted_ships(keyed)
        + _Stitcher(free, min_overlap, piece_overlap, max_ship_length_px, piece_agreement).ships()
    )
    scores = np.array([score for _, score in ships], dtype=np.float64)
    return masks_to_polygons([mask for mask, _ in ships], transform, one_part=True), scores


def _prompted_ships(detections: list[Detection]) -> list[tuple[MaskCrop, float]]:
    """One ship per prompt key: its best complete mask, else the OR of its pieces."""
    groups: dict[int, list[Detection]] = {}
    for d in detections:
        if d.prompt is not None:
            groups.setdefault(d.prompt, []).append(d)
    ships = []
    for key in sorted(groups):
        group = groups[key]
        whole = [d for d in group if d.complete]
        if whole:
            best = max(whole, key=lambda d: d.score)
            ships.append((best.mask, best.score))
        else:
            ships.append((_union([d.mask for d in group]), max(d.score for d in group)))
    return ships


@dataclass
class _Ship:
    mask: MaskCrop
    score: float
    complete: bool
    members: list[int] = field(default_factory=list)


class _Stitcher:
    """The prompter rule of the module docstring over detections without a prompt key."""

    def __init__(
        self,
        detections: list[Detection],
        min_overlap: float,
        piece_overlap: float,
        max_length: float | None,
        agreement: float,
    ) -> None:
        self.masks = [d.mask for d in detections]
        self.windows = [d.window or d.mask.box for d in detections]
        self.scores = np.array([d.score for d in detections], dtype=np.float64)
        self.complete = np.array([d.complete for d in detections], dtype=bool)
        self.areas = np.array([np.count_nonzero(m.pixels) for m in self.masks], dtype=np.int64)
        self.min_overlap, self.piece_overlap = min_overlap, piece_overlap
        self.max_length, self.agreement = max_length, agreement

    def ships(self) -> list[tuple[MaskCrop, float]]:
        """(mask on the scene grid, score) of each ship, in the order they were found.

        Complete detections go first, by score. Cut pieces then grow ships one at a time: the
        largest piece not yet decided (ties: best score) is placed by the full rule, and pieces
        that overlap a piece joined so far are offered next (largest first) but only join,
        never start a ship or get dropped there; one that fits no ship waits for its own turn.
        So a ship cut in every chip grows from its largest piece outwards instead of starting
        in two places that no piece may then merge, and a sliver at a chip edge is judged once
        the body it belongs to exists.
        """
        if not self.masks:
            return []
        boxes = np.array([m.box for m in self.masks], dtype=np.float64)  # row0, col0, row1, col1
        self.tree = shapely.STRtree(shapely.box(boxes[:, 1], boxes[:, 0], boxes[:, 3], boxes[:, 2]))
        self.neighbours = _overlapping(
            self.masks, self.areas, boxes, self.tree, min(self.min_overlap, self.piece_overlap)
        )
        self.owner = np.full(len(self.masks), -1)
        self.decided = self.complete.copy()  # joined, started a ship or dropped
        self.found: list[_Ship] = []
        for i in np.lexsort((-self.scores, ~self.complete)).tolist():  # complete first
            if self.complete[i]:
                self._place(i, join_only=False)
        for seed in np.lexsort((-self.scores, -self.areas)).tolist():  # largest first
            if self.decided[seed]:
                continue
            self.decided[seed] = True
            if not self._place(seed, join_only=False):
                continue
            frontier: list[tuple[int, float, int]] = []
            self._offer(seed, frontier)
            while frontier:
                j = heapq.heappop(frontier)[2]
                if not self.decided[j] and self._place(j, join_only=True):
                    self.decided[j] = True
                    self._offer(j, frontier)
        return [(ship.mask, ship.score) for ship in self.found]

    def _offer(self, i: int, frontier: list[tuple[int, float, int]]) -> None:
        """Push the pieces not yet decided that overlap piece `i` enough to join its ship."""
        for j, ratio in self.neighbours.get(i, []):
            if not self.decided[j] and ratio >= self.piece_overlap:
                heapq.heappush(frontier, (-int(self.areas[j]), -float(self.scores[j]), j))

    def _place(self, i: int, join_only: bool) -> bool:
        """Place detection `i` by the rule; True when it joined or started a ship.

        With `join_only`, change nothing unless `i` joins a ship.
        """
        ships = self.found
        near = [(int(self.owner[j]), j, r) for j, r in self.neighbours.get(i, [])]
        near = [(o, j, r) for o, j, r in near if o >= 0]
        if any(ships[o].complete and r >= self.min_overlap for o, _, r in near):
            return False  # a duplicate of a ship some chip saw whole
        touched: dict[int, list[int]] = {}
        for o, j, r in near:
            if not ships[o].complete and r >= self.piece_overlap:
                touched.setdefault(o, []).append(j)
        shared = {o: shared_pixels(self.masks[i], ships[o].mask) for o in touched}
        ranked = sorted(touched, key=lambda o: (-shared[o], o))
        for o in ranked:
            union = self._joined(i, ships[o], touched[o])
            if union is not None:
                ships[o].mask, ships[o].score = union, max(ships[o].score, self.scores[i])
                ships[o].members.append(i)
                self.owner[i] = o
                return True
        if join_only or (ranked and shared[ranked[0]] >= self.min_overlap * self.areas[i]):
            return False  # waits for its turn, or a duplicate of a cut ship it cannot join
        if not self.complete[i] and self._fragment(i):
            return False  # a fragment of a ship found by a chip that saw all of it
        self.owner[i] = len(ships)
        ships.append(_Ship(self.masks[i], float(self.scores[i]), bool(self.complete[i]), [i]))
        return True

    def _fragment(self, i: int) -> bool:
        """Whether piece `i` is a fragment of a ship another chip saw (rule 3 of the module).

        That is: it lies in that chip's window, touches or overlaps a ship made with a
        detection of that chip, and every detection of that chip overlapping it is decided.
        """
        box = self.masks[i].box
        near = shapely.box(box[1] - 1, box[0] - 1, box[3] + 1, box[2] + 1)
        pending = {self.windows[k] for k, _ in self.neighbours.get(i, []) if not self.decided[k]}
        for j in self.tree.query(near, predicate="intersects").tolist():
            window = self.windows[j]
            if (
                self.owner[j] >= 0
                and window != self.windows[i]
                and window not in pending
                and _inside(box, window)
                and touching(self.masks[i], self.masks[j])
            ):
                return True
        return False

    def _joined(self, i: int, ship: _Ship, pieces: list[int]) -> MaskCrop | None:
        """The ship's mask with piece `i` added, or None when they are not plausibly one ship.

        `pieces` are the ship's members that `i` overlaps.
        """
        if max(self._agreement(i, j) for j in pieces) < self.agreement:
            return None
        union = _union([ship.mask, self.masks[i]])
        if label_components(union.pixels)[1] != 1:
            return None
        if self.max_length is not None and feret_length(union.pixels) > self.max_length:
            return None
        return union

    def _agreement(self, i: int, j: int) -> float:
        """IoU of masks `i` and `j` within the overlap of their chip windows."""
        a0, a1, a2, a3 = self.windows[i]
        b0, b1, b2, b3 = self.windows[j]
        both = (max(a0, b0), max(a1, b1), min(a2, b2), min(a3, b3))
        shared = shared_pixels(self.masks[i], self.masks[j])  # all inside both windows
        union = pixels_in(self.masks[i], both) + pixels_in(self.masks[j], both) - shared
        return shared / union if union > 0 else 0.0


def _inside(box: tuple[int, int, int, int], window: tuple[int, int, int, int]) -> bool:
    """Whether `box` lies in `window` (both row0, col0, row1, col1)."""
    return (
        box[0] >= window[0] and box[1] >= window[1] and box[2] <= window[2] and box[3] <= window[3]
    )


def _overlapping(
    masks: list[MaskCrop],
    areas: NDArray[np.int64],
    boxes: NDArray[np.float64],
    tree: shapely.STRtree,
    min_ratio: float,
) -> dict[int, list[tuple[int, float]]]:
    """For each mask, the others sharing >= min_ratio of the smaller one's pixels, and the ratio.

    `boxes` (N, 4) are the masks' boxes (row0, col0, row1, col1) and `tree` holds them.
    """
    left, right = tree.query(tree.geometries, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    # Boxes that only touch share no pixel.
    inside = (
        np.maximum(boxes[left, 0], boxes[right, 0]) < np.minimum(boxes[left, 2], boxes[right, 2])
    ) & (np.maximum(boxes[left, 1], boxes[right, 1]) < np.minimum(boxes[left, 3], boxes[right, 3]))
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
