"""Chip GeoTIFFs: 3-band uint8 with the chip's exact transform and the scene CRS."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from numpy.typing import NDArray
from rasterio.crs import CRS

from geosam.io.chip_profile import DEFAULT_CODEC, blocks_by_geosam, chip_profile
from geosam.io.deflate_blocks import DeflateBlocks
from geosam.io.shared_blocks import ChipBlocks
from geosam.io.tiff_tiles import append_tiles, read_tile_table


def write_chip(
    path: str | os.PathLike[str],
    image: NDArray[np.uint8],
    transform: Affine,
    crs: CRS,
    codec: str = DEFAULT_CODEC,
    blocks: ChipBlocks | None = None,
) -> None:
    """Write a (3, H, W) uint8 chip as a tiled RGB GeoTIFF compressed with `codec`.

    DEFLATE chips are compressed by geosam (`geosam.io.deflate_blocks`): GDAL writes the
    file's tags and georeference with an empty tile table, and the blocks are appended
    (`geosam.io.tiff_tiles`). With `blocks` (planned by `geosam.io.shared_blocks`), only the
    chip's own blocks are compressed and the others are borrowed from its neighbours. The
    file is written in place: callers write into a staging folder that becomes the output
    only when complete (`geosam.io.staging`).
    """
    bands, height, width = image.shape
    profile = {**chip_profile(bands, height, width, codec), "crs": crs, "transform": transform}
    if not blocks_by_geosam(profile):
        with rasterio.open(Path(path), "w", **profile) as dst:
            dst.write(image)
        return
    try:
        _write_blocks(Path(path), image, profile, blocks)
    except BaseException:
        if blocks is not None:
            blocks.ticket.withdraw()  # the chips borrowing from this one fail too, not wait
        raise


def _write_blocks(
    path: Path, image: NDArray[np.uint8], profile: dict[str, object], blocks: ChipBlocks | None
) -> None:
    """GDAL writes a sparse file (no block written); geosam compresses and appends them.

    The blocks other chips borrow are compressed and handed over first: those chips' writers
    may be waiting for them.
    """
    encoder = DeflateBlocks(image)
    tiles: dict[int, bytes] = {}
    if blocks is not None:
        lent = encoder.compress(blocks.lent)
        blocks.ticket.lend(lent)
        tiles.update(lent)
    with rasterio.open(path, "w", **profile, sparse_ok=True):
        pass
    own = blocks.own if blocks is not None else range(encoder.count)
    tiles.update(encoder.compress(index for index in own if index not in tiles))
    if blocks is not None:
        for index, (lender, their_index) in blocks.borrowed.items():
            tiles[index] = lender.block(their_index)
    with open(path, "r+b") as file:
        append_tiles(file, read_tile_table(file), dict(sorted(tiles.items())))
