"""Footprints to per-chip labels: boxes, masks, visible share, repair, CRS, bad layers."""

import geopandas as gpd
import numpy as np
import pytest
import rasterio.features
import shapely
import shapely.affinity
import shapely.geometry
from conftest import TRANSFORM, UTM33, pixel_polygon

from geosam.data.labels import ChipLabeler
from geosam.data.samples import SceneChips
from geosam.data.settings import ChipSettings
from geosam.errors import InputNotFoundError, LabelsError
from geosam.geometry.pixels import mask_to_box
from geosam.io.footprints import read_footprints

PIXEL = TRANSFORM.a  # 2 m


def ship(cx, cy, length, beam, angle):
    """A pointed ship hull centred on scene pixel (cx, cy), rotated by `angle` degrees."""
    half, b = length / 2, beam / 2
    hull = shapely.Polygon(
        [(-half, -b), (half - b, -b), (half, 0), (half - b, b), (-half, b), (-half - 0.5, 0)]
    )
    hull = shapely.affinity.rotate(hull, angle, origin=(0, 0))
    hull = shapely.affinity.translate(hull, cx, cy)
    return shapely.transform(hull, lambda xy: np.column_stack(TRANSFORM @ (xy[:, 0], xy[:, 1])))


def chip_labels(make_scene, make_layer, geometries, size=64, overlap=0, **kwargs):
    """Labels of every chip of a 128 x 128 scene, keyed by chip id, and the footprint report."""
    scene = make_scene(width=kwargs.pop("width", 128), height=kwargs.pop("height", 128))
    labels = make_layer(geometries, **kwargs)
    settings = ChipSettings(size=size, overlap=overlap)
    with SceneChips(scene, labels=labels, settings=settings) as chips:
        out = {s.chip.chip_id: s.labels for s in chips}
        assert chips.labeler is not None and chips.footprint_report is not None
        chips.footprint_report.dropped_slivers = chips.labeler.dropped_slivers
        return out, chips.footprint_report


def by_ship(labels, ship_id):
    (i,) = np.flatnonzero(labels.ship_ids == ship_id)
    return labels.boxes[i], labels.masks[i], float(labels.visible[i]), labels.footprints[i]


def test_whole_ship_box_and_mask_in_chip_pixels(make_scene, make_layer):
    out, report = chip_labels(make_scene, make_layer, [pixel_polygon(10, 20, 30, 26)])
    assert report.features == 1 and report.repaired == report.empty == report.outside_scene == 0
    labels = out["r000000_c000000"]
    assert labels.ship_ids.tolist() == [1]
    box, mask, visible, _ = by_ship(labels, 1)
    assert labels.boxes.dtype == np.float32 and labels.boxes.shape == (1, 4)
    np.testing.assert_array_equal(box, [10, 20, 30, 26])  # XYXY: col, row, col, row
    assert visible == 1.0
    expected = np.zeros((64, 64), bool)
    expected[20:26, 10:30] = True
    np.testing.assert_array_equal(mask, expected)
    assert all(len(v) == 0 for k, v in out.items() if k != "r000000_c000000")


def test_ship_cut_by_a_chip_edge_is_clipped_in_both_chips(make_scene, make_layer):
    out, report = chip_labels(make_scene, make_layer, [pixel_polygon(60, 10, 70, 14)])
    left_box, left_mask, left_visible, _ = by_ship(out["r000000_c000000"], 1)
    right_box, right_mask, right_visible, _ = by_ship(out["r000000_c000064"], 1)
    np.testing.assert_array_equal(left_box, [60, 10, 64, 14])
    np.testing.assert_array_equal(right_box, [0, 10, 6, 14])
    assert left_visible == pytest.approx(0.4) and right_visible == pytest.approx(0.6)
    assert left_mask.sum() == 4 * 4 and left_mask[10:14, 60:64].all()
    assert right_mask.sum() == 6 * 4 and right_mask[10:14, 0:6].all()
    assert report.dropped_slivers == 0


