"""Fine-tuning losses: class-balanced focal, Dice, mask IoU and the heatmap focal loss."""

import pytest
import torch
import torch.nn.functional as F

from geosam.model.losses import balanced_focal_loss, dice_loss, heatmap_focal_loss, mask_iou

SIZE = 50


def ship_target(rows=slice(20, 25), cols=slice(20, 25)):
    """(1, 50, 50) float target: a 5 x 5 ship, 1 % of the pixels."""
    target = torch.zeros(1, SIZE, SIZE)
    target[0, rows, cols] = 1.0
    return target


def logits_for(mask, strength=6.0):
    """Confident logits predicting `mask` (float 0/1)."""
    return (mask * 2 - 1) * strength


def test_focal_loss_is_lower_for_the_right_mask_than_a_wrong_one():
    target = ship_target()
    right = balanced_focal_loss(logits_for(target), target)
    shifted = balanced_focal_loss(logits_for(ship_target(slice(30, 35))), target)
    unsure = balanced_focal_loss(torch.zeros(1, SIZE, SIZE), target)
    assert right.shape == (1,)
    assert right < 1e-3 < unsure < shifted


def test_focal_loss_weighs_ship_and_background_pixels_equally():
    target = ship_target()  # 1 % ship
    all_water = torch.full((1, SIZE, SIZE), -6.0)
    all_ship = torch.full((1, SIZE, SIZE), 6.0)
    water = balanced_focal_loss(all_water, target)
    ship = balanced_focal_loss(all_ship, target)
    # Missing every ship pixel costs as much as flooding every water pixel...
    assert water.item() == pytest.approx(ship.item(), rel=1e-5)
    assert water > 1.0
    # ...whereas plain mean BCE lets "everything is water" win by two orders of magnitude.
    bce_water = F.binary_cross_entropy_with_logits(all_water, target)
    bce_ship = F.binary_cross_entropy_with_logits(all_ship, target)
    assert bce_water < 0.1 and bce_ship > 50 * bce_water
    assert water > 10 * bce_water


def test_focal_loss_per_mask_and_with_an_empty_target():
    target = torch.stack([ship_target()[0], torch.zeros(SIZE, SIZE)])
    right = balanced_focal_loss(logits_for(target), target)
    assert right.shape == (2,) and torch.isfinite(right).all() and (right < 1e-3).all()
    # A background prompt answered with a ship is penalised by the background term only.
    flooded = balanced_focal_loss(torch.full((2, SIZE, SIZE), 6.0), target)
    assert flooded[1] > 1.0
    assert flooded[1].item() == pytest.approx(2 * flooded[0].item(), rel=1e-4)


def test_focal_loss_gradient_reaches_the_ship_pixels():
    target = ship_target()
    logits = torch.full((1, SIZE, SIZE), -6.0, requires_grad=True)
    balanced_focal_loss(logits, target).sum().backward()
    grad = logits.grad[0]
    assert (grad[20:25, 20:25] < 0).all()  # pushes the ship up
    assert grad[20:25, 20:25].abs().sum() > 100 * grad[:10].abs().sum()


def test_dice_loss_perfect_and_disjoint():
    a = ship_target()
    b = ship_target(slice(30, 35))
    perfect = dice_loss(logits_for(a, 20.0), a)
    disjoint = dice_loss(logits_for(b, 20.0), a)
    half = dice_loss(logits_for(ship_target(slice(20, 25), slice(22, 27)), 20.0), a)
    assert perfect.shape == (1,)
    assert perfect.item() == pytest.approx(0.0, abs=1e-3)
    assert disjoint.item() == pytest.approx(1.0, abs=0.03)  # 1 - 1/51 with the smoothing
    assert half.item() == pytest.approx(1 - (2 * 15 + 1) / (50 + 1), abs=1e-3)
    # Empty target and empty prediction agree perfectly.
    assert dice_loss(torch.full((1, 8, 8), -20.0), torch.zeros(1, 8, 8)).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_mask_iou_on_hand_made_masks():
    pred = torch.zeros(4, 4, 4, dtype=torch.bool)
    target = torch.zeros(4, 4, 4, dtype=torch.bool)
    pred[0, :2, :2] = target[0, :2, :2] = True  # equal: 1
    pred[1, :2, :2] = True  # 4 px, of which 2 overlap a 2 x 2 shifted by one column: 2 / 6
    target[1, :2, 1:3] = True
    target[2, 0, 0] = True  # empty prediction of a ship: 0
    # mask 3: both empty: 1
    iou = mask_iou(pred, target)
    assert iou.dtype == torch.float32
    assert iou.tolist() == pytest.approx([1.0, 2 / 6, 0.0, 1.0])


def test_heatmap_focal_loss_is_lowest_at_the_right_peak():
    target = torch.zeros(1, 1, 8, 8)
    target[0, 0, 3, 4] = 1.0
    target[0, 0, 3, 3] = target[0, 0, 3, 5] = 0.6  # Gaussian shoulders

    def peak_at(row, col):
        logits = torch.full((1, 1, 8, 8), -8.0)
        logits[0, 0, row, col] = 8.0
        return heatmap_focal_loss(logits, target)

    right, shoulder, far = peak_at(3, 4), peak_at(3, 5), peak_at(6, 0)
    assert right < 1e-2
    assert right < shoulder < far
    # No peak in the target: the loss is the background term, not divided by zero.
    empty = heatmap_focal_loss(torch.full((1, 1, 8, 8), -8.0), torch.zeros(1, 1, 8, 8))
    assert torch.isfinite(empty) and empty < 1e-3
