"""How finely to read a scene so that its ships span a few embedding cells, and fit a chip.

A 10 m Sentinel-2 ship is 10-20 pixels long and 3-5 wide: at `tiny`'s stride of 8 px it
spans one or two embedding cells, and its outline is decided on a 2 px grid. A 150 m ship in
a 0.1 m aerial scene is 1500 px long: no 256 px chip holds it, and every chip shows a piece.
The choice is made from the footprints: scenes of one sensor are read by the factor that
brings their median ship nearest `TARGET_SHIP_PX` long, in steps of `FACTOR_STEP`: finer for
short ships (x1 to `MAX_FACTOR`), coarser for ships over `LONG_SHIP_PX` (x1/d, d up to
`MAX_COARSENING`), as they are in between.
Prompt-free detection on the dev Sentinel-2 ports (median ship 18 px) learned almost nothing
at 10 m and most at 3.3 m; the dev marina's yachts (38 px), read as they were, were found
better read 1.25 times finer; the demo harbour painted at four times its pixels per metre
(ships 168 px long) was found far better read 3.5 times coarser (`bench/RESULTS.md`,
section 6). The ports are read at x2.75 (3.6 m), the marina at x1.25 and the demo's boats
(43 px) as they are. Training records each sensor's (ground pixel size, factor) as the chip
settings' ``scale_rule``; any scene read later with those settings, in training or in
`detect`, is read at the ground pixel size of the sensor closest to it, so a new Sentinel-2
scene is read the way the Sentinel-2 scenes it learned from were.

Pixel sizes here are metres on the ground at the scene's centre, whatever the CRS: a Web
Mercator grid's "10 m" pixels cover 10 x cos(latitude) m of ground (8.3 m at Casablanca),
and a lon/lat grid's pixels are degrees. Ships keep their size in metres, so a scene on such
a grid is resampled to the ground pixel size its sensor was trained at, not to its CRS units.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError
from rasterio.errors import RasterioError

from geosam.io.footprints import read_footprints

log = logging.getLogger(__name__)

TARGET_SHIP_PX = 48
MAX_FACTOR = 4
LONG_SHIP_PX = 2 * TARGET_SHIP_PX
"""Ships up to twice the target are read as they are: a 256 px chip holds them whole, and
reading them coarser was not measured."""
MAX_COARSENING = 16
"""Long ships are read at most 16 times coarser: a 0.1 m scene at 1.6 m."""
FACTOR_STEP = 0.25
"""Factors are multiples of a quarter: whole factors left the marina's 38 px yachts at x1, a
quarter short of the 48 px the prompter's 4 px heatmap cells and 256 px chips suit."""
SENSOR_TOLERANCE = 1.25
"""Scenes whose ground pixel sizes are within this ratio are one sensor. Web Mercator grids
of one sensor shrink their ground pixels by cos(latitude): 17 % at Casablanca, 25 % at 37 deg."""
SAME_GRID_TOLERANCE = 0.05
"""A scene within 5 % of its sensor's ground pixel size is read by the factor on its own grid
(UTM's scale varies by 0.1 % across a zone), so its read grid starts at its own origin."""

ScaleRule = tuple[tuple[float, float], ...]
"""(ground pixel size in metres, read factor: above 1 finer, below 1 coarser) per sensor of the
training scenes."""
Resolution = tuple[float, float]
"""Pixel size along x and y in CRS units."""


@dataclass(frozen=True)
class GroundPixel:
    """One pixel of a scene: its size in CRS units and on the ground, along x and y."""

    res: Resolution
    along: tuple[float, float]
    """Geodesic metres spanned along x and along y."""

    @property
    def square(self) -> bool:
        """Whether the pixel is as wide as it is tall on the ground (within 5 %)."""
        return abs(self.along[0] / self.along[1] - 1) <= SAME_GRID_TOLERANCE

    @property
    def metres(self) -> float:
        """The pixel's ground size: the geometric mean of its width and height in metres."""
        return math.sqrt(self.along[0] * self.along[1])

    def resolution_for(self, metres: float) -> Resolution:
        """CRS units per pixel along x and y that make pixels `metres` wide on the ground."""
        return (
            self.res[0] * metres / self.along[0],
            self.res[1] * metres / self.along[1],
        )


