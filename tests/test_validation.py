"""The detection operating point: one pass over validation detections scores every threshold."""

from __future__ import annotations

import numpy as np

from geosam.geometry.masks import suppress_duplicates
from geosam.pipelines.validation import MATCH_IOUS, SCORE_GRID, DetectionTally


def _brute_counts(masks, scores, truth, threshold, match):
    """Keep scores >= threshold, suppress duplicates, match greedily by score: TP, kept, refs."""
    keep = np.flatnonzero(scores >= threshold)
    kept = keep[suppress_duplicates(masks[keep], scores[keep], 0.5)] if len(keep) else keep
    free = np.ones(len(truth), bool)
    tp = 0
    for k in kept:
        inter = (masks[k] & truth).reshape(len(truth), -1).sum(1)
        union = (masks[k] | truth).reshape(len(truth), -1).sum(1)
        iou = np.where(free, inter / np.maximum(union, 1), -1)
        if iou.max() >= match:
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
    """At every threshold and match IoU, the one-pass tally counts what scoring anew does."""
    rng = np.random.default_rng(1)
    chips = [_chip(rng) for _ in range(5)]
    tally = DetectionTally()
    for masks, scores, truth in chips:
        tally.add_chip(masks, scores, truth)
    for threshold in SCORE_GRID:
        f1s = []
        for match in MATCH_IOUS:
            counts = [_brute_counts(*chip, threshold, match) for chip in chips]
            tp, kept, refs = np.sum(counts, axis=0)
            assert tally.counts_at(float(threshold), match) == (tp, kept - tp, refs - tp)
            f1s.append(2 * tp / max(1, kept + refs))
        assert np.isclose(tally.f1_at(float(threshold)), np.mean(f1s))


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


def _scored_ships(tally, group, ship_scores, alarm_scores, size=32):
    """One chip of `group`: a perfect mask per ship score and a false alarm per alarm score."""
    n = len(ship_scores)
    truth = np.zeros((n, size, size), bool)
    for k in range(n):
        truth[k, 2 * k : 2 * k + 2, :4] = True
    alarms = np.zeros((len(alarm_scores), size, size), bool)
    for k in range(len(alarm_scores)):
        alarms[k, 2 * k : 2 * k + 2, 20:24] = True
    scores = np.array([*ship_scores, *alarm_scores], np.float32)
    tally.add_chip(np.concatenate([truth, alarms]), scores, truth, group)


def test_each_pixel_size_gets_the_threshold_that_suits_its_scores():
    """A sensor whose ships score low keeps them, another's alarms at that score are dropped."""
    tally = DetectionTally()
    _scored_ships(tally, 0.25, [0.9, 0.8, 0.7], [0.3, 0.2])  # marina-like: alarms at 0.2-0.3
    _scored_ships(tally, 10.0, [0.2, 0.2, 0.15], [0.05])  # port-like: ships at 0.15-0.2
    chosen = tally.group_thresholds()
    assert 0.3 < chosen[0.25] <= 0.7 and 0.05 < chosen[10.0] <= 0.15
    assert tally.f1_at(chosen) == 1.0
    assert tally.f1_at(chosen) > tally.best()[0]  # no common threshold does as well
    joined = DetectionTally.join([tally, tally])
    assert joined.group_thresholds() == chosen and joined.references == {0.25: 6, 10.0: 6}


def test_metrics_name_each_pixel_size_threshold_and_the_operating_point_keeps_them():
    from geosam.pipelines.validation import (
        ValidationSums,
        operating_point,
        thresholds_by_pixel_size,
    )

    sums = ValidationSums()
    _scored_ships(sums.tally, 0.2556, [0.9, 0.8], [0.3])
    _scored_ships(sums.tally, 10.0, [0.2, 0.15], [0.05])
    metrics = sums.metrics()
    assert thresholds_by_pixel_size(metrics) == [(0.2556, 0.35), (10.0, 0.1)]
    assert metrics["val_f1"] == 1.0
    point = operating_point(metrics, 150.0)
    assert point["min_score_by_pixel_size"] == [[0.2556, 0.35], [10.0, 0.1]]
    assert point["min_score"] == metrics["score_threshold"]
    one_sensor = ValidationSums()
    _scored_ships(one_sensor.tally, 10.0, [0.2, 0.15], [0.05])
    assert "min_score_by_pixel_size" not in operating_point(one_sensor.metrics(), 150.0)
