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
import sqlite3
from contextlib import closing
from pathlib import Path
from string import Template
from xml.sax.saxutils import escape

import geopandas as gpd
import pyogrio

from geosam import __version__
from geosam.errors import LabelsError, OutputFormatError
from geosam.geometry.polygons import POLYGONAL
from geosam.io.atomic import atomic_path, refuse_existing

log = logging.getLogger(__name__)

# Extension -> OGR driver; only GeoPackage holds more than one layer.
DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".fgb": "FlatGeobuf"}
MULTI_LAYER_DRIVERS = frozenset({"GPKG"})
GPKG_VERSION = "1.2"
STYLES_TABLE = "layer_styles"
# Table names a GeoPackage reserves for itself (compared in lower case, as SQLite does).
_RESERVED_PREFIXES = ("gpkg_", "rtree_", "sqlite_")

# The ship symbol, shared by the QML and SLD styles.
FILL_RGB = (255, 140, 0)  # dark orange
FILL_OPACITY = 0.3
OUTLINE_RGB = (255, 69, 0)  # orange-red
OUTLINE_WIDTH_MM = 0.6

_DATA_DEFINED = """\
<data_defined_properties>
          <Option type="Map">
            <Option type="QString" name="name" value=""/>
            <Option name="properties"/>
            <Option type="QString" name="type" value="collection"/>
          </Option>
        </data_defined_properties>"""

