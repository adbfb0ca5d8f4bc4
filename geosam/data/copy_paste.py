"""Copy-paste augmentation: annotated ships cut out of training chips and pasted onto others.

One annotated scene holds few ships (the Sentinel-2 ports of the dev data: about 80 in all),
and a detector that sees every ship in every view still sees few ship-versus-background
contrasts. Pasting a ship's own pixels (inside its mask) into another training chip of the
same scene gives the encoder and the prompter new instances on new backgrounds at no
annotation cost (Ghiasi et al., "Simple Copy-Paste", 2021).

A ship pasted onto a roof would teach the prompter that roofs hold ships, which is the false
alarm it already makes. So a ship goes only where the destination looks like the water it
was cut from: each cut-out keeps the colour of the pixels around it (its surroundings, with
other ships left out), and of several random positions the paste takes the one whose
surroundings match best, and only when the match is close. No land-water map is needed.
Ships stay in their own scene: each scene has its own stretch and its own water, and a dark
forest of one scene can match the water of another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from geosam.data.augment import ChipArrays, view_array
from geosam.geometry.pixels import mask_to_box

CANDIDATE_POSITIONS = 24
"""Random positions tried per pasted ship; the one with the closest surroundings wins."""

MATCH_TOLERANCE = 8.0
"""Largest surroundings difference accepted (mean over channels of |mean| + |std|, 0-255)."""

MAX_TEXTURE = 20.0
"""Ships whose surroundings vary more than this (mean standard deviation, 0-255) are not cut:
a hull moored against a quay has busy surroundings that match roofs as well as water."""

MARGIN = 0.25
"""The surroundings of a ship: its box grown by this fraction of its longer side."""


@dataclass(frozen=True)
class ShipCutout:
    """One annotated ship and the pixels around it, cut out of a training chip.

    Attributes:
        pixels: (3, h, w) uint8, the ship's box grown by a margin, in chip pixels.
        ship: (h, w) bool, the ship's mask in that crop.
        around: (h, w) bool, the crop's pixels that belong to no ship (its surroundings).
        colour: (3,) float64 mean and (3,) float64 standard deviation of the surroundings.
    """

    pixels: NDArray[np.uint8]
    ship: NDArray[np.bool_]
    around: NDArray[np.bool_]
    colour: tuple[NDArray[np.float64], NDArray[np.float64]]


def surroundings_colour(
    pixels: NDArray[np.uint8], around: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-channel mean and standard deviation of `pixels` (3, h, w) where `around` (h, w)."""
    values = pixels[:, around].astype(np.float64)
    return values.mean(axis=1), values.std(axis=1)


def cut_ships(
    chip: ChipArrays, margin: float = MARGIN, min_margin: int = 3, max_texture: float = MAX_TEXTURE
) -> list[ShipCutout]:
    """Every ship of a chip whose box, grown by `margin` of its longer side, lies on valid pixels.

    Ships cut by the chip edge or by the scene's edge are skipped (part of the hull is
    missing), as are ships with fewer than four surrounding pixels to match against and ships
    whose surroundings vary more than `max_texture`.
    """
    image, valid, _, masks = chip
    size = image.shape[-1]
    any_ship = np.asarray(masks.any(axis=0))  # all False for a chip without ships
    out = []
    for mask in masks:
        if not mask.any():
            continue
        rows, cols = np.nonzero(mask)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        grow = max(min_margin, round(margin * max(r1 - r0, c1 - c0)))
        r0, c0, r1, c1 = r0 - grow, c0 - grow, r1 + grow, c1 + grow
        if r0 < 0 or c0 < 0 or r1 > size or c1 > size or not valid[r0:r1, c0:c1].all():
            continue
        around = ~any_ship[r0:r1, c0:c1]
        if around.sum() < 4:
            continue
        pixels = image[:, r0:r1, c0:c1].copy()
        colour = surroundings_colour(pixels, around)
        if float(colour[1].mean()) > max_texture:
            continue
        out.append(ShipCutout(pixels, mask[r0:r1, c0:c1].copy(), around, colour))
    return out


def turned(cutout: ShipCutout, view: int) -> ShipCutout:
    """The cut-out in one of the eight flips and quarter turns (`geosam.data.augment.VIEWS`)."""
    if view == 0:
        return cutout
    return ShipCutout(
        view_array(cutout.pixels, view),  # type: ignore[arg-type]
        view_array(cutout.ship, view),  # type: ignore[arg-type]
        view_array(cutout.around, view),  # type: ignore[arg-type]
        cutout.colour,
    )


def paste_ships(
    chip: ChipArrays,
    cutouts: list[ShipCutout],
    count: int,
    rng: np.random.Generator,
    tolerance: float = MATCH_TOLERANCE,
) -> ChipArrays:
    """The chip with up to `count` cut-outs pasted where their surroundings match.

    Each paste draws a cut-out and a turn, tries `CANDIDATE_POSITIONS` random positions whose
    crop lies on valid pixels and clear of every ship (and of earlier pastes), and pastes the
    ship's pixels at the best-matching one if it is within `tolerance`. A pasted ship gets its
    box (XYXY chip pixels, pixel edges) and mask appended; the chip's own ships are untouched.
    Returns new arrays; the input chip is not modified.
    """
    if count <= 0 or not cutouts:
        return chip
    image, valid, boxes, masks = chip
    size = image.shape[-1]
    free = valid & ~np.asarray(masks.any(axis=0))
    new_image = image
    new_boxes: list[NDArray[np.float32]] = []
    new_masks: list[NDArray[np.bool_]] = []
    for _ in range(count):
        cutout = turned(cutouts[int(rng.integers(len(cutouts)))], int(rng.integers(8)))
        h, w = cutout.ship.shape
        if h > size or w > size:
            continue
        best: tuple[float, int, int] | None = None
        for _ in range(CANDIDATE_POSITIONS):
            r, c = int(rng.integers(size - h + 1)), int(rng.integers(size - w + 1))
            if not free[r : r + h, c : c + w].all():
                continue
            mean, std = surroundings_colour(new_image[:, r : r + h, c : c + w], cutout.around)
            gap = float(np.mean(np.abs(mean - cutout.colour[0]) + np.abs(std - cutout.colour[1])))
            if gap <= tolerance and (best is None or gap < best[0]):
                best = (gap, r, c)
        if best is None:
            continue
        _, r, c = best
        if new_image is image:
            new_image = image.copy()
        window = new_image[:, r : r + h, c : c + w]
        window[:, cutout.ship] = cutout.pixels[:, cutout.ship]
        mask = np.zeros(valid.shape, dtype=bool)
        mask[r : r + h, c : c + w] = cutout.ship
        new_boxes.append(mask_to_box(mask))
        new_masks.append(mask)
        free[r : r + h, c : c + w] = False
    if not new_masks:
        return chip
    all_boxes = np.concatenate([boxes, np.stack(new_boxes)]).astype(np.float32)
    all_masks = np.concatenate([masks, np.stack(new_masks)])
    return new_image, valid, all_boxes.reshape(-1, 4), all_masks
