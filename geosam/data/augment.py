"""Geometric augmentation of a training chip: flips, quarter turns and shifts.

Ships have no up or down in an overhead scene, so each of the eight symmetries of a square
(the dihedral group D4) turns one annotated chip into eight equally true ones. A view is
applied to the chip, its valid-pixel mask, its ship masks and its boxes together, so a box
still bounds its mask in every view. With a frozen encoder each view's embedding is computed
once and cached, like any other chip. An encoder that trains also sees each view shifted by
a few pixels (`shift_chip`), which no cache could hold and no fixed tiling shows, and, on
request, with its colours jittered (`jitter_colours`): scenes are stretched each on its own, so
the same water or hull comes out brighter, darker or tinted from one scene to the next.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

ChipArrays = tuple[NDArray[np.uint8], NDArray[np.bool_], NDArray[np.float32], NDArray[np.bool_]]
"""A chip: image (3, S, S), valid (S, S), boxes (N, 4) XYXY chip pixels, masks (N, S, S)."""

VIEWS = 8
"""View v: (v % 4) quarter turns counter-clockwise, then a left-right flip if v >= 4."""


def view_array(array: NDArray[np.generic], view: int) -> NDArray[np.generic]:
    """One view of an array whose last two axes are (rows, cols); a contiguous copy."""
    out = np.rot90(array, view % 4, axes=(-2, -1))
    if view >= 4:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def view_boxes(boxes: NDArray[np.float32], size: int, view: int) -> NDArray[np.float32]:
    """XYXY boxes (N, 4) in chip pixels of a size x size chip, moved as `view_array` moves pixels.

    A quarter turn counter-clockwise (numpy's rot90) sends pixel (x, y) to (y, size - x); a
    left-right flip sends (x, y) to (size - x, y). Edges are transformed, then re-ordered.
    """
    x0, y0, x1, y1 = (boxes[:, k].astype(np.float64) for k in range(4))
    for _ in range(view % 4):
        x0, y0, x1, y1 = y0, size - x1, y1, size - x0
    if view >= 4:
        x0, x1 = size - x1, size - x0
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.float32).reshape(-1, 4)


def view_chip(chip: ChipArrays, view: int) -> ChipArrays:
    """A training chip (`ChipArrays`) seen in `view` 0..7 (0 is the chip itself, see `VIEWS`)."""
    if view == 0:
        return chip
    image, valid, boxes, masks = chip
    size = image.shape[-1]
    return (
        view_array(image, view),  # type: ignore[return-value]
        view_array(valid, view),  # type: ignore[return-value]
        view_boxes(boxes, size, view),
        view_array(masks, view),  # type: ignore[return-value]
    )


def shift_chip(chip: ChipArrays, dx: int, dy: int) -> ChipArrays:
    """The chip's content moved by (dx, dy) pixels (right, down), zero-filled where it left.

    A convolutional encoder samples the chip on a grid of stride s; moving the content by
    other than multiples of s shows every ship at new positions against that grid, which a
    fixed tiling of one scene never does. The uncovered band is not scene data (valid False,
    pixels 0, as at a scene edge). Boxes are moved and clipped to the chip; a ship moved off
    the chip keeps a zero-area box and an empty mask, which prompts and targets skip.
    """
    if dx == 0 and dy == 0:
        return chip
    image, valid, boxes, masks = chip
    size = image.shape[-1]

    def move(array: NDArray[np.generic]) -> NDArray[np.generic]:
        out = np.zeros_like(array)
        src_r = slice(max(0, -dy), min(size, size - dy))
        src_c = slice(max(0, -dx), min(size, size - dx))
        dst_r = slice(max(0, dy), min(size, size + dy))
        dst_c = slice(max(0, dx), min(size, size + dx))
        out[..., dst_r, dst_c] = array[..., src_r, src_c]
        return out

    moved = boxes + np.array([dx, dy, dx, dy], dtype=np.float32)
    return (
        move(image),  # type: ignore[return-value]
        move(valid),  # type: ignore[return-value]
        np.clip(moved, 0, size).astype(np.float32).reshape(-1, 4),
        move(masks),  # type: ignore[return-value]
    )


COLOUR_JITTER = 0.2
"""Largest relative change of a view's contrast and brightness (x 1/1.2 .. 1.2); each band's
gain moves by half as much, which tints the chip without swapping its colours."""


def jitter_colours(
    image: NDArray[np.uint8], valid: NDArray[np.bool_], rng: np.random.Generator
) -> NDArray[np.uint8]:
    """The chip's pixels with a random contrast, brightness and per-band gain (uint8).

    Contrast scales the pixels about the chip's mean, as a different stretch of the same scene
    would. Pixels outside the scene stay 0, so the view's valid mask still holds.
    """
    bands = image.shape[0]
    spread = np.log1p(COLOUR_JITTER)
    contrast, brightness = np.exp(rng.uniform(-spread, spread, size=2))
    gains = np.exp(rng.uniform(-spread / 2, spread / 2, size=(bands, 1, 1)))
    pixels = image.astype(np.float32)
    mean = float(pixels[:, valid].mean()) if valid.any() else 0.0
    out = ((pixels - mean) * contrast + mean) * (brightness * gains)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    out[:, ~valid] = 0
    return out
