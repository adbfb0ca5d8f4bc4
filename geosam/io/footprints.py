"""Read ship footprints from any OGR vector source and bring them to the scene CRS.

Footprints must be polygons (a MultiPolygon is one ship). Invalid geometries are repaired
with `shapely.make_valid` and counted; empty ones are skipped and counted; footprints in
another CRS are reprojected (and logged); footprints without a CRS are refused, because
guessing one would put ships in the wrong place without anyone noticing.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import pyogrio
import shapely
from pyproj import CRS

from geosam.errors import InputNotFoundError, LabelsError
from geosam.geometry.polygons import POLYGONAL, polygonal_part

log = logging.getLogger(__name__)


@dataclass
class FootprintReport:
    """What happened to the footprints on the way in (for logs and the tile metadata)."""

    source: str
    layer: str
    features: int = 0
    repaired: int = 0
    empty: int = 0
    reprojected_from: str | None = None
    outside_scene: int = 0
    dropped_slivers: int = 0


def existing_file(path: str | os.PathLike[str], fix: str) -> Path:
    """`path`, refused with `fix` (what to do) when there is no such file."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such file; {fix}")
    return p


def existing_layer(
    path: str | os.PathLike[str],
    layer: str | None,
    prefer: str | None,
    fix: str,
    flag: str = "--layer",
) -> tuple[Path, str]:
    """The vector file and the layer of it to read; a missing file is refused with `fix`.

    `flag` is the option that names the layer, for the error when the file has several.
    """
    p = existing_file(path, fix)
    return p, pick_layer(p, layer, prefer, flag)


def pick_layer(path: Path, layer: str | None, prefer: str | None, flag: str = "--layer") -> str:
    """The layer to read: `layer`, else the only one, else the one named `prefer`."""
    try:
        # Tables without geometry (a GeoPackage's layer_styles) are not footprint layers.
        with warnings.catch_warnings():  # GDAL's complaints about a broken file: see below
            warnings.simplefilter("ignore", RuntimeWarning)
            layers = [str(name) for name, kind in pyogrio.list_layers(path) if kind is not None]
    except pyogrio.errors.DataSourceError as exc:
        raise LabelsError(
            f"{path}: not a vector file OGR can read; give a GeoPackage, GeoJSON or Shapefile"
        ) from exc
    if not layers:
        raise LabelsError(f"{path}: has no layers")
    if layer is not None:
        if layer not in layers:
            raise LabelsError(f"{path}: no layer {layer!r}; available layers: {', '.join(layers)}")
        return layer
    if len(layers) == 1:
        return layers[0]
    if prefer in layers:
        log.info("%s: using layer %r, named after the scene", path.name, prefer)
        return str(prefer)
    raise LabelsError(
        f"{path}: has {len(layers)} layers; choose one with {flag} ({', '.join(layers)})"
    )


def read_footprints(
    path: str | os.PathLike[str],
    scene_crs: object,
    layer: str | None = None,
    prefer_layer: str | None = None,
) -> tuple[gpd.GeoDataFrame, FootprintReport]:
    """Read polygon footprints in the scene CRS.

    Args:
        path: vector file (GeoPackage, GeoJSON, Shapefile, ...).
        scene_crs: anything `pyproj.CRS.from_user_input` accepts.
        layer: layer name; required when the file has several and none is named `prefer_layer`.
        prefer_layer: layer to use when `layer` is None and the file has several (the scene stem).

    Returns:
        Footprints (one row per ship, column ``ship_id`` from the source ``id`` column or the
        row number, geometry valid and polygonal, in the scene CRS) and a report.
    """
    p, name = existing_layer(path, layer, prefer_layer, "check the labels path")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gdf = gpd.read_file(p, layer=name, engine="pyogrio")
    report = FootprintReport(source=str(p), layer=name, features=len(gdf))
    if len(gdf) == 0:
        raise LabelsError(f"{p}: layer {name!r} is empty; draw at least one ship footprint")
    if gdf.crs is None:
        raise LabelsError(
            f"{p}: layer {name!r} has no CRS; set it (QGIS: Layer > Set CRS, or "
            "geopandas set_crs) to the CRS the footprints were drawn in"
        )
    _refuse_projected_lonlat(gdf, p, name)
    gdf = gpd.GeoDataFrame({"ship_id": ship_ids(gdf, p)}, geometry=gdf.geometry.values, crs=gdf.crs)

    empty = gdf.geometry.isna() | gdf.geometry.is_empty
    report.empty = int(empty.sum())
    gdf = gdf[~empty]
    kinds = set(gdf.geom_type) - POLYGONAL - {"GeometryCollection"}
    if kinds:
        raise LabelsError(
            f"{p}: layer {name!r} holds {', '.join(sorted(kinds))} geometries; footprints must "
            "be polygons (outline each ship, or buffer points for --prompts instead)"
        )
    invalid = ~gdf.geometry.is_valid
    report.repaired = int(invalid.sum())
    if report.repaired:
        fixed = shapely.make_valid(gdf.geometry.values[invalid.values])
        gdf.loc[invalid, "geometry"] = [polygonal_part(g) for g in fixed]
    gdf.geometry = [polygonal_part(g) for g in gdf.geometry.values]
    still_empty = gdf.geometry.is_empty
    report.empty += int(still_empty.sum())
    gdf = gdf[~still_empty]
    if len(gdf) == 0:
        raise LabelsError(f"{p}: layer {name!r} has no usable polygon; all were empty")
    if report.repaired:  # said only of footprints that are used
        log.warning("%s: repaired %d invalid footprints", p.name, report.repaired)
    if report.empty:
        log.warning("%s: skipped %d empty footprints", p.name, report.empty)

    target = CRS.from_user_input(scene_crs)
    if not CRS.from_user_input(gdf.crs).equals(target):
        report.reprojected_from = CRS.from_user_input(gdf.crs).to_string()
        log.info(
            "%s: reprojecting footprints from %s to the scene CRS %s",
            p.name,
            report.reprojected_from,
            target.to_string(),
        )
        gdf = gdf.to_crs(target)
    return gdf.reset_index(drop=True), report


def _refuse_projected_lonlat(frame: gpd.GeoDataFrame, path: Path, layer: str) -> None:
    """Refuse lon/lat footprints whose coordinates cannot be degrees.

    A GeoJSON file without a ``crs`` member is lon/lat (RFC 7946), so it is read as
    EPSG:4326; coordinates in metres read that way land nowhere near the scene, and the
    cause is the missing CRS, not the scene.
    """
    if not CRS.from_user_input(frame.crs).is_geographic:
        return
    left, bottom, right, top = frame.total_bounds
    if min(left, bottom) >= -360 and max(right, top) <= 360:
        return
    raise LabelsError(
        f"{path}: layer {layer!r} has no CRS, so it is read as lon/lat (as GeoJSON requires), "
        f"but its coordinates (x up to {max(abs(left), abs(right)):.0f}) look projected; "
        "save it with its CRS (QGIS: Export > Save Features As, or a GeoPackage)"
    )


def ship_ids(frame: gpd.GeoDataFrame, path: Path) -> list[int]:
    """Integer ids from an ``id`` column, else (missing or not integers) the row numbers."""
    if "id" in frame.columns:
        try:
            values = [int(v) for v in frame["id"]]
            if len(set(values)) == len(values):
                return values
        except (TypeError, ValueError):
            pass
        log.warning("%s: column 'id' is not unique integers; numbering ships by row", path.name)
    return list(range(len(frame)))
