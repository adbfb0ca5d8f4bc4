"""Compress each block that overlapping chips share once: later chips borrow it.

With 1024 px chips overlapping by 128 px, the chips' 128 px blocks along each overlap hold
the same pixels as a neighbour's: 22 % of the blocks a 20000 px scene's chips hold (the last
chip of a row, moved back to the scene's edge, is off the block grid); and compression is
most of what writing a chip costs. geosam compresses DEFLATE chips' blocks itself
(`geosam.io.deflate_blocks`), so only those chips share. `BlockSharing` sees the chips in
the order they are written and plans each one (`ChipBlocks`): the blocks an earlier chip
compresses and it borrows, the blocks it compresses itself, and those of its own that later
chips borrow, handed over through a `BlockTicket` once compressed.

Blocks are shared by their place on the scene grid, so sharing is only for chips read as
windows of one raster (no resampling): the same place then holds the same pixels in every
chip, as geosam's reading is per pixel (the stretch, the nodata mask and the padding).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from geosam.geometry.grid import Chip
from geosam.io.chip_profile import CHIP_BLOCK

_COLUMN_BITS = 32


class BlockTicket:
    """The compressed blocks a chip lends to later chips, handed over from its writer thread."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._blocks: dict[int, bytes] | None = None

    def lend(self, blocks: dict[int, bytes]) -> None:
        """Hand the lent blocks (by block index in the lender) to the chips waiting for them."""
        self._blocks = blocks
        self._ready.set()

    def withdraw(self) -> None:
        """The lender failed: the borrowers fail too, rather than wait for ever."""
        self._ready.set()

    def block(self, index: int) -> bytes:
        """Block `index` of the lender, once compressed."""
        self._ready.wait()
        if self._blocks is None:
            raise RuntimeError("the chip lending this block was not written")
        return self._blocks[index]


@dataclass(frozen=True)
class ChipBlocks:
    """How one chip file gets its blocks.

    Attributes:
        own: indices of the blocks this chip compresses (row-major over its blocks).
        borrowed: block index -> (the lender's ticket, the block's index in the lender).
        lent: indices of this chip's compressed blocks that later chips borrow.
        ticket: where this chip's writer hands those over.
    """

    own: tuple[int, ...]
    borrowed: dict[int, tuple[BlockTicket, int]]
    lent: tuple[int, ...]
    ticket: BlockTicket


@dataclass
class _Lender:
    ticket: BlockTicket
    index: int


class BlockSharing:
    """Plans the chips of one grid, in the order they are written, to share their blocks.

    Every chip of `chips` must pass through `plan` or `skip` once: a lent block is held only
    until the last chip that holds it has been seen.
    """

    def __init__(self, chips: Sequence[Chip], size: int) -> None:
        self.across = -(-size // CHIP_BLOCK)
        shares = size % CHIP_BLOCK == 0  # partial blocks are never shared
        self._holders = _shared_block_holders(chips, self.across) if shares else {}
        self._lenders: dict[int, _Lender] = {}

    def plan(self, chip: Chip) -> ChipBlocks:
        """The blocks of `chip` to borrow, compress and lend."""
        shared = self._shared_blocks(chip)
        borrowed = {
            i: (self._lenders[key].ticket, self._lenders[key].index)
            for i, key in shared.items()
            if key in self._lenders
        }
        own = tuple(i for i in range(self.across * self.across) if i not in borrowed)
        ticket = BlockTicket()
        lent = [  # blocks a chip not seen yet holds, and no other chip lends
            i for i, key in shared.items() if i not in borrowed and self._holders[key] > 1
        ]
        for index in lent:
            self._lenders[shared[index]] = _Lender(ticket, index)
        self._seen(shared.values())
        return ChipBlocks(own, borrowed, tuple(lent), ticket)

    def skip(self, chip: Chip) -> None:
        """`chip` is not written (no valid pixel): it lends and borrows nothing."""
        self._seen(self._shared_blocks(chip).values())

    @property
    def pending(self) -> int:
        """Blocks held for chips not yet seen."""
        return len(self._lenders)

    def _shared_blocks(self, chip: Chip) -> dict[int, int]:
        """Block index in `chip` -> the block's scene position, for blocks other chips hold."""
        if not self._holders:
            return {}
        n = self.across
        found = {}
        for index in range(n * n):
            key = _block_key(chip, index, n)
            if key in self._holders:
                found[index] = key
        return found

    def _seen(self, keys: Iterable[int]) -> None:
        for key in keys:
            self._holders[key] -= 1
            if self._holders[key] == 0:
                del self._holders[key]
                self._lenders.pop(key, None)


def _block_key(chip: Chip, index: int, n: int) -> int:
    """The block's scene position (row, column of its first pixel) as one number."""
    row, col = divmod(index, n)
    return ((chip.row_off + row * CHIP_BLOCK) << _COLUMN_BITS) | (chip.col_off + col * CHIP_BLOCK)


def _shared_block_holders(chips: Sequence[Chip], n: int) -> dict[int, int]:
    """Scene position of each block held by more than one chip -> how many chips hold it."""
    if not chips:
        return {}
    steps = np.arange(n) * CHIP_BLOCK
    rows = np.array([c.row_off for c in chips])[:, None, None] + steps[None, :, None]
    cols = np.array([c.col_off for c in chips])[:, None, None] + steps[None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    positions = (rows.astype(np.int64) << _COLUMN_BITS) | cols.astype(np.int64)
    keys, counts = np.unique(positions, return_counts=True)
    return {int(k): int(c) for k, c in zip(keys[counts > 1], counts[counts > 1], strict=True)}
