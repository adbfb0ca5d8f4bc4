"""Training prompts sampled from a chip's ships: jittered boxes, points on ships, background points.

SAM learns from prompts that resemble what it will get at detection time: boxes from the ship
prompter are a few pixels off, so training boxes are jittered by up to `box_jitter` of the
box side; a share of ships is prompted by a single point inside the ship instead; and points
on open background (outside every ship) are prompts whose target is an empty mask, which
teaches the decoder to answer "no ship" for a point grid on water.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

NO_BOX = np.full(4, np.nan, dtype=np.float32)


@dataclass(frozen=True)
class PromptSettings:
    """How training prompts are drawn.

    Attributes:
        ships_per_chip: at most this many ships prompted per chip and step.
        box_jitter: each box edge moves by up to this share of the box side.
        point_share: share of ship prompts given as one point instead of a box.
        background_points: background point prompts (empty target) per chip and step.
        dense_box: boxes also reach the decoder as SAM's mask input, in training and in
            detection alike (see `geosam.model.decoder`).
    """

    ships_per_chip: int = 8
    box_jitter: float = 0.1
    point_share: float = 0.2
    background_points: int = 1
    dense_box: bool = True

    def to_dict(self) -> dict[str, float | bool]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class PromptBatch:
    """Prompts for one chip, all in chip pixels, in matching order.

    Attributes:
        boxes: (P, 4) float32 XYXY; rows of NaN where the prompt is a point.
        points: (P, 2) float32 (x, y); rows of NaN where the prompt is a box.
        targets: (P, H, W) bool target masks (all False for background points).
    """

    boxes: NDArray[np.float32]
    points: NDArray[np.float32]
    targets: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.targets)


def jitter_boxes(
    boxes: NDArray[np.float32], jitter: float, size: int, rng: np.random.Generator
) -> NDArray[np.float32]:
    """Move each XYXY edge by up to `jitter` x the box side; keep boxes valid and on the chip."""
    if jitter <= 0 or len(boxes) == 0:
        return boxes.copy()
    sides = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    scale = np.concatenate([sides, sides], axis=1)
    moved = boxes + rng.uniform(-jitter, jitter, size=boxes.shape) * scale
    x0 = np.minimum(moved[:, 0], moved[:, 2] - 1)
    y0 = np.minimum(moved[:, 1], moved[:, 3] - 1)
    out = np.stack([x0, y0, moved[:, 2], moved[:, 3]], axis=1)
    return np.clip(out, 0, size).astype(np.float32)


def point_in_mask(mask: NDArray[np.bool_], rng: np.random.Generator) -> NDArray[np.float32]:
    """A random pixel centre (x, y) inside `mask`."""
    rows, cols = np.nonzero(mask)
    i = rng.integers(len(rows))
    return np.array([cols[i] + 0.5, rows[i] + 0.5], dtype=np.float32)


def sample_prompts(
    boxes: NDArray[np.float32],
    masks: NDArray[np.bool_],
    valid: NDArray[np.bool_],
    settings: PromptSettings,
    rng: np.random.Generator,
) -> PromptBatch:
    """Draw one step's prompts for a chip.

    Args:
        boxes: (N, 4) float32 XYXY ship boxes in chip pixels.
        masks: (N, H, W) bool ship masks.
        valid: (H, W) bool, True where the chip has scene data.
        settings: how many prompts of which kind.
        rng: the seeded generator of the training run.
    """
    size = valid.shape[0]
    has_pixels = masks.reshape(len(masks), -1).any(axis=1) if len(masks) else np.zeros(0, bool)
    candidates = np.flatnonzero(has_pixels)
    chosen = rng.permutation(candidates)[: settings.ships_per_chip]
    chosen_boxes = jitter_boxes(boxes[chosen], settings.box_jitter, size, rng)
    as_point = rng.random(len(chosen)) < settings.point_share
    out_boxes, out_points, targets = [], [], []
    for k, i in enumerate(chosen):
        if as_point[k]:
            out_boxes.append(NO_BOX)
            out_points.append(point_in_mask(masks[i], rng))
        else:
            out_boxes.append(chosen_boxes[k])
            out_points.append(NO_BOX[:2])
        targets.append(masks[i])
    background = valid & ~masks.any(axis=0) if len(masks) else valid
    if background.any():
        for _ in range(settings.background_points):
            out_boxes.append(NO_BOX)
            out_points.append(point_in_mask(background, rng))
            targets.append(np.zeros((size, size), dtype=bool))
    if not targets:
        empty = np.zeros((0, 4), np.float32)
        return PromptBatch(empty, np.zeros((0, 2), np.float32), np.zeros((0, size, size), bool))
    return PromptBatch(
        np.stack(out_boxes).astype(np.float32),
        np.stack(out_points).astype(np.float32),
        np.stack(targets),
    )
