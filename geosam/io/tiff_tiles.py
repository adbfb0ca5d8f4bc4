"""A tiled TIFF's tile table (where each compressed block lies), read and rewritten in place.

geosam compresses DEFLATE chips' blocks itself (`geosam.io.deflate_blocks`), some borrowed
from neighbouring chips (`geosam.io.shared_blocks`), which GDAL cannot put into a file: GDAL
writes the file's tags and georeference with no block (a sparse file: an empty table), and
the blocks are appended here, their places set in the table. Only the first image directory
of a classic TIFF (either byte order) is read: a chip has one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

TILE_OFFSETS = 324
TILE_BYTE_COUNTS = 325
_FORMATS = {3: "H", 4: "I"}  # SHORT, LONG: the types a classic TIFF's tile table takes


class TiffLayoutError(ValueError):
    """The file is not a tiled classic TIFF."""


@dataclass
class _Array:
    position: int  # where the values lie in the file
    format: str  # struct format of one value


@dataclass
class TileTable:
    """Each tile's offset and byte count (0 and 0 for a tile not written)."""

    offsets: list[int]
    counts: list[int]
    _order: str
    _offsets_at: _Array
    _counts_at: _Array


def read_tile_table(file: BinaryIO) -> TileTable:
    """The tile table of the TIFF open in `file` (binary, seekable)."""
    file.seek(0)
    head = file.read(8)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or struct.unpack(order + "H", head[2:4])[0] != 42:
        raise TiffLayoutError("not a classic TIFF")
    (directory,) = struct.unpack(order + "I", head[4:8])
    file.seek(directory)
    (count,) = struct.unpack(order + "H", file.read(2))
    entries = file.read(12 * count)
    arrays: dict[int, tuple[_Array, int]] = {}
    for k in range(count):
        tag, kind, n = struct.unpack_from(order + "HHI", entries, 12 * k)
        if tag not in (TILE_OFFSETS, TILE_BYTE_COUNTS):
            continue
        if kind not in _FORMATS:
            raise TiffLayoutError(f"tag {tag} has TIFF type {kind}")
        size = struct.calcsize(_FORMATS[kind]) * n
        field = directory + 2 + 12 * k + 8
        position = field if size <= 4 else struct.unpack_from(order + "I", entries, 12 * k + 8)[0]
        arrays[tag] = (_Array(position, _FORMATS[kind]), n)
    if set(arrays) != {TILE_OFFSETS, TILE_BYTE_COUNTS}:
        raise TiffLayoutError("not a tiled TIFF")
    values = {tag: _read_values(file, order, at, n) for tag, (at, n) in arrays.items()}
    return TileTable(
        values[TILE_OFFSETS],
        values[TILE_BYTE_COUNTS],
        order,
        arrays[TILE_OFFSETS][0],
        arrays[TILE_BYTE_COUNTS][0],
    )


def append_tiles(file: BinaryIO, table: TileTable, tiles: dict[int, bytes]) -> None:
    """Write `tiles` (by index) at the end of the file and point the tile table at them."""
    position = file.seek(0, 2)
    for index, data in tiles.items():
        table.offsets[index], table.counts[index] = position, len(data)
        position += len(data)
    file.writelines(tiles.values())
    for at, values in ((table._offsets_at, table.offsets), (table._counts_at, table.counts)):
        if max(values, default=0) >= 1 << (8 * struct.calcsize(at.format)):
            raise TiffLayoutError("a tile's place does not fit the tile table's type")
        file.seek(at.position)
        file.write(struct.pack(f"{table._order}{len(values)}{at.format}", *values))


def _read_values(file: BinaryIO, order: str, at: _Array, n: int) -> list[int]:
    file.seek(at.position)
    size = struct.calcsize(at.format) * n
    return list(struct.unpack(f"{order}{n}{at.format}", file.read(size)))
