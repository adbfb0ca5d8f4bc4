"""geosam's own DEFLATE blocks (ISA-L): what GDAL writes, pixel for pixel and block for block
once decompressed, in files of about the same size."""

import zlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import gdal_blocks

from geosam.io.chip_profile import CHIP_BLOCK, blocks_by_geosam, chip_profile
from geosam.io.chipfile import write_chip
from geosam.io.deflate_blocks import DeflateBlocks

GRID = Affine(0.5, 0.0, 300000.0, 0.0, -0.5, 5000000.0)


def photo_like(bands: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients with a little noise and a flat patch: compressible, like imagery."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    base = (rows * 0.3 + cols * 0.2) % 200
    image = np.stack([base + 20 * b for b in range(bands)]) + rng.normal(
        0, 3, (bands, height, width)
    )
    image[:, height // 3 : height // 2, :] = 90
    return np.clip(image, 0, 255).astype(np.uint8)


def gdal_chip(path: Path, image: np.ndarray) -> Path:
    """The chip as GDAL writes it, from the same creation options."""
    with rasterio.open(
        path, "w", **chip_profile(*image.shape, "deflate"), crs="EPSG:32633", transform=GRID
    ) as dst:
        dst.write(image)
    return path


@pytest.mark.parametrize(
    ("bands", "height", "width"),
    [(3, 2 * CHIP_BLOCK, 2 * CHIP_BLOCK), (3, 200, 300), (1, 130, 2 * CHIP_BLOCK)],
)
def test_blocks_decompress_to_the_blocks_gdal_writes(tmp_path, bands, height, width):
    """Full and partial blocks, RGB and one band: the same profile, georeference and pixels
    as GDAL's own file, and each block holds GDAL's bytes once decompressed (the predictor,
    the interleaving and the padding of partial blocks are GDAL's)."""
    image = photo_like(bands, height, width)
    assert blocks_by_geosam(chip_profile(bands, height, width, "deflate"))
    ours = tmp_path / "ours.tif"
    write_chip(ours, image, GRID, rasterio.crs.CRS.from_epsg(32633))
    theirs = gdal_chip(tmp_path / "gdal.tif", image)
    with rasterio.open(ours) as a, rasterio.open(theirs) as b:
        assert a.profile == b.profile
        assert a.tags(ns="IMAGE_STRUCTURE") == b.tags(ns="IMAGE_STRUCTURE")
        np.testing.assert_array_equal(a.read(), image)
    ours_decoded = [zlib.decompress(block) for block in gdal_blocks(ours)]
    assert ours_decoded == [zlib.decompress(block) for block in gdal_blocks(theirs)]


def test_blocks_undo_to_the_pixels_without_gdal():
    """Undoing the predictor (a running sum along each block row) gives the block's pixels."""
    image = photo_like(3, 2 * CHIP_BLOCK, 3 * CHIP_BLOCK, seed=4)
    encoder = DeflateBlocks(image)
    assert (encoder.count, encoder.across) == (6, 3)
    blocks = encoder.compress([4, 1])
    assert sorted(blocks) == [1, 4]
    raw = np.frombuffer(zlib.decompress(blocks[4]), np.uint8)
    differences = raw.reshape(CHIP_BLOCK, CHIP_BLOCK, 3)
    pixels = np.cumsum(differences, axis=1, dtype=np.uint64) % 256
    top, left = CHIP_BLOCK, CHIP_BLOCK  # block 4 of three across: row 1, column 1
    expected = image[:, top : top + CHIP_BLOCK, left : left + CHIP_BLOCK].transpose(1, 2, 0)
    np.testing.assert_array_equal(pixels, expected)


def test_files_are_about_the_size_gdal_writes(tmp_path):
    image = photo_like(3, 4 * CHIP_BLOCK, 4 * CHIP_BLOCK, seed=2)
    ours = tmp_path / "ours.tif"
    write_chip(ours, image, GRID, rasterio.crs.CRS.from_epsg(32633))
    theirs = gdal_chip(tmp_path / "gdal.tif", image)
    raw = image.nbytes
    assert ours.stat().st_size < 0.6 * raw  # compressed at all
    assert ours.stat().st_size < 1.1 * theirs.stat().st_size


def test_only_tiled_deflate_chips_with_the_predictor_are_geosams():
    tiled = chip_profile(3, 2 * CHIP_BLOCK, 2 * CHIP_BLOCK, "deflate")
    assert blocks_by_geosam(tiled)
    assert not blocks_by_geosam({**tiled, "predictor": 1})  # GDAL writes what geosam cannot
    assert not blocks_by_geosam(chip_profile(3, CHIP_BLOCK - 1, CHIP_BLOCK - 1, "deflate"))
    assert not blocks_by_geosam(chip_profile(3, 2 * CHIP_BLOCK, 2 * CHIP_BLOCK, "zstd"))
