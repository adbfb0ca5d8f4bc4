"""Write detected ships: one layer per scene in one file, styled for QGIS.

The format follows the extension: `.gpkg` holds any number of layers; `.geojson` / `.json`
and `.fgb` hold one. Each layer keeps its scene's CRS. The file is written under a temporary
name and renamed when complete, so a failed run never leaves half a file.

A GeoPackage is written as version 1.2 (`PRAGMA user_version` 10200), which QGIS 3.22 and
its GDAL open without a warning (recent GDAL would otherwise write 1.4), with an R-tree spatial
index per layer (`rtree_<layer>_<geometry column>`) and a `layer_styles` table laid out as
QGIS lays it out when it saves a style to a GeoPackage: one row per layer, marked
`useAsDefault`, so QGIS draws the ships as semi-transparent orange polygons with an
orange-red outline as soon as a layer is added. The style carries labels (ship length when
the layer has a `length_m` column, else the feature id), switched off until the user
enables them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import pyogrio

from geosam import __version__
from geosam.errors import LabelsError, OutputFormatError
from geosam.geometry.polygons import POLYGONAL
from geosam.io.atomic import atomic_path, refuse_existing
from geosam.io.layer_styles import (
    GPKG_VERSION,
    SHIPS,
    STYLES_TABLE,
    LayerStyle,
    add_default_styles,
)

log = logging.getLogger(__name__)

# Extension -> OGR driver; only GeoPackage holds more than one layer.
DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".fgb": "FlatGeobuf"}
MULTI_LAYER_DRIVERS = frozenset({"GPKG"})
# Table names a GeoPackage reserves for itself (compared in lower case, as SQLite does).
_RESERVED_PREFIXES = ("gpkg_", "rtree_", "sqlite_")


def write_ship_layers(
    path: str | os.PathLike[str], layers: dict[str, gpd.GeoDataFrame], overwrite: bool = False
) -> None:
    """Write ship polygons, one layer per scene, into one vector file, atomically.

    Every layer gets the same geometry type: MultiPolygon if any ship is a MultiPolygon
    (Polygons are then promoted), else Polygon; empty layers get it too.

    Args:
        path: output file; its extension picks the format: `.gpkg` (any number of layers),
            `.geojson` / `.json` or `.fgb` (a single layer).
        layers: layer name (the scene name) -> ship polygons in that scene's CRS. A frame
            may be empty (a scene without ships). Frame indexes are not written; keep ids
            in a column.
        overwrite: replace an existing file instead of refusing it.

    Raises:
        OutputFormatError: unknown extension; several layers for a one-layer format; no
            layers; layer names a GeoPackage cannot hold; geometries other than polygons.
        LabelsError: a frame has no CRS.
        OutputExistsError: `path` exists and `overwrite` is false.
    """
    final = Path(path)
    driver = _driver(final, layers)
    _check_layers(final, driver, layers)
    geometry_type = _geometry_type(layers)
    refuse_existing(final, overwrite)
    with atomic_path(final) as tmp:
        for i, (name, frame) in enumerate(layers.items()):
            dataset_options: dict[str, str] = {}
            layer_options: dict[str, str] = {}
            if driver == "GPKG":
                layer_options["SPATIAL_INDEX"] = "YES"
                if i == 0:
                    dataset_options["VERSION"] = GPKG_VERSION
            elif driver == "FlatGeobuf":
                layer_options["SPATIAL_INDEX"] = "YES"
            pyogrio.write_dataframe(
                frame,
                tmp,
                layer=name,
                driver=driver,
                geometry_type=geometry_type,
                promote_to_multi=geometry_type == "MultiPolygon",
                dataset_options=dataset_options or None,
                layer_options=layer_options or None,
            )
        if driver == "GPKG":
            add_default_styles(
                tmp,
                {name: ship_style(frame) for name, frame in layers.items()},
                f"Ships detected by geosam {__version__}",
            )
    log.info(
        "%s: wrote %d ships in %d layer(s)",
        final,
        sum(len(frame) for frame in layers.values()),
        len(layers),
    )


def _driver(path: Path, layers: dict[str, gpd.GeoDataFrame]) -> str:
    suffix = path.suffix.lower()
    supported = ", ".join(DRIVERS)
    if suffix not in DRIVERS:
        raise OutputFormatError(
            f"{path}: unknown output format {suffix or '(no extension)'!r}; use one of {supported}"
        )
    driver = DRIVERS[suffix]
    if not layers:
        raise OutputFormatError(f"{path}: no layers to write")
    if len(layers) > 1 and driver not in MULTI_LAYER_DRIVERS:
        raise OutputFormatError(
            f"{path}: {suffix} holds one layer but {len(layers)} scenes were given; "
            "write a .gpkg to keep one layer per scene"
        )
    return driver


def _check_layers(path: Path, driver: str, layers: dict[str, gpd.GeoDataFrame]) -> None:
    """Refuse layer names the file cannot hold and frames without a CRS."""
    seen: dict[str, str] = {}
    for name, frame in layers.items():
        if not name:
            raise OutputFormatError(f"{path}: empty layer name; name each layer after its scene")
        folded = name.lower()
        if driver == "GPKG" and (folded == STYLES_TABLE or folded.startswith(_RESERVED_PREFIXES)):
            raise OutputFormatError(
                f"{path}: layer name {name!r} is reserved in a GeoPackage; rename the scene"
            )
        if folded in seen:
            raise OutputFormatError(
                f"{path}: layer names {seen[folded]!r} and {name!r} differ only in case; "
                "a GeoPackage cannot hold both"
            )
        seen[folded] = name
        if frame.crs is None:
            raise LabelsError(f"{path}: layer {name!r} has no CRS; set the scene CRS")


def _geometry_type(layers: dict[str, gpd.GeoDataFrame]) -> str:
    """'MultiPolygon' if any layer holds one, else 'Polygon'; refuses other types."""
    found: set[str] = set()
    for name, frame in layers.items():
        types = set(frame.geom_type.dropna())
        other = types - POLYGONAL
        if other:
            raise OutputFormatError(
                f"layer {name!r}: ships must be Polygon or MultiPolygon; got "
                f"{', '.join(sorted(other))}"
            )
        found |= types
    return "MultiPolygon" if "MultiPolygon" in found else "Polygon"


def ship_style(frame: gpd.GeoDataFrame) -> LayerStyle:
    """The ship style, labelled with the ship's length where the layer has one."""
    label = "round(\"length_m\") || ' m'" if "length_m" in frame.columns else "$id"
    return replace(SHIPS, label=label)
