"""A chip's DEFLATE blocks, compressed with ISA-L instead of GDAL's libdeflate.

Compression is most of what writing a chip costs. ISA-L's level 1 writes blocks the size of
libdeflate's level 1 (what GDAL writes for geosam's DEFLATE chips) in about half the CPU,
and releases the GIL while it works. The blocks are what every TIFF reader expects of a
tiled, pixel-interleaved image with DEFLATE (compression 8: zlib streams) and the horizontal
predictor (predictor 2): each row of a block holds each sample minus the same band's sample
to its left, the block's first column whole. Blocks past the image's edge are padded with 0.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from isal import isal_zlib
from numpy.typing import NDArray

from geosam.io.chip_profile import CHIP_BLOCK

ISAL_LEVEL = 1
"""ISA-L's levels run 0-3; level 0 is a third faster but writes a third more bytes."""


class DeflateBlocks:
    """The blocks of a (bands, H, W) uint8 image, predicted once, compressed on demand.

    Blocks are numbered row by row, as in the TIFF's tile table.
    """

    def __init__(self, image: NDArray[np.uint8], block: int = CHIP_BLOCK) -> None:
        bands, height, width = image.shape
        down, self.across = -(-height // block), -(-width // block)
        self.count = down * self.across
        if (down * block, self.across * block) != (height, width):
            padded = np.zeros((bands, down * block, self.across * block), np.uint8)
            padded[:, :height, :width] = image
            image = padded
        # (down, across, block rows, block columns, bands): each block's bytes in file order
        self._tiles = np.empty((down, self.across, block, block, bands), np.uint8)
        for band in range(bands):
            source = image[band].reshape(down, block, self.across, block).transpose(0, 2, 1, 3)
            target = self._tiles[..., band]
            np.subtract(source[..., 1:], source[..., :-1], out=target[..., 1:])
            target[..., 0] = source[..., 0]  # each block row starts afresh

    def compress(self, indices: Iterable[int]) -> dict[int, bytes]:
        """Blocks `indices` as zlib streams."""
        return {
            index: isal_zlib.compress(self._tiles[divmod(index, self.across)], ISAL_LEVEL)
            for index in indices
        }
