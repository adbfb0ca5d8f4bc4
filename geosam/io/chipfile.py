"""Chip GeoTIFFs: 3-band uint8 with the chip's exact transform and the scene CRS."""

from __future__ import annotations

import functools
import os
from io import BytesIO
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.windows import Window

from geosam.io.chip_profile import CHIP_BLOCK, DEFAULT_CODEC, chip_profile
from geosam.io.shared_blocks import ChipBlocks
from geosam.io.tiff_tiles import append_tiles, read_tile, read_tile_table


def write_chip(
    path: str | os.PathLike[str],
    image: NDArray[np.uint8],
    transform: Affine,
    crs: CRS,
    codec: str = DEFAULT_CODEC,
    blocks: ChipBlocks | None = None,
) -> None:
    """Write a (3, H, W) uint8 chip as a tiled RGB GeoTIFF compressed with `codec`.

    With `blocks` (planned by `geosam.io.shared_blocks.BlockSharing`), GDAL compresses only
    the chip's own rectangle of blocks and the borrowed ones are added after: the same tags,
    pixels and compressed blocks as without, for less work. The file is written in place:
    callers write into a staging folder that becomes the output only when complete
    (`geosam.io.staging`).
    """
    bands, height, width = image.shape
    profile = {**chip_profile(bands, height, width, codec), "crs": crs, "transform": transform}
    if blocks is None:
        with rasterio.open(Path(path), "w", **profile) as dst:
            dst.write(image)
        return
    try:
        _write_sharing(Path(path), image, profile, codec, blocks)
    except BaseException:
        blocks.ticket.withdraw()  # the chips borrowing from this one fail too, not wait
        raise


def _write_sharing(
    path: Path,
    image: NDArray[np.uint8],
    profile: dict[str, object],
    codec: str,
    blocks: ChipBlocks,
) -> None:
    """GDAL writes the chip's own blocks into a sparse file; the others are appended."""
    with rasterio.open(path, "w", **profile, sparse_ok=True) as dst:
        if blocks.rows and blocks.cols:
            top, left = blocks.rows.start * CHIP_BLOCK, blocks.cols.start * CHIP_BLOCK
            bottom = min(blocks.rows.stop * CHIP_BLOCK, image.shape[1])  # partial last blocks
            right = min(blocks.cols.stop * CHIP_BLOCK, image.shape[2])
            window = Window(left, top, right - left, bottom - top)
            dst.write(image[:, top:bottom, left:right], window=window)
    with open(path, "r+b") as file:
        table = read_tile_table(file)
        empty = _empty_block(codec, image.shape[0])  # GDAL leaves out all-zero blocks too
        lent = {i: read_tile(file, table, i) if table.counts[i] else empty for i in blocks.lent}
        blocks.ticket.lend(lent)
        missing = {}
        for index, count in enumerate(table.counts):
            if count:
                continue
            borrowed = blocks.borrowed.get(index)
            missing[index] = borrowed[0].block(borrowed[1]) if borrowed else empty
        append_tiles(file, table, missing)


@functools.cache
def _empty_block(codec: str, bands: int) -> bytes:
    """An all-zero block compressed with `codec`, as GDAL writes it inside a chip."""
    profile = chip_profile(bands, CHIP_BLOCK, CHIP_BLOCK, codec)
    grid = Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(CHIP_BLOCK))  # any but the identity
    with MemoryFile() as memfile:
        with memfile.open(**profile, transform=grid) as dst:
            dst.write(np.zeros((bands, CHIP_BLOCK, CHIP_BLOCK), np.uint8))
        file = BytesIO(memfile.read())
    return read_tile(file, read_tile_table(file), 0)
