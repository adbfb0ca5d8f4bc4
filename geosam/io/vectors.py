"""Write vector layers: several layers into one file, atomically, with a spatial index."""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd

from geosam.io.atomic import atomic_path
from geosam.io.layer_styles import GPKG_VERSION, LayerStyle, add_default_styles


def write_layers(
    path: str | os.PathLike[str],
    layers: dict[str, gpd.GeoDataFrame],
    styles: dict[str, LayerStyle] | None = None,
    description: str = "",
) -> None:
    """Write `layers` (name -> frame) into one GeoPackage (or other OGR file), atomically.

    A GeoPackage is version 1.2 and gets `styles` (layer name -> style) as the layers'
    default QGIS styles (`geosam.io.layer_styles`). An existing file at `path` is replaced
    only once every layer is written.
    """
    final = Path(path)
    gpkg = final.suffix.lower() == ".gpkg"
    with atomic_path(final) as tmp:
        for i, (name, frame) in enumerate(layers.items()):
            options = {"SPATIAL_INDEX": "YES"}
            if gpkg and i == 0:
                options["VERSION"] = GPKG_VERSION
            frame.to_file(tmp, layer=name, engine="pyogrio", **options)
        if gpkg and styles:
            present = {name: style for name, style in styles.items() if name in layers}
            add_default_styles(tmp, present, description)