def test_slivers_below_min_visible_are_dropped_and_counted(make_scene, make_layer):
    geometries = [
        pixel_polygon(62, 30, 80, 34),  # 2 of 18 columns on the left chip: a sliver there
        pixel_polygon(64, 50, 70, 54),  # touches the left chip's edge: not on it at all
    ]
    out, report = chip_labels(make_scene, make_layer, geometries)
    assert out["r000000_c000000"].ship_ids.tolist() == []
    right = out["r000000_c000064"]
    assert right.ship_ids.tolist() == [1, 2]
    np.testing.assert_array_equal(right.boxes, [[0, 30, 16, 34], [0, 50, 6, 54]])
    np.testing.assert_allclose(right.visible, [16 / 18, 1.0])
    assert report.dropped_slivers == 1


def test_min_visible_zero_keeps_slivers(make_scene, make_layer):
    scene = make_scene(width=128, height=128)
    labels = make_layer([pixel_polygon(62, 30, 80, 34)])
    settings = ChipSettings(size=64, overlap=0, min_visible=0.0)
    with SceneChips(scene, labels=labels, settings=settings) as chips:
        left = chips.sample(chips.chips[0]).labels
        assert left is not None and chips.labeler is not None
        assert chips.labeler.dropped_slivers == 0
    np.testing.assert_allclose(left.visible, [2 / 18])
    np.testing.assert_array_equal(left.boxes, [[62, 30, 64, 34]])


def test_multipolygon_is_one_ship(make_scene, make_layer):
    parts = shapely.MultiPolygon([pixel_polygon(5, 5, 10, 8), pixel_polygon(20, 30, 24, 40)])
    out, report = chip_labels(make_scene, make_layer, [parts])
    labels = out["r000000_c000000"]
    assert len(labels) == 1 and report.features == 1
    box, mask, visible, _ = by_ship(labels, 1)
    np.testing.assert_array_equal(box, [5, 5, 24, 40])
    assert mask.sum() == 5 * 3 + 4 * 10 and visible == 1.0


def test_invalid_bow_tie_is_repaired_and_counted(make_scene, make_layer):
    x0, y0 = TRANSFORM @ (10, 10)
    x1, y1 = TRANSFORM @ (30, 20)
    bow_tie = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    assert not bow_tie.is_valid
    out, report = chip_labels(make_scene, make_layer, [bow_tie, pixel_polygon(40, 40, 44, 44)])
    assert report.repaired == 1 and report.empty == 0
    box, mask, visible, footprint = by_ship(out["r000000_c000000"], 1)
    assert footprint.is_valid and footprint.geom_type == "MultiPolygon"
    assert footprint.area == pytest.approx(bow_tie.envelope.area / 2)
    np.testing.assert_array_equal(box, [10, 10, 30, 20])
    assert mask.sum() == pytest.approx(20 * 10 / 2, abs=12) and visible == pytest.approx(1.0)


def test_empty_geometries_are_skipped_and_counted(make_scene, make_layer):
    out, report = chip_labels(
        make_scene, make_layer, [pixel_polygon(5, 5, 10, 10), shapely.Polygon(), None]
    )
    assert report.features == 3 and report.empty == 2
    assert [i for v in out.values() for i in v.ship_ids] == [1]


def test_ships_outside_the_scene_are_counted_not_an_error(make_scene, make_layer):
    far = pixel_polygon(500, 500, 510, 505)
    out, report = chip_labels(make_scene, make_layer, [pixel_polygon(5, 5, 10, 10), far])
    assert report.outside_scene == 1
    assert [i for v in out.values() for i in v.ship_ids] == [1]


def test_padded_chip_clips_ships_at_the_scene_edge(make_scene, make_layer):
    geometries = [
        pixel_polygon(45, 10, 55, 14),  # half beyond the 50 px wide scene
        pixel_polygon(55, 20, 60, 24),  # only in the padding: outside the scene
    ]
    out, report = chip_labels(
        make_scene, make_layer, geometries, width=50, height=40, size=64, overlap=16
    )
    assert list(out) == ["r000000_c000000"] and report.outside_scene == 1
    box, mask, visible, _ = by_ship(out["r000000_c000000"], 1)
    np.testing.assert_array_equal(box, [45, 10, 50, 14])
    assert visible == pytest.approx(0.5) and not mask[:, 50:].any()


