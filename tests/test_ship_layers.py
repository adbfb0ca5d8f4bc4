"""Ship layers: one styled GeoPackage layer per scene, or one GeoJSON / FlatGeobuf layer."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import textwrap
import xml.etree.ElementTree as ET
from contextlib import closing
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
import shapely
from pyproj import CRS

from geosam.errors import GeosamError, LabelsError, OutputExistsError, OutputFormatError
from geosam.io import ship_layers
from geosam.io.layer_styles import (
    CHIP_OUTLINES,
    GPKG_VERSION,
    SHIPS,
    STYLES_TABLE,
    LayerStyle,
    style_qml,
    style_sld,
)
from geosam.io.ship_layers import write_ship_layers

FILL_RGB = SHIPS.fill_rgb

UTM33 = "EPSG:32633"
MERCATOR = "EPSG:3857"
NORTH = "S2A_T33SVB_20230601 north"  # a scene name with spaces, longer than styleName's 30


@pytest.fixture
def scenes() -> dict[str, gpd.GeoDataFrame]:
    """Two scenes in different CRSs: two ships in UTM 33N, one ship in Web Mercator."""
    utm = gpd.GeoDataFrame(
        {"ship_id": [1, 2], "length_m": [100.0, 50.0]},
        geometry=[
            shapely.box(500000, 4000000, 500100, 4000020),
            shapely.box(500200, 4000040, 500250, 4000050),
        ],
        crs=UTM33,
    )
    mercator = gpd.GeoDataFrame(
        {"ship_id": [3], "length_m": [80.0]},
        geometry=[shapely.box(1669792, 4865942, 1669872, 4865957)],
        crs=MERCATOR,
    )
    return {NORTH: utm, "south": mercator}


def sql(path: Path, query: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as con:
        return con.execute(query).fetchall()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_gpkg_holds_one_layer_per_scene_in_its_crs(
    tmp_path: Path, scenes: dict[str, gpd.GeoDataFrame]
) -> None:
    out = tmp_path / "ships.gpkg"
    write_ship_layers(out, scenes)
    names = {str(name) for name, _ in pyogrio.list_layers(out)}
    assert names == {NORTH, "south", STYLES_TABLE}
    for name, frame in scenes.items():
        info = pyogrio.read_info(out, layer=name)
        assert CRS.from_user_input(info["crs"]) == frame.crs
        assert info["geometry_type"] == "Polygon"
        back = gpd.read_file(out, layer=name, engine="pyogrio")
        assert list(back.ship_id) == list(frame.ship_id)
        assert list(back.length_m) == list(frame.length_m)
        for got, want in zip(back.geometry, frame.geometry, strict=True):
            assert got.normalize().equals_exact(want.normalize(), tolerance=0)
    assert listing(tmp_path) == ["ships.gpkg"]  # no temporary or journal files left


def test_gpkg_is_version_1_2_with_spatial_indexes(
    tmp_path: Path, scenes: dict[str, gpd.GeoDataFrame]
) -> None:
    out = tmp_path / "ships.gpkg"
    write_ship_layers(out, scenes)
    assert sql(out, "PRAGMA application_id") == [(0x47504B47,)]  # 'GPKG'
    assert sql(out, "PRAGMA user_version") == [(10200,)]
    assert GPKG_VERSION == "1.2"
    tables = {row[0] for row in sql(out, "SELECT name FROM sqlite_master WHERE type='table'")}
    for name in scenes:
        info = pyogrio.read_info(out, layer=name)
        assert f"rtree_{name}_{info['geometry_name']}" in tables
    extensions = sql(out, "SELECT table_name, extension_name FROM gpkg_extensions")
    assert {(name, "gpkg_rtree_index") for name in scenes} <= set(extensions)
    assert sql(out, "PRAGMA integrity_check") == [("ok",)]
    assert sql(out, "PRAGMA foreign_key_check") == []


def test_gpkg_has_a_default_qgis_style_per_layer(
    tmp_path: Path, scenes: dict[str, gpd.GeoDataFrame]
) -> None:
    out = tmp_path / "ships.gpkg"
    write_ship_layers(out, scenes)
    columns = [row[1] for row in sql(out, f"PRAGMA table_info({STYLES_TABLE})")]
    assert columns == [
        "id",
        "f_table_catalog",
        "f_table_schema",
        "f_table_name",
        "f_geometry_column",
        "styleName",
        "styleQML",
        "styleSLD",
        "useAsDefault",
        "description",
        "owner",
        "ui",
        "update_time",
    ]
    # Registered like any GDAL attribute table, so OGR (and QGIS through it) can find it.
    assert sql(out, f"SELECT data_type FROM gpkg_contents WHERE table_name='{STYLES_TABLE}'") == [
        ("attributes",)
    ]
    rows = sql(
        out,
        "SELECT f_table_catalog, f_table_schema, f_table_name, f_geometry_column, styleName, "
        f"styleQML, styleSLD, useAsDefault, update_time FROM {STYLES_TABLE}",
    )
    assert sorted(row[2] for row in rows) == sorted(scenes)
    for catalog, schema, table, geom_column, style_name, qml, sld, default, updated in rows:
        # QGIS looks the default style up with f_table_schema='' and the geometry column.
        assert (catalog, schema, default) == ("", "", 1)
        assert geom_column == pyogrio.read_info(out, layer=table)["geometry_name"]
        assert style_name == table[:30]
        assert updated  # filled by the column default
        assert qml.startswith("<!DOCTYPE qgis")
        root = ET.fromstring(qml)
        assert root.tag == "qgis"
        assert root.get("version") == "3.22.0"
        assert root.get("styleCategories") == "AllStyleCategories"
        assert root.get("labelsEnabled") == "0"
        assert root.find("renderer-v2").get("type") == "singleSymbol"
        fill = root.find("renderer-v2/symbols/symbol/layer")
        assert fill.get("class") == "SimpleFill"
        options = {o.get("name"): o.get("value") for o in fill.findall("Option/Option")}
        *rgb, alpha = (int(c) for c in options["color"].split(","))
        assert tuple(rgb) == FILL_RGB and 0 < alpha < 255  # semi-transparent
        assert options["outline_color"].endswith(",255")
        text = root.find("labeling/settings/text-style")
        assert root.find("labeling").get("type") == "simple"
        assert text.get("fieldName") == "round(\"length_m\") || ' m'"
        assert ET.fromstring(sld).find(".//{http://www.opengis.net/se}PolygonSymbolizer")
    # OGR reads the table without complaint, e.g. a useAsDefault boolean.
    styles = pyogrio.read_dataframe(out, layer=STYLES_TABLE)
    assert styles.useAsDefault.tolist() == [True, True]


def test_empty_scene_gives_a_valid_empty_layer(
    tmp_path: Path, scenes: dict[str, gpd.GeoDataFrame]
) -> None:
    out = tmp_path / "ships.gpkg"
    empty = gpd.GeoDataFrame({"ship_id": []}, geometry=[], crs="EPSG:32634")
    multi = scenes[NORTH].copy()
    multi.loc[1, "geometry"] = shapely.MultiPolygon([multi.geometry[1], shapely.box(0, 0, 5, 5)])
    write_ship_layers(out, {"calm sea": empty, NORTH: multi})
    info = pyogrio.read_info(out, layer="calm sea")
    assert info["features"] == 0
    assert info["crs"] == "EPSG:32634"
    # One type for every layer: MultiPolygon as soon as any ship is one.
    assert info["geometry_type"] == "MultiPolygon"
    assert pyogrio.read_info(out, layer=NORTH)["geometry_type"] == "MultiPolygon"
    assert len(gpd.read_file(out, layer="calm sea", engine="pyogrio")) == 0
    assert sql(out, f"SELECT COUNT(*) FROM {STYLES_TABLE} WHERE f_table_name='calm sea'") == [(1,)]


def test_all_empty_layers_are_polygon(tmp_path: Path) -> None:
    out = tmp_path / "ships.gpkg"
    write_ship_layers(out, {"a": gpd.GeoDataFrame(geometry=[], crs=UTM33)})
    assert pyogrio.read_info(out, layer="a")["geometry_type"] == "Polygon"


@pytest.mark.parametrize("suffix", [".geojson", ".json", ".fgb"])
def test_one_layer_formats(
    tmp_path: Path, scenes: dict[str, gpd.GeoDataFrame], suffix: str
) -> None:
    out = tmp_path / f"ships{suffix}"
    write_ship_layers(out, {"south": scenes["south"]})
    back = gpd.read_file(out, engine="pyogrio")
    assert back.crs == scenes["south"].crs
    assert list(back.ship_id) == [3]
    assert listing(tmp_path) == [out.name]


def test_fgb_empty_layer(tmp_path: Path) -> None:
    out = tmp_path / "ships.fgb"
    write_ship_layers(out, {"a": gpd.GeoDataFrame({"ship_id": []}, geometry=[], crs=UTM33)})
    assert len(gpd.read_file(out, engine="pyogrio")) == 0
    assert pyogrio.read_info(out)["geometry_type"] == "Polygon"


@pytest.mark.parametrize("suffix", [".geojson", ".json", ".fgb"])
def test_one_layer_formats_refuse_two_scenes(
    tmp_path: Path, scenes: dict[str, gpd.GeoDataFrame], suffix: str
) -> None:
    out = tmp_path / f"ships{suffix}"
    with pytest.raises(OutputFormatError, match=r"holds one layer but 2 scenes.*\.gpkg") as info:
        write_ship_layers(out, scenes)
    assert isinstance(info.value, ValueError) and isinstance(info.value, GeosamError)
    assert listing(tmp_path) == []


def test_unknown_extension_lists_the_supported_ones(
    tmp_path: Path, scenes: dict[str, gpd.GeoDataFrame]
) -> None:
    with pytest.raises(OutputFormatError, match=r"'\.shp'.*\.gpkg, \.geojson, \.json, \.fgb"):
        write_ship_layers(tmp_path / "ships.shp", scenes)
    with pytest.raises(OutputFormatError, match="no extension"):
        write_ship_layers(tmp_path / "ships", scenes)
    assert listing(tmp_path) == []


def test_extension_is_case_insensitive(tmp_path: Path, scenes: dict[str, gpd.GeoDataFrame]) -> None:
    write_ship_layers(tmp_path / "SHIPS.GPKG", scenes)
    assert sql(tmp_path / "SHIPS.GPKG", "PRAGMA application_id") == [(0x47504B47,)]


def test_existing_file_is_refused_and_untouched(
    tmp_path: Path, scenes: dict[str, gpd.GeoDataFrame]
) -> None:
    out = tmp_path / "ships.gpkg"
    out.write_bytes(b"previous run")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_ship_layers(out, scenes)
    assert out.read_bytes() == b"previous run"
    assert listing(tmp_path) == ["ships.gpkg"]


def test_overwrite_replaces_the_file(tmp_path: Path, scenes: dict[str, gpd.GeoDataFrame]) -> None:
    out = tmp_path / "ships.gpkg"
    write_ship_layers(out, scenes)
    write_ship_layers(out, {"south": scenes["south"]}, overwrite=True)
    assert {str(n) for n, _ in pyogrio.list_layers(out)} == {"south", STYLES_TABLE}
    assert sql(out, f"SELECT COUNT(*) FROM {STYLES_TABLE}") == [(1,)]
    assert listing(tmp_path) == ["ships.gpkg"]


def test_failed_write_leaves_nothing(
    tmp_path: Path, scenes: dict[str, gpd.GeoDataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise RuntimeError("disk gone")

    monkeypatch.setattr(ship_layers, "add_default_styles", fail)  # after GDAL wrote layers
    with pytest.raises(RuntimeError, match="disk gone"):
        write_ship_layers(tmp_path / "ships.gpkg", scenes)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("layers", "error", "message"),
    [
        ({}, OutputFormatError, "no layers"),
        ({"": None}, OutputFormatError, "empty layer name"),
        ({"layer_styles": None}, OutputFormatError, "reserved"),
        ({"gpkg_contents": None}, OutputFormatError, "reserved"),
        ({"Harbour": None, "harbour": None}, OutputFormatError, "differ only in case"),
        ({"nocrs": "nocrs"}, LabelsError, "has no CRS"),
        ({"points": "points"}, OutputFormatError, "got Point"),
    ],
)
def test_bad_layers_are_refused(
    tmp_path: Path,
    scenes: dict[str, gpd.GeoDataFrame],
    layers: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    frames = {
        None: scenes["south"],
        "nocrs": scenes["south"].set_crs(None, allow_override=True),
        "points": gpd.GeoDataFrame(geometry=[shapely.Point(0, 0)], crs=UTM33),
    }
    with pytest.raises(error, match=message):
        write_ship_layers(tmp_path / "ships.gpkg", {k: frames[v] for k, v in layers.items()})
    assert listing(tmp_path) == []


@pytest.mark.parametrize("style", [SHIPS, CHIP_OUTLINES], ids=["filled", "outline"])
def test_style_documents_parse(style: LayerStyle) -> None:
    label = LayerStyle(style.outline_rgb, 1, style.fill_rgb, style.fill_opacity, '"a" < 3 & "b"')
    assert ET.fromstring(style_qml(label)).find("labeling") is not None
    sld = ET.fromstring(style_sld(style, "A & <B>"))
    assert sld.tag.endswith("StyledLayerDescriptor")
    fills = [e for e in sld.iter() if e.tag.endswith("}Fill")]
    assert len(fills) == (1 if style.fill_rgb else 0)


def _qgis_python() -> str | None:
    """A Python that can `import qgis` (Debian's python3-qgis), or None."""
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and os.path.exists(candidate):
            probe = subprocess.run(
                [candidate, "-c", "import qgis.core"], capture_output=True, timeout=60
            )
            if probe.returncode == 0:
                return candidate
    return None


def test_qgis_loads_layers_with_their_default_style(
    tmp_path: Path, scenes: dict[str, gpd.GeoDataFrame]
) -> None:
    python = _qgis_python()
    if python is None:
        pytest.skip("QGIS Python bindings not installed (Debian package python3-qgis)")
    out = tmp_path / "ships.gpkg"
    write_ship_layers(out, scenes)
    counts = {name: len(frame) for name, frame in scenes.items()}
    script = textwrap.dedent(
        f"""
        import sys
        from qgis.core import QgsApplication, QgsVectorLayer
        app = QgsApplication([], False)
        app.initQgis()
        for name, count in {counts!r}.items():
            layer = QgsVectorLayer({str(out)!r} + "|layername=" + name, name, "ogr")
            assert layer.isValid(), name
            assert layer.featureCount() == count, layer.featureCount()
            symbol = layer.renderer().symbol()
            color = symbol.symbolLayer(0).color()
            assert (color.red(), color.green(), color.blue()) == {FILL_RGB!r}, color.name()
            assert 0 < color.alpha() < 255, color.alpha()
            assert not layer.labelsEnabled()
        print("ok")
        """
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
