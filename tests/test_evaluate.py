"""`geosam evaluate`: one-to-one IoU matching, scores and their 0/0 cases, scene pairing, CLI."""

import json
import logging

import geopandas as gpd
import numpy as np
import pytest
import shapely
from click.testing import CliRunner
from conftest import SHIPS_DEV, UTM33, shared_path

from geosam.cli.main import cli
from geosam.errors import InputNotFoundError, LabelsError
from geosam.pipelines.evaluate import SceneScores, evaluate, match

X0, Y0 = 500000.0, 3990000.0


def ship(i, dx=0.0, dy=0.0, length=100.0, width=20.0):
    """The i-th ship of a row, 100 m x 20 m, 200 m apart, shifted by (dx, dy) metres."""
    x = X0 + 200.0 * i + dx
    return shapely.box(x, Y0 + dy, x + length, Y0 + dy + width)


def write_layers(path, layers, crs=UTM33):
    """Write name -> list of geometries as layers of one GeoPackage."""
    for name, geoms in layers.items():
        frame = gpd.GeoDataFrame({"id": list(range(len(geoms)))}, geometry=geoms, crs=crs)
        frame.to_file(path, layer=name, engine="pyogrio")
    return path


def only_scene(report):
    assert len(report.scenes) == 1
    return report.scenes[0]


def test_perfect_match(make_layer):
    ships = [ship(i) for i in range(3)]
    truth = make_layer(ships, name="truth.gpkg")
    pred = make_layer(ships, name="pred.gpkg")
    s = only_scene(evaluate(pred, truth))
    assert (s.tp, s.fp, s.fn) == (3, 0, 0)
    assert s.precision == s.recall == s.f1 == s.f2 == 1.0
    assert s.mean_iou == pytest.approx(1.0)


def test_one_false_positive(make_layer):
    truth = make_layer([ship(0), ship(1)], name="truth.gpkg")
    pred = make_layer([ship(0), ship(1), ship(5)], name="pred.gpkg")
    s = only_scene(evaluate(pred, truth))
    assert (s.tp, s.fp, s.fn) == (2, 1, 0)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == 1.0
    assert s.f1 == pytest.approx(0.8)
    assert s.f2 == pytest.approx(10 / 11)


def test_one_false_negative(make_layer):
    truth = make_layer([ship(0), ship(1), ship(2)], name="truth.gpkg")
    pred = make_layer([ship(0), ship(2, dx=10)], name="pred.gpkg")
    s = only_scene(evaluate(pred, truth))
    assert (s.tp, s.fp, s.fn) == (2, 0, 1)
    assert (s.precision, s.recall) == (1.0, pytest.approx(2 / 3))
    assert s.f1 == pytest.approx(0.8)
    assert s.f2 == pytest.approx(5 / 7)
    # ship(2) shifted 10 m along its 100 m length: IoU 90 / 110.
    assert s.mean_iou == pytest.approx((1 + 90 / 110) / 2)


def test_split_prediction_matches_only_at_a_lower_threshold(make_layer):
    truth = make_layer([ship(0)], name="truth.gpkg")
    halves = [ship(0, length=48.0), ship(0, dx=52.0, length=48.0)]  # IoU 0.48 each
    pred = make_layer(halves, name="pred.gpkg")
    s = only_scene(evaluate(pred, truth, iou_threshold=0.5))
    assert (s.tp, s.fp, s.fn) == (0, 2, 1)
    assert s.mean_iou is None
    assert s.precision == s.recall == s.f1 == 0.0
    s = only_scene(evaluate(pred, truth, iou_threshold=0.4))
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)
    assert s.mean_iou == pytest.approx(0.48)


def test_matching_is_one_to_one_and_greedy_by_iou():
    truth = np.array([ship(0), ship(0, dx=60)], dtype=object)
    # Prediction 0 overlaps both references, best with reference 1 (IoU 70/130 vs 30/170);
    # prediction 1 equals reference 1 (IoU 1) and takes it first, so prediction 0 is left
    # with reference 0, below the threshold: a duplicate detection, not a second match.
    pred = np.array([ship(0, dx=30), ship(0, dx=60)], dtype=object)
    pairs, ious = match(pred, truth, 0.1)
    assert pairs.tolist() == [[1, 1], [0, 0]]
    assert ious == pytest.approx([1.0, 70 / 130])
    pairs, ious = match(pred, truth, 0.6)
    assert pairs.tolist() == [[1, 1]]
    # Two predictions on one ship: one TP, one FP.
    pairs, _ = match(np.array([ship(0), ship(0, dx=1)], dtype=object), truth[:1], 0.5)
    assert pairs.tolist() == [[0, 0]]
    assert match(np.array([], dtype=object), truth, 0.5)[0].shape == (0, 2)


