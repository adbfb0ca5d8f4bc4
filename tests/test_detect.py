import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from click.testing import CliRunner
from conftest import EXAMPLES
from pyproj import Geod

from geosam.cli.main import cli
from geosam.geometry.detections import crops_to_detections
from geosam.geometry.grid import chip_grid
from geosam.geometry.masks import crop_masks
from geosam.geometry.stitch import stitch
from geosam.io.ship_attributes import ship_attributes
from geosam.pipelines.detect import DetectSettings, detect
from geosam.pipelines.finetune import finetune
from geosam.pipelines.finetune_settings import FinetuneSettings
from geosam.pipelines.training_data import TrainingPair

GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def trained_model(harbour, tmp_path_factory):
    """A model after one quick epoch: enough to exercise detection, not to find ships."""
    run = tmp_path_factory.mktemp("run")
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("GEOSAM_HOME", str(home))
    finetune(
        [TrainingPair(*harbour)],
        run / "r",
        settings=FinetuneSettings(epochs=1, train_encoder=False, batch_chips=4),
        overwrite=True,
    )
    mp.undo()
    return run / "r" / "model.pt"


# A 20 x 10 px ship mask at chip pixels cols 30-50, rows 40-50, on scenes in three CRSs.
SCENES = {
    "EPSG:32633": Affine(2.0, 0, 500000.0, 0, -2.0, 4430000.0),
    "EPSG:3857": Affine(2.0, 0, 1669792.0, 0, -2.0, 4865942.0),
    "EPSG:4326": Affine(2e-5, 0, 15.0, 0, -2e-5, 40.0),
}


@pytest.mark.parametrize("crs", sorted(SCENES))
def test_known_mask_lands_on_its_coordinates_with_true_area(crs):
    transform = SCENES[crs]
    chip = chip_grid(256, 256, transform, 128, 16)[0]
    mask = np.zeros((1, 128, 128), bool)
    mask[0, 40:50, 30:50] = True
    geoms, _ = stitch(
        crops_to_detections(crop_masks(mask), np.array([0.9]), chip, 256, 256), transform
    )
    assert len(geoms) == 1
    x0, y0 = transform @ (30, 50)
    x1, y1 = transform @ (50, 40)
    assert geoms[0].equals_exact(shapely.box(x0, y0, x1, y1).normalize(), 1e-9) or (
        shapely.symmetric_difference(geoms[0], shapely.box(x0, y0, x1, y1)).area
        < 1e-9 * geoms[0].area
    )
    frame = gpd.GeoSeries(geoms, crs=crs)
    attrs = ship_attributes(frame)
    lonlat = frame.to_crs("EPSG:4326").iloc[0]
    expected = abs(GEOD.geometry_area_perimeter(shapely.segmentize(lonlat, 1e-5))[0])
    assert attrs["area_m2"].iloc[0] == pytest.approx(expected, rel=0.005)
    if crs == "EPSG:32633":  # 40 x 20 m on the UTM grid, scale factor ~0.9996 near the CM
        assert attrs["area_m2"].iloc[0] == pytest.approx(800, rel=0.01)
        assert attrs["length_m"].iloc[0] == pytest.approx(40, rel=0.01)
        assert attrs["heading_deg"].iloc[0] == pytest.approx(90, abs=1)


def test_detect_with_prompt_layer_writes_a_valid_styled_layer(harbour, trained_model, tmp_path):
    scene, ships = harbour
    out = tmp_path / "ships.gpkg"
    layers = detect(
        [scene],
        trained_model,
        out,
        DetectSettings(),
        prompts=ships,
        preview=tmp_path / "p.png",
        mask_raster=tmp_path / "m.tif",
    )
    assert list(layers) == ["harbour"]
    frame = gpd.read_file(out, layer="harbour")
    with rasterio.open(scene) as src:
        assert frame.crs == src.crs
    for column in (
        "id",
        "score",
        "area_m2",
        "length_m",
        "width_m",
        "heading_deg",
        "lon",
        "lat",
        "scene",
        "model",
    ):
        assert column in frame.columns
    assert len(frame) <= len(gpd.read_file(ships))
    assert (tmp_path / "p.png").stat().st_size > 0
    with rasterio.open(tmp_path / "m.tif") as mask, rasterio.open(scene) as src:
        assert mask.transform == src.transform and mask.crs == src.crs
    assert "layer_styles" in [name for name, _ in pyogrio.list_layers(out)]


