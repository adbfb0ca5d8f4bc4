"""Chips that borrow the compressed blocks they share with neighbours: the same files' pixels,
the same compressed blocks, less compression; and the tile table patched in place."""

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import TRANSFORM, UTM33, write_raster

from geosam.data.settings import ChipSettings
from geosam.geometry.grid import chip_grid
from geosam.io import shared_blocks
from geosam.io.chip_profile import CHIP_BLOCK, CODECS
from geosam.io.chipfile import write_chip
from geosam.io.shared_blocks import BlockSharing, BlockTicket, ChipBlocks
from geosam.io.tiff_tiles import append_tiles, read_tile, read_tile_table
from geosam.pipelines import tile as tile_module
from geosam.pipelines.tile import tile_scene


def gdal_blocks(path: Path) -> list[bytes]:
    """Every compressed block of a chip file, found by GDAL (not by geosam's tile table)."""
    with rasterio.open(path) as src:
        rows, cols = -(-src.height // CHIP_BLOCK), -(-src.width // CHIP_BLOCK)
        places = [
            (
                int(src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1)),
                int(src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1)),
            )
            for row in range(rows)
            for col in range(cols)
        ]
    data = path.read_bytes()
    return [data[offset : offset + size] for offset, size in places]


def scene_with_flat_parts(tmp_path: Path, size: int = 700) -> Path:
    """Noise with an all-zero corner and a flat band: blocks GDAL compresses in every way."""
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, size=(3, size, size), dtype=np.uint8)
    data[:, :200, :150] = 0  # all-zero blocks (left out of GDAL's sparse files)
    data[:, 300:400] = 90
    return write_raster(tmp_path / "scene.tif", data)


@pytest.fixture
def plans(monkeypatch) -> list[ChipBlocks]:
    """Every plan the tile pipeline makes."""
    made: list[ChipBlocks] = []
    real = BlockSharing.plan

    def recorded(self, chip):
        made.append(real(self, chip))
        return made[-1]

    monkeypatch.setattr(BlockSharing, "plan", recorded)
    return made


@pytest.mark.parametrize("codec", list(CODECS))
def test_shared_blocks_give_the_files_gdal_writes_block_for_block(
    tmp_path, monkeypatch, plans, codec
):
    scene = scene_with_flat_parts(tmp_path)
    settings = ChipSettings(size=256, overlap=64)
    tile_scene(scene, tmp_path / "shared", settings, codec=codec)
    monkeypatch.setattr(tile_module, "_block_sharing", lambda chips, codec: None)
    tile_scene(scene, tmp_path / "gdal", settings, codec=codec)

    assert sum(len(plan.borrowed) for plan in plans) > 0  # blocks were shared
    names = sorted(p.name for p in (tmp_path / "gdal" / "chips").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "shared" / "chips").iterdir())
    for name in names:
        shared, gdal = tmp_path / "shared" / "chips" / name, tmp_path / "gdal" / "chips" / name
        with rasterio.open(shared) as a, rasterio.open(gdal) as b:
            assert a.profile == b.profile
            assert a.transform == b.transform and a.crs == b.crs
            np.testing.assert_array_equal(a.read(), b.read())
        assert gdal_blocks(shared) == gdal_blocks(gdal)


def test_a_reader_other_than_gdal_reads_the_shared_chips(tmp_path):
    """libtiff (through Pillow) finds the appended blocks through the patched tile table."""
    image_module = pytest.importorskip("PIL.Image")
    scene = scene_with_flat_parts(tmp_path, size=500)
    tile_scene(scene, tmp_path / "out", ChipSettings(size=256, overlap=64))
    chips = sorted((tmp_path / "out" / "chips").iterdir())
    assert len(chips) == 9
    for path in chips:
        with rasterio.open(path) as src:
            expected = src.read().transpose(1, 2, 0)
        np.testing.assert_array_equal(np.asarray(image_module.open(path)), expected)


def grid_of(size: int, chip: int, overlap: int) -> list:
    return chip_grid(size, size, TRANSFORM, chip, overlap)