# A QGIS 3 layer style (QML): single-symbol fill renderer, simple labels switched off.
# $fill and $outline are "R,G,B,A"; $label is an XML-escaped QGIS expression.
QML_TEMPLATE = Template(
    """\
<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="AllStyleCategories" labelsEnabled="0" \
hasScaleBasedVisibilityFlag="0" minScale="100000000" maxScale="0" readOnly="0" \
simplifyDrawingHints="1" simplifyDrawingTol="1" simplifyLocal="1" simplifyAlgorithm="0" \
simplifyMaxScale="1" symbologyReferenceScale="-1">
  <flags>
    <Identifiable>1</Identifiable>
    <Removable>1</Removable>
    <Searchable>1</Searchable>
    <Private>0</Private>
  </flags>
  <renderer-v2 type="singleSymbol" symbollevels="0" forceraster="0" enableorderby="0" \
referencescale="-1">
    <symbols>
      <symbol type="fill" name="0" alpha="1" clip_to_extent="1" force_rhr="0">
        $data_defined
        <layer class="SimpleFill" enabled="1" locked="0" pass="0">
          <Option type="Map">
            <Option type="QString" name="border_width_map_unit_scale" value="3x:0,0,0,0,0,0"/>
            <Option type="QString" name="color" value="$fill"/>
            <Option type="QString" name="joinstyle" value="bevel"/>
            <Option type="QString" name="offset" value="0,0"/>
            <Option type="QString" name="offset_map_unit_scale" value="3x:0,0,0,0,0,0"/>
            <Option type="QString" name="offset_unit" value="MM"/>
            <Option type="QString" name="outline_color" value="$outline"/>
            <Option type="QString" name="outline_style" value="solid"/>
            <Option type="QString" name="outline_width" value="$outline_width"/>
            <Option type="QString" name="outline_width_unit" value="MM"/>
            <Option type="QString" name="style" value="solid"/>
          </Option>
          <prop k="border_width_map_unit_scale" v="3x:0,0,0,0,0,0"/>
          <prop k="color" v="$fill"/>
          <prop k="joinstyle" v="bevel"/>
          <prop k="offset" v="0,0"/>
          <prop k="offset_map_unit_scale" v="3x:0,0,0,0,0,0"/>
          <prop k="offset_unit" v="MM"/>
          <prop k="outline_color" v="$outline"/>
          <prop k="outline_style" v="solid"/>
          <prop k="outline_width" v="$outline_width"/>
          <prop k="outline_width_unit" v="MM"/>
          <prop k="style" v="solid"/>
          $data_defined
        </layer>
      </symbol>
    </symbols>
    <rotation/>
    <sizescale/>
  </renderer-v2>
  <labeling type="simple">
    <settings calloutType="simple">
      <text-style fieldName="$label" isExpression="1" fontSize="9" fontSizeUnit="Point" \
fontSizeMapUnitScale="3x:0,0,0,0,0,0" fontWeight="75" fontItalic="0" fontUnderline="0" \
fontStrikeout="0" fontLetterSpacing="0" fontWordSpacing="0" fontKerning="1" \
textColor="255,255,255,255" textOpacity="1" textOrientation="horizontal" blendMode="0" \
capitalization="0" multilineHeight="1" allowHtml="0" useSubstitutions="0" \
previewBkgrdColor="255,255,255,255">
        <text-buffer bufferDraw="1" bufferSize="0.8" bufferSizeUnits="MM" \
bufferSizeMapUnitScale="3x:0,0,0,0,0,0" bufferColor="$outline" bufferOpacity="1" \
bufferNoFill="1" bufferJoinStyle="128" bufferBlendMode="0"/>
      </text-style>
      <text-format wrapChar="" autoWrapLength="0" multilineAlign="3" formatNumbers="0" \
decimals="3" plussign="0" addDirectionSymbol="0" placeDirectionSymbol="0" \
reverseDirectionSymbol="0" leftDirectionSymbol="&lt;" rightDirectionSymbol="&gt;"/>
      <placement placement="0" centroidInside="1" centroidWhole="0" fitInPolygonOnly="0" \
dist="1" distUnits="MM" distMapUnitScale="3x:0,0,0,0,0,0" priority="5" offsetType="0" \
quadOffset="4" xOffset="0" yOffset="0" rotationAngle="0" overlapHandling="PreventOverlap"/>
      <rendering scaleVisibility="0" scaleMin="0" scaleMax="0" obstacle="1" \
obstacleFactor="1" obstacleType="1" displayAll="0" upsidedownLabels="0" limitNumLabels="0" \
maxNumLabels="2000" minFeatureSize="0" labelPerPart="0" mergeLines="0" drawLabels="1" \
fontLimitPixelSize="0" fontMinPixelSize="3" fontMaxPixelSize="10000" zIndex="0"/>
    </settings>
  </labeling>
  <blendMode>0</blendMode>
  <featureBlendMode>0</featureBlendMode>
  <layerOpacity>1</layerOpacity>
  <layerGeometryType>2</layerGeometryType>
</qgis>
"""
)

# The same symbol as OGC SLD 1.1, which QGIS stores beside the QML for other clients.
SLD_TEMPLATE = Template(
    """\
<?xml version="1.0" encoding="UTF-8"?>
<StyledLayerDescriptor xmlns="http://www.opengis.net/sld" \
xmlns:ogc="http://www.opengis.net/ogc" xmlns:se="http://www.opengis.net/se" \
xmlns:xlink="http://www.w3.org/1999/xlink" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="1.1.0" \
xsi:schemaLocation="http://www.opengis.net/sld \
http://schemas.opengis.net/sld/1.1.0/StyledLayerDescriptor.xsd">
  <NamedLayer>
    <se:Name>$name</se:Name>
    <UserStyle>
      <se:Name>$name</se:Name>
      <se:FeatureTypeStyle>
        <se:Rule>
          <se:Name>Single symbol</se:Name>
          <se:PolygonSymbolizer>
            <se:Fill>
              <se:SvgParameter name="fill">$fill</se:SvgParameter>
              <se:SvgParameter name="fill-opacity">$fill_opacity</se:SvgParameter>
            </se:Fill>
            <se:Stroke>
              <se:SvgParameter name="stroke">$outline</se:SvgParameter>
              <se:SvgParameter name="stroke-width">$outline_width</se:SvgParameter>
              <se:SvgParameter name="stroke-linejoin">bevel</se:SvgParameter>
            </se:Stroke>
          </se:PolygonSymbolizer>
        </se:Rule>
      </se:FeatureTypeStyle>
    </UserStyle>
  </NamedLayer>
</StyledLayerDescriptor>
"""
)

