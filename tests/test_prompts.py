"""Training prompts: jittered boxes, points on ships, background points with empty targets."""

import numpy as np
import pytest

from geosam.data.prompts import PromptSettings, jitter_boxes, sample_prompts

SIZE = 64


def random_boxes(rng, n=200, size=SIZE, min_side=2.0):
    """(n, 4) float32 XYXY boxes with sides >= min_side, some touching the chip edges."""
    x0 = rng.uniform(0, size - min_side, n)
    y0 = rng.uniform(0, size - min_side, n)
    x1 = np.minimum(size, x0 + rng.uniform(min_side, size / 2, n))
    y1 = np.minimum(size, y0 + rng.uniform(min_side, size / 2, n))
    boxes = np.stack([x0, y0, x1, y1], axis=1)
    boxes[:10, :2] = 0  # on the top-left edges
    boxes[10:20, 2:] = size  # on the bottom-right edges
    return boxes.astype(np.float32)


@pytest.mark.parametrize("jitter", [0.05, 0.2, 0.4])
def test_jittered_boxes_stay_valid_on_the_chip_and_move_at_most_jitter_x_side(jitter):
    boxes = random_boxes(np.random.default_rng(1))
    out = jitter_boxes(boxes, jitter, SIZE, np.random.default_rng(2))
    assert out.dtype == np.float32 and out.shape == boxes.shape
    assert (out[:, 0] < out[:, 2]).all() and (out[:, 1] < out[:, 3]).all()
    assert (out >= 0).all() and (out <= SIZE).all()
    sides = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    assert (np.abs(out - boxes) <= jitter * sides + 1e-4).all()
    assert not np.allclose(out, boxes)  # it does move them


def test_jitter_keeps_a_one_pixel_box_valid():
    boxes = np.array([[10, 10, 11, 11], [63, 0, 64, 1]], np.float32)
    out = jitter_boxes(boxes, 0.5, SIZE, np.random.default_rng(0))
    assert (out[:, 0] < out[:, 2]).all() and (out[:, 1] < out[:, 3]).all()
    assert (out >= 0).all() and (out <= SIZE).all()


def test_zero_jitter_is_the_identity_and_returns_a_copy():
    boxes = random_boxes(np.random.default_rng(3), n=20)
    out = jitter_boxes(boxes, 0.0, SIZE, np.random.default_rng(0))
    np.testing.assert_array_equal(out, boxes)
    assert out is not boxes
    assert jitter_boxes(
        np.zeros((0, 4), np.float32), 0.1, SIZE, np.random.default_rng(0)
    ).shape == (
        0,
        4,
    )


