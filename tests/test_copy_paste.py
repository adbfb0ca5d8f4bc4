"""Copy-paste augmentation: ships go onto surroundings like their own, with box and mask."""

from __future__ import annotations

import numpy as np
import pytest

from geosam.data.copy_paste import cut_ships, paste_ships

SIZE = 64


def water_and_land(seed: int = 0) -> np.ndarray:
    """(3, 64, 64) uint8: smooth dark water on the left half, bright noisy roofs on the right."""
    rng = np.random.default_rng(seed)
    image = np.empty((3, SIZE, SIZE), dtype=np.uint8)
    image[:, :, : SIZE // 2] = 30 + rng.integers(0, 3, size=(3, SIZE, SIZE // 2))
    image[:, :, SIZE // 2 :] = rng.integers(60, 250, size=(3, SIZE, SIZE // 2))
    return image


def chip_with_ship(box: tuple[int, int, int, int], image: np.ndarray) -> tuple:
    """The image with a bright ship filling `box` (x0, y0, x1, y1 pixel edges)."""
    x0, y0, x1, y1 = box
    image = image.copy()
    mask = np.zeros((1, SIZE, SIZE), dtype=bool)
    mask[0, y0:y1, x0:x1] = True
    image[:, y0:y1, x0:x1] = 200
    boxes = np.array([box], dtype=np.float32)
    return image, np.ones((SIZE, SIZE), dtype=bool), boxes, mask


def test_a_ship_on_water_is_cut_with_its_surroundings() -> None:
    chip = chip_with_ship((8, 20, 16, 24), water_and_land())
    (cutout,) = cut_ships(chip)
    h, w = cutout.ship.shape
    assert (h, w) == (4 + 2 * 3, 8 + 2 * 3)  # the box grown by 3 px (the smallest margin)
    assert cutout.ship.sum() == 32 and (cutout.pixels[:, cutout.ship] == 200).all()
    assert (cutout.around == ~cutout.ship).all()
    assert abs(cutout.colour[0].mean() - 31) < 1.5


def test_ships_on_busy_ground_or_at_the_edge_are_not_cut() -> None:
    on_roofs = chip_with_ship((40, 20, 48, 24), water_and_land())
    at_edge = chip_with_ship((0, 20, 8, 24), water_and_land())
    assert cut_ships(on_roofs) == []
    assert cut_ships(at_edge) == []


def test_pasted_ships_land_on_water_with_a_box_that_bounds_their_mask() -> None:
    source = chip_with_ship((8, 20, 16, 24), water_and_land(0))
    cutouts = cut_ships(source)
    target = chip_with_ship((4, 4, 10, 8), water_and_land(1))
    before = [a.copy() for a in target]
    image, _, boxes, masks = paste_ships(target, cutouts, 3, np.random.default_rng(0))
    for a, b in zip(before, target, strict=True):
        assert (a == b).all()  # the input is left as it was
    assert len(boxes) == len(masks) > 1
    assert (boxes[0] == target[2][0]).all() and (masks[0] == target[3][0]).all()
    for box, mask in zip(boxes[1:], masks[1:], strict=True):
        rows, cols = np.nonzero(mask)
        assert list(box) == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        assert cols.max() < SIZE // 2  # on the water half, never on the roofs
        assert (image[:, mask] == 200).all()
        assert not (mask & target[3][0]).any()
    assert not (masks[1:].sum(axis=0) > 1).any()  # pastes never overlap each other


def test_pastes_are_fixed_by_the_seed_and_skipped_without_a_match() -> None:
    cutouts = cut_ships(chip_with_ship((8, 20, 16, 24), water_and_land(0)))
    target = chip_with_ship((4, 4, 10, 8), water_and_land(1))
    first = paste_ships(target, cutouts, 2, np.random.default_rng(5))
    again = paste_ships(target, cutouts, 2, np.random.default_rng(5))
    for a, b in zip(first, again, strict=True):
        assert (a == b).all()
    land = np.full((3, SIZE, SIZE), 240, dtype=np.uint8)
    nowhere = (
        land,
        np.ones((SIZE, SIZE), bool),
        np.zeros((0, 4), np.float32),
        np.zeros((0, SIZE, SIZE), bool),
    )
    assert paste_ships(nowhere, cutouts, 3, np.random.default_rng(0)) is nowhere


@pytest.mark.parametrize("count", [0, 2])
def test_no_cutouts_or_no_count_returns_the_chip(count: int) -> None:
    target = chip_with_ship((4, 4, 10, 8), water_and_land(1))
    cutouts = [] if count else cut_ships(chip_with_ship((8, 20, 16, 24), water_and_land(0)))
    assert paste_ships(target, cutouts, count, np.random.default_rng(0)) is target


def test_training_views_paste_only_training_ships_of_the_same_scene() -> None:
    import torch
    from affine import Affine

    from geosam.geometry.grid import Chip
    from geosam.pipelines.distributed import Ranks
    from geosam.pipelines.training_data import TrainChip
    from geosam.pipelines.training_views import ChipViews, View

    def train_chip(scene: str, brightness: int) -> TrainChip:
        image, valid, boxes, masks = chip_with_ship((8, 20, 16, 24), water_and_land())
        image[:, masks[0]] = brightness
        return TrainChip(
            scene, Chip(0, 0, SIZE, SIZE, SIZE, Affine.identity()), image, valid, boxes, masks
        )

    chips = [train_chip("a", 200), train_chip("a", 150), train_chip("b", 100)]
    views = ChipViews(chips, 8, None, Ranks(), torch.device("cpu"), 3, cut_from=[0, 2])  # type: ignore[arg-type]
    pasted = [views.view(1, View(0, 0, 0, seed)) for seed in range(1, 30)]
    extra = [mask for _, _, _, masks in pasted for mask in masks[1:]]
    assert extra, "no ship was pasted onto the water of chip 1"
    for image, _, _, masks in pasted:
        for mask in masks[1:]:  # only chip 0's ship (200): chip 1 validates, chip 2 is scene b
            assert (image[:, mask] == 200).all()
    first, again = views.view(1, View(3, 2, -1, 7)), views.view(1, View(3, 2, -1, 7))
    for a, b in zip(first, again, strict=True):
        assert (a == b).all()
    assert len(views.view(1, View(0))[2]) == 1  # no seed, no paste
