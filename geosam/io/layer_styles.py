"""Default QGIS styles stored inside a GeoPackage, so a layer opens styled in QGIS.

QGIS keeps styles of GeoPackage layers in a `layer_styles` table, one row per style, and
draws a layer with the row marked `useAsDefault` as soon as it is added. geosam writes that
table as QGIS itself does when it saves a style to a GeoPackage (through GDAL), with a QML
document for QGIS and the same symbol as OGC SLD 1.1 for other clients. Every GeoPackage
geosam writes is version 1.2 (`PRAGMA user_version` 10200): QGIS 3.22 LTR and its GDAL open
it without a warning, where recent GDAL would otherwise write 1.4.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from string import Template
from xml.sax.saxutils import escape

GPKG_VERSION = "1.2"
STYLES_TABLE = "layer_styles"


@dataclass(frozen=True)
class LayerStyle:
    """A polygon layer's symbol and labels.

    Attributes:
        outline_rgb: outline colour.
        outline_width_mm: outline width in millimetres.
        fill_rgb: fill colour, or None for outlines only (the scene stays visible).
        fill_opacity: fill opacity 0..1.
        label: QGIS expression of each feature's label.
        labels_on: draw the labels as soon as the layer is added (else the user enables them).
    """

    outline_rgb: tuple[int, int, int]
    outline_width_mm: float
    fill_rgb: tuple[int, int, int] | None = None
    fill_opacity: float = 0.0
    label: str = "$id"
    labels_on: bool = False


SHIPS = LayerStyle((255, 69, 0), 0.6, fill_rgb=(255, 140, 0), fill_opacity=0.3)
"""Detected ships: semi-transparent orange with an orange-red outline."""
CHIP_OUTLINES = LayerStyle((0, 174, 239), 0.3, label='"chip_id"')
"""The tile index's chips: thin cyan outlines, labels (chip id) off."""
LABELLED_OUTLINES = LayerStyle((255, 69, 0), 0.5, label='"ship_id"', labels_on=True)
"""The tile index's reference ships: orange-red outlines labelled with the ship id."""

_DATA_DEFINED = """\
<data_defined_properties>
          <Option type="Map">
            <Option type="QString" name="name" value=""/>
            <Option name="properties"/>
            <Option type="QString" name="type" value="collection"/>
          </Option>
        </data_defined_properties>"""

# A QGIS 3 layer style (QML): single-symbol fill renderer and simple labels.
# $fill and $outline are "R,G,B,A"; $label is an XML-escaped QGIS expression.
QML_TEMPLATE = Template(
    """\
<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="AllStyleCategories" labelsEnabled="$labels_enabled" \
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
            <Option type="QString" name="style" value="$fill_style"/>
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
          <prop k="style" v="$fill_style"/>
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
$sld_fill            <se:Stroke>
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


def style_qml(style: LayerStyle) -> str:
    """The QGIS (QML) document of `style`."""
    fill = style.fill_rgb or style.outline_rgb
    return QML_TEMPLATE.substitute(
        data_defined=_DATA_DEFINED,
        fill=_rgba(fill, style.fill_opacity if style.fill_rgb else 0.0),
        fill_style="solid" if style.fill_rgb else "no",
        outline=_rgba(style.outline_rgb, 1.0),
        outline_width=f"{style.outline_width_mm:g}",
        label=escape(style.label, {'"': "&quot;"}),
        labels_enabled=int(style.labels_on),
    )


def style_sld(style: LayerStyle, name: str) -> str:
    """The same symbol as an OGC SLD 1.1 document for layer `name`."""
    fill = ""
    if style.fill_rgb is not None:
        fill = (
            "            <se:Fill>\n"
            f'              <se:SvgParameter name="fill">{_hex(style.fill_rgb)}</se:SvgParameter>\n'
            '              <se:SvgParameter name="fill-opacity">'
            f"{style.fill_opacity:g}</se:SvgParameter>\n"
            "            </se:Fill>\n"
        )
    return SLD_TEMPLATE.substitute(
        name=escape(name),
        sld_fill=fill,
        outline=_hex(style.outline_rgb),
        # SLD widths are in pixels; QGIS exports 1 mm as about 3.78 px.
        outline_width=f"{style.outline_width_mm * 96 / 25.4:.0f}",
    )


def add_default_styles(gpkg: Path, styles: dict[str, LayerStyle], description: str) -> None:
    """Add the `layer_styles` table to `gpkg` with `styles` (layer name -> style) as defaults."""
    with closing(sqlite3.connect(gpkg)) as con, con:
        columns = dict(con.execute("SELECT table_name, column_name FROM gpkg_geometry_columns"))
        con.execute(_CREATE_STYLES)
        con.execute(_REGISTER_STYLES)
        for name, style in styles.items():
            con.execute(
                _INSERT_STYLE,
                (
                    name,
                    columns[name],
                    name[:30],  # QGIS declares styleName TEXT(30)
                    style_qml(style),
                    style_sld(style, name),
                    description,
                ),
            )


def _rgba(rgb: tuple[int, int, int], opacity: float) -> str:
    return ",".join(str(c) for c in (*rgb, round(opacity * 255)))


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)
