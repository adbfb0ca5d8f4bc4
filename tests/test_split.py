"""Spatial train/validation split: eastmost chips validate, overlapping chips never leak."""

import numpy as np
import pytest
from affine import Affine

from geosam.data.split import SplitChip, spatial_split
from geosam.geometry.grid import chip_grid

# 5 columns x 2 rows of 64 px chips overlapping by 16 px: columns start at 0, 48, ..., 192.
WIDTH, HEIGHT, SIZE, OVERLAP = 256, 112, 64, 16
COLS = [0, 48, 96, 144, 192]


def grid_chips():
    return chip_grid(WIDTH, HEIGHT, Affine.identity(), SIZE, OVERLAP)


def grid(scene="a", ships=None):
    """SplitChips of the grid; `ships(chip)` gives each chip's ship count (default 1)."""
    ships = ships or (lambda c: 1)
    return [SplitChip(scene, c, ships(c)) for c in grid_chips()]


def overlaps(a, b):
    return (
        a.col_off < b.col_off + b.size
        and b.col_off < a.col_off + a.size
        and a.row_off < b.row_off + b.size
        and b.row_off < a.row_off + a.size
    )


def positions(chips, indices):
    return {(chips[i].scene, chips[i].chip.col_off, chips[i].chip.row_off) for i in indices}


def test_eastmost_chips_validate_and_their_neighbours_are_left_out():
    chips = grid()
    train, val, fell_back = spatial_split(chips, val_fraction=0.2)
    assert not fell_back
    # 10 ships, 2 needed: the two chips of the east column.
    assert positions(chips, val) == {("a", 192, 0), ("a", 192, 48)}
    # Column 144 overlaps column 192, so it is in neither set; the rest trains.
    assert positions(chips, train) == {("a", c, r) for c in (0, 48, 96) for r in (0, 48)}
    assert train == sorted(train) and val == sorted(val)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.4])
def test_validation_is_east_of_training_holds_the_fraction_and_never_overlaps(fraction):
    splits = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        counts = {(c.col_off, c.row_off): int(rng.integers(0, 4)) for c in grid_chips()}
        counts[(0, 0)] = counts[(0, 48)] = 3  # the west keeps ships to train on
        chips = grid(ships=lambda c, counts=counts: counts[(c.col_off, c.row_off)])
        train, val, fell_back = spatial_split(chips, fraction)
        annotated = [i for i, c in enumerate(chips) if c.ships]
        if fell_back:  # validation reached the west column, whose neighbours hold all ships
            assert val == annotated and train == list(range(len(chips)))
            continue
        splits += 1
        assert not set(train) & set(val)
        assert set(val) <= set(annotated)
        total = sum(c.ships for c in chips)
        assert sum(chips[v].ships for v in val) >= fraction * total
        annotated_train = [t for t in train if chips[t].ships > 0]
        assert annotated_train
        assert min(chips[v].chip.col_off for v in val) >= max(
            chips[t].chip.col_off for t in annotated_train
        )
        for t in train:
            for v in val:
                assert not overlaps(chips[t].chip, chips[v].chip)
        # Every chip not overlapping validation trains, with or without ships.
        left_out = set(range(len(chips))) - set(train) - set(val)
        for i in left_out:
            assert any(overlaps(chips[i].chip, chips[v].chip) for v in val)
    assert splits >= 6, splits


def test_validation_stops_once_the_fraction_is_reached():
    # The east column holds 9 of 10 ships: one chip of it is enough for a fraction of 0.5.
    counts = {(192, 0): 8, (192, 48): 1, (0, 0): 1}
    chips = grid(ships=lambda c: counts.get((c.col_off, c.row_off), 0))
    train, val, fell_back = spatial_split(chips, 0.5)
    assert not fell_back
    assert positions(chips, val) == {("a", 192, 0)}
    assert ("a", 0, 0) in positions(chips, train)


def test_scenes_are_split_separately():
    # Scene b has two ships, at columns 0 and 96 of row 0; its empty east chips sit where
    # scene a's validation chips are, yet train, because chips of different scenes never overlap.
    west = grid("b", ships=lambda c: 1 if (c.col_off, c.row_off) in {(0, 0), (96, 0)} else 0)
    chips = grid("a") + west
    train, val, fell_back = spatial_split(chips, 0.2)
    assert not fell_back
    val_pos = positions(chips, val)
    assert {p for p in val_pos if p[0] == "a"} == {("a", 192, 0), ("a", 192, 48)}
    assert {p for p in val_pos if p[0] == "b"} == {("b", 96, 0)}
    train_pos = positions(chips, train)
    assert {("b", 0, 0), ("b", 192, 0), ("b", 192, 48)} <= train_pos
    assert ("b", 144, 0) not in train_pos  # overlaps b's validation chip


def test_a_scene_without_ships_does_not_make_the_split_fall_back():
    chips = grid("a") + grid("water", ships=lambda c: 0)
    train, val, fell_back = spatial_split(chips, 0.2)
    assert not fell_back
    assert all(chips[v].scene == "a" for v in val)
    assert {i for i, c in enumerate(chips) if c.scene == "water"} <= set(train)


def test_a_single_annotated_chip_falls_back_to_validating_on_it():
    chips = grid(ships=lambda c: 3 if (c.col_off, c.row_off) == (96, 48) else 0)
    (annotated,) = [i for i, c in enumerate(chips) if c.ships]
    train, val, fell_back = spatial_split(chips, 0.2)
    assert fell_back
    assert val == [annotated]
    assert train == list(range(len(chips)))


def test_two_overlapping_annotated_chips_fall_back():
    # Validating on one would leave its overlapping neighbour, the only other ship chip, out.
    chips = grid(ships=lambda c: 1 if (c.col_off, c.row_off) in {(144, 0), (192, 0)} else 0)
    train, val, fell_back = spatial_split(chips, 0.2)
    assert fell_back
    assert positions(chips, val) == {("a", 144, 0), ("a", 192, 0)}
    assert train == list(range(len(chips)))


def test_split_is_deterministic_and_independent_of_input_order():
    rng = np.random.default_rng(5)
    counts = {(c.col_off, c.row_off): int(rng.integers(0, 3)) for c in grid_chips()}
    counts[(0, 0)] = 2
    chips = grid(ships=lambda c: counts[(c.col_off, c.row_off)]) + grid("b")
    first = spatial_split(chips, 0.3)
    assert spatial_split(chips, 0.3) == first
    order = np.random.default_rng(0).permutation(len(chips))
    shuffled = [chips[i] for i in order]
    train, val, fell_back = spatial_split(shuffled, 0.3)
    assert fell_back == first[2]
    assert positions(shuffled, train) == positions(chips, first[0])
    assert positions(shuffled, val) == positions(chips, first[1])


def test_an_unsplittable_scene_only_trains_and_validation_never_scores_a_training_chip():
    # Scene "a" splits; scene "small" has a single annotated chip and cannot.
    small = grid("small", ships=lambda c: 2 if (c.col_off, c.row_off) == (96, 48) else 0)
    chips = grid("a") + small
    train, val, fell_back = spatial_split(chips, 0.2)
    assert not fell_back
    assert not set(train) & set(val)
    assert all(chips[v].scene == "a" for v in val)
    assert {i for i, c in enumerate(chips) if c.scene == "small"} <= set(train)
    for v in val:  # no training chip overlaps a validation chip of its scene
        assert not any(
            chips[t].scene == chips[v].scene and overlaps(chips[t].chip, chips[v].chip)
            for t in train
        )
