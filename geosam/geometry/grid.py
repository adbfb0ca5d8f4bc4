"""The chip grid: which windows of a scene become chips, and where each chip sits.

A chip is a rasterio `Window` on the scene's pixel grid plus that window's affine transform.
Chips are always `size` x `size` pixels, the encoder's input, so chip pixels are model pixels.
Neighbours overlap by `overlap` pixels so that a ship cut by one chip's edge is whole in the
next (keep the overlap larger than the longest ship in pixels). The last row and column are
shifted back to end exactly at the scene edge rather than running past it; only a scene
smaller than one chip along an axis gets a single chip there, zero-padded at the far side.

This module is the only place that knows how a chip maps to the scene (`Chip.transform`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from affine import Affine
from rasterio.transform import array_bounds
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geosam.errors import GridError

DEFAULT_CHIP_SIZE = 1024
DEFAULT_OVERLAP = 128


@dataclass(frozen=True)
class Chip:
    """One chip of a scene grid.

    Attributes:
        row_off: first scene row of the chip (pixels of the chip grid's scene).
        col_off: first scene column of the chip.
        size: chip edge in pixels; the chip array is always (size, size).
        valid_height: rows of the chip that lie inside the scene (< size only when padded).
        valid_width: columns of the chip that lie inside the scene.
        transform: affine transform from chip pixel (col, row) to scene CRS coordinates.
    """

    row_off: int
    col_off: int
    size: int
    valid_height: int
    valid_width: int
    transform: Affine

    @property
    def chip_id(self) -> str:
        """Stable, sortable identifier from the scene offsets, e.g. ``r000896_c001792``."""
        return f"r{self.row_off:06d}_c{self.col_off:06d}"

    @property
    def window(self) -> Window:
        """The full chip window on the scene grid (may extend past the scene when padded)."""
        return Window(self.col_off, self.row_off, self.size, self.size)

    @property
    def read_window(self) -> Window:
        """The part of the chip window that lies inside the scene: what to read."""
        return Window(self.col_off, self.row_off, self.valid_width, self.valid_height)

    @property
    def padding(self) -> tuple[int, int]:
        """Zero-padding (bottom rows, right columns) added because the scene is smaller."""
        return self.size - self.valid_height, self.size - self.valid_width

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the full chip in scene CRS units."""
        return array_bounds(self.size, self.size, self.transform)


def axis_offsets(length: int, size: int, overlap: int) -> list[int]:
    """Chip start offsets along one axis of `length` pixels.

    Steps by ``size - overlap``; the last chip is moved back to end at ``length``. An axis
    shorter than one chip gets the single offset 0 (the chip is padded).
    """
    if length <= size:
        return [0]
    stride = size - overlap
    offsets = list(range(0, length - size, stride))
    offsets.append(length - size)
    return offsets


def check_grid(size: int, overlap: int) -> None:
    """Refuse a chip size and overlap that cannot make a grid."""
    if size < 16:
        raise GridError(f"chip size {size} px is too small; use at least 16 px (default 1024)")
    if overlap < 0:
        raise GridError(f"overlap {overlap} px is negative; use 0 or more")
    if overlap >= size:
        raise GridError(
            f"overlap {overlap} px must be smaller than the chip size {size} px; "
            f"try --overlap {size // 8}"
        )


def chip_grid(
    width: int, height: int, scene_transform: Affine, size: int, overlap: int
) -> list[Chip]:
    """All chips of a `width` x `height` scene, row by row.

    Args:
        width: scene columns (of the grid being chipped, after any resampling).
        height: scene rows.
        scene_transform: affine transform of that grid.
        size: chip edge in pixels.
        overlap: pixels shared by neighbouring chips.
    """
    check_grid(size, overlap)
    chips = []
    for row_off in axis_offsets(height, size, overlap):
        for col_off in axis_offsets(width, size, overlap):
            window = Window(col_off, row_off, size, size)
            chips.append(
                Chip(
                    row_off=row_off,
                    col_off=col_off,
                    size=size,
                    valid_height=min(size, height - row_off),
                    valid_width=min(size, width - col_off),
                    transform=window_transform(window, scene_transform),
                )
            )
    return chips


def panel_order(chips: Sequence[Chip], panel_width: int) -> list[Chip]:
    """`chips` panel by panel: vertical bands `panel_width` px wide, row by row inside each.

    Reading a wide scene row by row, the blocks one chip row shares with the next (the
    overlap) leave a bounded block cache before the next row needs them, and are decoded
    twice; inside a panel narrow enough for the cache they are still there. A panel as wide
    as the scene gives the grid order back.
    """
    return sorted(chips, key=lambda c: (c.col_off // max(1, panel_width), c.row_off, c.col_off))