def ground_pixel_size(scene: str | os.PathLike[str]) -> GroundPixel | None:
    """A scene's pixel, measured on the ground at the scene's centre (geodesic metres).

    None when the scene cannot be read or its CRS has no ellipsoid.
    """
    try:
        with rasterio.open(scene) as src:
            crs, transform, width, height = src.crs, src.transform, src.width, src.height
    except (RasterioError, OSError):
        return None
    if crs is None:
        return None
    try:
        geodetic = CRS.from_user_input(crs).geodetic_crs
        geod = None if geodetic is None else geodetic.get_geod()
        if geodetic is None or geod is None:
            return None
        to_lonlat = Transformer.from_crs(crs, geodetic, always_xy=True)
        col, row = width / 2, height / 2
        corners = [transform @ p for p in ((col, row), (col + 1, row), (col, row + 1))]
        lons, lats = to_lonlat.transform([x for x, _ in corners], [y for _, y in corners])
        _, _, along_x = geod.inv(lons[0], lats[0], lons[1], lats[1])
        _, _, along_y = geod.inv(lons[0], lats[0], lons[2], lats[2])
    except (CRSError, ProjError):
        return None
    if not (along_x > 0 and along_y > 0 and math.isfinite(along_x * along_y)):
        return None
    return GroundPixel((abs(transform.a), abs(transform.e)), (along_x, along_y))


def pixel_metres(scene: str | os.PathLike[str]) -> float | None:
    """A scene's ground pixel size in metres (`GroundPixel.metres`), or None if unknown."""
    found = ground_pixel_size(scene)
    return None if found is None else found.metres


def median_ship_length_m(
    scene: str | os.PathLike[str], labels: str | os.PathLike[str], layer: str | None
) -> float | None:
    """The median length in metres of a scene's footprints, or None if unknown.

    A ship's length is the long side of its minimum rotated rectangle in the local UTM zone,
    so lengths in any CRS are metres. Footprints that cannot be read here give None (the
    caller reports why when it reads them).
    """
    try:
        with rasterio.open(scene) as src:
            crs = src.crs
    except (RasterioError, OSError):
        return None
    if crs is None:
        return None
    footprints, _ = read_footprints(
        labels, crs, layer, prefer_layer=os.path.splitext(os.path.basename(scene))[0]
    )
    if footprints.empty:
        return None
    try:
        metric: gpd.GeoDataFrame = footprints.to_crs(footprints.estimate_utm_crs())
    except (CRSError, ProjError, RuntimeError) as exc:
        log.warning("%s: ship lengths in metres unknown (%s); read as it is", scene, exc)
        return None
    rects = shapely.oriented_envelope(metric.geometry.to_numpy())
    lengths = [
        float(np.hypot(*np.diff(np.asarray(rect.exterior.coords)[:3], axis=0).T).max())
        for rect in rects
        if rect.geom_type == "Polygon"
    ]
    return float(np.median(lengths)) if lengths else None


def read_factor(ship_length_px: float) -> float:
    """The read factor that brings a sensor's median ship nearest `TARGET_SHIP_PX` long.

    Finer (x1 to `MAX_FACTOR`) for a shorter ship, coarser (x1/d, d up to `MAX_COARSENING`)
    for one longer than `LONG_SHIP_PX`, in `FACTOR_STEP`s: x1.25 for the dev marina's 37.5 px
    yachts, x1/3.5 for 168 px ships; ships in between are read as they are.
    """
    if ship_length_px <= 0 or TARGET_SHIP_PX < ship_length_px <= LONG_SHIP_PX:
        return 1.0
    if ship_length_px <= TARGET_SHIP_PX:
        factors = _quarter_steps(MAX_FACTOR)
    else:
        factors = [1 / d for d in _quarter_steps(MAX_COARSENING)]
    return min(factors, key=lambda factor: abs(ship_length_px * factor - TARGET_SHIP_PX))


