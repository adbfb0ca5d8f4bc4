"""Flips and quarter turns move chip, valid, ship masks, boxes and prompter targets together."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geosam.data.augment import (
    VIEWS,
    jitter_colours,
    shift_chip,
    view_array,
    view_boxes,
    view_chip,
)
from geosam.geometry.masks import crop_masks
from geosam.model.prompter import encode_targets

SIZE = 64


def _chip() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A chip with an L-shaped ship and a small square one, off every symmetry axis."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (3, SIZE, SIZE), dtype=np.uint8)
    valid = np.ones((SIZE, SIZE), dtype=bool)
    valid[:, 56:] = False  # a nodata strip on the east
    masks = np.zeros((2, SIZE, SIZE), dtype=bool)
    masks[0, 5:25, 10:14] = True
    masks[0, 21:25, 10:30] = True  # the foot of the L
    masks[1, 40:46, 33:39] = True
    boxes = np.array([[10, 5, 30, 25], [33, 40, 39, 46]], dtype=np.float32)
    return image, valid, boxes, masks


@pytest.mark.parametrize("view", range(VIEWS))
def test_each_box_still_bounds_its_mask(view):
    image, valid, boxes, masks = _chip()
    _, _, moved_boxes, moved_masks = view_chip((image, valid, boxes, masks), view)
    for box, crop in zip(moved_boxes, crop_masks(moved_masks), strict=True):
        r0, c0, r1, c1 = crop.box
        assert box.tolist() == [c0, r0, c1, r1]


@pytest.mark.parametrize("view", range(VIEWS))
def test_pixels_masks_and_valid_move_together(view):
    image, valid, boxes, masks = _chip()
    moved_image, moved_valid, _, moved_masks = view_chip((image, valid, boxes, masks), view)
    # The ship's pixel values and the nodata strip travel with the masks.
    for k in range(len(masks)):
        before = np.sort(image[:, masks[k]], axis=1)
        after = np.sort(moved_image[:, moved_masks[k]], axis=1)
        assert np.array_equal(before, after)
    assert moved_valid.sum() == valid.sum()
    assert np.array_equal(moved_valid, view_array(valid, view))
    assert moved_image.flags["C_CONTIGUOUS"] and moved_image.dtype == np.uint8


def test_the_eight_views_are_distinct_and_view_zero_is_the_chip():
    image, valid, boxes, masks = _chip()
    seen = {view_array(masks[0], v).tobytes() for v in range(VIEWS)}
    assert len(seen) == VIEWS
    same = view_chip((image, valid, boxes, masks), 0)
    assert same[0] is image and same[2] is boxes


@pytest.mark.parametrize("view", range(VIEWS))
def test_prompter_targets_peak_on_the_moved_ship(view):
    image, valid, boxes, masks = _chip()
    _, _, moved_boxes, _ = view_chip((image, valid, boxes, masks), view)
    stride = 8
    heat, _, _, where = encode_targets([moved_boxes], SIZE // stride, stride)
    rows, cols = np.nonzero(where[0, 0].numpy() == 1)
    assert len(rows) == 2 and torch.all(heat[0, 0, rows, cols] == 1)
    # Each centre cell lies under its ship's moved box.
    for box in moved_boxes:
        cx, cy = (box[0] + box[2]) / 2 / stride, (box[1] + box[3]) / 2 / stride
        assert any(int(cx) == c and int(cy) == r for r, c in zip(rows, cols, strict=True))


def test_boxes_round_trip_through_four_quarter_turns():
    boxes = np.array([[1.5, 2.0, 7.25, 30.0]], dtype=np.float32)
    moved = boxes
    for _ in range(4):
        moved = view_boxes(moved, SIZE, 1)
    assert np.allclose(moved, boxes)


@pytest.mark.parametrize(("dx", "dy"), [(5, -3), (-12, 7), (0, 9), (-40, -40)])
def test_a_shifted_chip_keeps_boxes_on_masks_and_marks_the_uncovered_band(dx, dy):
    image, valid, boxes, masks = _chip()
    moved_image, moved_valid, moved_boxes, moved_masks = shift_chip(
        (image, valid, boxes, masks), dx, dy
    )
    for box, mask, crop in zip(moved_boxes, moved_masks, crop_masks(moved_masks), strict=True):
        if not mask.any():  # moved off the chip: nothing to prompt, no area
            assert (box[2] - box[0]) * (box[3] - box[1]) == 0
            continue
        r0, c0, r1, c1 = crop.box
        assert box.tolist() == [c0, r0, c1, r1]  # these ships are full boxes' extents
    # The pixels moved with the masks; the band the content left is nodata.
    assert np.array_equal(moved_image[:, 20, 20], image[:, 20 - dy, 20 - dx])
    band = (slice(0, dy), slice(None)) if dy > 0 else (slice(SIZE + dy, SIZE), slice(None))
    assert not moved_valid[band].any() and not moved_image[(slice(None), *band)].any()


def test_colour_jitter_changes_pixels_only_and_keeps_nodata_black():
    image, valid, _, _ = _chip()
    image[:, ~valid] = 0
    seen = [jitter_colours(image, valid, np.random.default_rng(seed)) for seed in (1, 2, 2)]
    assert np.array_equal(seen[1], seen[2])  # a seed gives one view
    assert not np.array_equal(seen[0], seen[1])
    for out in seen:
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert not out[:, ~valid].any()
        # A jitter is monotonic per band: brighter pixels of a band stay brighter or equal.
        for band in range(3):
            order = np.argsort(image[band][valid], kind="stable")
            assert np.all(np.diff(out[band][valid][order].astype(int)) >= 0)
        assert np.abs(out[:, valid].astype(int) - image[:, valid]).mean() > 1
