"""The detection operating point: one pass over validation detections scores every threshold."""

from __future__ import annotations

import numpy as np

from geosam.geometry.masks import suppress_duplicates
from geosam.pipelines.validation import SCORE_GRID, DetectionTally


def _brute_counts(masks, scores, truth, threshold):
    """Keep scores >= threshold, suppress duplicates, match greedily by score: TP, kept, refs."""
    keep = np.flatnonzero(scores >= threshold)
    kept = keep[suppress_duplicates(masks[keep], scores[keep], 0.5)] if len(keep) else keep
    free = np.ones(len(truth), bool)
    tp = 0
    for k in kept:
        inter = (masks[k] & truth).reshape(len(truth), -1).sum(1)
        union = (masks[k] | truth).reshape(len(truth), -1).sum(1)
        iou = np.where(free, inter / np.maximum(union, 1), -1)
        if iou.max() >= 0.5:
            free[int(iou.argmax())] = False
            tp += 1
    return tp, len(kept), len(truth)


def _chip(rng, size=48):
    truth = np.zeros((4, size, size), bool)
    for k in range(4):
        r, c = rng.integers(0, size - 10, 2)
        truth[k, r : r + 8, c : c + 6] = True
    masks = []
    for k in range(4):  # a near copy of each ship, a shifted one, and a false alarm
        masks.append(truth[k] ^ (rng.random((size, size)) < 0.02) & truth[k])
        masks.append(np.roll(truth[k], int(rng.integers(2, 6)), axis=1))
        blob = np.zeros((size, size), bool)
        r, c = rng.integers(0, size - 5, 2)
        blob[r : r + 4, c : c + 4] = True
        masks.append(blob)
    return np.stack(masks), rng.random(len(masks)).astype(np.float32), truth


def test_one_pass_equals_scoring_each_threshold_from_scratch():
    rng = np.random.default_rng(1)
    chips = [_chip(rng) for _ in range(5)]
    tally = DetectionTally()
    for masks, scores, truth in chips:
        tally.add_chip(masks, scores, truth)
    for threshold in SCORE_GRID:
        tp, kept, refs = np.sum([_brute_counts(*chip, threshold) for chip in chips], axis=0)
        assert np.isclose(tally.f1_at(float(threshold)), 2 * tp / max(1, kept + refs))


def test_best_threshold_drops_false_alarms_scored_below_the_ships():
    size = 32
    truth = np.zeros((2, size, size), bool)
    truth[0, 2:10, 2:8] = True
    truth[1, 20:28, 20:26] = True
    alarm = np.zeros((1, size, size), bool)
    alarm[0, 12:16, 12:16] = True
    masks = np.concatenate([truth, alarm])
    tally = DetectionTally()
    tally.add_chip(masks, np.array([0.9, 0.8, 0.3], np.float32), truth)
    f1, threshold = tally.best()
    assert f1 == 1.0 and 0.3 < threshold <= 0.8
