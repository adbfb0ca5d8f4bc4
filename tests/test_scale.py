"""The scale rule in ground metres: a ship is read at the same size whatever the scene's CRS."""

import math

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from conftest import SHIPS_DEV, shared_path
from pyproj import Transformer
from rasterio.warp import Resampling, calculate_default_transform, reproject

from geosam.data.samples import SceneChips
from geosam.data.scale import ground_pixel_size, gsd_for_scene, pixel_metres
from geosam.data.settings import ChipSettings
from geosam.io.reader import SceneReader

UTM_GROUND = 1 / 0.9996
"""Metres of ground per metre of UTM grid at the central meridian."""


def warped(path, crs, out, resolution=None):
    """`path` reprojected to `crs` (bilinear), as a user's export in another CRS would be."""
    with rasterio.open(path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds, resolution=resolution
        )
        profile = src.profile | {
            "crs": crs,
            "transform": transform,
            "width": width,
            "height": height,
        }
        with rasterio.open(out, "w", **profile) as dst:
            for band in range(1, src.count + 1):
                reproject(
                    rasterio.band(src, band),
                    rasterio.band(dst, band),
                    resampling=Resampling.bilinear,
                )
    return out


def test_ground_pixel_size_in_utm_web_mercator_and_degrees(make_scene):
    """Metres on the ground, not CRS units: Web Mercator shrinks by cos(latitude)."""
    grids = {
        "utm": ("EPSG:32633", Affine(10, 0, 5e5, 0, -10, 4e6)),
        "merc": ("EPSG:3857", Affine(10, 0, 1e6, 0, -10, 4e6)),
        "lonlat": ("EPSG:4326", Affine(1e-4, 0, 10, 0, -1e-4, 45)),
    }
    utm, merc, lonlat = (
        make_scene(width=64, height=64, name=f"{name}.tif", crs=crs, transform=transform)
        for name, (crs, transform) in grids.items()
    )
    assert pixel_metres(utm) == pytest.approx(10 * UTM_GROUND, rel=1e-5)
    _, lat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True).transform(
        1e6, 4e6 - 320
    )
    assert pixel_metres(merc) == pytest.approx(10 * math.cos(math.radians(lat)), rel=3e-3)
    pixel = ground_pixel_size(lonlat)
    assert pixel is not None
    # 1e-4 deg at 45 deg 0.3 min: 7.9 m along a parallel, 11.1 m along a meridian.
    assert pixel.along == pytest.approx((7.88, 11.12), rel=2e-3)


def test_a_scene_of_the_trained_grid_keeps_its_whole_factor(make_scene):
    """A 10 m UTM scene under a 10 m x3 rule is read at exactly 10/3 on its own grid."""
    scene = make_scene(width=64, height=64, transform=Affine(10, 0, 5e5, 0, -10, 4e6))
    assert gsd_for_scene(scene, ((10 * UTM_GROUND, 3),)) == (10 / 3, 10 / 3)
    assert gsd_for_scene(scene, ((10.0, 1),)) is None  # factor 1: as it is


def test_a_finer_scene_than_the_read_size_is_read_at_that_size(make_layer, make_scene):
    """A 2 m product of a 10 m x3 sensor's place is read at the sensor's 3.3 m, so its ships
    span as many read pixels as in training (read as it was, 1.67x as many: on the dev
    marina at twice its pixels per metre that found 5 of 65 yachts instead of 50)."""
    coarse = make_scene(
        width=100, height=100, name="s10.tif", transform=Affine(10, 0, 5e5, 0, -10, 4e6)
    )
    fine = make_scene(width=500, height=500, name="s2.tif", transform=Affine(2, 0, 5e5, 0, -2, 4e6))
    rule = ((10 * UTM_GROUND, 3),)
    assert gsd_for_scene(fine, rule) == pytest.approx((10 / 3, 10 / 3), rel=1e-6)
    near = make_scene(
        width=64, height=64, name="s3.tif", transform=Affine(3.2, 0, 5e5, 0, -3.2, 4e6)
    )
    assert gsd_for_scene(near, rule) is None  # within 5 % of 3.33 m: read as it is
    ship = shapely.box(5e5 + 300, 4e6 - 540, 5e5 + 600, 4e6 - 500)  # 300 x 40 m
    labels = make_layer([ship])
    settings = ChipSettings(size=256, overlap=0, scale_rule=rule)

    def length(path):
        with SceneChips(path, labels, settings=settings) as chips:
            boxes = [s.labels.boxes for s in chips if s.labels is not None and len(s.labels)]
        found = np.concatenate(boxes)
        return float((found[:, 2] - found[:, 0]).max())

    assert length(fine) == pytest.approx(length(coarse), abs=1.0)
    assert length(coarse) == pytest.approx(90, abs=1.0)  # 300 m at 3.33 m


