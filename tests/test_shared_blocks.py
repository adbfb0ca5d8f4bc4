"""Chips that borrow the compressed blocks they share with neighbours: the same files, less
compression; and the tile table patched in place."""

import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import TRANSFORM, UTM33, gdal_blocks, write_raster

from geosam.data.settings import ChipSettings
from geosam.geometry.grid import chip_grid
from geosam.io import chipfile, shared_blocks
from geosam.io.chip_profile import CHIP_BLOCK, chip_profile
from geosam.io.chipfile import write_chip
from geosam.io.shared_blocks import BlockSharing, BlockTicket, ChipBlocks
from geosam.io.tiff_tiles import append_tiles, read_tile_table
from geosam.pipelines import tile as tile_module
from geosam.pipelines.tile import tile_scene


def scene_with_flat_parts(tmp_path: Path, size: int = 1100) -> Path:
    """Noise with an all-zero corner and a flat band: blocks that compress in every way."""
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, size=(3, size, size), dtype=np.uint8)
    data[:, :300, :260] = 0  # all-zero blocks
    data[:, 500:640] = 90
    return write_raster(tmp_path / "scene.tif", data)


SHARING = ChipSettings(size=2 * CHIP_BLOCK, overlap=CHIP_BLOCK)  # one block row shared


def tiled_without_sharing(monkeypatch, scene: Path, out: Path, settings: ChipSettings) -> None:
    """The same chips, each compressing every block itself."""
    with monkeypatch.context() as patch:
        patch.setattr(tile_module, "_block_sharing", lambda chips, codec: None)
        tile_scene(scene, out, settings)


def assert_gdal_would_write_the_same(path: Path, tmp_path: Path) -> None:
    """GDAL, given the chip's pixels, writes the same profile, tags and decoded blocks."""
    with rasterio.open(path) as src:
        pixels, ours = src.read(), src.profile
        options = {**chip_profile(*pixels.shape, "deflate"), "crs": src.crs}
        options["transform"] = src.transform
    reference = tmp_path / "gdal-reference.tif"
    with rasterio.open(reference, "w", **options) as dst:
        dst.write(pixels)
    with rasterio.open(reference) as gdal:
        assert gdal.profile == ours
    decoded = [zlib.decompress(block) for block in gdal_blocks(path)]
    assert decoded == [zlib.decompress(block) for block in gdal_blocks(reference)]


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


def test_shared_blocks_are_the_blocks_each_chip_would_compress(tmp_path, monkeypatch, plans):
    scene = scene_with_flat_parts(tmp_path)
    tile_scene(scene, tmp_path / "shared", SHARING)
    assert sum(len(plan.borrowed) for plan in plans) > 0  # blocks were shared
    tiled_without_sharing(monkeypatch, scene, tmp_path / "alone", SHARING)

    names = sorted(p.name for p in (tmp_path / "alone" / "chips").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "shared" / "chips").iterdir())
    for name in names:
        shared, alone = tmp_path / "shared" / "chips" / name, tmp_path / "alone" / "chips" / name
        with rasterio.open(shared) as a, rasterio.open(alone) as b:
            assert a.profile == b.profile
            assert a.transform == b.transform and a.crs == b.crs
            np.testing.assert_array_equal(a.read(), b.read())
        assert gdal_blocks(shared) == gdal_blocks(alone)
        assert_gdal_would_write_the_same(shared, tmp_path)


def test_a_reader_other_than_gdal_reads_the_shared_chips(tmp_path):
    """libtiff (through Pillow) finds the appended blocks through the patched tile table."""
    image_module = pytest.importorskip("PIL.Image")
    scene = scene_with_flat_parts(tmp_path, size=5 * CHIP_BLOCK)
    tile_scene(scene, tmp_path / "out", SHARING)
    chips = sorted((tmp_path / "out" / "chips").iterdir())
    assert len(chips) == 16
    for path in chips:
        with rasterio.open(path) as src:
            expected = src.read().transpose(1, 2, 0)
        np.testing.assert_array_equal(np.asarray(image_module.open(path)), expected)


def grid_of(size: int, chip: int, overlap: int) -> list:
    return chip_grid(size, size, TRANSFORM, chip, overlap)


