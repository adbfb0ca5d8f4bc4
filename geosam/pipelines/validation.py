"""Validation scores that need no model: the filled-box baseline and prompter centre matches."""

from __future__ import annotations

import numpy as np
import torch


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
