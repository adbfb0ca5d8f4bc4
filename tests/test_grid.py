import pytest
import rasterio

from geosam.errors import GridError
from geosam.geometry.grid import axis_offsets, chip_grid, panel_order


def test_axis_offsets_step_and_last_chip_ends_at_edge():
    assert axis_offsets(3000, 1024, 128) == [0, 896, 1792, 1976]
    assert axis_offsets(1024, 1024, 128) == [0]
    assert axis_offsets(1025, 1024, 0) == [0, 1]


def test_small_axis_gets_one_padded_chip():
    assert axis_offsets(616, 1024, 128) == [0]
    chips = chip_grid(1111, 616, rasterio.Affine.identity(), 1024, 128)
    assert [(c.row_off, c.col_off) for c in chips] == [(0, 0), (0, 87)]
    assert all(c.padding == (1024 - 616, 0) for c in chips)


def test_grid_covers_every_pixel_with_full_size_chips():
    width, height, size = 700, 530, 128
    covered = set()
    for chip in chip_grid(width, height, rasterio.Affine.identity(), size, 32):
        assert chip.col_off + size <= width and chip.row_off + size <= height
        covered.update(
            (r, c)
            for r in (chip.row_off, chip.row_off + size - 1)
            for c in (chip.col_off, chip.col_off + size - 1)
        )
    assert (height - 1, width - 1) in covered and (0, 0) in covered


def test_chip_transform_is_the_scene_window_transform(make_scene):
    path = make_scene(width=300, height=200)
    with rasterio.open(path) as src:
        for chip in chip_grid(src.width, src.height, src.transform, 64, 16):
            assert chip.transform == src.window_transform(chip.window)


def test_chip_ids_are_unique_and_sortable():
    chips = chip_grid(3000, 2100, rasterio.Affine.identity(), 1024, 128)
    ids = [c.chip_id for c in chips]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)


@pytest.mark.parametrize(("size", "overlap"), [(64, 64), (64, 100), (64, -1), (8, 0)])
def test_bad_grid_parameters_are_refused(size, overlap):
    with pytest.raises(GridError, match="overlap|chip size"):
        chip_grid(100, 100, rasterio.Affine.identity(), size, overlap)


def test_panel_order_reads_each_panel_whole_and_row_by_row():
    chips = chip_grid(3000, 2000, rasterio.Affine.identity(), 256, 32)  # 14 x 9 chips
    ordered = panel_order(chips, 1000)
    assert sorted(ordered, key=lambda c: (c.row_off, c.col_off)) == chips  # a permutation
    panels = [c.col_off // 1000 for c in ordered]
    assert panels == sorted(panels)  # panels left to right, each read whole
    for k in set(panels):
        inside = [(c.row_off, c.col_off) for c in ordered if c.col_off // 1000 == k]
        assert inside == sorted(inside)  # row by row inside a panel
        assert len({col for _, col in inside}) in (4, 5)  # 1000 px of 224 px steps
    assert panel_order(chips, 3000) == chips  # a panel as wide as the scene: grid order