def test_footprints_from_the_id_column_or_row_numbers(tmp_path):
    frame = gpd.GeoDataFrame(
        {"name": ["a", "b"]},
        geometry=[pixel_polygon(0, 0, 2, 2), pixel_polygon(4, 4, 6, 6)],
        crs=UTM33,
    )
    frame.to_file(tmp_path / "noid.gpkg", layer="x", engine="pyogrio")
    footprints, _ = read_footprints(tmp_path / "noid.gpkg", UTM33)
    assert footprints["ship_id"].tolist() == [0, 1]
    frame.assign(id=[7, 9]).to_file(tmp_path / "id.gpkg", layer="x", engine="pyogrio")
    footprints, _ = read_footprints(tmp_path / "id.gpkg", UTM33)
    assert footprints["ship_id"].tolist() == [7, 9]


def test_mask_polygonised_back_lies_within_a_pixel_of_the_footprint(make_scene, make_layer):
    hull = ship(63, 30, length=30, beam=9, angle=33)  # cut by the chip edge at column 64
    out, _ = chip_labels(make_scene, make_layer, [hull])
    for chip_id, col_off in (("r000000_c000000", 0), ("r000000_c000064", 64)):
        labels = out[chip_id]
        box, mask, visible, footprint = by_ship(labels, 1)
        chip_transform = TRANSFORM @ rasterio.Affine.translation(col_off, 0)
        shapes = rasterio.features.shapes(
            mask.astype(np.uint8), mask=mask, transform=chip_transform
        )
        traced = shapely.union_all([shapely.geometry.shape(g) for g, _ in shapes])
        clipped = hull.intersection(
            shapely.box(*rasterio.transform.array_bounds(64, 64, chip_transform))
        )
        assert footprint.hausdorff_distance(clipped) < 1e-6  # the clipped footprint is kept
        assert traced.hausdorff_distance(clipped) <= PIXEL
        assert traced.symmetric_difference(clipped).area <= 0.25 * clipped.area
        assert visible == pytest.approx(clipped.area / hull.area)
        assert np.abs(mask_to_box(mask) - box).max() <= 1.0


def test_footprints_in_another_crs_give_the_same_labels(make_scene, make_layer):
    geometries = [
        ship(20, 20, length=24, beam=6, angle=20),
        ship(63, 40, length=20, beam=5, angle=-70),  # cut by the chip edge
        pixel_polygon(90.3, 100.2, 101.7, 104.6),
    ]
    same, _ = chip_labels(make_scene, make_layer, geometries)
    wgs84 = list(gpd.GeoSeries(geometries, crs=UTM33).to_crs("EPSG:4326"))
    other, report = chip_labels(make_scene, make_layer, wgs84, crs="EPSG:4326", name="ll.gpkg")
    assert report.reprojected_from == "EPSG:4326"
    assert sum(len(v) for v in same.values()) == 4
    for chip_id, labels in same.items():
        reprojected = other[chip_id]
        np.testing.assert_array_equal(reprojected.ship_ids, labels.ship_ids)
        np.testing.assert_allclose(reprojected.boxes, labels.boxes, atol=1e-3)  # << 1 px
        np.testing.assert_allclose(reprojected.visible, labels.visible, atol=1e-4)
        np.testing.assert_array_equal(reprojected.masks, labels.masks)


def test_labeler_counts_ships_outside_the_scene():
    footprints = gpd.GeoDataFrame(
        {"ship_id": [1, 2]},
        geometry=[pixel_polygon(1, 1, 3, 3), pixel_polygon(-20, -20, -10, -10)],
        crs=UTM33,
    )
    bounds = rasterio.transform.array_bounds(16, 16, TRANSFORM)
    labeler = ChipLabeler(footprints, bounds)
    assert labeler.outside_scene == 1


