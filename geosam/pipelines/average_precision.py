"""COCO-style average precision of scored ship polygons: AP50 and AP[.50:.95].

F1 at one score threshold says how good one operating point is; average precision says how
well the scores rank ships above false alarms at every threshold. As in COCO: per IoU
threshold, predictions of all scenes are taken by descending score; each one matches the free
reference of its own scene with the highest IoU at or above the threshold (a true positive)
or is a false positive; precision is made monotone from the right and averaged at 101
evenly spaced recall levels. AP[.50:.95] averages AP over the IoU thresholds .50, .55, ... .95.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray

COCO_IOUS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2).tolist())


@dataclass(frozen=True)
class ScoredScene:
    """One scene's predictions and references, polygons in one CRS.

    Attributes:
        pred: (N,) predicted polygons.
        scores: (N,) their scores, higher is surer.
        truth: (M,) reference polygons.
    """

    pred: NDArray[np.object_]
    scores: NDArray[np.float64]
    truth: NDArray[np.object_]


def _ious(scene: ScoredScene) -> NDArray[np.float64]:
    """(N, M) IoU of every prediction with every reference (zero where they do not meet)."""
    out = np.zeros((len(scene.pred), len(scene.truth)))
    if out.size == 0:
        return out
    tree = shapely.STRtree(scene.truth)
    p, t = tree.query(scene.pred, predicate="intersects")
    inter = shapely.area(shapely.intersection(scene.pred[p], scene.truth[t]))
    union = shapely.area(scene.pred)[p] + shapely.area(scene.truth)[t] - inter
    out[p, t] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return out


def average_precision(scenes: list[ScoredScene], iou_threshold: float) -> float:
    """COCO AP at one IoU threshold over all scenes (0.0 when there is no reference)."""
    return float(np.mean(_precisions(scenes, [iou_threshold])[0]))


def coco_ap(scenes: list[ScoredScene]) -> tuple[float, float]:
    """(AP50, AP[.50:.95]) over all scenes."""
    per_threshold = [float(np.mean(p)) for p in _precisions(scenes, list(COCO_IOUS))]
    return per_threshold[0], float(np.mean(per_threshold))


def _precisions(scenes: list[ScoredScene], thresholds: list[float]) -> list[NDArray[np.float64]]:
    """Per IoU threshold, interpolated precision at the 101 COCO recall levels."""
    references = sum(len(s.truth) for s in scenes)
    ious = [_ious(s) for s in scenes]
    entries = [(float(sc), k, i) for k, s in enumerate(scenes) for i, sc in enumerate(s.scores)]
    entries.sort(key=lambda e: -e[0])  # stable: ties keep scene and row order
    levels = np.linspace(0, 1, 101)
    out = []
    for threshold in thresholds:
        free = [np.ones(len(s.truth), dtype=bool) for s in scenes]
        hits = np.zeros(len(entries), dtype=bool)
        for n, (_, k, i) in enumerate(entries):
            row = np.where(free[k] & (ious[k][i] >= threshold), ious[k][i], -1.0)
            if row.size and row.max() >= 0:
                free[k][int(row.argmax())] = False
                hits[n] = True
        if references == 0 or not entries:
            out.append(np.zeros(len(levels)))
            continue
        tp = np.cumsum(hits)
        recall = tp / references
        precision = tp / np.arange(1, len(entries) + 1)
        precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        at = np.searchsorted(recall, levels, side="left")
        out.append(
            np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0)
        )
    return out
