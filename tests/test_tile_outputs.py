"""`geosam tile` outputs are complete or absent, open in QGIS 3.22 cleanly and styled, and say
why when the footprints do not fit the scene."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner, Result
from conftest import UTM33, pixel_polygon

from geosam.cli.main import cli
from geosam.io.staging import staging_folder

GEOSAM = [sys.executable, "-m", "geosam"]


def tile(*args: object) -> Result:
    return CliRunner().invoke(cli, ["-q", "tile", *map(str, args)])


def one_error_line(result: Result, name: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and name in lines[0], result.stderr
    return lines[0]


def sql(path: Path, query: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as con:
        return con.execute(query).fetchall()


def test_index_is_geopackage_1_2_with_default_styles(make_scene, make_layer, tmp_path):
    layer = make_layer([pixel_polygon(10, 10, 30, 16)])
    out = tmp_path / "out"
    assert tile(make_scene(), out, "--labels", layer, "--size", 64).exit_code == 0
    index = out / "index.gpkg"
    assert sql(index, "PRAGMA user_version") == [(10200,)]  # GeoPackage 1.2, not 1.4
    styles = dict(
        sql(index, "SELECT f_table_name, styleQML FROM layer_styles WHERE useAsDefault = 1")
    )
    assert set(styles) == {"chips", "ships"}
    # Chips are outlines only (the scene stays visible), ships are labelled with their id.
    assert 'name="style" value="no"' in styles["chips"]
    assert 'labelsEnabled="0"' in styles["chips"]
    assert 'labelsEnabled="1"' in styles["ships"] and "ship_id" in styles["ships"]


def test_index_without_labels_styles_the_chips_only(make_scene, tmp_path):
    out = tmp_path / "out"
    assert tile(make_scene(), out, "--size", 64).exit_code == 0
    assert sql(out / "index.gpkg", "SELECT f_table_name FROM layer_styles") == [("chips",)]


def test_failure_mid_run_leaves_no_folder_and_keeps_a_previous_one(
    make_scene, tmp_path, monkeypatch
):
    scene, out = make_scene(), tmp_path / "out"
    assert tile(scene, out, "--size", 64).exit_code == 0
    before = sorted(p.name for p in (out / "chips").iterdir())

    from geosam.pipelines import tile as tile_module

    real, calls = tile_module.write_chip, []

    def fail_on_third(*args: object) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(tile_module, "write_chip", fail_on_third)
    one_error_line(tile(scene, out, "--size", 32, "--overwrite"), str(out))
    assert sorted(p.name for p in (out / "chips").iterdir()) == before  # previous run intact
    fresh = tmp_path / "fresh"
    calls.clear()
    one_error_line(tile(scene, fresh, "--size", 32), str(fresh))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "scene.tif"]


def test_labels_that_miss_the_scene_are_an_error(make_scene, make_layer, tmp_path):
    far = make_layer([pixel_polygon(5000, 5000, 5010, 5004)])
    out = tmp_path / "out"
    line = one_error_line(tile(make_scene(), out, "--labels", far), far.name)
    assert "none of its 1 footprints lies on the scene" in line
    assert not out.exists()


def test_geojson_without_crs_in_metres_says_why(make_scene, tmp_path):
    path = tmp_path / "ships.geojson"
    ring = [[500020.0, 3999980.0], [500060.0, 3999980.0], [500060.0, 3999960.0]]
    feature = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    doc = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {}, "geometry": feature}],
    }
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    line = one_error_line(tile(make_scene(), out, "--labels", path), path.name)
    assert "no CRS" in line and "look projected" in line
    assert not out.exists()


def test_geojson_in_lon_lat_is_still_read(make_scene, make_layer, tmp_path):
    ships = gpd.GeoDataFrame(geometry=[pixel_polygon(10, 10, 30, 16)], crs=UTM33).to_crs(4326)
    path = tmp_path / "ships.geojson"
    ships.to_file(path, driver="GeoJSON")
    result = CliRunner().invoke(
        cli, ["tile", str(make_scene()), str(tmp_path / "o"), "--labels", str(path), "--size", 64]
    )
    assert result.exit_code == 0, result.output
    assert "1 ship labels" in result.stdout


def _chips(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "chips").iterdir())}


def test_kill_9_then_the_same_command_gives_the_uninterrupted_output(
    make_scene, make_layer, tmp_path
):
    """A `geosam tile` killed mid-run leaves no output; running it again gives what one
    uninterrupted run gives."""
    scene = make_scene(width=1024, height=1024)
    layer = make_layer([pixel_polygon(10 + 90 * k, 20, 40 + 90 * k, 30) for k in range(10)])
    args = [str(scene), "--labels", str(layer), "--size", "64", "--overlap", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run([*GEOSAM, "-q", "tile", args[0], str(reference), *args[1:]], env=env, check=True)

    out = tmp_path / "out"
    command = [*GEOSAM, "-q", "tile", args[0], str(out), *args[1:]]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    stage = staging_folder(out) / "chips"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if stage.exists() and len(os.listdir(stage)) >= 50:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "tile finished before it could be killed; use a larger scene"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing that looks like an output

    subprocess.run(command, env=env, check=True)
    assert not staging_folder(out).exists()
    assert _chips(out) == _chips(reference)
    for name in ("chips", "ships"):
        got = gpd.read_file(out / "index.gpkg", layer=name)
        want = gpd.read_file(reference / "index.gpkg", layer=name)
        assert got.equals(want)
    meta, ref = (json.loads((d / "metadata.json").read_text()) for d in (out, reference))
    meta.pop("created"), ref.pop("created")
    assert meta == ref
    assert sorted(p.name for p in (out / "labels").iterdir()) == sorted(
        p.name for p in (reference / "labels").iterdir()
    )


@pytest.mark.parametrize("codec", ["zstd", "lzw", "none"])
def test_other_codecs_give_the_same_pixels(make_scene, tmp_path, codec):
    scene = make_scene()
    outs = {c: tmp_path / c for c in ("deflate", codec)}
    for c, out in outs.items():
        assert tile(scene, out, "--size", 64, "--compress", c).exit_code == 0
    assert json.loads((outs[codec] / "metadata.json").read_text())["chip_compression"] == codec
    names = sorted(p.name for p in (outs["deflate"] / "chips").iterdir())
    assert names == sorted(p.name for p in (outs[codec] / "chips").iterdir())
    for name in names:
        with (
            rasterio.open(outs["deflate"] / "chips" / name) as a,
            rasterio.open(outs[codec] / "chips" / name) as b,
        ):
            assert np.array_equal(a.read(), b.read()) and a.transform == b.transform
            assert (b.compression.name.lower() if b.compression else "none") == codec


def test_tile_starts_without_importing_torch(make_scene, tmp_path):
    """Commands load lazily: tiling needs rasterio, not the model stack (seconds of start-up)."""
    code = (
        "import sys; from geosam.cli.main import cli; "
        f"sys.argv = ['geosam', '-q', 'tile', {str(make_scene())!r}, {str(tmp_path / 'o')!r}]; "
        "import atexit; atexit.register(lambda: print('torch' in sys.modules)); cli()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_reading_in_panels_writes_what_grid_order_writes(
    make_scene, make_layer, tmp_path, monkeypatch, read_orders
):
    """A cache too small for a chip row makes tiling read in panels; the outputs are the same."""
    from geosam.data.settings import ChipSettings
    from geosam.io import reader
    from geosam.pipelines.tile import tile_scene

    scene = make_scene(
        width=600, height=300, dtype="uint16", tiled=True, blockxsize=64, blockysize=64
    )
    ships = [pixel_polygon(c, r, c + 30, r + 8) for c in (40, 230, 470) for r in (50, 170)]
    labels = make_layer(ships)
    outs = {}
    for name, cache in (("rows", 2**30), ("panels", 400_000)):
        monkeypatch.setattr(reader, "READ_CACHE_BYTES", cache)
        outs[name] = tmp_path / name
        tile_scene(scene, outs[name], ChipSettings(size=128, overlap=16), labels, coco=True)
    grid_order, panels = read_orders
    assert panels != grid_order and sorted(panels) == sorted(grid_order) == grid_order

    for layer in ("chips", "ships"):  # the index in grid order either way
        rows = gpd.read_file(outs["rows"] / "index.gpkg", layer=layer)
        assert rows.equals(gpd.read_file(outs["panels"] / "index.gpkg", layer=layer))
    for name in grid_order:
        with (
            rasterio.open(outs["rows"] / "chips" / f"{name}.tif") as a,
            rasterio.open(outs["panels"] / "chips" / f"{name}.tif") as b,
        ):
            assert np.array_equal(a.read(), b.read()) and a.transform == b.transform
    coco = {k: json.loads((out / "annotations.json").read_text()) for k, out in outs.items()}
    for k in coco:  # the same annotations per chip file, whatever the image ids
        files = {i["id"]: i["file_name"] for i in coco[k]["images"]}
        coco[k] = sorted((files[a["image_id"]], a["bbox"]) for a in coco[k]["annotations"])
    assert coco["rows"] == coco["panels"] and coco["rows"]
