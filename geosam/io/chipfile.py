"""Chip GeoTIFFs: 3-band uint8 with the chip's exact transform and the scene CRS."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from numpy.typing import NDArray
from rasterio.crs import CRS

from geosam.io.atomic import atomic_path


def write_chip(
    path: str | os.PathLike[str], image: NDArray[np.uint8], transform: Affine, crs: CRS
) -> None:
    """Write a (3, H, W) uint8 chip as a tiled, DEFLATE-compressed RGB GeoTIFF, atomically."""
    bands, height, width = image.shape
    profile: dict[str, object] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": "uint8",
        "crs": crs,
        "transform": transform,
        "compress": "deflate",
        "photometric": "RGB" if bands == 3 else "MINISBLACK",
        "interleave": "pixel",
    }
    if min(width, height) >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with atomic_path(path) as tmp, rasterio.open(Path(tmp), "w", **profile) as dst:
        dst.write(image)