@pytest.mark.parametrize(
    ("geometries", "match"),
    [
        ([shapely.Point(500010, 3999990)], "Point geometries; footprints must be polygons"),
        (
            [shapely.LineString([(500010, 3999990), (500020, 3999980)])],
            "LineString geometries; footprints must be polygons",
        ),
    ],
)
def test_point_and_line_footprints_are_refused(make_layer, geometries, match):
    path = make_layer(geometries)
    with pytest.raises(LabelsError, match=match):
        read_footprints(path, UTM33)


@pytest.mark.filterwarnings("ignore:'crs' was not provided:UserWarning")
def test_footprints_without_crs_are_refused(make_layer):
    path = make_layer([pixel_polygon(0, 0, 4, 4)], crs=None)
    with pytest.raises(LabelsError, match="layer 'ships' has no CRS"):
        read_footprints(path, UTM33)


def test_empty_layer_is_refused(tmp_path):
    path = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"id": []}, geometry=[], crs=UTM33).to_file(
        path, layer="ships", engine="pyogrio"
    )
    with pytest.raises(LabelsError, match="layer 'ships' is empty"):
        read_footprints(path, UTM33)


def test_layer_of_only_empty_geometries_is_refused(make_layer):
    path = make_layer([shapely.Polygon(), None])
    with pytest.raises(LabelsError, match="no usable polygon"):
        read_footprints(path, UTM33)


def test_layer_choice(tmp_path):
    path = tmp_path / "multi.gpkg"
    for layer in ("harbour", "scene"):
        gpd.GeoDataFrame({"id": [1]}, geometry=[pixel_polygon(0, 0, 4, 4)], crs=UTM33).to_file(
            path, layer=layer, engine="pyogrio"
        )
    with pytest.raises(LabelsError, match="no layer 'docks'; available layers: harbour, scene"):
        read_footprints(path, UTM33, layer="docks")
    with pytest.raises(LabelsError, match="has 2 layers; choose one with --layer"):
        read_footprints(path, UTM33)
    assert read_footprints(path, UTM33, prefer_layer="scene")[1].layer == "scene"
    assert read_footprints(path, UTM33, layer="harbour", prefer_layer="scene")[1].layer == "harbour"


def test_missing_or_unreadable_labels_are_refused(tmp_path):
    with pytest.raises(InputNotFoundError, match="no such file"):
        read_footprints(tmp_path / "missing.gpkg", UTM33)
    (tmp_path / "notes.gpkg").write_text("not vectors\n")
    with pytest.raises(LabelsError, match="not a vector file"):
        read_footprints(tmp_path / "notes.gpkg", UTM33)


def test_a_detect_output_reads_back_as_footprints_without_naming_the_layer(tmp_path):
    """A styled GeoPackage holds a layer_styles table; it is not a second footprint layer."""
    import geopandas as gpd
    import shapely

    from geosam.io.footprints import read_footprints
    from geosam.io.ship_layers import write_ship_layers

    ships = gpd.GeoDataFrame({"id": [1]}, geometry=[shapely.box(0, 0, 10, 5)], crs="EPSG:32633")
    path = tmp_path / "ships.gpkg"
    write_ship_layers(path, {"anything": ships})
    frame, report = read_footprints(path, "EPSG:32633")
    assert report.layer == "anything" and len(frame) == 1


def test_text_ids_fall_back_to_row_numbers(make_layer, tmp_path):
    import geopandas as gpd
    import shapely

    from geosam.io.footprints import read_footprints

    path = tmp_path / "named.gpkg"
    gpd.GeoDataFrame(
        {"id": ["a", "b"]},
        geometry=[shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)],
        crs="EPSG:32633",
    ).to_file(path, engine="pyogrio")
    frame, _ = read_footprints(path, "EPSG:32633")
    assert list(frame["ship_id"]) == [0, 1]