def _quarter_steps(largest: float) -> list[float]:
    """1, 1 + `FACTOR_STEP`, ... up to `largest`."""
    return [1 + FACTOR_STEP * k for k in range(round((largest - 1) / FACTOR_STEP) + 1)]


def resolution_for_gsd(scene: str | os.PathLike[str], metres: float) -> float | Resolution:
    """CRS units per pixel that make `scene`'s pixels `metres` wide on the ground (`--gsd`).

    On a grid whose units are ground metres (UTM, national grids: square pixels within
    `SAME_GRID_TOLERANCE` of their ground size) `metres` is taken as CRS units, exactly; a
    Web Mercator or lon/lat grid gets the x and y sizes that cover `metres` of ground. An
    unreadable scene gets `metres` (the reader then reports why).
    """
    pixel = ground_pixel_size(scene)
    if pixel is None:
        return metres
    if all(
        abs(m / r - 1) <= SAME_GRID_TOLERANCE for m, r in zip(pixel.along, pixel.res, strict=True)
    ):
        return metres
    resolution = pixel.resolution_for(metres)
    log.info("%s: --gsd %g m of ground is %.3g x %.3g CRS units", scene, metres, *resolution)
    return resolution


def sensor_groups(sizes: Sequence[float]) -> list[tuple[float, list[int]]]:
    """Ground pixel sizes in groups of one sensor: (the group's size, indices), finest first.

    A group holds the sizes within `SENSOR_TOLERANCE` of its finest one. Its size is its
    coarsest member's: a grid finer than its sensor resamples it (Sentinel-2's 10 m on a
    Web Mercator grid at 34 deg is 8.3 m), so the coarsest is nearest the sensor's own pixel.
    """
    groups: list[list[int]] = []
    for i in sorted(range(len(sizes)), key=lambda k: sizes[k]):
        if groups and sizes[i] <= SENSOR_TOLERANCE * sizes[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return [(max(sizes[i] for i in group), group) for group in groups]


Entry = TypeVar("Entry", bound=tuple[float, Any])


def nearest_pixel_size(entries: Sequence[Entry], pixel_size: float) -> Entry:
    """The (pixel size, value) entry nearest `pixel_size` in log scale."""
    return min(entries, key=lambda entry: abs(math.log(entry[0] / pixel_size)))


def gsd_for_scene(scene: str | os.PathLike[str], rule: ScaleRule) -> float | Resolution | None:
    """What to read `scene` at under `rule`: CRS units per pixel, or None to read it as it is.

    The scene's sensor is the rule's entry nearest it in log ground pixel size. A scene with
    square pixels within `SAME_GRID_TOLERANCE` of that size is read by the entry's factor on
    its own grid; any other (a Web Mercator or lon/lat grid, a finer or coarser
    product) is resampled to the entry's read size in metres along x and y, finer or coarser:
    a model knows ships at the size it learned them, and a 0.13 m crop of the dev marina read
    as it is, twice the pixels per metre of training, found 5 of 65 held-out yachts where read
    at the marina's 0.26 m it found 50 (`bench/RESULTS.md`, section 6). Unreadable scenes
    give None (the reader then reports any error itself).
    """
    if not rule:
        return None
    pixel = ground_pixel_size(scene)
    if pixel is None:
        return None
    sensor, factor = nearest_pixel_size(rule, pixel.metres)
    name = os.path.basename(scene)
    if pixel.square and abs(pixel.metres / sensor - 1) <= SAME_GRID_TOLERANCE:
        if factor == 1:
            return None
        log.info("%s: read at x%.3g, as its sensor's scenes were in training", name, factor)
        return (pixel.res[0] / factor, pixel.res[1] / factor)
    metres = sensor / factor
    if abs(metres / pixel.metres - 1) <= SAME_GRID_TOLERANCE:
        return None
    resolution = pixel.resolution_for(metres)
    log.info(
        "%s: %.3g m pixels read at %.3g m, as its sensor's (%.3g m) were in training",
        name,
        pixel.metres,
        metres,
        sensor,
    )
    return resolution
