"""One band stretch per scene, so every chip (and training and detection) sees the same pixels.

uint8 scenes pass through unchanged. Other data types are mapped linearly to uint8 between
per-band low and high percentiles (default 2 and 98). The percentiles are estimated once per
scene from a sample of windows spread over it (never per chip, which would make neighbouring
chips disagree), and the resulting values are recorded as JSON so they can be given back with
`--stretch FILE` on another run.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geosam.errors import BandError, InputNotFoundError

DEFAULT_PERCENTILES = (2.0, 98.0)
SAMPLE_WINDOWS_PER_AXIS = 8
SAMPLE_WINDOW_SIZE = 256


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
        """Map a (3, H, W) array of scene values to (3, H, W) uint8."""
        low = np.asarray(self.low, dtype=np.float32)[:, None, None]
        high = np.asarray(self.high, dtype=np.float32)[:, None, None]
        scaled = (pixels.astype(np.float32) - low) * (255.0 / np.maximum(high - low, 1e-12))
        return np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)

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


def sample_windows(width: int, height: int) -> list[Window]:
    """Up to 8x8 windows of 256 px spread evenly over the grid (the whole grid if small)."""

    def offsets(length: int) -> list[int]:
        size = min(SAMPLE_WINDOW_SIZE, length)
        if length <= SAMPLE_WINDOWS_PER_AXIS * size:
            return list(range(0, length, size))
        return sorted({int(v) for v in np.linspace(0, length - size, SAMPLE_WINDOWS_PER_AXIS)})

    windows = []
    for row in offsets(height):
        for col in offsets(width):
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
) -> Stretch:
    """Estimate per-band percentiles from a sample of windows, ignoring nodata and NaN."""
    low_p, high_p = percentiles
    if not 0 <= low_p < high_p <= 100:
        raise BandError(f"percentiles {low_p}-{high_p}: need 0 <= low < high <= 100")
    unique = sorted(set(bands))
    samples: dict[int, list[NDArray[np.float64]]] = {b: [] for b in unique}
    for window in sample_windows(dataset.width, dataset.height):
        block = dataset.read(unique, window=window).astype(np.float64)
        for i, band in enumerate(unique):
            values = block[i].ravel()
            keep = np.isfinite(values)
            if nodata is not None and not np.isnan(nodata):
                keep &= values != nodata
            samples[band].append(values[keep])
    low: dict[int, float] = {}
    high: dict[int, float] = {}
    for band in unique:
        values = np.concatenate(samples[band]) if samples[band] else np.empty(0)
        if values.size == 0:
            low[band], high[band] = 0.0, 1.0
            continue
        lo, hi = np.percentile(values, [low_p, high_p])
        low[band], high[band] = float(lo), float(max(hi, lo + 1e-6))
    return Stretch(
        bands=bands,
        low=tuple(low[b] for b in bands),
        high=tuple(high[b] for b in bands),
        percentiles=(low_p, high_p),
    )
