"""Synthetic scenes for the benchmarks, generated once and cached in `common.data_dir()`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from bench.common import data_dir, in_child

BLOCK = 512


def synthetic_scene(size: int, dtype: str = "uint16", compress: str | None = None) -> Path:
    """A size x size 3-band GeoTIFF (uint16 or uint8), tiled 512 px, in UTM 33N.

    Uncompressed by default, so that the bare read loop is as fast as reading can be: any
    per-chip work geosam adds shows in the ratio instead of hiding behind decompression.
    `compress` ("deflate") gives the kind of file users have, for whole-command timings.
    """
    suffix = f"_{compress}" if compress else ""
    path = data_dir() / f"scene_{size}_{dtype}{suffix}.tif"
    if not path.exists():
        # Written in a child: a child's peak RSS starts at its parent's RSS when it is
        # created, so a parent that had held a scene's arrays would inflate every later
        # whole-process measurement (`common.measured_process`).
        in_child("scenes:write_scene", size=size, dtype=dtype, compress=compress, path=str(path))
    return path


def write_scene(size: int, dtype: str, compress: str | None, path: str) -> dict[str, str]:
    """Write the scene `synthetic_scene` describes to `path` (run in a child process)."""
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": dtype,
        "crs": "EPSG:32633",
        "transform": from_origin(500000.0, 6000000.0, 3.0, 3.0),
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "interleave": "pixel",
        "BIGTIFF": "YES",
    }
    if compress:
        profile.update(compress=compress, num_threads="ALL_CPUS")
    rng = np.random.default_rng(0)
    tmp = Path(path).with_suffix(".part.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for row in range(0, size, BLOCK):
            rows = min(BLOCK, size - row)
            base = np.linspace(300, 2500, size, dtype=np.float32)[None, :]
            noise = rng.normal(0, 120, (3, rows, size)).astype(np.float32)
            block = base + noise + np.arange(3)[:, None, None] * 200
            if dtype == "uint8":
                block = block / 16
            top = np.iinfo(dtype).max
            dst.write(np.clip(block, 0, top).astype(dtype), window=Window(0, row, size, rows))
    tmp.rename(path)
    return {"path": path}
