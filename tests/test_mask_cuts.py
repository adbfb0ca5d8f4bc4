"""Mask cuts: chosen per sensor on validation ships, stored in model.pt, applied by detect."""

import pytest
import torch

from geosam.pipelines.detect_scene import DetectSettings
from geosam.pipelines.mask_cuts import MASK_CUTS, MaskCutTally
from geosam.pipelines.validation import ValidationSums, operating_point


def ships_with_logits(ramp_at: float, n: int = 3, size: int = 32) -> tuple[torch.Tensor, ...]:
    """Logits that fall off from each ship's centre, and true masks where they are > ramp_at.

    The cut that reproduces the truth is `ramp_at`: a model that draws ships too small (true
    pixels at negative logits) or too large (at positive ones).
    """
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    logits, truth = [], []
    for k in range(n):
        cx, cy = 10 + 4 * k, 16
        fall = 6.0 - ((xx - cx) ** 2 + (yy - cy) ** 2).float().sqrt()
        logits.append(fall)
        truth.append(fall > ramp_at)
    inside = torch.ones(n, size, size, dtype=torch.bool)
    return torch.stack(logits), inside, torch.stack(truth)


def test_each_sensor_gets_the_cut_that_fits_its_ships():
    tally = MaskCutTally()
    tally.add(*ships_with_logits(-2.0), group=10.0)  # masks drawn too small: cut lower
    tally.add(*ships_with_logits(2.0), group=0.25)  # too large: cut higher
    cuts = tally.best_cuts()
    assert cuts == {10.0: -2.0, 0.25: 2.0}
    iou, dice = tally.means(cuts)
    assert iou == pytest.approx(1.0) and dice == pytest.approx(1.0)
    at_zero = tally.means({10.0: 0.0, 0.25: 0.0})
    assert at_zero[0] < 0.9  # SAM's own cut fits neither
    joined = MaskCutTally.join([tally, tally])
    assert joined.best_cuts() == cuts and joined.masks == {10.0: 6, 0.25: 6}


def test_cut_zero_wins_a_tie():
    logits = torch.full((1, 8, 8), 10.0)  # every candidate cut gives the same mask
    truth = torch.ones(1, 8, 8, dtype=torch.bool)
    tally = MaskCutTally()
    tally.add(logits, truth, truth, group=None)
    assert tally.best_cuts() == {None: 0.0}
    assert 0.0 in MASK_CUTS


def test_validation_metrics_and_the_operating_point_keep_a_cut_per_sensor():
    sums = ValidationSums()
    sums.cuts.add(*ships_with_logits(-2.0), group=10.0)
    sums.cuts.add(*ships_with_logits(2.0), group=0.2556)
    metrics = sums.metrics()
    assert metrics["mask_cut@10"] == -2.0 and metrics["mask_cut@0.2556"] == 2.0
    assert metrics["val_iou"] == pytest.approx(1.0)
    point = operating_point(metrics, 150.0)
    assert point["mask_cut_by_pixel_size"] == [[0.2556, 2.0], [10.0, -2.0]]
    meta = {"operating_point": point}
    assert DetectSettings().for_model(meta, 10.0).mask_cut == -2.0
    assert DetectSettings().for_model(meta, 0.3).mask_cut == 2.0
    assert DetectSettings().for_model(meta, None).mask_cut == point["mask_cut"]
    assert DetectSettings(mask_cut=0.5).for_model(meta, 10.0).mask_cut == 0.5
    assert DetectSettings().for_model({}).mask_cut == 0.0  # model files from before cuts
