"""How finely to read a scene so that its ships span several embedding cells.

A 10 m Sentinel-2 ship is 10-20 pixels long and 3-5 wide: at `tiny`'s stride of 8 px it
spans one or two embedding cells, and its outline is decided on a 2 px grid. The choice is
made from the footprints: scenes of one pixel size are read finer by the whole factor (at
most `MAX_FACTOR`) that brings their median ship nearest `TARGET_SHIP_PX` long, and never
coarser. Prompt-free detection on the dev Sentinel-2 ports (median ship 19 px) learned
almost nothing at 10 m and best at 3.3 m (`bench/RESULTS.md`, section 6); the dev marina's
yachts (38 px) and the demo's boats (43 px) are read as they are. Training records each
scene's (native pixel size, factor) as the chip settings' ``scale_rule``; any scene read
later with those settings, in training or in `detect`, takes the factor of the training
scene closest to it in pixel size, so a new Sentinel-2 scene is read the way the Sentinel-2
scenes it learned from were.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import rasterio
import shapely
from pyproj import CRS
from rasterio.errors import RasterioError

from geosam.io.footprints import read_footprints

log = logging.getLogger(__name__)

TARGET_SHIP_PX = 48
MAX_FACTOR = 4

ScaleRule = tuple[tuple[float, int], ...]
"""(native pixel size in CRS units, upsampling factor) per training scene."""


def median_ship_length_px(
    scene: str | os.PathLike[str], labels: str | os.PathLike[str], layer: str | None
) -> tuple[float, float] | None:
    """(native pixel size, median ship length in pixels) of a scene, or None if unknown.

    A ship's length is the long side of its minimum rotated rectangle. Scenes in a
    geographic CRS are left alone (resampling them by pixel size would mix degrees and
    metres), as are scenes whose footprints cannot be read here (the caller reports why).
    """
    try:
        with rasterio.open(scene) as src:
            crs, res = src.crs, float(abs(src.res[0]))
    except (RasterioError, OSError):
        return None
    if crs is None or CRS.from_user_input(crs).is_geographic:
        return None
    footprints, _ = read_footprints(
        labels, crs, layer, prefer_layer=os.path.splitext(os.path.basename(scene))[0]
    )
    if footprints.empty:
        return None
    rects = shapely.oriented_envelope(footprints.geometry.to_numpy())
    lengths = []
    for rect in rects:
        xy = np.asarray(rect.exterior.coords) if rect.geom_type == "Polygon" else None
        if xy is None:
            continue
        sides = np.hypot(*np.diff(xy[:3], axis=0).T)
        lengths.append(float(sides.max()))
    if not lengths:
        return None
    return res, float(np.median(lengths)) / res


def upsampling_factor(ship_length_px: float) -> int:
    """The whole factor (1 to `MAX_FACTOR`) that brings a ship this long nearest TARGET_SHIP_PX."""
    if ship_length_px <= 0:
        return 1
    return int(min(MAX_FACTOR, max(1, math.floor(TARGET_SHIP_PX / ship_length_px + 0.5))))


def native_pixel_size(scene: str | os.PathLike[str]) -> float | None:
    """A scene's pixel size in CRS units, or None if unreadable or in a geographic CRS.

    Degrees are left out: they cannot be compared with metres, nor along one axis.
    """
    try:
        with rasterio.open(scene) as src:
            crs, res = src.crs, float(abs(src.res[0]))
    except (RasterioError, OSError):
        return None
    if crs is None or CRS.from_user_input(crs).is_geographic or res <= 0:
        return None
    return res


def group_by_pixel_size(sizes: Sequence[float]) -> list[list[int]]:
    """Indices of `sizes` in groups of about one pixel size (one sensor), finest first.

    A group holds the sizes within 10 % of its finest one, finest first within it too.
    """
    groups: list[list[int]] = []
    for i in sorted(range(len(sizes)), key=lambda k: sizes[k]):
        if groups and sizes[i] <= 1.1 * sizes[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


Entry = TypeVar("Entry", bound=tuple[float, Any])


def nearest_pixel_size(entries: Sequence[Entry], pixel_size: float) -> Entry:
    """The (pixel size, value) entry nearest `pixel_size` in log scale."""
    return min(entries, key=lambda entry: abs(math.log(entry[0] / pixel_size)))


def gsd_for_scene(scene: str | os.PathLike[str], rule: ScaleRule) -> float | None:
    """The pixel size to read `scene` at under `rule`, or None to read it as it is.

    The factor is that of the rule's entry nearest in log pixel size. Unreadable scenes and
    geographic CRSs give None (the reader then reports any error itself).
    """
    if not rule:
        return None
    res = native_pixel_size(scene)
    if res is None:
        return None
    native, factor = nearest_pixel_size(rule, res)
    if factor <= 1:
        return None
    gsd = res / factor
    log.info(
        "%s: read at %.3g CRS units per pixel (x%d, as training scenes of %.3g were)",
        os.path.basename(scene),
        gsd,
        factor,
        native,
    )
    return gsd
