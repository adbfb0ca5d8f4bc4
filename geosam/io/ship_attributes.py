"""Measure ship polygons on the ground: area, length, width, heading and position.

Polygons may come in any CRS: a UTM zone, Web Mercator (EPSG:3857, whose "metres" are
stretched by 1/cos(latitude)) or plain degrees (EPSG:4326). Every measure is taken on the
WGS84 ellipsoid, so the same ship gives the same numbers whichever CRS it arrives in:

- `area_m2`: geodesic area (`pyproj.Geod`) of the polygon's lon/lat vertices.
- `length_m`, `width_m`: long and short sides of the minimum rotated rectangle, drawn in a
  local azimuthal equidistant plane centred on the ship (true metres east and north of its
  centroid, from geodesic distances and azimuths; at ship scale, a few hundred metres, the
  plane distorts lengths by less than one part in 10^8).
- `heading_deg`: direction of the rectangle's long axis, clockwise from true north (not grid
  north), in [0, 180). A footprint does not say which end is the bow, so a ship steaming
  south-west and one steaming north-east both have heading 45; 0 is a north-south ship and
  90 an east-west one.
- `lon`, `lat`: centroid in EPSG:4326 degrees, longitude in [-180, 180).

A MultiPolygon is one ship: its area is the sum of its parts, and its rectangle encloses
them all. Missing or empty geometries give a row of NaN. Ships that cross the antimeridian
are measured whole (longitudes are unwrapped around each ship before measuring).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely
from geopandas import GeoSeries
from numpy.typing import NDArray
from pyproj import Geod

from geosam.errors import LabelsError
from geosam.geometry.polygons import POLYGONAL

COLUMNS = ("area_m2", "length_m", "width_m", "heading_deg", "lon", "lat")

_GEOD = Geod(ellps="WGS84")


def ship_attributes(polygons: GeoSeries) -> pd.DataFrame:
    """Ground measures of each ship polygon.

    Args:
        polygons: Polygon or MultiPolygon ship footprints in any CRS (which must be set);
            missing and empty geometries are allowed.

    Returns:
        A frame with the index of `polygons` and float64 columns `area_m2` (m²),
        `length_m`, `width_m` (m, length >= width), `heading_deg` (long axis, degrees
        clockwise from true north in [0, 180)), `lon`, `lat` (centroid, EPSG:4326 degrees).

    Raises:
        LabelsError: `polygons` has no CRS, or holds geometries other than polygons.
    """
    if polygons.crs is None:
        raise LabelsError("ship polygons have no CRS; set the scene CRS with set_crs()")
    frame = pd.DataFrame(
        np.full((len(polygons), len(COLUMNS)), np.nan), index=polygons.index, columns=COLUMNS
    )
    if len(polygons) == 0:
        return frame
    _check_polygonal(polygons)

    lonlat = _unwrapped_lonlat(polygons)
    present = ~(shapely.is_missing(lonlat) | shapely.is_empty(lonlat))
    lonlat = lonlat[present]
    if lonlat.size == 0:
        return frame
    centroids = shapely.centroid(lonlat)
    lon0, lat0 = shapely.get_x(centroids), shapely.get_y(centroids)
    local = _local_plane(lonlat, lon0, lat0)
    length, width, heading = _rectangle_axes(shapely.minimum_rotated_rectangle(local))

    frame.loc[present, "area_m2"] = [_geodesic_area(g) for g in lonlat]
    frame.loc[present, "length_m"] = length
    frame.loc[present, "width_m"] = width
    frame.loc[present, "heading_deg"] = heading
    frame.loc[present, "lon"] = (lon0 + 180.0) % 360.0 - 180.0
    frame.loc[present, "lat"] = lat0
    return frame


def _check_polygonal(polygons: GeoSeries) -> None:
    types = polygons.geom_type.dropna()
    bad = types[~types.isin(POLYGONAL)]
    if len(bad):
        raise LabelsError(
            f"ship polygons must be Polygon or MultiPolygon; got {bad.iloc[0]} "
            f"at index {bad.index[0]!r} ({len(bad)} such)"
        )


def _unwrapped_lonlat(polygons: GeoSeries) -> NDArray[np.object_]:
    """Polygons in EPSG:4326, 2D, each with longitudes within 180° of its first vertex.

    A ship across the antimeridian comes out of `to_crs` with vertices near both +180 and
    -180; shifting them next to each other (e.g. 179.9 and 180.1) keeps it one small ship.
    """
    geoms = np.asarray(polygons.to_crs("EPSG:4326").values, dtype=object)
    geoms = shapely.force_2d(geoms)
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    if len(coords) == 0:
        return geoms
    first = np.r_[0, np.flatnonzero(np.diff(index)) + 1]
    ref = np.zeros(len(geoms))
    ref[index[first]] = coords[first, 0]
    ref_lon = ref[index]
    coords[:, 0] = (coords[:, 0] - ref_lon + 180.0) % 360.0 - 180.0 + ref_lon
    return shapely.set_coordinates(geoms.copy(), coords)


def _local_plane(
    lonlat: NDArray[np.object_], lon0: NDArray[np.float64], lat0: NDArray[np.float64]
) -> NDArray[np.object_]:
    """Each polygon in metres east (x) and north (y) of its own (lon0, lat0).

    Azimuthal equidistant: every vertex keeps its geodesic distance and azimuth from the
    centre, so lengths are true and y points to true north.
    """
    coords, index = shapely.get_coordinates(lonlat, return_index=True)
    azimuth, _, distance = _GEOD.inv(lon0[index], lat0[index], coords[:, 0], coords[:, 1])
    theta = np.radians(azimuth)
    plane = np.column_stack([distance * np.sin(theta), distance * np.cos(theta)])
    return shapely.set_coordinates(lonlat.copy(), plane)


def _rectangle_axes(
    rectangles: NDArray[np.object_],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(length, width, heading) of minimum rotated rectangles in a north-up metric plane.

    A rectangle's ring starts with two adjacent sides (vertices 0-1-2); a degenerate one
    (a LineString for a zero-area polygon, a Point) has width 0 and, if a point, no heading.
    """
    coords, index = shapely.get_coordinates(rectangles, return_index=True)
    count = np.bincount(index, minlength=len(rectangles))
    start = np.searchsorted(index, np.arange(len(rectangles)))
    last = start + count - 1
    p0 = coords[start]
    p1 = coords[np.minimum(start + 1, last)]
    p2 = coords[np.minimum(start + 2, last)]
    side_a = p1 - p0
    side_b = np.where((count >= 4)[:, None], p2 - p1, 0.0)
    len_a = np.hypot(side_a[:, 0], side_a[:, 1])
    len_b = np.hypot(side_b[:, 0], side_b[:, 1])
    long_side = np.where((len_a >= len_b)[:, None], side_a, side_b)
    length = np.maximum(len_a, len_b)
    width = np.minimum(len_a, len_b)
    # Rounded to a micro-degree first, so that a north-south ship reads 0 rather than
    # 179.99999999997 from rounding noise.
    axis = np.round(np.degrees(np.arctan2(long_side[:, 0], long_side[:, 1])), 6) % 180.0
    heading = np.where(length > 0, axis, np.nan)
    return length, width, heading


def _geodesic_area(geom: shapely.Geometry) -> float:
    """Geodesic area (m²) of a lon/lat (Multi)Polygon: outer rings minus holes.

    Ring areas are taken unsigned, so ring orientation does not matter.
    """
    total = 0.0
    for part in shapely.get_parts(geom):
        total += abs(_GEOD.polygon_area_perimeter(*part.exterior.xy)[0])
        for hole in part.interiors:
            total -= abs(_GEOD.polygon_area_perimeter(*hole.xy)[0])
    return total