def test_the_middle_chip_borrows_its_top_and_left_bands_and_lends_the_others():
    chips = grid_of(640, 256, 64)  # offsets 0, 192, 384: three by three, all on the blocks
    sharing = BlockSharing(chips, 256)
    plans = {chip.chip_id: sharing.plan(chip) for chip in chips}
    middle = plans["r000192_c000192"]
    n = sharing.across
    assert n == 4 and middle.rows == range(1, 4) and middle.cols == range(1, 4)
    assert sorted(middle.borrowed) == [0, 1, 2, 3, 4, 8, 12]  # top row, left column
    assert sorted(middle.lent) == [7, 11, 13, 14, 15]  # right column, bottom row, not borrowed
    first = plans["r000000_c000000"]
    assert (first.rows, first.cols, first.borrowed) == (range(0, 4), range(0, 4), {})
    lender, index = middle.borrowed[1]  # block (0, 1): the chip above's block (3, 1)
    assert lender is plans["r000000_c000192"].ticket and index == 13
    assert sharing.pending == 0  # nothing held once every chip is seen


def test_chips_off_the_block_grid_share_nothing():
    chips = grid_of(600, 256, 64)  # the last chip is moved back to 344: off the 64 px blocks
    sharing = BlockSharing(chips, 256)
    plans = {chip.chip_id: sharing.plan(chip) for chip in chips}
    assert plans["r000000_c000344"].borrowed == {}
    assert plans["r000000_c000192"].borrowed  # the chips on the blocks still share
    odd = BlockSharing(grid_of(600, 200, 40), 200)  # 200 px: the last blocks are partial
    assert all(not odd.plan(chip).borrowed for chip in grid_of(600, 200, 40))


def test_skipped_chips_release_what_they_would_have_borrowed():
    chips = grid_of(640, 256, 64)
    sharing = BlockSharing(chips, 256)
    for k, chip in enumerate(chips):
        if k % 2:
            sharing.skip(chip)
        else:
            sharing.plan(chip)
    assert sharing.pending == 0


def test_a_borrower_fails_rather_than_waits_when_its_lender_fails(tmp_path):
    chips = grid_of(448, 256, 64)  # two by two
    sharing = BlockSharing(chips, 256)
    lender_plan, borrower_plan = sharing.plan(chips[0]), sharing.plan(chips[1])
    image = np.ones((3, 256, 256), np.uint8)
    errors: list[BaseException] = []

    def borrow() -> None:
        try:
            write_chip(
                tmp_path / "b.tif", image, chips[1].transform, UTM33, "deflate", borrower_plan
            )
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=borrow)
    thread.start()
    with pytest.raises(OSError):  # the lender cannot write: its folder is missing
        write_chip(
            tmp_path / "gone" / "a.tif", image, chips[0].transform, UTM33, "deflate", lender_plan
        )
    thread.join(timeout=30)
    assert not thread.is_alive() and errors and "not written" in str(errors[0])


def test_a_ticket_hands_over_blocks_across_threads():
    ticket = BlockTicket()
    got: list[bytes] = []
    thread = threading.Thread(target=lambda: got.append(ticket.block(5)))
    thread.start()
    ticket.lend({5: b"block"})
    thread.join(timeout=30)
    assert got == [b"block"]


def test_resampled_scenes_write_every_chip_with_gdal(tmp_path, monkeypatch):
    """With --gsd, chips are windows of a warped view whose pixels at one place may differ
    between windows: nothing is shared."""
    calls: list[object] = []
    real = tile_module.write_chip

    def spy(*args):
        calls.append(args[-1])
        real(*args)

    monkeypatch.setattr(tile_module, "write_chip", spy)
    scene = scene_with_flat_parts(tmp_path, size=300)
    tile_scene(scene, tmp_path / "out", ChipSettings(size=128, overlap=32, gsd=3.0))
    assert calls and all(blocks is None for blocks in calls)