def test_the_middle_chip_borrows_its_top_and_left_bands_and_lends_the_others():
    b = CHIP_BLOCK
    chips = grid_of(10 * b, 4 * b, b)  # offsets 0, 3, 6 blocks: three by three, on the blocks
    sharing = BlockSharing(chips, 4 * b)
    plans = {chip.chip_id: sharing.plan(chip) for chip in chips}
    middle = plans[f"r{3 * b:06d}_c{3 * b:06d}"]
    assert sharing.across == 4
    assert middle.own == (5, 6, 7, 9, 10, 11, 13, 14, 15)
    assert sorted(middle.borrowed) == [0, 1, 2, 3, 4, 8, 12]  # top row, left column
    assert sorted(middle.lent) == [7, 11, 13, 14, 15]  # right column, bottom row, not borrowed
    first = plans["r000000_c000000"]
    assert (first.own, first.borrowed) == (tuple(range(16)), {})
    lender, index = middle.borrowed[1]  # block (0, 1): the chip above's block (3, 1)
    assert lender is plans[f"r000000_c{3 * b:06d}"].ticket and index == 13
    assert sharing.pending == 0  # nothing held once every chip is seen


def test_chips_off_the_block_grid_share_nothing():
    b = CHIP_BLOCK
    chips = grid_of(9 * b, 4 * b, b)  # offsets 0, 3 blocks, and the last moved back to 5
    assert [c.col_off for c in chips[:3]] == [0, 3 * b, 5 * b]
    sharing = BlockSharing(chips, 4 * b)
    plans = {chip.chip_id: sharing.plan(chip) for chip in chips}
    moved_back = plans[f"r000000_c{5 * b:06d}"]  # still on the blocks: shares two columns
    assert sorted(moved_back.borrowed) == [0, 1, 4, 5, 8, 9, 12, 13]
    chips = grid_of(9 * b + 40, 4 * b, b)  # the last moved back 40 px off the blocks
    sharing = BlockSharing(chips, 4 * b)
    plans = {chip.chip_id: sharing.plan(chip) for chip in chips}
    last = f"r000000_c{5 * b + 40:06d}"
    assert plans[last].borrowed == {} and len(plans[last].own) == 16
    assert plans[f"r000000_c{3 * b:06d}"].borrowed  # the chips on the blocks still share
    odd = BlockSharing(grid_of(600, 200, 40), 200)  # 200 px: the last blocks are partial
    assert all(not odd.plan(chip).borrowed for chip in grid_of(600, 200, 40))


def test_skipped_chips_release_what_they_would_have_borrowed():
    chips = grid_of(10 * CHIP_BLOCK, 4 * CHIP_BLOCK, CHIP_BLOCK)
    sharing = BlockSharing(chips, 4 * CHIP_BLOCK)
    for k, chip in enumerate(chips):
        if k % 2:
            sharing.skip(chip)
        else:
            sharing.plan(chip)
    assert sharing.pending == 0