def ships_chip(n_ships, size=SIZE):
    """Boxes and masks of `n_ships` rectangular ships 6 x 3 px in a row grid, all valid."""
    boxes, masks = [], []
    for k in range(n_ships):
        col, row = 2 + (k % 6) * 10, 2 + (k // 6) * 8
        mask = np.zeros((size, size), bool)
        mask[row : row + 3, col : col + 6] = True
        masks.append(mask)
        boxes.append([col, row, col + 6, row + 3])
    boxes_arr = np.array(boxes, np.float32).reshape(-1, 4)
    masks_arr = np.array(masks, bool).reshape(-1, size, size)
    return boxes_arr, masks_arr


def test_prompt_counts_kinds_and_targets():
    boxes, masks = ships_chip(12)
    valid = np.ones((SIZE, SIZE), bool)
    valid[:, 48:] = False  # the right quarter is nodata
    settings = PromptSettings(
        ships_per_chip=5, box_jitter=0.1, point_share=0.5, background_points=3
    )
    seen_points = seen_boxes = 0
    for seed in range(20):
        batch = sample_prompts(boxes, masks, valid, settings, np.random.default_rng(seed))
        assert len(batch) == 5 + 3
        assert batch.boxes.shape == (8, 4) and batch.points.shape == (8, 2)
        assert batch.targets.shape == (8, SIZE, SIZE) and batch.targets.dtype == bool
        assert batch.boxes.dtype == batch.points.dtype == np.float32
        is_box = ~np.isnan(batch.boxes).any(axis=1)
        is_point = ~np.isnan(batch.points).any(axis=1)
        # Each row is exactly one kind, and a NaN row is NaN throughout.
        assert (is_box ^ is_point).all()
        assert np.isnan(batch.boxes[~is_box]).all() and np.isnan(batch.points[~is_point]).all()
        ship_rows, background_rows = np.arange(5), np.arange(5, 8)
        assert not is_box[background_rows].any()
        # Ship targets are distinct ships of the chip.
        ids = [int(np.flatnonzero((masks == t).all(axis=(1, 2)))[0]) for t in batch.targets[:5]]
        assert len(set(ids)) == 5
        for row, i in zip(ship_rows, ids, strict=True):
            if is_point[row]:
                seen_points += 1
                x, y = batch.points[row]
                assert masks[i][int(y), int(x)], "point prompt off its own ship"
            else:
                seen_boxes += 1
                side = np.concatenate([boxes[i, 2:] - boxes[i, :2]] * 2)
                assert (np.abs(batch.boxes[row] - boxes[i]) <= 0.1 * side + 1e-4).all()
        any_ship = masks.any(axis=0)
        for row in background_rows:
            x, y = batch.points[row]
            assert not any_ship[int(y), int(x)] and valid[int(y), int(x)]
            assert not batch.targets[row].any()
    assert seen_points > 0 and seen_boxes > 0  # both kinds occur at point_share 0.5


def test_fewer_ships_than_ships_per_chip_prompts_each_once():
    boxes, masks = ships_chip(3)
    settings = PromptSettings(ships_per_chip=8, point_share=0.0, background_points=2)
    batch = sample_prompts(
        boxes, masks, np.ones((SIZE, SIZE), bool), settings, np.random.default_rng(0)
    )
    assert len(batch) == 3 + 2
    assert sorted(int(t.sum()) for t in batch.targets[:3]) == [18, 18, 18]
    assert not np.isnan(batch.boxes[:3]).any()


def test_a_ship_with_no_pixel_on_the_chip_is_never_prompted():
    boxes, masks = ships_chip(2)
    masks[1] = False
    settings = PromptSettings(ships_per_chip=8, background_points=0)
    batch = sample_prompts(
        boxes, masks, np.ones((SIZE, SIZE), bool), settings, np.random.default_rng(0)
    )
    assert len(batch) == 1
    np.testing.assert_array_equal(batch.targets[0], masks[0])


def test_same_seed_same_prompts_other_seed_other_prompts():
    boxes, masks = ships_chip(10)
    valid = np.ones((SIZE, SIZE), bool)
    settings = PromptSettings()

    def draw(seed):
        return sample_prompts(boxes, masks, valid, settings, np.random.default_rng(seed))

    a, b, c = draw(7), draw(7), draw(8)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert not (
        np.array_equal(a.boxes, c.boxes, equal_nan=True)
        and np.array_equal(a.points, c.points, equal_nan=True)
    )


def test_a_chip_without_ships_gives_only_background_points():
    valid = np.zeros((SIZE, SIZE), bool)
    valid[:20, :20] = True
    settings = PromptSettings(background_points=4)
    batch = sample_prompts(
        np.zeros((0, 4), np.float32),
        np.zeros((0, SIZE, SIZE), bool),
        valid,
        settings,
        np.random.default_rng(0),
    )
    assert len(batch) == 4
    assert np.isnan(batch.boxes).all() and not np.isnan(batch.points).any()
    assert (batch.points < 20).all()  # inside the valid corner
    assert not batch.targets.any()


def test_a_chip_without_ships_or_valid_pixels_gives_an_empty_batch():
    batch = sample_prompts(
        np.zeros((0, 4), np.float32),
        np.zeros((0, SIZE, SIZE), bool),
        np.zeros((SIZE, SIZE), bool),
        PromptSettings(),
        np.random.default_rng(0),
    )
    assert len(batch) == 0
    assert batch.boxes.shape == (0, 4) and batch.points.shape == (0, 2)
    assert batch.targets.shape == (0, SIZE, SIZE)
