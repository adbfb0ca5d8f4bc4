"""Pictures and rasters of detections: a PNG preview and a Cloud-Optimized GeoTIFF mask."""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.shutil
import rasterio.windows
import shapely
from affine import Affine
from numpy.typing import NDArray
from rasterio.features import rasterize
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geosam.io.atomic import atomic_path
from geosam.io.reader import SceneReader

PREVIEW_MAX_SIDE = 1600
MASK_BLOCK = 1024


def write_preview(
    path: str | os.PathLike[str],
    reader: SceneReader,
    ships: gpd.GeoDataFrame,
    truth: gpd.GeoDataFrame | None = None,
) -> None:
    """PNG of the scene (decimated read, chip stretch) with ship outlines drawn on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = reader.grid
    image = reader.read_overview(PREVIEW_MAX_SIDE)
    out_shape = image.shape
    left, bottom, right, top = grid.bounds
    fig, ax = plt.subplots(figsize=(out_shape[2] / 100, out_shape[1] / 100), dpi=100)
    ax.imshow(np.moveaxis(image, 0, -1), extent=(left, right, bottom, top))
    if truth is not None and len(truth):
        truth.to_crs(grid.crs).boundary.plot(ax=ax, color="cyan", linewidth=0.8)
    if len(ships):
        ships.to_crs(grid.crs).boundary.plot(ax=ax, color="#ff5a1f", linewidth=1.0)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_mask_raster(
    path: str | os.PathLike[str], reader: SceneReader, ships: gpd.GeoDataFrame
) -> None:
    """A uint8 ship mask (1 = ship) on the scene grid as a Cloud-Optimized GeoTIFF.

    Rasterized block by block, so memory does not grow with the scene.
    """
    grid = reader.grid
    geoms = list(ships.to_crs(grid.crs).geometry) if len(ships) else []
    tree = shapely.STRtree(geoms) if geoms else None
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": "uint8",
        "crs": grid.crs,
        "transform": grid.transform,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "nodata": None,
    }
    final = Path(path)
    work = final.with_name(f".{final.stem}.build.tif")
    try:
        with rasterio.open(work, "w", **profile) as dst:
            for row in range(0, grid.height, MASK_BLOCK):
                for col in range(0, grid.width, MASK_BLOCK):
                    window = Window(
                        col,
                        row,
                        min(MASK_BLOCK, grid.width - col),
                        min(MASK_BLOCK, grid.height - row),
                    )
                    dst.write(_mask_block(window, grid.transform, geoms, tree), 1, window=window)
        with atomic_path(final) as tmp:
            rasterio.shutil.copy(work, tmp, driver="COG", compress="deflate")
    finally:
        work.unlink(missing_ok=True)


def _mask_block(
    window: Window, transform: Affine, geoms: list[shapely.Geometry], tree: shapely.STRtree | None
) -> NDArray[np.uint8]:
    shape = (int(window.height), int(window.width))
    if tree is None:
        return np.zeros(shape, np.uint8)
    hits = tree.query(
        shapely.box(*rasterio.windows.bounds(window, transform)), predicate="intersects"
    )
    if len(hits) == 0:
        return np.zeros(shape, np.uint8)
    return rasterize(
        [(geoms[i], 1) for i in hits],
        out_shape=shape,
        transform=window_transform(window, transform),
        dtype="uint8",
    )
