"""The detection area (`detect --within`): reprojected, cut to the scene, and its two tests."""

from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from affine import Affine

from geosam.errors import InputNotFoundError, LabelsError
from geosam.geometry.grid import chip_grid
from geosam.io.area_layer import DetectionArea

SCENE_CRS = "EPSG:32633"
TRANSFORM = Affine(2.0, 0, 500000.0, 0, -2.0, 4430000.0)  # 2 m pixels, UTM 33N
SCENE = (500000.0, 4430000.0 - 1024, 500000.0 + 1024, 4430000.0)  # 512 x 512 px


def write_area(path: Path, polygons: list[shapely.Geometry], crs: str = SCENE_CRS) -> Path:
    frame = gpd.GeoDataFrame(geometry=polygons, crs=SCENE_CRS).to_crs(crs)
    frame.to_file(path, layer="water")
    return path


def test_an_area_in_degrees_is_read_near_the_scene_only_and_cut_to_it(tmp_path):
    west, south, east, north = SCENE
    on_scene = shapely.box(west + 100, south + 100, west + 300, north + 500)  # past the top
    far = shapely.box(west + 5e5, south, west + 5.1e5, north)  # 500 km east
    path = write_area(tmp_path / "water.gpkg", [on_scene, far], crs="EPSG:4326")
    area = DetectionArea(path, SCENE_CRS, near=SCENE)
    assert not area.empty
    xmin, ymin, xmax, ymax = area.geometry.bounds
    assert xmin >= west and ymin >= south and xmax <= east and ymax <= north  # cut to `near`
    assert abs(area.geometry.area - 200 * (north - south - 100)) < 1.0  # the far one is not in it
    assert DetectionArea(write_area(tmp_path / "far.gpkg", [far]), SCENE_CRS, near=SCENE).empty


def test_a_ship_is_kept_by_a_point_inside_it_and_chips_by_their_distance(tmp_path):
    west, south, _, north = SCENE
    water = shapely.box(west, south, west + 200, north)  # the western 100 px
    area = DetectionArea(write_area(tmp_path / "water.gpkg", [water]), SCENE_CRS)
    moored = shapely.box(west + 150, south + 500, west + 230, south + 520)  # sticks out
    ashore = shapely.box(west + 210, south + 500, west + 290, south + 520)
    assert area.holds(gpd.GeoSeries([moored, ashore])).tolist() == [True, False]
    chips = chip_grid(512, 512, TRANSFORM, 128, 0)  # 128 px = 256 m per chip
    near = area.chips_near(chips, margin=0.0)
    assert {c.col_off for c in near} == {0}  # the water ends 200 m in: the first column only
    wider = area.chips_near(chips, margin=100.0)
    assert {c.col_off for c in wider} == {0, 128} and len(wider) == 8


def test_bad_area_files_are_refused_with_the_file_named(tmp_path):
    with pytest.raises(InputNotFoundError, match="nowhere.gpkg"):
        DetectionArea(tmp_path / "nowhere.gpkg", SCENE_CRS)
    points = write_area(tmp_path / "points.gpkg", [shapely.Point(SCENE[0], SCENE[1])])
    with pytest.raises(LabelsError, match="polygons"):
        DetectionArea(points, SCENE_CRS)


def test_a_file_of_several_layers_asks_for_the_within_layer_flag(tmp_path):
    path = write_area(tmp_path / "water.gpkg", [shapely.box(*SCENE)])
    gpd.GeoDataFrame(geometry=[shapely.box(*SCENE)], crs=SCENE_CRS).to_file(path, layer="lakes")
    with pytest.raises(LabelsError, match="choose one with --within-layer"):
        DetectionArea(path, SCENE_CRS)
    assert not DetectionArea(path, SCENE_CRS, layer="lakes").empty
