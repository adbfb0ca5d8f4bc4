"""Validation scores: the filled-box baseline, centre matches, the detection operating point.

The operating point is the detection score threshold with the best F1 on validation chips.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from geosam.geometry.masks import suppress_duplicates
from geosam.model.decoder import decode, filled_boxes
from geosam.model.losses import mask_iou
from geosam.model.prompter import decode_boxes
from geosam.model.shipsam import ShipSam
from geosam.pipelines.training_data import TrainChip

PROPOSAL_THRESHOLD = 0.1
"""Centre score above which prompter proposals are decoded in validation (and in `detect`)."""


def match_centres(found: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """Greedy one-to-one match of proposed box centres inside true boxes: (TP, FP, FN)."""
    used = np.zeros(len(truth), dtype=bool)
    tp = 0
    for x0, y0, x1, y1 in found:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        inside = (
            (truth[:, 0] <= cx) & (cx <= truth[:, 2]) & (truth[:, 1] <= cy) & (cy <= truth[:, 3])
        )
        candidates = np.flatnonzero(inside & ~used)
        if candidates.size:
            used[candidates[0]] = True
            tp += 1
    return tp, len(found) - tp, len(truth) - tp


# Candidate operating points: final scores (centre score x predicted IoU) a detection must reach.
SCORE_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)
MATCH_IOU = 0.5


@dataclass
class DetectionTally:
    """Prompt-free detections on validation chips, kept to choose the score threshold.

    For every validation chip, all proposals above a low centre score are decoded and
    duplicate masks suppressed; each surviving detection is recorded with its score and
    whether it matches a reference mask (IoU >= 0.5, greedy by score). Greedy suppression and
    greedy matching both go by descending score, so the detections kept at any threshold t
    are exactly those recorded with score >= t, with the same matches: one pass scores every
    threshold at once.
    """

    scores: list[float] = field(default_factory=list)
    matched: list[bool] = field(default_factory=list)
    references: int = 0

    def add_chip(
        self, masks: np.ndarray, scores: np.ndarray, truth: np.ndarray, max_iou: float = 0.5
    ) -> None:
        """One chip: masks (P, S, S) bool with scores (P,), reference masks (N, S, S) bool."""
        self.references += len(truth)
        kept = suppress_duplicates(masks, scores, max_iou) if len(masks) else []
        if not kept:
            return
        pred = masks[kept].reshape(len(kept), -1).astype(np.float32)
        ref = truth.reshape(len(truth), -1).astype(np.float32)
        inter = pred @ ref.T
        union = pred.sum(1)[:, None] + ref.sum(1)[None, :] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        free = np.ones(len(truth), dtype=bool)
        for row, k in enumerate(kept):
            candidates = np.flatnonzero(free & (iou[row] >= MATCH_IOU))
            hit = bool(candidates.size)
            if hit:
                free[candidates[np.argmax(iou[row, candidates])]] = False
            self.scores.append(float(scores[k]))
            self.matched.append(hit)

    @staticmethod
    def join(parts: list[DetectionTally]) -> DetectionTally:
        """The tallies of several ranks as one."""
        joined = DetectionTally()
        for part in parts:
            joined.scores += part.scores
            joined.matched += part.matched
            joined.references += part.references
        return joined

    def f1_at(self, threshold: float) -> float:
        """F1 at IoU >= 0.5 of the detections scoring at least `threshold`."""
        scores, matched = np.asarray(self.scores), np.asarray(self.matched, dtype=bool)
        keep = scores >= threshold
        tp = int(matched[keep].sum())
        fp, fn = int(keep.sum()) - tp, self.references - tp
        return 2 * tp / max(1, 2 * tp + fp + fn)

    def best(self) -> tuple[float, float]:
        """(F1, threshold) of the best operating point on `SCORE_GRID` (lowest on ties)."""
        f1s = [self.f1_at(float(t)) for t in SCORE_GRID]
        k = int(np.argmax(f1s))
        return f1s[k], float(SCORE_GRID[k])


@dataclass
class ValidationSums:
    """Running sums of the validation scores over chips (added up over ranks as counts).

    Box-prompt mask IoU and Dice of every reference ship, the filled-box baseline, prompter
    centre precision and recall (centre score >= 0.3), and prompt-free detections as `detect`
    makes them (prompter proposals decoded into masks, scored by centre score x predicted
    IoU, duplicates suppressed), from which the operating point is chosen.
    """

    masks: float = 0.0
    iou: float = 0.0
    dice: float = 0.0
    box_iou: float = 0.0
    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0
    tally: DetectionTally = field(default_factory=DetectionTally)

    def add_chip(self, model: ShipSam, chip: TrainChip, embedding: torch.Tensor) -> None:
        """Score one chip from its (1, C, E, E) embedding."""
        dense, sam = model.dense_box, model.sam
        if len(chip.boxes):
            boxes = torch.from_numpy(chip.boxes).to(embedding.device)
            logits, _ = decode(sam, embedding, boxes=boxes, dense_box=dense, refiner=model.refiner)
            filled = filled_boxes(chip.boxes, chip.image.shape[-1])
            pred = (logits.float() > 0).cpu() & filled  # as `detect` keeps a box prompt's mask
            target = torch.from_numpy(chip.masks)
            inter = (pred & target).flatten(1).sum(1).float()
            union = (pred.flatten(1).sum(1) + target.flatten(1).sum(1)).clamp(min=1)
            self.masks += len(chip.boxes)
            self.iou += float(mask_iou(pred, target).double().sum())
            self.dice += float((2 * inter / union).double().sum())
            self.box_iou += float(mask_iou(filled, target).double().sum())
        outputs = model.prompter(embedding.float())
        found, centre = decode_boxes(
            outputs, model.heatmap_stride, model.chip_size, PROPOSAL_THRESHOLD
        )[0]
        tp, fp, fn = match_centres(found[centre >= 0.3], chip.boxes)
        self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn
        proposed = np.zeros((0, *chip.valid.shape), dtype=bool)
        scores = np.zeros(0, dtype=np.float32)
        if len(found):
            boxes = torch.from_numpy(found).to(embedding.device)
            logits, iou_pred = decode(
                sam, embedding, boxes=boxes, dense_box=dense, refiner=model.refiner
            )
            proposed = (logits.float() > 0).cpu().numpy() & chip.valid
            scores = centre * iou_pred.float().clamp(0, 1).cpu().numpy()
        self.tally.add_chip(proposed, scores, chip.masks)

    def counts(self) -> list[float]:
        """The numeric sums, in field order (for an all-reduce)."""
        return [self.masks, self.iou, self.dice, self.box_iou, self.tp, self.fp, self.fn]

    @staticmethod
    def from_counts(counts: list[float], tally: DetectionTally) -> ValidationSums:
        """Inverse of `counts`, with the joined detection tally."""
        masks, iou, dice, box_iou, tp, fp, fn = counts
        return ValidationSums(masks, iou, dice, box_iou, tp, fp, fn, tally)

    def metrics(self) -> dict[str, float]:
        """Means and ratios; ``val_score`` (mean of IoU and F1) picks the best model."""
        f1, threshold = self.tally.best()
        val_iou = self.iou / self.masks if self.masks else 0.0
        return {
            "val_iou": val_iou,
            "val_dice": self.dice / self.masks if self.masks else 0.0,
            "box_iou": self.box_iou / self.masks if self.masks else 0.0,
            "prompter_precision": self.tp / max(1, self.tp + self.fp),
            "prompter_recall": self.tp / max(1, self.tp + self.fn),
            "val_f1": f1,
            "score_threshold": threshold,
            "val_score": (val_iou + f1) / 2,
        }
