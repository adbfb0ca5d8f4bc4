"""Validation scores: the filled-box baseline, centre matches, the detection operating point.

The operating point is the detection score threshold with the best F1 on validation chips.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from geosam.geometry.masks import suppress_duplicates


def filled_boxes(boxes: np.ndarray, size: int) -> torch.Tensor:
    """(N, S, S) bool masks of filled XYXY boxes rounded to pixel edges: the naive baseline."""
    out = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes)):
        rows = slice(round(float(y0)), round(float(y1)))
        out[k, rows, round(float(x0)) : round(float(x1))] = True
    return out


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
