"""Open a raster scene and check that it can be chipped: RGB-able, georeferenced, north-up.

A scene must have bands that can become RGB (not none, not complex, not colour-table
indices), a CRS and a north-up geotransform.

Also owns the pixel grid that is chipped: the scene's own grid, or (with a target ground
sample distance) a resampled grid read through a GDAL warped VRT, so memory never grows
with the scene and chip transforms describe the resampled pixels exactly.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import DatasetReader
from rasterio.transform import array_bounds
from rasterio.vrt import WarpedVRT

from geosam.errors import InputNotFoundError, SceneError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneGrid:
    """The pixel grid that is chipped.

    Attributes:
        width: columns.
        height: rows.
        transform: affine transform of pixel (col, row) to `crs` coordinates.
        crs: the scene CRS.
        gsd: CRS units per pixel when resampled (one size, or x and y sizes), else None.
    """

    width: int
    height: int
    transform: Affine
    crs: CRS
    gsd: float | tuple[float, float] | None = None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in scene CRS units."""
        return array_bounds(self.height, self.width, self.transform)


def open_scene(path: str | os.PathLike[str]) -> DatasetReader:
    """Open `path` with rasterio after checking it is a georeferenced, north-up raster."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such file; check the scene path")
    if p.is_dir():
        raise SceneError(f"{p}: is a folder, not a raster; give a GeoTIFF file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(p)
    except rasterio.errors.RasterioIOError as exc:
        raise SceneError(f"{p}: not a raster GDAL can read; give a GeoTIFF") from exc
    try:
        check_pixels(src, p)
        check_georeference(src, p)
    except SceneError:
        src.close()
        raise
    return src


def check_pixels(src: DatasetReader, path: Path) -> None:
    """Refuse rasters whose bands cannot become RGB chips: none, complex, or a colour table.

    These open fine and would otherwise fail deep in reading (no band 1) or give chips that
    look plausible but are wrong (complex values cast to real, palette indices shown as grey).
    """
    if src.count == 0:
        inner = list(src.subdatasets)
        hint = (
            f"; it holds {len(inner)} subdatasets: extract one first, e.g. "
            f"gdal_translate {inner[0]} band.tif"
            if inner
            else ""
        )
        raise SceneError(f"{path}: has no bands{hint}")
    if any(str(dtype).startswith("complex") for dtype in src.dtypes):  # also complex_int16
        raise SceneError(
            f"{path}: holds complex values ({src.dtypes[0]}, e.g. SAR single-look complex); "
            "give amplitude or intensity instead (a GRD product, or the SLC as amplitude)"
        )
    if ColorInterp.palette in src.colorinterp:
        raise SceneError(
            f"{path}: has a colour table (palette): its values are colour indices, not "
            f"brightness; expand it first: gdal_translate -expand rgb {path.name} rgb.tif"
        )


def check_georeference(src: DatasetReader, path: Path) -> None:
    """Refuse rasters without CRS, without geotransform, or with rotation/shear."""
    if src.crs is None:
        raise SceneError(
            f"{path}: has no CRS; assign one, e.g. gdal_edit.py -a_srs EPSG:32633 {path.name}"
        )
    transform = src.transform
    if transform.is_identity:
        raise SceneError(
            f"{path}: has no geotransform (pixel coordinates only); georeference it first, "
            "e.g. gdalwarp with ground control points"
        )
    if transform.b != 0 or transform.d != 0:
        raise SceneError(
            f"{path}: rotated or sheared geotransform is not supported; make it north-up "
            f"with gdalwarp {path.name} northup.tif"
        )


def scene_grid(src: DatasetReader, gsd: float | tuple[float, float] | None = None) -> SceneGrid:
    """The grid to chip: the scene's own, or resampled to `gsd` CRS units per pixel.

    `gsd` is one size for square pixels or (x, y) sizes; a single size is refused on a
    lon/lat scene, where a degree along x is shorter on the ground than along y (metres
    become (x, y) degrees in `geosam.data.scale`).
    """
    if gsd is None:
        return SceneGrid(src.width, src.height, src.transform, src.crs)
    xres, yres = (gsd, gsd) if isinstance(gsd, (int, float)) else gsd
    if xres <= 0 or yres <= 0:
        raise SceneError(f"--gsd {gsd} must be positive (metres per pixel)")
    if isinstance(gsd, (int, float)) and src.crs.is_geographic:
        raise SceneError(
            f"{src.name}: CRS {src.crs.to_string()} is geographic (degrees): give the read "
            "size as (x, y) degrees, or in metres through ChipSettings(gsd=...)"
        )
    left, bottom, right, top = src.bounds
    width = max(1, math.ceil((right - left) / xres - 1e-9))
    height = max(1, math.ceil((top - bottom) / yres - 1e-9))
    transform = Affine(xres, 0.0, left, 0.0, -yres, top)
    log.info(
        "resampling %s from %.3g x %.3g to %.3g x %.3g CRS units per pixel",
        src.name,
        *src.res,
        xres,
        yres,
    )
    return SceneGrid(width, height, transform, src.crs, xres if xres == yres else (xres, yres))


def grid_dataset(
    src: DatasetReader,
    grid: SceneGrid,
    nodata: float | None = None,
    resampling: Resampling = Resampling.bilinear,
) -> DatasetReader | WarpedVRT:
    """The dataset whose windows are chips: `src` itself, or a warped VRT onto `grid`.

    `nodata` (default the scene's own) is kept out of the resampling kernel, so pixels next
    to missing data are not blended with the nodata value.
    """
    if grid.gsd is None:
        return src
    if nodata is None:
        nodata = src.nodata
    extra = {} if nodata is None else {"src_nodata": nodata, "nodata": nodata}
    return WarpedVRT(
        src,
        crs=grid.crs,
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=resampling,
        **extra,
    )