def test_scene_without_ships_gives_an_empty_layer(make_scene, trained_model, tmp_path):
    scene = make_scene(width=300, height=300, name="open_sea.tif")
    out = tmp_path / "none.gpkg"
    detect([scene], trained_model, out, DetectSettings(min_score=1.0))
    frame = gpd.read_file(out, layer="open_sea")
    assert len(frame) == 0 and frame.crs is not None


def test_other_bands_at_detect_take_the_models_stretch_along(
    make_scene, trained_model, tmp_path, caplog
):
    """A model that recorded a 16-bit stretch for bands 1-3, on a one-band scene: `--bands 1`
    reads that band through the recorded low and high (before, "band 2 is out of range")."""
    from geosam.data.samples import SceneChips
    from geosam.io.stretch import Stretch
    from geosam.model.model_file import load_model_file, save_model_file
    from geosam.pipelines.detect import _chip_settings

    state, meta = load_model_file(trained_model)
    recorded = Stretch(bands=(1, 2, 3), low=(500.0,) * 3, high=(3500.0,) * 3)
    # Read at the scene's own pixel size, so chip pixels are scene pixels.
    meta["chip_settings"] = {**meta["chip_settings"], "stretch": recorded.to_dict()}
    meta["chip_settings"]["scale_rule"] = []
    model = tmp_path / "model16.pt"
    save_model_file(model, state, meta)
    scene = make_scene(width=300, height=300, count=1, dtype="uint16", name="pan.tif")
    out = tmp_path / "pan.gpkg"
    args = ["detect", str(scene), "--model", str(model), "-o", str(out), "--min-score", "1"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "--bands" in refused.output and not out.exists()
    result = CliRunner().invoke(cli, [*args, "--bands", "1"])
    assert result.exit_code == 0, result.output
    assert gpd.read_file(out, layer="pan").crs is not None
    settings = _chip_settings(meta, {"bands": (1,)})
    with rasterio.open(scene) as src:
        band = src.read(1, window=((0, 64), (0, 64)))
    with SceneChips(scene, settings=settings) as chips:
        image = chips.sample(chips.chips[0]).image[:, :64, :64]
    expected = recorded.scale(np.repeat(band[None], 3, 0))
    np.testing.assert_array_equal(image, expected)
    # Estimated on the scene it would differ: the scene's values span 1..3999.
    with SceneChips(scene, settings=replace(settings, stretch=None)) as chips:
        assert not np.array_equal(chips.sample(chips.chips[0]).image[:, :64, :64], expected)
    # A stretch estimated band by band says nothing of band 1 alone: estimated anew, said so.
    per_band = Stretch(bands=(1, 2, 3), low=(500.0, 600.0, 700.0), high=(3500.0,) * 3)
    meta["chip_settings"]["stretch"] = per_band.to_dict()
    with caplog.at_level("WARNING", logger="geosam"):
        assert _chip_settings(meta, {"bands": (1,)}).stretch is None
    assert "estimated on each scene" in caplog.text


def test_cli_detect_refuses_existing_output_and_bad_model(harbour, trained_model, tmp_path):
    scene, _ = harbour
    out = tmp_path / "ships.gpkg"
    out.write_text("keep")
    runner = CliRunner()
    again = runner.invoke(
        cli, ["detect", str(scene), "--model", str(trained_model), "-o", str(out)]
    )
    assert again.exit_code == 1 and "--overwrite" in again.output and out.read_text() == "keep"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    broken = runner.invoke(
        cli, ["detect", str(scene), "--model", str(bad), "-o", str(tmp_path / "x.gpkg")]
    )
    assert broken.exit_code == 1 and "bad.pt" in broken.output
    assert "Traceback" not in broken.output


def test_simplify_reduces_vertices_and_keeps_ships_in_place(harbour, trained_model, tmp_path):
    scene, ships = harbour
    # Cut at SAM's 0: this short run's own cut may fill each box, and a rectangle has nothing
    # to simplify.
    plain = detect(
        [scene], trained_model, tmp_path / "a.gpkg", DetectSettings(mask_cut=0.0), prompts=ships
    )["harbour"]
    simple = detect(
        [scene],
        trained_model,
        tmp_path / "b.gpkg",
        DetectSettings(simplify=1.0, mask_cut=0.0),
        prompts=ships,
    )["harbour"]
    assert len(plain) == len(simple) > 0
    count = lambda frame: shapely.get_num_coordinates(frame.geometry.values).sum()  # noqa: E731
    assert count(simple) < count(plain)
    assert (plain.geometry.centroid.distance(simple.geometry.centroid) < 2.0).all()


def test_detect_runs_at_the_operating_point_stored_in_the_model(harbour, trained_model, tmp_path):
    """Unset thresholds come from model.pt; set ones override it."""
    from geosam.model.model_file import load_model_file, save_model_file

    scene, _ = harbour
    state, meta = load_model_file(trained_model)
    strict = tmp_path / "strict.pt"
    save_model_file(
        strict,
        state,
        {
            **meta,
            "operating_point": {
                **meta["operating_point"],
                "prompter_threshold": 0.05,  # a few proposals (0 would decode 200 a chip)
                "min_score": 1.01,
            },
        },
    )
    none = detect([scene], strict, tmp_path / "none.gpkg")
    assert all(len(frame) == 0 for frame in none.values())
    lenient = detect([scene], strict, tmp_path / "all.gpkg", DetectSettings(min_score=0.0))
    assert sum(len(frame) for frame in lenient.values()) > 0
    resolved = DetectSettings().for_model(meta)
    assert resolved.min_score == meta["operating_point"]["min_score"]
    assert resolved.max_ship_length_px == meta["operating_point"]["max_ship_length_px"]
    assert DetectSettings(min_score=0.5).for_model(meta).min_score == 0.5
    assert DetectSettings().for_model({}).min_score == 0.3  # model files without one


def test_detect_cuts_masks_where_the_model_file_says(harbour, trained_model, tmp_path):
    from geosam.model.model_file import load_model_file, save_model_file

    scene, ships = harbour
    state, meta = load_model_file(trained_model)
    areas = {}
    for cut in (-1.0, 0.0):
        point = {**meta["operating_point"], "mask_cut": cut}
        point.pop("mask_cut_by_pixel_size", None)
        path = tmp_path / f"cut{cut}.pt"
        save_model_file(path, state, {**meta, "operating_point": point})
        found = detect([scene], path, tmp_path / f"cut{cut}.gpkg", prompts=ships)["harbour"]
        areas[cut] = np.sort(found.geometry.area.to_numpy())
    assert len(areas[-1.0]) == len(areas[0.0]) > 0
    # A lower cut keeps more of each logit map: every ship is at least as large.
    assert areas[-1.0].sum() > areas[0.0].sum()
    # --mask-cut overrides the model's cut.
    out = tmp_path / "cli.gpkg"
    args = ["-q", "detect", str(scene), "--model", str(tmp_path / "cut0.0.pt"), "-o", str(out)]
    result = CliRunner().invoke(cli, [*args, "--prompts", str(ships), "--mask-cut", "-1"])
    assert result.exit_code == 0, result.output
    found = gpd.read_file(out, layer="harbour")
    assert np.allclose(np.sort(found.geometry.area.to_numpy()), areas[-1.0])


def test_kill_9_then_the_same_detect_gives_the_uninterrupted_output(
    trained_model, tmp_path_factory, tmp_path
):
    """A `geosam detect` killed mid-run leaves no output under a final name; the same command
    again writes what one uninterrupted run writes."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from harbour import make_harbour
    finally:
        sys.path.remove(str(EXAMPLES))
    scene, _ = make_harbour(tmp_path_factory.mktemp("big"), width=768, height=768, ships=20)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def command(out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "geosam",
            "detect",
            str(scene),
            "--model",
            str(trained_model),
            "-o",
            str(out / "ships.gpkg"),
            "--mask-raster",
            str(out / "mask.tif"),
            "--min-score",
            "0",
            # One epoch teaches the prompter little: its peaks are still below the default.
            # (0.05 finds about 13 ships here in 4 s; 0.02 decodes 200 proposals a chip: 60 s.)
            "--prompter-threshold",
            "0.05",
        ]

    reference = tmp_path / "reference"
    subprocess.run(command(reference), env=env, check=True, capture_output=True)

    out = tmp_path / "out"
    proc = subprocess.Popen(command(out), env=env, stderr=subprocess.PIPE)
    seen = bytearray()

    def collect() -> None:
        for chunk in iter(lambda: proc.stderr.read1(256), b""):
            seen.extend(chunk)

    reader = threading.Thread(target=collect)
    reader.start()
    deadline = time.monotonic() + 120
    while b"chip/s" not in seen and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the bar shows a rate once chips are being detected
    assert proc.poll() is None, "detect finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join()
    proc.stderr.close()
    assert not (out / "ships.gpkg").exists() and not (out / "mask.tif").exists()

    subprocess.run(command(out), env=env, check=True, capture_output=True)
    assert sorted(p.name for p in out.iterdir()) == ["mask.tif", "ships.gpkg"]
    got, want = (gpd.read_file(d / "ships.gpkg", layer="harbour") for d in (out, reference))
    assert len(want) > 0
    columns = [c for c in want.columns if c not in ("detected_at", "created")]
    assert got[columns].equals(want[columns]), json.dumps(list(want.columns))
    with rasterio.open(out / "mask.tif") as a, rasterio.open(reference / "mask.tif") as b:
        assert np.array_equal(a.read(), b.read())


def test_a_box_prompt_layer_keeps_each_mask_inside_its_box(harbour, tmp_path):
    """A model whose masks cover the whole chip draws each prompted ship as its box, no more."""
    from conftest import save_untrained_tiny, spilling_tiny

    model = spilling_tiny()
    scene, ships = harbour
    out = tmp_path / "ships.gpkg"
    detect([scene], save_untrained_tiny(model, tmp_path / "model.pt", 0.5), out, prompts=ships)
    found = gpd.read_file(out, layer="harbour")
    prompts = gpd.read_file(ships).to_crs(found.crs)
    with rasterio.open(scene) as src:
        pixel = abs(src.res[0])
    boxes = prompts.envelope.buffer(pixel, join_style="mitre")
    assert len(found) == len(prompts)
    for ship in found.geometry:
        holders = boxes[boxes.contains(ship)]
        assert len(holders) >= 1
        assert ship.area > 0.5 * holders.area.min()  # the whole box, not a sliver of it


def test_a_scene_takes_the_threshold_of_the_nearest_training_pixel_size():
    meta = {
        "operating_point": {
            "prompter_threshold": 0.1,
            "min_score": 0.2,
            "min_score_by_pixel_size": [[0.26, 0.4], [10.0, 0.1]],
        }
    }
    assert DetectSettings().for_model(meta, 0.3).min_score == 0.4  # an aerial scene
    assert DetectSettings().for_model(meta, 20.0).min_score == 0.1  # Landsat-like: nearest 10 m
    assert DetectSettings().for_model(meta, None).min_score == 0.2  # degrees: the overall one
    assert DetectSettings(min_score=0.5).for_model(meta, 10.0).min_score == 0.5  # asked for


def test_an_area_keeps_the_ships_in_it_and_reads_only_the_chips_near_it(
    harbour, trained_model, tmp_path
):
    """--within: the ships of an unrestricted run whose centres lie in the area, no others;
    the area is given in another CRS (EPSG:4326) and reprojected to the scene's."""
    scene, ships = harbour
    with rasterio.open(scene) as src:
        left, top = src.transform @ (0, 0)
        right, bottom = src.transform @ (100, src.height)  # the western 100 px
        crs = src.crs
    area = tmp_path / "water.gpkg"
    strip = gpd.GeoDataFrame(geometry=[shapely.box(left, bottom, right, top)], crs=crs)
    strip.to_crs("EPSG:4326").to_file(area, layer="water")
    totals: dict[str, list[int]] = {"all": [], "area": []}

    def run(name: str, within: Path | None) -> gpd.GeoDataFrame:
        progress = lambda scene, done, total: totals[name].append(total)  # noqa: E731
        out = tmp_path / f"{name}.gpkg"
        return detect([scene], trained_model, out, prompts=ships, within=within, progress=progress)[
            "harbour"
        ]

    everywhere, within = run("all", None), run("area", area)
    inside = everywhere[everywhere.geometry.representative_point().x < right]
    assert 0 < len(within) == len(inside) < len(everywhere)
    assert (within.geometry.representative_point().x < right).all()
    for mine, theirs in zip(within.geometry, inside.geometry, strict=True):
        assert mine.symmetric_difference(theirs).area < 1e-6 * theirs.area
    assert max(totals["area"]) < max(totals["all"])  # chips far from the area are not read


def test_cli_detect_names_a_bad_area_file_in_one_line(harbour, trained_model, tmp_path):
    scene, ships = harbour
    runner = CliRunner()
    base = ["detect", str(scene), "--model", str(trained_model), "-o", str(tmp_path / "x.gpkg")]
    missing = runner.invoke(cli, [*base, "--within", str(tmp_path / "nowhere.gpkg")])
    assert missing.exit_code == 1 and "nowhere.gpkg" in missing.output
    no_model = [*base[:3], str(tmp_path / "none.pt"), *base[4:]]
    early = runner.invoke(cli, [*no_model, "--within", str(tmp_path / "nowhere.gpkg")])
    assert early.exit_code == 1 and "nowhere.gpkg" in early.output  # before the model loads
    points = tmp_path / "points.gpkg"
    frame = gpd.read_file(ships)
    frame.set_geometry(frame.geometry.representative_point()).to_file(points)
    wrong = runner.invoke(cli, [*base, "--within", str(points)])
    assert wrong.exit_code == 1 and "polygons" in wrong.output
    for result in (missing, wrong):
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.gpkg").exists()


def test_an_area_off_the_scene_gives_an_empty_layer_and_reads_no_chip(
    harbour, trained_model, tmp_path, caplog
):
    scene, ships = harbour
    far = gpd.read_file(ships).iloc[[0]]
    far = far.set_geometry(far.geometry.translate(xoff=5e4))  # 50 km east of the harbour
    far.to_file(tmp_path / "elsewhere.gpkg")
    read = []
    layers = detect(
        [scene],
        trained_model,
        tmp_path / "x.gpkg",
        prompts=ships,
        within=tmp_path / "elsewhere.gpkg",
        progress=lambda scene, done, total: read.append(done),
    )
    assert (
        len(layers["harbour"]) == 0
        and len(gpd.read_file(tmp_path / "x.gpkg", layer="harbour")) == 0
    )
    assert read == [] and "no part of the detection area" in caplog.text