def test_predictions_in_wgs84_are_reprojected(make_layer, tmp_path, caplog):
    ships = [ship(0), ship(1), ship(2)]
    truth = make_layer(ships, name="truth.gpkg")
    shifted = [ship(0, dx=10), ship(1, dy=5), ship(7)]
    utm = make_layer(shifted, name="pred_utm.gpkg")
    wgs84 = gpd.GeoSeries(shifted, crs=UTM33).to_crs("EPSG:4326")
    ll = make_layer(list(wgs84), crs="EPSG:4326", name="pred_ll.gpkg")
    expected = only_scene(evaluate(utm, truth))
    with caplog.at_level(logging.INFO, logger="geosam"):
        got = only_scene(evaluate(ll, truth))
    assert "reprojecting" in caplog.text and "EPSG:4326" in caplog.text
    assert (got.tp, got.fp, got.fn) == (expected.tp, expected.fp, expected.fn) == (2, 1, 1)
    assert got.mean_iou == pytest.approx(expected.mean_iou, rel=1e-6)
    assert expected.mean_iou == pytest.approx((90 / 110 + 15 / 25) / 2)


def test_scenes_are_paired_by_layer_name(tmp_path, caplog):
    truth = write_layers(
        tmp_path / "truth.gpkg",
        {"harbour": [ship(0), ship(1)], "bay": [ship(0), ship(1), ship(2)], "other": [ship(0)]},
    )
    # Layers in another order than TRUTH's, and one without a reference.
    pred = write_layers(
        tmp_path / "pred.gpkg",
        {"bay": [ship(0), ship(4)], "harbour": [ship(0), ship(1)], "extra": [ship(0)]},
    )
    with caplog.at_level(logging.WARNING, logger="geosam"):
        report = evaluate(pred, truth)
    assert "'extra'" in caplog.text
    assert report.unscored_layers == ["extra"]
    assert [s.scene for s in report.scenes] == ["bay", "harbour"]
    bay, harbour = report.scenes
    assert (bay.tp, bay.fp, bay.fn) == (1, 1, 2)
    assert (harbour.tp, harbour.fp, harbour.fn) == (2, 0, 0)
    o = report.overall
    assert (o.scene, o.tp, o.fp, o.fn) == ("all", 3, 1, 2)
    assert (o.precision, o.recall) == (0.75, 0.6)
    assert o.f1 == pytest.approx(2 / 3)
    assert o.mean_iou == pytest.approx(1.0)

    # One explicit pair, names need not agree.
    report = evaluate(pred, truth, pred_layer="bay", truth_layer="harbour")
    s = only_scene(report)
    assert (s.scene, s.tp, s.fp, s.fn) == ("bay", 1, 1, 1)
    # --pred-layer alone pairs with the same-named reference layer.
    assert only_scene(evaluate(pred, truth, pred_layer="harbour")).tp == 2


def test_single_layers_pair_whatever_their_names(make_layer):
    truth = make_layer([ship(0)], name="truth.gpkg", layer="ships")
    pred = make_layer([ship(0)], name="pred.gpkg", layer="s2_busan")
    s = only_scene(evaluate(pred, truth))
    assert (s.scene, s.tp) == ("s2_busan", 1)


def test_empty_prediction_layer_is_all_false_negatives(tmp_path):
    truth = write_layers(tmp_path / "truth.gpkg", {"quay": [ship(0), ship(1)], "open": []})
    pred = write_layers(tmp_path / "pred.gpkg", {"quay": [], "open": []})
    report = evaluate(pred, truth)
    quay, open_sea = report.scenes
    assert (quay.tp, quay.fp, quay.fn) == (0, 0, 2)
    assert (quay.precision, quay.recall, quay.f1, quay.f2, quay.mean_iou) == (0, 0, 0, 0, None)
    # No ships, none predicted: nothing wrong, so a perfect score.
    assert (open_sea.tp, open_sea.fp, open_sea.fn) == (0, 0, 0)
    assert open_sea.precision == open_sea.recall == open_sea.f1 == 1.0
    assert (report.overall.fn, report.overall.f1) == (2, 0.0)


def test_zero_denominator_conventions():
    assert SceneScores("s", 0, 0, 0).to_dict() == {
        "scene": "s",
        "tp": 0,
        "fp": 0,
        "fn": 0,
        "mean_iou": None,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "f2": 1.0,
    }
    false_alarms = SceneScores("s", 0, 3, 0)  # no ships, three predicted
    assert (false_alarms.precision, false_alarms.recall, false_alarms.f1) == (0.0, 0.0, 0.0)
    missed = SceneScores("s", 0, 0, 3)
    assert (missed.precision, missed.recall, missed.f2) == (0.0, 0.0, 0.0)


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_refusals(make_layer, tmp_path):
    truth = make_layer([ship(0)], name="truth.gpkg")
    with pytest.raises(InputNotFoundError, match="nope.gpkg"):
        evaluate(tmp_path / "nope.gpkg", truth)
    points = make_layer([shapely.Point(X0, Y0)], name="points.gpkg")
    with pytest.raises(LabelsError, match="Point"):
        evaluate(points, truth)
    no_crs = make_layer([ship(0)], crs=None, name="nocrs.gpkg")
    with pytest.raises(LabelsError, match="no CRS"):
        evaluate(no_crs, truth)
    two = write_layers(tmp_path / "two.gpkg", {"a": [ship(0)], "b": [ship(1)]})
    with pytest.raises(LabelsError, match=r"no layer has a same-named layer.*--pred-layer"):
        evaluate(two, write_layers(tmp_path / "t2.gpkg", {"c": [ship(0)], "d": [ship(0)]}))
    with pytest.raises(LabelsError, match=r"no layer 'x'; available layers: a, b"):
        evaluate(two, truth, pred_layer="x")
    with pytest.raises(ValueError, match="iou_threshold"):
        evaluate(truth, truth, iou_threshold=0)


