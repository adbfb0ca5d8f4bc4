"""How well a fine-tuned model segments ships it is pointed at: box and one-point prompt IoU.

Prompt-free detection mixes two skills, finding ships and outlining them. This scores the
second alone on a labelled scene: every reference ship is prompted with its own box (and with
one point, the pixel of its mask nearest the mask's centroid), read as `detect --prompts`
reads a user's prompts (`ChipPredictor.prompted_masks`), and the mask is compared with the
reference mask on the chip that shows most of the ship. The filled box is scored next to
it: a mask that does not beat the box it was given has learned nothing about ships.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from geosam.data.samples import SceneChips
from geosam.data.settings import ChipSettings
from geosam.model.decoder import filled_boxes
from geosam.model.predict import ChipPredictor


@dataclass(frozen=True)
class PromptScores:
    """Per-ship IoU of one scene, each (N,) float64 in the order ships were scored.

    Attributes:
        box: IoU of the mask from the ship's reference box.
        point: IoU of the mask from one point on the ship.
        filled_box: IoU of the filled reference box itself (the baseline).
    """

    box: NDArray[np.float64]
    point: NDArray[np.float64]
    filled_box: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.box)


def central_point(mask: NDArray[np.bool_]) -> NDArray[np.float32]:
    """(x, y) pixel centre of the mask pixel nearest the mask's centroid, in chip pixels."""
    rows, cols = np.nonzero(mask)
    k = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
    return np.array([cols[k] + 0.5, rows[k] + 0.5], dtype=np.float32)


def _iou(pred: NDArray[np.bool_], truth: NDArray[np.bool_]) -> NDArray[np.float64]:
    inter = (pred & truth).reshape(len(pred), -1).sum(1)
    union = (pred | truth).reshape(len(pred), -1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def score_prompts(
    predictor: ChipPredictor,
    settings: ChipSettings,
    scene: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    layer: str | None = None,
    cut: float = 0.0,
) -> PromptScores:
    """Box, point and filled-box IoU of every reference ship of a scene, each scored once.

    Chips are read with `settings`, the model's own (``ChipSettings.from_dict`` of its
    metadata), and masks cut at `cut`, the model's for the scene (`DetectSettings.for_model`),
    as `detect` reads and cuts them; a ship seen by several chips is scored on the chip that
    shows the largest share of it.
    """
    best: dict[int, tuple[float, tuple[float, float, float]]] = {}
    with SceneChips(scene, labels, layer, settings) as chips:
        for sample in chips:
            found = sample.labels
            if found is None or len(found) == 0:
                continue
            embedding = predictor.embed(sample.image[None])
            masks = found.masks
            has = masks.reshape(len(masks), -1).any(1)
            if not has.any():
                continue
            boxes, truth = found.boxes[has], masks[has]
            points = np.stack([central_point(m) for m in truth])
            box_pred, _ = predictor.prompted_masks(embedding, boxes=boxes, cut=cut)
            point_pred, _ = predictor.prompted_masks(embedding, points=points, cut=cut)
            filled = filled_boxes(boxes, sample.chip.size).numpy()
            ious = (_iou(box_pred, truth), _iou(point_pred, truth), _iou(filled, truth))
            for k, (ship, share) in enumerate(
                zip(found.ship_ids[has].tolist(), found.visible[has].tolist(), strict=True)
            ):
                if ship not in best or share > best[ship][0]:
                    best[ship] = (share, (ious[0][k], ious[1][k], ious[2][k]))
    values = np.array([v for _, v in best.values()], dtype=np.float64).reshape(-1, 3)
    return PromptScores(values[:, 0], values[:, 1], values[:, 2])
