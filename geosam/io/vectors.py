"""Write vector layers: several layers into one file, atomically, with a spatial index."""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd

from geosam.io.atomic import atomic_path


def write_layers(path: str | os.PathLike[str], layers: dict[str, gpd.GeoDataFrame]) -> None:
    """Write `layers` (name -> frame) into one GeoPackage (or other OGR file), atomically.

    An existing file at `path` is replaced only once every layer is written.
    """
    final = Path(path)
    with atomic_path(final) as tmp:
        for name, frame in layers.items():
            frame.to_file(tmp, layer=name, engine="pyogrio", SPATIAL_INDEX="YES")
