"""Chip masks to detections: each mask placed on the scene's pixel grid, flagged when cut.

A detection is *complete* when its mask does not reach an interior chip edge (an edge that is
not the scene border) or stop one pixel short of it (a ragged mask may have lost its edge
pixels): the chip saw the whole ship. Stitching (`geosam.geometry.stitch`) relies on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geosam.geometry.grid import Chip
from geosam.geometry.masks import MaskCrop, touches_interior_edge

EDGE_MARGIN = 1  # a mask a pixel short of an interior edge may have lost its edge pixels: cut


@dataclass(frozen=True)
class Detection:
    """One ship mask from one chip, placed on the scene's pixel grid.

    Attributes:
        mask: the mask cut to its box; row and col are scene-grid pixels.
        score: confidence in [0, 1].
        complete: True when the mask does not touch an interior chip edge.
        prompt: row of the user prompt in the prompt layer that made the mask; None for
            prompts made by the model (prompter, point grid).
        window: (row0, col0, row1, col1), end exclusive, of the chip on the scene grid; None
            when unknown (then the mask's box stands in for it).
    """

    mask: MaskCrop
    score: float
    complete: bool
    prompt: int | None = None
    window: tuple[int, int, int, int] | None = None


def crops_to_detections(
    crops: list[MaskCrop],
    scores: np.ndarray,
    chip: Chip,
    width: int,
    height: int,
    prompts: Sequence[int | None] | None = None,
) -> list[Detection]:
    """Cropped chip masks to detections on the scene grid, flagging those cut by an interior edge.

    Chip masks (P, S, S) come here through `geosam.geometry.masks.crop_masks`.

    Args:
        crops: P masks of one chip, each cut to its box (row and col in chip pixels).
        scores: (P,) their scores.
        chip: the chip.
        width: columns of the chipped grid (to tell interior edges from the scene border).
        height: rows of the chipped grid.
        prompts: P prompt-layer rows (None where the model made the prompt), or None for all.
    """
    interior = (
        chip.row_off > 0,
        chip.row_off + chip.size < height,
        chip.col_off > 0,
        chip.col_off + chip.size < width,
    )
    keys = [None] * len(crops) if prompts is None else list(prompts)
    window = (chip.row_off, chip.col_off, chip.row_off + chip.size, chip.col_off + chip.size)
    return [
        Detection(
            MaskCrop(crop.row + chip.row_off, crop.col + chip.col_off, crop.pixels),
            float(score),
            not touches_interior_edge(crop, chip.size, interior, EDGE_MARGIN),
            key,
            window,
        )
        for crop, score, key in zip(crops, scores, keys, strict=True)
        if not crop.empty
    ]
