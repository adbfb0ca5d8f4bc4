"""`geosam tile` end to end: written files, their georeference and labels, refusals, errors."""

import errno
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from click.testing import CliRunner
from conftest import TRANSFORM, UTM33, pixel_polygon, write_raster

from geosam.cli.main import cli
from geosam.data.samples import SceneChips
from geosam.data.settings import ChipSettings
from geosam.errors import OutputExistsError
from geosam.io.atomic import atomic_path
from geosam.io.labelfile import read_labels
from geosam.pipelines.tile import tile_scene


def tile(*args, quiet=True):
    """Run ``geosam [-q] tile ARGS`` in-process."""
    argv = (["-q"] if quiet else []) + ["tile", *map(str, args)]
    return CliRunner().invoke(cli, argv)


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def error_line(result):
    """The single ``Error: ...`` line of a GeosamError exit, checked for shape."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` with its bytes and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(folder: Path) -> list[str]:
    """Temporary or journal files that should not outlive a run."""
    return [
        str(p)
        for p in folder.rglob("*")
        if p.name.startswith(".") or ".tmp" in p.name or p.name.endswith(("-wal", "-shm"))
    ]


def test_chips_are_georeferenced_scene_windows(make_scene, tmp_path):
    scene = make_scene(width=150, height=100)
    out = tmp_path / "out"
    result = ok(tile(scene, out, "--size", 64, "--overlap", 16, quiet=False))
    assert result.stdout.strip() == f"6 chips written to {out}"
    chips = gpd.read_file(out / "index.gpkg", layer="chips")
    assert sorted(p.name for p in (out / "chips").iterdir()) == [
        f"{c}.tif" for c in sorted(chips["chip_id"])
    ]
    with rasterio.open(scene) as src:
        assert chips.crs == src.crs
        for row in chips.itertuples():
            window = rasterio.windows.Window(row.col_off, row.row_off, 64, 64)
            with rasterio.open(out / "chips" / f"{row.chip_id}.tif") as chip:
                assert chip.crs == src.crs
                assert chip.transform == src.window_transform(window)
                assert (chip.width, chip.height, chip.count) == (64, 64, 3)
                assert chip.dtypes == ("uint8",) * 3
                np.testing.assert_array_equal(chip.read(), src.read(window=window))
            assert shapely.equals_exact(
                row.geometry, shapely.box(*rasterio.windows.bounds(window, src.transform)), 1e-6
            )
            assert (row.pad_bottom, row.pad_right, row.valid_fraction) == (0, 0, 1.0)
    assert leftovers(out) == []
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["chips_written"] == 6 and meta["settings"]["size"] == 64
    assert meta["grid"]["transform"] == list(TRANSFORM)[:6]
    assert not (out / "labels").exists() and "ships" not in pyogrio.list_layers(out / "index.gpkg")


@pytest.mark.parametrize("size", [40, 100, 200])
def test_chip_files_hold_the_scene_window_whatever_their_block_layout(make_scene, tmp_path, size):
    """Chips under one block (strips), and chips whose last blocks run past their edge."""
    scene = make_scene(width=300, height=200)
    out = tmp_path / "out"
    ok(tile(scene, out, "--size", size, "--overlap", size // 8))
    chips = gpd.read_file(out / "index.gpkg", layer="chips")
    with rasterio.open(scene) as src:
        whole = src.read()
    for row in chips.itertuples():
        with rasterio.open(out / "chips" / f"{row.chip_id}.tif") as chip:
            pixels = chip.read()
        assert pixels.shape == (3, size, size)
        rows, cols = size - row.pad_bottom, size - row.pad_right
        window = whole[:, row.row_off : row.row_off + rows, row.col_off : row.col_off + cols]
        np.testing.assert_array_equal(pixels[:, :rows, :cols], window)
        assert not pixels[:, rows:].any() and not pixels[:, :, cols:].any()


def test_scene_smaller_than_a_chip_gives_one_padded_chip(make_scene, tmp_path):
    scene = make_scene(width=50, height=40)
    out = tmp_path / "out"
    ok(tile(scene, out, "--size", 64, "--overlap", 8))
    (row,) = gpd.read_file(out / "index.gpkg", layer="chips").itertuples()
    assert (row.chip_id, row.pad_bottom, row.pad_right) == ("r000000_c000000", 24, 14)
    assert row.valid_fraction == pytest.approx(50 * 40 / 64**2)
    with rasterio.open(scene) as src, rasterio.open(out / "chips" / f"{row.chip_id}.tif") as chip:
        pixels = chip.read()
        assert chip.transform == src.transform and chip.shape == (64, 64)
        np.testing.assert_array_equal(pixels[:, :40, :50], src.read())
    assert not pixels[:, 40:].any() and not pixels[:, :, 50:].any()


SHIPS = [
    pixel_polygon(10, 20, 30, 26),
    pixel_polygon(60, 40, 72, 46),  # cut by the chip edge at column 64
    shapely.MultiPolygon([pixel_polygon(90, 90, 96, 93), pixel_polygon(100, 100, 104, 110)]),
    pixel_polygon(62, 80, 80, 84),  # a sliver on the left chips
    pixel_polygon(900, 900, 910, 905),  # outside the scene
]


def test_labels_index_and_coco_agree_with_the_samples(make_scene, make_layer, tmp_path):
    scene = make_scene(width=128, height=128)
    layer = make_layer(SHIPS, ids=[11, 12, 13, 14, 15])
    out = tmp_path / "out"
    args = ["--size", 64, "--overlap", 0]
    result = ok(tile(scene, out, "--labels", layer, "--coco", *args, quiet=False))
    assert "5 ship labels (1 outside scene, 1 dropped slivers)" in result.stdout

    settings = ChipSettings(size=64, overlap=0)
    with SceneChips(scene, labels=layer, settings=settings) as chips:
        samples = {s.chip.chip_id: s for s in chips}
    assert len(samples) == 4
    ships = gpd.read_file(out / "index.gpkg", layer="ships")
    index = gpd.read_file(out / "index.gpkg", layer="chips").set_index("chip_id")
    coco = json.loads((out / "annotations.json").read_text())
    images = {img["file_name"]: img["id"] for img in coco["images"]}
    assert ships.crs == UTM33 and len(ships) == 5
    assert coco["categories"] == [{"id": 1, "name": "ship", "supercategory": "vessel"}]

    for chip_id, sample in samples.items():
        expected = sample.labels
        got = read_labels(out / "labels" / f"{chip_id}.npz")
        np.testing.assert_array_equal(got.ship_ids, expected.ship_ids)
        np.testing.assert_array_equal(got.boxes, expected.boxes)
        np.testing.assert_array_equal(got.masks, expected.masks)
        np.testing.assert_array_equal(got.visible, expected.visible)
        assert got.boxes.dtype == np.float32 and got.masks.shape == (len(got.ship_ids), 64, 64)
        assert index.loc[chip_id, "ship_count"] == len(expected)

        rows = ships[ships.chip_id == chip_id].sort_values("ship_id")
        assert rows.ship_id.tolist() == expected.ship_ids.tolist()
        for geom, footprint in zip(rows.geometry, expected.footprints, strict=True):
            # GeoPackage promotes a layer of Polygons and MultiPolygons to MultiPolygons.
            assert geom.equals(footprint) and geom.hausdorff_distance(footprint) < 1e-6

        image_id = images[f"chips/{chip_id}.tif"]
        annotations = [a for a in coco["annotations"] if a["image_id"] == image_id]
        assert [a["ship_id"] for a in annotations] == expected.ship_ids.tolist()
        for a, box, mask in zip(annotations, expected.boxes, expected.masks, strict=True):
            x, y, w, h = a["bbox"]
            np.testing.assert_allclose([x, y, x + w, y + h], box, atol=1e-3)
            assert a["area"] == int(mask.sum())
            for ring in a["segmentation"]:
                xy = np.reshape(ring, (-1, 2))
                assert xy.min() >= -1e-3 and xy.max() <= 64 + 1e-3
                assert (xy.min(axis=0) >= box[:2] - 1e-3).all()
                assert (xy.max(axis=0) <= box[2:] + 1e-3).all()

    # The MultiPolygon is one ship with two rings; the cut ship is in two chips.
    (multi,) = [a for a in coco["annotations"] if a["ship_id"] == 13]
    assert len(multi["segmentation"]) == 2
    assert sorted(ships[ships.ship_id == 12].chip_id) == ["r000000_c000000", "r000000_c000064"]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["ships"] == 5
    report = meta["footprints"]
    assert (report["features"], report["outside_scene"], report["dropped_slivers"]) == (5, 1, 1)
    assert leftovers(out) == []


def test_repaired_and_empty_footprints_are_reported(make_scene, make_layer, tmp_path):
    x0, y0 = TRANSFORM @ (10, 10)
    x1, y1 = TRANSFORM @ (30, 20)
    bow_tie = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    layer = make_layer([bow_tie, shapely.Polygon(), pixel_polygon(40, 40, 44, 44)])
    out = tmp_path / "out"
    result = ok(
        tile(make_scene(), out, "--labels", layer, "--size", 64, "--overlap", 8, quiet=False)
    )
    assert "2 ship labels (1 repaired, 1 empty)" in result.stdout
    ships = gpd.read_file(out / "index.gpkg", layer="ships")
    assert sorted(ships.ship_id) == [1, 3] and ships.is_valid.all()


def test_existing_output_is_refused_and_left_unchanged(make_scene, tmp_path):
    scene = make_scene()
    out = tmp_path / "out"
    ok(tile(scene, out, "--size", 64, "--overlap", 8))
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    line = error_line(tile(scene, out, "--size", 32, "--overlap", 8))
    assert line == f"Error: {out}: folder is not empty; choose another output or pass --overwrite"
    assert snapshot(out) == before


def test_overwrite_replaces_previous_outputs(make_scene, make_layer, tmp_path):
    scene = make_scene(width=128, height=128)
    out = tmp_path / "out"
    ok(tile(scene, out, "--size", 64, "--overlap", 0, "--labels", make_layer(SHIPS), "--coco"))
    (out / "notes.txt").write_text("mine")
    ok(tile(scene, out, "--size", 32, "--overlap", 0, "--overwrite"))
    names = sorted(p.name for p in (out / "chips").iterdir())
    assert len(names) == 16 and "r000000_c000032.tif" in names
    assert not (out / "labels").exists() and not (out / "annotations.json").exists()
    assert json.loads((out / "metadata.json").read_text())["settings"]["size"] == 32
    assert len(gpd.read_file(out / "index.gpkg", layer="chips")) == 16
    assert (out / "notes.txt").read_text() == "mine"  # not geosam's: kept
    assert leftovers(out) == []


@pytest.mark.filterwarnings("ignore:'crs' was not provided:UserWarning")
def test_overwrite_with_bad_input_keeps_the_previous_output(make_scene, make_layer, tmp_path):
    scene = make_scene()
    out = tmp_path / "out"
    ok(tile(scene, out, "--size", 64, "--overlap", 8))
    before = snapshot(out)
    bad = make_layer([pixel_polygon(0, 0, 4, 4)], crs=None)
    assert "has no CRS" in error_line(tile(scene, out, "--labels", bad, "--overwrite"))
    assert snapshot(out) == before


def uint16_scene(tmp_path, name="u16.tif"):
    rng = np.random.default_rng(3)
    data = rng.integers(500, 4000, size=(4, 96, 128)).astype(np.uint16)
    data[:, :, :40] //= 4  # a darker left side
    return write_raster(tmp_path / name, data), data


def test_per_band_stretch_is_recorded_and_a_record_without_it_reads_per_band(tmp_path):
    scene, data = uint16_scene(tmp_path)
    data[2] //= 3  # a dim third band: pooled and per-band percentiles differ
    write_raster(scene, data)
    stretches = {}
    for flag in ("", "--per-band-stretch"):
        out = tmp_path / f"out{flag}"
        ok(tile(scene, out, "--size", 64, "--overlap", 16, *([flag] if flag else [])))
        meta = json.loads((out / "metadata.json").read_text())
        assert meta["settings"]["per_band_stretch"] == bool(flag)
        stretches[flag] = meta["stretch"]
    assert len(set(stretches[""]["low"])) == 1 and len(set(stretches[""]["high"])) == 1
    assert len(set(stretches["--per-band-stretch"]["high"])) == 3
    # A model or tile folder recorded before the setting existed was stretched per band.
    record = ChipSettings().to_dict()
    assert ChipSettings.from_dict(record).per_band_stretch is False
    del record["per_band_stretch"]
    assert ChipSettings.from_dict(record).per_band_stretch is True


def test_recorded_stretch_reproduces_identical_chips(tmp_path):
    scene, _ = uint16_scene(tmp_path)
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ok(tile(scene, first, "--size", 64, "--overlap", 16, "--bands", "3,2,1"))
    meta = json.loads((first / "metadata.json").read_text())
    stretch = meta["stretch"]
    assert stretch["bands"] == [3, 2, 1] and stretch["percentiles"] == [2.0, 98.0]
    assert all(lo < hi for lo, hi in zip(stretch["low"], stretch["high"], strict=True))
    assert meta["settings"]["stretch"] == stretch

    # Other percentiles, but the recorded stretch wins: identical pixels.
    stretch_file = first / "metadata.json"
    ok(
        tile(
            scene,
            second,
            "--size",
            64,
            "--overlap",
            16,
            "--stretch",
            stretch_file,
            "--percentiles",
            20,
            80,
        )
    )
    ok(
        tile(
            scene, third, "--size", 64, "--overlap", 16, "--bands", "3,2,1", "--percentiles", 20, 80
        )
    )
    assert json.loads((second / "metadata.json").read_text())["stretch"] == stretch
    chips = sorted(p.name for p in (first / "chips").iterdir())
    assert chips == sorted(p.name for p in (second / "chips").iterdir())
    differ = 0
    for name in chips:
        with (
            rasterio.open(first / "chips" / name) as a,
            rasterio.open(second / "chips" / name) as b,
        ):
            np.testing.assert_array_equal(a.read(), b.read())
        with rasterio.open(third / "chips" / name) as c, rasterio.open(first / "chips" / name) as a:
            differ += not np.array_equal(a.read(), c.read())
    assert differ == len(chips)  # the percentiles do matter when estimated


def test_uint16_chips_follow_the_scene_stretch(tmp_path):
    scene, _ = uint16_scene(tmp_path)
    out = tmp_path / "out"
    ok(tile(scene, out, "--size", 64, "--overlap", 16, "--bands", "4"))
    stretch = json.loads((out / "metadata.json").read_text())["stretch"]
    assert stretch["bands"] == [4, 4, 4]
    lo, hi = stretch["low"][0], stretch["high"][0]
    for path in (out / "chips").iterdir():
        with rasterio.open(path) as chip, rasterio.open(scene) as src:
            window = rasterio.windows.from_bounds(*chip.bounds, transform=src.transform)
            raw = src.read(4, window=window).astype(np.float64)
            expected = np.clip(np.rint((raw - lo) * 255 / (hi - lo)), 0, 255)
            pixels = chip.read()
        assert (pixels[0] == pixels[1]).all() and (pixels[1] == pixels[2]).all()
        assert np.abs(pixels[0] - expected).max() <= 1


def test_nodata_chips_are_skipped_and_valid_fraction_recorded(tmp_path):
    data = np.full((3, 64, 160), 200, np.uint8)
    data[:, :, 64:] = 0
    data[:, :, 40:64] = 0  # nodata reaches into the first chip
    scene = write_raster(tmp_path / "nd.tif", data, nodata=0)
    out = tmp_path / "out"
    result = ok(tile(scene, out, "--size", 64, "--overlap", 0, quiet=False))
    assert result.stdout.strip() == f"1 chips written to {out} (2 without valid pixels skipped)"
    (row,) = gpd.read_file(out / "index.gpkg", layer="chips").itertuples()
    assert row.chip_id == "r000000_c000000" and row.valid_fraction == pytest.approx(40 / 64)
    meta = json.loads((out / "metadata.json").read_text())
    assert (meta["chips_written"], meta["chips_skipped"]) == (1, 2)
    assert sorted(p.name for p in (out / "chips").iterdir()) == ["r000000_c000000.tif"]


def test_gsd_is_ground_metres_on_a_lon_lat_scene(make_scene, tmp_path):
    """`--gsd 5` on a lon/lat scene at 36 deg: chip pixels 5 m wide and tall on the ground."""
    from geosam.data.scale import ground_pixel_size

    scene = make_scene(
        width=100,
        height=100,
        name="ll.tif",
        crs="EPSG:4326",
        transform=Affine(1e-4, 0, 15, 0, -1e-4, 36),
    )
    out = tmp_path / "out"
    ok(tile(scene, out, "--gsd", 5, "--size", 64, "--overlap", 0))
    chip = next((out / "chips").iterdir())
    pixel = ground_pixel_size(chip)
    assert pixel is not None and pixel.along == pytest.approx((5.0, 5.0), rel=1e-3)
    # The scene's 9.0 x 11.1 m pixels become about 1.8 x 2.2 read pixels each.
    meta = json.loads((out / "metadata.json").read_text())
    assert (meta["grid"]["width"], meta["grid"]["height"]) == (181, 222)


def test_gsd_chips_have_the_target_pixel_size(make_scene, tmp_path):
    scene = make_scene(width=300, height=200)
    out = tmp_path / "out"
    ok(tile(scene, out, "--gsd", 5, "--size", 64, "--overlap", 8))
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["grid"]["gsd"] == 5 and (meta["grid"]["width"], meta["grid"]["height"]) == (120, 80)
    chips = gpd.read_file(out / "index.gpkg", layer="chips")
    assert len(chips) == 2 * 2
    for row in chips.itertuples():
        with rasterio.open(out / "chips" / f"{row.chip_id}.tif") as chip:
            assert chip.res == (5.0, 5.0)
            x, y = TRANSFORM.c + 5 * row.col_off, TRANSFORM.f - 5 * row.row_off
            assert chip.transform == Affine(5.0, 0.0, x, 0.0, -5.0, y)


def test_bands_option_picks_bands(make_scene, tmp_path):
    scene = make_scene(count=4, width=64, height=64)
    out = tmp_path / "out"
    ok(tile(scene, out, "--size", 64, "--overlap", 8, "--bands", "4,1,2"))
    with rasterio.open(scene) as src, rasterio.open(out / "chips" / "r000000_c000000.tif") as chip:
        np.testing.assert_array_equal(chip.read(), src.read([4, 1, 2]))


@pytest.fixture
def bad_inputs(tmp_path, make_scene, make_layer):
    """Factory of (scene, extra args) for each bad input."""
    text = tmp_path / "notes.tif"
    text.write_text("not a raster\n")
    scene = make_scene(name="good.tif")
    box = pixel_polygon(0, 0, 4, 4)

    def layer(geometries, **kwargs):
        return make_layer(geometries, name=f"l{len(list(tmp_path.glob('l*.gpkg')))}.gpkg", **kwargs)

    uint8_meta = tmp_path / "meta.json"
    uint8_meta.write_text(json.dumps({"stretch": None}))
    empty = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"id": []}, geometry=[], crs=UTM33).to_file(empty, engine="pyogrio")
    return {
        "missing": (tmp_path / "nope.tif", [], f"{tmp_path / 'nope.tif'}: no such file"),
        "not a raster": (text, [], f"{text}: not a raster GDAL can read"),
        "no crs": (make_scene(name="nocrs.tif", crs=None), [], "has no CRS; assign one"),
        "no geotransform": (
            make_scene(name="nogt.tif", transform=None),
            [],
            "has no geotransform (pixel coordinates only)",
        ),
        "rotated": (
            make_scene(name="rot.tif", transform=Affine(2.0, 0.3, 5e5, 0.2, -2.0, 4e6)),
            [],
            "rotated or sheared geotransform is not supported",
        ),
        "labels missing": (scene, ["--labels", tmp_path / "nope.gpkg"], "nope.gpkg: no such file"),
        "labels no crs": (
            scene,
            ["--labels", layer([box], crs=None)],
            "layer 'ships' has no CRS",
        ),
        "points": (
            scene,
            ["--labels", layer([shapely.Point(500010, 3999990)])],
            "holds Point geometries; footprints must be polygons",
        ),
        "lines": (
            scene,
            ["--labels", layer([shapely.LineString([(500010, 3999990), (500020, 3999980)])])],
            "holds LineString geometries; footprints must be polygons",
        ),
        "empty layer": (scene, ["--labels", empty], "layer 'empty' is empty"),
        "unknown layer": (
            scene,
            ["--labels", layer([box], layer="harbour"), "--layer", "docks"],
            "no layer 'docks'; available layers: harbour",
        ),
        "overlap": (
            scene,
            ["--size", 64, "--overlap", 64],
            "overlap 64 px must be smaller than the chip size 64 px",
        ),
        "bands range": (
            scene,
            ["--bands", "1,2,5"],
            "band 5 is out of range; the scene has bands 1-3",
        ),
        "bands count": (scene, ["--bands", "1,2"], "give one band (repeated to three) or three"),
        "bands text": (scene, ["--bands", "red"], "expected 1-based band numbers"),
        "stretch missing": (
            scene,
            ["--stretch", tmp_path / "nope.json"],
            "nope.json: no such stretch file",
        ),
        "stretch of a uint8 run": (
            scene,
            ["--stretch", uint8_meta],
            "meta.json: not a geosam stretch file",
        ),
        "percentiles": (
            make_scene(name="u16.tif", dtype="uint16"),
            ["--percentiles", 98, 2],
            "percentiles 98.0-2.0: need 0 <= low < high <= 100",
        ),
    }


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.filterwarnings("ignore:'crs' was not provided:UserWarning")
@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "not a raster",
        "no crs",
        "no geotransform",
        "rotated",
        "labels missing",
        "labels no crs",
        "points",
        "lines",
        "empty layer",
        "unknown layer",
        "overlap",
        "bands range",
        "bands count",
        "bands text",
        "stretch missing",
        "stretch of a uint8 run",
        "percentiles",
    ],
)
def test_bad_input_is_one_error_line_and_writes_nothing(bad_inputs, tmp_path, case):
    scene, args, message = bad_inputs[case]
    out = tmp_path / "out"
    line = error_line(tile(scene, out, *args, quiet=False))
    assert message in line
    assert not out.exists()


def test_usage_errors_exit_2(make_scene, tmp_path):
    scene = make_scene()
    result = tile(scene, tmp_path / "out", "--overlap", -1)
    assert result.exit_code == 2 and "Invalid value for '--overlap'" in result.output
    out_file = tmp_path / "file.txt"
    out_file.write_text("x")
    result = tile(scene, out_file)
    assert result.exit_code == 2 and "is a file" in result.output


def test_output_that_is_a_file_is_refused(make_scene, tmp_path):
    out = tmp_path / "out.tif"
    out.write_text("x")
    with pytest.raises(OutputExistsError, match="is a file, not a folder"):
        tile_scene(make_scene(), out, ChipSettings(size=64, overlap=8), overwrite=True)
    assert out.read_text() == "x"


def test_failed_write_leaves_no_temporary_files(make_scene, make_layer, tmp_path, monkeypatch):
    def disk_full(path, labels):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("geosam.pipelines.tile.write_labels", disk_full)
    out = tmp_path / "out"
    layer = make_layer([pixel_polygon(0, 0, 4, 4)])
    line = error_line(tile(make_scene(), out, "--labels", layer, "--size", 64, "--overlap", 8))
    assert line == f"Error: {out}: disk full; free space and run again (nothing was written)"
    assert not out.exists() and leftovers(tmp_path) == []