def test_invalid_prediction_is_repaired(make_layer):
    truth = make_layer([ship(0)], name="truth.gpkg")
    b = ship(0).bounds
    bowtie = shapely.Polygon([(b[0], b[1]), (b[2], b[3]), (b[2], b[1]), (b[0], b[3])])
    pred = make_layer([bowtie, ship(0)], name="pred.gpkg")
    s = only_scene(evaluate(pred, truth))
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)
    assert s.mean_iou == pytest.approx(1.0)


def test_real_reference_against_itself():
    ships = shared_path(SHIPS_DEV / "ships.gpkg")
    s = only_scene(evaluate(ships, ships, pred_layer="s2_busan"))
    assert (s.tp, s.fp, s.fn) == (54, 0, 0)


# --- CLI -----------------------------------------------------------------------------------


def run(*args):
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)])


def error_line(result):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.fixture
def files(tmp_path):
    truth = write_layers(
        tmp_path / "truth.gpkg", {"harbour": [ship(0), ship(1)], "bay": [ship(0), ship(1)]}
    )
    pred = write_layers(tmp_path / "pred.gpkg", {"harbour": [ship(0), ship(3)], "bay": []})
    return pred, truth


def test_cli_prints_an_aligned_table(files):
    result = run(*files)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "scene", "TP", "FP", "FN", "precision", "recall", "F1", "F2", "mean", "IoU"
    ]  # fmt: skip
    assert lines[1].split() == [
        "harbour", "1", "1", "1", "0.500", "0.500", "0.500", "0.500", "1.000"
    ]  # fmt: skip
    assert lines[2].split() == ["bay", "0", "0", "2", "0.000", "0.000", "0.000", "0.000", "-"]
    assert lines[3].split()[:4] == ["all", "1", "1", "3"]
    assert len(lines) == 4
    assert len({len(line) for line in lines}) == 1  # right-aligned columns


def test_cli_json_written_and_not_overwritten(files, tmp_path):
    out = tmp_path / "scores.json"
    result = run(*files, "--iou", "0.3", "--json", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["iou_threshold"] == 0.3
    assert [s["scene"] for s in data["scenes"]] == ["harbour", "bay"]
    assert data["overall"] | {"f2": None} == {
        "scene": "all",
        "tp": 1,
        "fp": 1,
        "fn": 3,
        "mean_iou": 1.0,
        "precision": 0.5,
        "recall": 0.25,
        "f1": pytest.approx(1 / 3),
        "f2": None,
    }
    before = out.read_bytes()
    line = error_line(run(*files, "--json", out))
    assert str(out) in line and "--overwrite" in line
    assert out.read_bytes() == before
    assert run(*files, "--json", out, "--overwrite").exit_code == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_errors(files, tmp_path):
    pred, truth = files
    line = error_line(run(tmp_path / "missing.gpkg", truth))
    assert "missing.gpkg" in line
    result = run(pred, truth, "--iou", "0")
    assert result.exit_code == 2
    assert "--iou" in result.stderr


def test_average_precision_ranks_by_score_and_survives_no_predictions():
    from geosam.pipelines.average_precision import ScoredScene, coco_ap

    truth = np.array([shapely.box(0, 0, 10, 10), shapely.box(20, 0, 30, 10)], dtype=object)
    hit, near, miss = (
        shapely.box(0, 0, 10, 10),
        shapely.box(21, 0, 30, 10),
        shapely.box(50, 0, 60, 10),
    )
    good = ScoredScene(np.array([hit, near, miss], dtype=object), np.array([0.9, 0.8, 0.1]), truth)
    bad = ScoredScene(np.array([hit, near, miss], dtype=object), np.array([0.9, 0.1, 0.8]), truth)
    ap50_good, ap_good = coco_ap([good])
    ap50_bad, _ = coco_ap([bad])
    assert ap50_good == 1.0 and ap50_bad < ap50_good  # a false alarm ranked above a ship
    assert ap_good < ap50_good  # the 0.9-IoU match fails the strictest thresholds
    empty = ScoredScene(np.array([], dtype=object), np.zeros(0), truth)
    assert coco_ap([empty]) == (0.0, 0.0)
