"""One band stretch per scene, so every chip (and training and detection) sees the same pixels.

uint8 scenes pass through unchanged. Other data types are mapped linearly to uint8 between a
low and a high percentile (default 2 and 98) of the three chip bands' values pooled, the same
for every band, so colours keep their balance as in an 8-bit product (Sentinel-2's true-colour
image, aerial photographs): per band, each band's own percentiles would shift the hue with
what the scene holds (much water, much land), and a model sees colours unlike those it trained
on. `per_band` gives each band its own percentiles (false-colour composites whose bands differ
in range). The percentiles are estimated once per scene from a sample of windows spread over
it (never per chip, which would make neighbouring chips disagree), and the resulting values
are recorded as JSON so they can be given back with `--stretch FILE` on another run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geosam.errors import BandError, InputNotFoundError
from geosam.io.bands import three_bands

DEFAULT_PERCENTILES = (2.0, 98.0)
SAMPLE_WINDOWS_PER_AXIS = 8
SAMPLE_WINDOW_SIZE = 256
STRETCH_SLICE_VALUES = 2**18
"""Values per slice of `Stretch.apply`: its float32 working copy is 1 MiB, in cache on
cores with 2 MiB of L2. In the two-thread reader 2^17 measured the same and 2^19 slower (1.7
against 1.45 s of CPU for 529 chips of 1024 px)."""


@dataclass(frozen=True)
class Stretch:
    """Linear map of each chip band from [low, high] to [0, 255].

    Attributes:
        bands: 1-based scene bands, in chip channel order (R, G, B).
        low: value mapped to 0, per chip channel.
        high: value mapped to 255, per chip channel.
        percentiles: the (low, high) percentiles the values were estimated at.
    """

    bands: tuple[int, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES

    def apply(self, pixels: NDArray[np.generic]) -> NDArray[np.uint8]:
        """Map a (3, H, W) array of scene values to (3, H, W) uint8, exactly as `scale` does.

        The same float32 operations in the same order, done on slices of rows whose float
        working copy stays in a core's cache (STRETCH_SLICE_VALUES): four passes over a
        slice in cache, where `scale` makes whole-chip temporaries in memory. On a 3-band
        1024 px uint16 chip 2.2 ms against 2.9 ms for a 65536-entry lookup table, and in the
        two-thread reader 1.45 s of CPU against 1.85 s for the 20000 px scene's 529 chips (the
        table's gather needs 64-bit indices, a whole-chip temporary of 8 bytes a pixel).
        """
        bands, height, width = pixels.shape
        low, factor = self._low_and_factor()
        out = np.empty(pixels.shape, dtype=np.uint8)
        rows = max(1, STRETCH_SLICE_VALUES // max(1, bands * width))
        work = np.empty((bands, min(rows, height), width), dtype=np.float32)
        floating = pixels.dtype.kind == "f"
        for top in range(0, height, rows):
            scaled = work[:, : min(rows, height - top)]
            np.subtract(pixels[:, top : top + rows], low, out=scaled, dtype=np.float32)
            np.multiply(scaled, factor, out=scaled)
            if floating:
                np.nan_to_num(scaled, copy=False)
            # Clipping to 0..255 before rounding equals clipping after: both ends are integers.
            np.clip(scaled, 0, 255, out=scaled)
            np.rint(scaled, out=out[:, top : top + rows], casting="unsafe")
        return out

    def scale(self, pixels: NDArray[np.generic]) -> NDArray[np.uint8]:
        """The stretch's definition, on whole arrays: (3, H, W) scene values to (3, H, W) uint8."""
        low, factor = self._low_and_factor()
        scaled = (pixels.astype(np.float32) - low) * factor
        return np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)

    def _low_and_factor(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(3, 1, 1) float32 low values and 255 / (high - low), as both paths use them."""
        low = np.asarray(self.low, dtype=np.float32)[:, None, None]
        high = np.asarray(self.high, dtype=np.float32)[:, None, None]
        return low, 255.0 / np.maximum(high - low, 1e-12)

    def for_bands(self, bands: Sequence[int]) -> Stretch | None:
        """The same stretch on other scene bands (one band: repeated), or None if it cannot be.

        A stretch with one low and one high value for all bands (the default) maps any band
        alike, so it moves to the new bands unchanged; one estimated band by band says
        nothing about other bands (None: estimate one on the scene).
        """
        chosen = three_bands(bands)
        if chosen == self.bands:
            return self
        if len(set(self.low)) == 1 and len(set(self.high)) == 1:
            return replace(self, bands=chosen)
        return None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stretch:
        """Inverse of `to_dict`; raises ValueError when the lists do not line up."""
        bands = tuple(int(b) for b in data["bands"])
        low = tuple(float(v) for v in data["low"])
        high = tuple(float(v) for v in data["high"])
        lo_p, hi_p = (float(v) for v in data.get("percentiles", DEFAULT_PERCENTILES))
        if not len(bands) == len(low) == len(high) == 3:
            raise ValueError("a stretch needs three bands with one low and one high value each")
        return cls(bands, low, high, (lo_p, hi_p))


def save_stretch(stretch: Stretch, path: str | os.PathLike[str]) -> None:
    """Write the stretch as JSON (atomically)."""
    from geosam.io.atomic import atomic_write_text

    atomic_write_text(path, json.dumps({"stretch": stretch.to_dict()}, indent=2))


def load_stretch(path: str | os.PathLike[str]) -> Stretch:
    """Read a stretch from a stretch JSON or a tile/model metadata JSON that contains one."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such stretch file; give the stretch.json of a run")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return Stretch.from_dict(data["stretch"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BandError(
            f"{p}: not a geosam stretch file (expected a 'stretch' entry with bands, low, high)"
        ) from exc


def sample_windows(width: int, height: int, block: tuple[int, int] = (1, 1)) -> list[Window]:
    """Up to 8x8 windows of 256 px spread evenly over the grid (the whole grid if small).

    Window origins snap to the file's (rows, cols) `block` grid where the block is no larger
    than a window, so each sample decodes as few blocks as possible (one, for 256 or 512 px
    tiles) instead of straddling four.
    """

    def offsets(length: int, step: int) -> list[int]:
        size = min(SAMPLE_WINDOW_SIZE, length)
        if length <= SAMPLE_WINDOWS_PER_AXIS * size:
            return list(range(0, length, size))
        spread = np.linspace(0, length - size, SAMPLE_WINDOWS_PER_AXIS)
        step = step if step <= 2 * SAMPLE_WINDOW_SIZE else 1
        return sorted({int(v) // step * step for v in spread})

    windows = []
    for row in offsets(height, block[0]):
        for col in offsets(width, block[1]):
            windows.append(
                Window(
                    col,
                    row,
                    min(SAMPLE_WINDOW_SIZE, width - col),
                    min(SAMPLE_WINDOW_SIZE, height - row),
                )
            )
    return windows


def estimate_stretch(
    dataset: DatasetReader | WarpedVRT,
    bands: tuple[int, int, int],
    nodata: float | None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    per_band: bool = False,
) -> Stretch:
    """Estimate the percentiles from a sample of windows, ignoring nodata and NaN.

    With `per_band` each band gets its own; otherwise the bands' values are pooled and every
    band gets the same (see the module docstring). Integer data of up to 16 bits is counted in
    a histogram per band, whose percentiles are exactly numpy's (linear interpolation) without
    sorting millions of values.
    """
    low_p, high_p = percentiles
    if not 0 <= low_p < high_p <= 100:
        raise BandError(f"percentiles {low_p}-{high_p}: need 0 <= low < high <= 100")
    unique = sorted(set(bands))
    dtype = np.dtype(dataset.dtypes[unique[0] - 1])
    counted = dtype.kind in "ui" and dtype.itemsize <= 2
    offset = 2**15 if dtype.kind == "i" else 0
    samples: dict[int, list[NDArray[np.float64]]] = {b: [] for b in unique}
    histograms = {b: np.zeros(2**16, dtype=np.int64) for b in unique}
    block_shape = dataset.block_shapes[0] if isinstance(dataset, DatasetReader) else (1, 1)
    for window in sample_windows(dataset.width, dataset.height, block_shape):
        pixels = dataset.read(unique, window=window)
        has_nodata = nodata is not None and not np.isnan(nodata)
        for i, band in enumerate(unique):
            values = pixels[i].ravel()
            if counted and not has_nodata and not offset:
                # Unsigned, nothing to drop: count the values as they are (no copies).
                histograms[band] += np.bincount(values, minlength=2**16)
                continue
            keep = np.ones(values.shape, dtype=bool) if counted else np.isfinite(values)
            if has_nodata:
                keep &= values != nodata
            if counted:
                histograms[band] += np.bincount(
                    values[keep].astype(np.int64) + offset, minlength=2**16
                )
            else:
                samples[band].append(values[keep].astype(np.float64))
    low: dict[int, float] = {}
    high: dict[int, float] = {}
    # Each band its own group, or all bands one group: one pair of percentiles per group.
    for group in [[b] for b in unique] if per_band else [unique]:
        if counted:
            counts = np.sum([histograms[b] for b in group], axis=0)
            found = _histogram_percentiles(counts, (low_p, high_p))
            lo, hi = (v - offset for v in found) if found else (None, None)
        else:
            pooled = [v for b in group for v in samples[b]]
            values = np.concatenate(pooled) if pooled else np.empty(0)
            lo, hi = np.percentile(values, [low_p, high_p]) if values.size else (None, None)
        pair = (0.0, 1.0) if lo is None or hi is None else (float(lo), float(max(hi, lo + 1e-6)))
        for band in group:
            low[band], high[band] = pair
    return Stretch(
        bands=bands,
        low=tuple(low[b] for b in bands),
        high=tuple(high[b] for b in bands),
        percentiles=(low_p, high_p),
    )


def _histogram_percentiles(
    counts: NDArray[np.int64], percentiles: tuple[float, float]
) -> tuple[float, float] | None:
    """The linear-interpolation percentiles (numpy's default) of the values counted in `counts`."""
    total = int(counts.sum())
    if total == 0:
        return None
    cumulative = np.cumsum(counts)

    def value_at(rank: int) -> float:
        return float(np.searchsorted(cumulative, rank, side="right"))

    out = []
    for q in percentiles:
        position = q / 100 * (total - 1)
        below = int(np.floor(position))
        v0, v1 = value_at(below), value_at(min(below + 1, total - 1))
        out.append(v0 + (position - below) * (v1 - v0))
    return out[0], out[1]
