"""Where ships may be: the polygons of a vector layer (water, a harbour outline), in a scene's CRS.

Ship detectors mask land before they look for ships (a land-sea mask is the first step of
SNAP's and most Sentinel-1/2 ship detectors): bright roofs and quays look like hulls to a
model that has seen a few dozen ships. `detect --within AREA` reads only the chips near the
area and keeps a ship when a point inside its outline lies in the area, so a ship moored
against a quay that a coarse water polygon cuts through is kept whole, not clipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from numpy.typing import NDArray
from pyproj import Transformer
from pyproj.exceptions import ProjError

from geosam.errors import LabelsError
from geosam.geometry.grid import Chip
from geosam.io.footprints import existing_layer

log = logging.getLogger(__name__)

AREA_FIX = "give polygons of where ships may be (water, a harbour outline)"


class DetectionArea:
    """The union of a layer's polygons, reprojected to the scene CRS.

    A water layer may cover a coast or a country (OpenStreetMap's has millions of vertices),
    so with `near` only the features whose extent meets that box are read, and their union is
    cut to it.

    Args:
        path: vector file of polygons (any CRS OGR reads).
        scene_crs: CRS to reproject to.
        layer: layer name (default: the only one, or one named after the scene).
        prefer_layer: the scene name.
        near: (xmin, ymin, xmax, ymax) in the scene CRS: the part of the area that matters.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        scene_crs: object,
        layer: str | None = None,
        prefer_layer: str | None = None,
        near: tuple[float, float, float, float] | None = None,
    ) -> None:
        p, name = existing_layer(path, layer, prefer_layer, AREA_FIX, "--within-layer")
        layer_crs = pyogrio.read_info(p, layer=name)["crs"]
        if layer_crs is None:
            raise LabelsError(f"{p}: layer {name!r} has no CRS; set the CRS the area is in")
        bbox = _box_in(near, scene_crs, layer_crs) if near is not None else None
        frame = gpd.read_file(p, layer=name, engine="pyogrio", bbox=bbox)
        frame = frame[~(frame.geometry.isna() | frame.geometry.is_empty)]
        kinds = set(frame.geom_type)
        if not kinds <= {"Polygon", "MultiPolygon"}:
            found = ", ".join(sorted(kinds))
            raise LabelsError(f"{p}: an area must be polygons (e.g. water), found {found}")
        polygons = frame.to_crs(scene_crs).geometry.make_valid()
        if near is not None:
            polygons = polygons.clip_by_rect(*near)
        self.geometry = shapely.union_all(np.asarray(polygons.values, dtype=object))
        shapely.prepare(self.geometry)
        self.source = p
        log.info("%s: detection area of %d polygons from layer %r", p.name, len(frame), name)

    @property
    def empty(self) -> bool:
        """True when no part of the area was read (none lies near the scene)."""
        return bool(shapely.is_empty(self.geometry))

    def chips_near(self, chips: Sequence[Chip], margin: float) -> list[Chip]:
        """The chips within `margin` (CRS units) of the area, in their order.

        The margin keeps whole every ship whose centre lies in the area: a chip that sees
        only the far end of such a ship is still read.
        """
        if self.empty or not chips:
            return []
        boxes = shapely.box(*np.asarray([c.bounds for c in chips], dtype=np.float64).T)
        hit = shapely.dwithin(self.geometry, boxes, margin)
        return [chip for chip, keep in zip(chips, hit, strict=True) if keep]

    def holds(self, ships: gpd.GeoSeries) -> NDArray[np.bool_]:
        """(N,) True where a point inside the ship's outline lies in the area."""
        if not len(ships):
            return np.zeros(0, dtype=bool)
        inside = shapely.point_on_surface(np.asarray(ships.values, dtype=object))
        return np.asarray(shapely.intersects(self.geometry, inside), dtype=bool)


def _box_in(
    box: tuple[float, float, float, float], crs: object, target: object
) -> tuple[float, float, float, float] | None:
    """`box` (in `crs`) as a box in `target`, or None (read everything) where PROJ cannot."""
    try:
        transformer = Transformer.from_crs(crs, target, always_xy=True)
        out = transformer.transform_bounds(*box, densify_pts=21)
    except ProjError:
        return None
    return tuple(float(v) for v in out) if np.all(np.isfinite(out)) else None  # type: ignore[return-value]