# As QGIS creates it through GDAL (QgsOgrProviderMetadata::saveStyle, FID "id").
_CREATE_STYLES = f"""
CREATE TABLE "{STYLES_TABLE}" (
  "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
  "f_table_catalog" TEXT(256),
  "f_table_schema" TEXT(256),
  "f_table_name" TEXT(256),
  "f_geometry_column" TEXT(256),
  "styleName" TEXT(30),
  "styleQML" TEXT,
  "styleSLD" TEXT,
  "useAsDefault" BOOLEAN,
  "description" TEXT,
  "owner" TEXT(30),
  "ui" TEXT(30),
  "update_time" DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
)"""
_REGISTER_STYLES = f"""
INSERT INTO gpkg_contents (table_name, data_type, identifier, description, srs_id)
VALUES ('{STYLES_TABLE}', 'attributes', '{STYLES_TABLE}', '', 0)"""
_INSERT_STYLE = f"""
INSERT INTO "{STYLES_TABLE}" (f_table_catalog, f_table_schema, f_table_name, f_geometry_column,
  styleName, styleQML, styleSLD, useAsDefault, description, owner)
VALUES ('', '', ?, ?, ?, ?, ?, 1, ?, '')"""


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
            _add_default_styles(tmp, layers)
    log.info(
        "%s: wrote %d ships in %d layer(s)",
        final,
        sum(len(frame) for frame in layers.values()),
        len(layers),
    )


def ship_style_qml(label_expression: str = "$id") -> str:
    """The QGIS (QML) style of a ship layer; `label_expression` is a QGIS expression."""
    return QML_TEMPLATE.substitute(
        data_defined=_DATA_DEFINED,
        fill=_rgba(FILL_RGB, FILL_OPACITY),
        outline=_rgba(OUTLINE_RGB, 1.0),
        outline_width=f"{OUTLINE_WIDTH_MM:g}",
        label=escape(label_expression, {'"': "&quot;"}),
    )


def ship_style_sld(name: str) -> str:
    """The same style as an OGC SLD 1.1 document for layer `name`."""
    return SLD_TEMPLATE.substitute(
        name=escape(name),
        fill="#{:02x}{:02x}{:02x}".format(*FILL_RGB),
        fill_opacity=f"{FILL_OPACITY:g}",
        outline="#{:02x}{:02x}{:02x}".format(*OUTLINE_RGB),
        # SLD widths are in pixels; QGIS exports 1 mm as about 3.78 px.
        outline_width=f"{OUTLINE_WIDTH_MM * 96 / 25.4:.0f}",
    )


def _rgba(rgb: tuple[int, int, int], opacity: float) -> str:
    return ",".join(str(c) for c in (*rgb, round(opacity * 255)))


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


def _add_default_styles(gpkg: Path, layers: dict[str, gpd.GeoDataFrame]) -> None:
    """Add QGIS's `layer_styles` table with one default style per layer to `gpkg`."""
    description = f"Ships detected by geosam {__version__}"
    with closing(sqlite3.connect(gpkg)) as con, con:
        columns = dict(con.execute("SELECT table_name, column_name FROM gpkg_geometry_columns"))
        con.execute(_CREATE_STYLES)
        con.execute(_REGISTER_STYLES)
        for name, frame in layers.items():
            label = "round(\"length_m\") || ' m'" if "length_m" in frame.columns else "$id"
            con.execute(
                _INSERT_STYLE,
                (
                    name,
                    columns[name],
                    name[:30],  # QGIS declares styleName TEXT(30)
                    ship_style_qml(label),
                    ship_style_sld(name),
                    description,
                ),
            )