def test_a_borrower_fails_rather_than_waits_when_its_lender_fails(tmp_path, monkeypatch):
    size = 2 * CHIP_BLOCK
    chips = grid_of(3 * CHIP_BLOCK, size, CHIP_BLOCK)  # two by two
    sharing = BlockSharing(chips, size)
    lender_plan, borrower_plan = sharing.plan(chips[0]), sharing.plan(chips[1])
    assert borrower_plan.borrowed
    lender_image = np.ones((3, size, size), np.uint8)
    real = chipfile.DeflateBlocks.compress

    def compress(self, indices):
        if threading.current_thread() is threading.main_thread():  # the lender
            raise MemoryError("compressing the lender's blocks")
        return real(self, indices)

    monkeypatch.setattr(chipfile.DeflateBlocks, "compress", compress)
    errors: list[BaseException] = []

    def borrow() -> None:
        try:
            write_chip(
                tmp_path / "b.tif",
                lender_image,
                chips[1].transform,
                UTM33,
                "deflate",
                borrower_plan,
            )
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=borrow)
    thread.start()
    with pytest.raises(MemoryError):
        write_chip(
            tmp_path / "a.tif", lender_image, chips[0].transform, UTM33, "deflate", lender_plan
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


def test_resampled_scenes_share_nothing(tmp_path, monkeypatch):
    """With --gsd, chips are windows of a warped view whose pixels at one place may differ
    between windows: each chip compresses all its blocks."""
    calls: list[object] = []
    real = tile_module.write_chip

    def spy(*args):
        calls.append(args[-1])
        real(*args)

    monkeypatch.setattr(tile_module, "write_chip", spy)
    scene = scene_with_flat_parts(tmp_path, size=300)
    tile_scene(scene, tmp_path / "out", ChipSettings(size=CHIP_BLOCK, overlap=32, gsd=3.0))
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
    assert gdal_blocks(reference) == [
        reference.read_bytes()[o : o + n] for o, n in zip(table.offsets, table.counts, strict=True)
    ]
    bottom = {i: gdal_blocks(reference)[i] for i in (2, 3)}
    with open(sparse, "r+b") as file:
        assert read_tile_table(file).counts[2:] == [0, 0]
        table = read_tile_table(file)
        append_tiles(file, table, bottom)
    with rasterio.open(sparse) as src:
        np.testing.assert_array_equal(src.read(), full)
    assert gdal_blocks(sparse) == gdal_blocks(reference)


def test_the_holders_count_each_shared_block_once_per_chip():
    chips = grid_of(10 * CHIP_BLOCK, 4 * CHIP_BLOCK, CHIP_BLOCK)
    holders = shared_blocks._shared_block_holders(chips, 4)
    # ten block places on each axis; blocks 3 and 6 are in two chips each
    assert len(holders) == 10 * 10 - 8 * 8
    assert sorted(holders.values()).count(4) == 4 and min(holders.values()) == 2


def test_sixteen_bit_scenes_with_nodata_share_the_same_pixels(tmp_path, monkeypatch, plans):
    """The stretch, the nodata mask and the padding are per pixel: a place holds the same
    model pixels in every chip, so shared blocks are the blocks each chip would compress."""
    rng = np.random.default_rng(3)
    data = rng.integers(100, 3000, size=(4, 700, 800), dtype=np.uint16)
    data[:, 50:280, 20:500] = 0  # nodata
    scene = write_raster(tmp_path / "scene16.tif", data, nodata=0)
    settings = ChipSettings(size=3 * CHIP_BLOCK, overlap=CHIP_BLOCK, bands=(3, 2, 1))
    tile_scene(scene, tmp_path / "shared", settings)
    assert sum(len(plan.borrowed) for plan in plans) > 0
    tiled_without_sharing(monkeypatch, scene, tmp_path / "alone", settings)
    for path in sorted((tmp_path / "alone" / "chips").iterdir()):
        shared = tmp_path / "shared" / "chips" / path.name
        assert gdal_blocks(shared) == gdal_blocks(path)


def test_chips_with_partial_last_blocks_hold_gdals_blocks(tmp_path):
    """200 px chips end in partial blocks: nothing is shared, and every block, partial ones
    padded as GDAL pads them, decompresses to what GDAL writes."""
    scene = scene_with_flat_parts(tmp_path, size=500)
    tile_scene(scene, tmp_path / "out", ChipSettings(size=200, overlap=40))
    chips = sorted((tmp_path / "out" / "chips").iterdir())
    assert chips
    for path in chips:
        with rasterio.open(path) as src:
            assert src.block_shapes[0] == (CHIP_BLOCK, CHIP_BLOCK)
        assert_gdal_would_write_the_same(path, tmp_path)


def test_other_codecs_are_written_whole_by_gdal(tmp_path, plans):
    scene = scene_with_flat_parts(tmp_path, size=600)
    tile_scene(scene, tmp_path / "zstd", SHARING, codec="zstd")
    assert plans == []  # only geosam's own DEFLATE blocks are shared
    profile = chip_profile(3, SHARING.size, SHARING.size, "zstd")
    for path in (tmp_path / "zstd" / "chips").iterdir():
        with rasterio.open(path) as src:
            assert src.compression.name.lower() == profile["compress"]