def test_long_ships_are_read_coarser_so_that_a_chip_holds_them(make_layer, make_scene):
    """Ships 192 px long in a 0.125 m scene (no 128 px chip holds one) are read 4 times
    coarser: training and any later scene of that sensor see them 48 px long."""
    from geosam.pipelines.training_data import TrainingPair, with_scale_rule

    transform = Affine(0.125, 0, 5e5, 0, -0.125, 4e6)
    scene = make_scene(width=800, height=800, name="fine.tif", transform=transform)
    ships = [shapely.box(5e5 + 2, 4e6 - 6 - 8 * k, 5e5 + 26, 4e6 - 2 - 8 * k) for k in range(3)]
    labels = make_layer(ships)  # 24 x 4 m: 192 x 32 px, all on the first chip once read
    settings = with_scale_rule([TrainingPair(scene, labels)], ChipSettings(size=128, overlap=0))
    ((_, factor),) = settings.scale_rule
    assert factor == 0.25
    assert gsd_for_scene(scene, settings.scale_rule) == pytest.approx((0.5, 0.5), rel=1e-6)
    with SceneChips(scene, labels, settings=settings) as chips:
        assert chips.reader.grid.width == 200  # 100 m at 0.5 m
        boxes = np.concatenate([s.labels.boxes for s in chips if s.labels and len(s.labels)])
    lengths = boxes[:, 2] - boxes[:, 0]
    assert lengths.max() == pytest.approx(48, abs=1.0)  # whole on a chip, and 48 px long


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326"])
def test_ships_are_read_at_one_size_whatever_the_crs(make_scene, make_layer, tmp_path, crs):
    """The same 10 m UTM scene exported in another CRS: its ship spans the same read pixels.

    Before ground metres, the Web Mercator export at 41 deg was read at x3 of its 7.6 m
    pixels (the ship 1.3x longer than in training) and the lon/lat one not resampled at all.
    """
    scene = make_scene(
        width=200, height=200, name="utm.tif", transform=Affine(10, 0, 5e5, 0, -10, 4.5e6)
    )
    ship = shapely.box(5e5 + 600, 4.5e6 - 1040, 5e5 + 900, 4.5e6 - 1000)  # 300 x 40 m
    labels = make_layer([ship])
    other = warped(scene, crs, tmp_path / "other.tif", 10.0 if crs == "EPSG:3857" else None)
    rule = ((10 * UTM_GROUND, 3),)
    settings = ChipSettings(size=256, overlap=0, scale_rule=rule)

    def ship_in_read_pixels(path):
        with SceneChips(path, labels, settings=settings) as chips:
            metres = ground_pixel_size(path)
            read_res = chips.reader.grid.transform.a, -chips.reader.grid.transform.e
            lengths = [
                float(np.hypot(*(box[2:] - box[:2])))
                for sample in chips
                for box in sample.labels.boxes
                if sample.labels is not None
            ]
        assert metres is not None and lengths
        return max(lengths), read_res, metres

    utm_length, _, _ = ship_in_read_pixels(scene)
    other_length, (xres, yres), pixel = ship_in_read_pixels(other)
    # On the ground, the other scene's read pixels are as large as the UTM scene's (10/3 m).
    assert pixel.along[0] * xres / pixel.res[0] == pytest.approx(10 * UTM_GROUND / 3, rel=1e-6)
    assert pixel.along[1] * yres / pixel.res[1] == pytest.approx(10 * UTM_GROUND / 3, rel=1e-6)
    assert other_length == pytest.approx(utm_length, rel=0.05)


def test_real_raw_busan_on_web_mercator_is_read_like_the_utm_ports():
    """Real data: the raw Sentinel-2 Busan scene (EPSG:3857, 8.2 m of ground per pixel), read
    with the dev ports' rule (10 m, x3), has its ships as long in read pixels as the UTM
    product of the same place and date (they were 1.22x longer when read at x3)."""
    raw = shared_path(SHIPS_DEV / "s2_busan_raw_rgbn_uint16.tif")
    product = shared_path(SHIPS_DEV / "s2_busan.tif")
    labels = SHIPS_DEV / "ships.gpkg"
    settings = ChipSettings(size=1024, overlap=0, scale_rule=((10.004, 3),))

    def median_length(path):
        lengths = []
        with SceneChips(path, labels, "s2_busan", settings) as chips:
            for sample in chips:
                assert sample.labels is not None
                boxes = sample.labels.boxes
                lengths += list(np.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))
        return float(np.median(lengths))

    ratio = median_length(raw) / median_length(product)
    assert ratio == pytest.approx(1.0, abs=0.05)
    with SceneReader(raw, bands=(1, 2, 3), gsd=gsd_for_scene(raw, settings.scale_rule)) as reader:
        assert reader.grid.transform.a == pytest.approx(10.004 * (10.004 / 3) / 8.193, rel=2e-3)
    assert gpd.read_file(labels, layer="s2_busan").crs != rasterio.open(raw).crs  # reprojected
