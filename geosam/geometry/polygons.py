"""Keep footprints polygonal through repair and clipping.

`make_valid` and intersections can return collections that mix polygons with lines or points
(a ship touching a chip edge); only the polygonal part is a footprint.
"""

from __future__ import annotations

import numpy as np
import shapely
from numpy.typing import NDArray

POLYGONAL = frozenset({"Polygon", "MultiPolygon"})


def polygonal_part(geom: shapely.Geometry) -> shapely.Geometry:
    """The polygonal part of `geom`; an empty Polygon if it has none."""
    if geom.geom_type in POLYGONAL:
        return geom
    if geom.geom_type == "GeometryCollection":
        parts = [g for g in geom.geoms if g.geom_type in POLYGONAL]
        if parts:
            return shapely.union_all(parts)
    return shapely.Polygon()


def polygonal_parts(geoms: NDArray[np.object_]) -> NDArray[np.object_]:
    """`polygonal_part` of each geometry of an array."""
    return np.array([polygonal_part(g) for g in geoms], dtype=object)