@pytest.mark.parametrize("endianness", ["LITTLE", "BIG"])
def test_blocks_appended_to_a_sparse_file_are_read_back(tmp_path, endianness):
    """GDAL leaves out blocks never written; appending them fills the image in either byte
    order, and the table read back is GDAL's."""
    profile = {
        "driver": "GTiff",
        "width": 128,
        "height": 128,
        "count": 1,
        "dtype": "uint8",
        "tiled": True,
        "blockxsize": 64,
        "blockysize": 64,
        "compress": "deflate",
        "crs": UTM33,
        "transform": Affine(1.0, 0, 500.0, 0, -1.0, 800.0),
    }
    full = np.arange(128 * 128, dtype=np.uint8).reshape(1, 128, 128)
    reference = write_raster(tmp_path / "full.tif", full, **{**profile, "endianness": endianness})
    sparse = tmp_path / "sparse.tif"
    with rasterio.open(sparse, "w", **profile, endianness=endianness, sparse_ok=True) as dst:
        dst.write(full[:, :64, :], window=((0, 64), (0, 128)))  # the top two blocks only
    with open(reference, "rb") as file:
        table = read_tile_table(file)
        bottom = {i: read_tile(file, table, i) for i in (2, 3)}
    assert gdal_blocks(reference) == [
        reference.read_bytes()[o : o + n] for o, n in zip(table.offsets, table.counts, strict=True)
    ]
    with open(sparse, "r+b") as file:
        assert read_tile_table(file).counts[2:] == [0, 0]
        table = read_tile_table(file)
        append_tiles(file, table, bottom)
    with rasterio.open(sparse) as src:
        np.testing.assert_array_equal(src.read(), full)
    assert gdal_blocks(sparse) == gdal_blocks(reference)


def test_the_holders_count_each_shared_block_once_per_chip():
    chips = grid_of(640, 256, 64)
    holders = shared_blocks._shared_block_holders(chips, 4)
    # block places 0, 64, ..., 576 on each axis; 192 and 384 are in two chips each
    assert len(holders) == 10 * 10 - 8 * 8
    assert sorted(holders.values()).count(4) == 4 and min(holders.values()) == 2


def test_sixteen_bit_scenes_with_nodata_share_the_same_pixels(tmp_path, monkeypatch, plans):
    """The stretch, the nodata mask and the padding are per pixel: a place holds the same
    model pixels in every chip, so shared blocks are the blocks GDAL would write."""
    rng = np.random.default_rng(3)
    data = rng.integers(100, 3000, size=(4, 450, 500), dtype=np.uint16)
    data[:, 50:180, 20:300] = 0  # nodata
    scene = write_raster(tmp_path / "scene16.tif", data, nodata=0)
    settings = ChipSettings(size=192, overlap=64, bands=(3, 2, 1))
    tile_scene(scene, tmp_path / "shared", settings)
    monkeypatch.setattr(tile_module, "_block_sharing", lambda chips, codec: None)
    tile_scene(scene, tmp_path / "gdal", settings)
    assert sum(len(plan.borrowed) for plan in plans) > 0
    for path in sorted((tmp_path / "gdal" / "chips").iterdir()):
        shared = tmp_path / "shared" / "chips" / path.name
        assert gdal_blocks(shared) == gdal_blocks(path)


def test_chips_with_partial_last_blocks_keep_gdals_blocks(tmp_path, monkeypatch):
    """200 px chips end in partial blocks (GDAL pads them): nothing is shared, and the blocks
    GDAL leaves out of the sparse file (all zero) are filled in as GDAL would write them."""
    scene = scene_with_flat_parts(tmp_path, size=500)
    settings = ChipSettings(size=200, overlap=40)
    tile_scene(scene, tmp_path / "shared", settings)
    monkeypatch.setattr(tile_module, "_block_sharing", lambda chips, codec: None)
    tile_scene(scene, tmp_path / "gdal", settings)
    for path in sorted((tmp_path / "gdal" / "chips").iterdir()):
        assert gdal_blocks(tmp_path / "shared" / "chips" / path.name) == gdal_blocks(path)
