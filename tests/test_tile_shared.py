"""Tiling the real scenes in ../shared/data: every ship lands in a chip, in any CRS and dtype."""

import json

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from conftest import LANDSAT, SHIPS_DEV, shared_path
from pyproj import Geod, Transformer

from geosam.cli.main import cli
from geosam.data.samples import SceneChips
from geosam.data.settings import ChipSettings
from geosam.geometry.pixels import geometry_to_pixels

SIZE, OVERLAP = 256, 64
SCENES = ["dota_P0706_top", "s2_busan", "s2_genoa", "s2_gdynia", "s2_casablanca"]


def whole_appearances(scene, layer, **settings):
    """For each ship id, (chip, box, mask, footprint) of its first chip with visible == 1."""
    found = {}
    seen = set()
    chip_settings = ChipSettings(size=SIZE, overlap=OVERLAP, **settings)
    with SceneChips(scene, SHIPS_DEV / "ships.gpkg", layer, chip_settings) as chips:
        for sample in chips:
            labels = sample.labels
            seen.update(labels.ship_ids.tolist())
            for i, ship_id in enumerate(labels.ship_ids.tolist()):
                if labels.visible[i] > 1 - 1e-6 and ship_id not in found:
                    found[ship_id] = (sample.chip, labels.boxes[i], labels.masks[i])
        report = chips.footprint_report
    return found, seen, report


@pytest.mark.parametrize("name", SCENES)
def test_every_footprint_is_whole_in_some_chip(name):
    gpkg = shared_path(SHIPS_DEV / "ships.gpkg")
    scene = shared_path(SHIPS_DEV / f"{name}.tif")
    assert name in pyogrio.list_layers(gpkg)[:, 0]
    ships = gpd.read_file(gpkg, layer=name).set_index("id")
    with rasterio.open(scene) as src:
        assert ships.crs == src.crs
        res = src.res[0]
        inside = ships[ships.intersects(shapely.box(*src.bounds))]
    # The footprints are stored already clipped to the scene (`truncated` marks those cut by
    # its edge), so each one's visible share on a chip is measured against what is in the
    # scene. Every ship is shorter than the overlap, so the grid holds each one whole in some
    # chip and the default min_visible (a sliver rule for chip edges) may only drop partial
    # copies: we keep the default and demand a whole (visible == 1) appearance of every
    # footprint, truncated ones included, rather than relaxing min_visible.
    bounds = inside.bounds
    longest = np.maximum(bounds.maxx - bounds.minx, bounds.maxy - bounds.miny) / res
    assert longest.max() < OVERLAP
    found, seen, report = whole_appearances(scene, None)
    assert report.layer == name and report.outside_scene == len(ships) - len(inside)
    assert set(found) == seen == set(inside.index)
    assert set(inside.index[inside.truncated == 1]) <= set(found)
    for ship_id, (chip, box, mask) in found.items():
        footprint = inside.geometry[ship_id]
        # The box is the footprint's pixel bounds on that chip, and the mask covers its area.
        expected = shapely.bounds(geometry_to_pixels(footprint, chip.transform))
        np.testing.assert_allclose(box, expected, atol=1e-3)
        perimeter = footprint.length / res
        assert abs(int(mask.sum()) - inside.area_px[ship_id]) <= perimeter / 2
        if name == "s2_casablanca":  # footprints follow the pixel edges of its native grid
            assert mask.sum() == inside.area_px[ship_id]


def lonlat_centres(scene, **settings):
    found, _, report = whole_appearances(scene, "s2_busan", **settings)
    with rasterio.open(scene) as src:
        to_lonlat = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
    centres = {}
    for ship_id, (chip, box, _) in found.items():
        x, y = chip.transform @ ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        centres[ship_id] = to_lonlat.transform(x, y)
    return centres, report


def test_busan_footprints_land_on_the_same_ships_in_the_raw_16bit_scene():
    raw = shared_path(SHIPS_DEV / "s2_busan_raw_rgbn_uint16.tif")
    product = shared_path(SHIPS_DEV / "s2_busan.tif")
    on_product, report = lonlat_centres(product)
    on_raw, raw_report = lonlat_centres(raw, bands=(1, 2, 3))
    assert report.reprojected_from is None
    assert raw_report.reprojected_from == "EPSG:32652"
    assert len(on_product) == 54 and set(on_raw) == set(on_product)
    geod = Geod(ellps="WGS84")
    for ship_id, (lon, lat) in on_product.items():
        _, _, metres = geod.inv(lon, lat, *on_raw[ship_id])
        assert metres <= 10.0, (ship_id, metres)  # within one Sentinel-2 pixel


def test_raw_16bit_scene_tiles_with_a_recorded_stretch(tmp_path):
    raw = shared_path(SHIPS_DEV / "s2_busan_raw_rgbn_uint16.tif")
    gpkg = shared_path(SHIPS_DEV / "ships.gpkg")
    out = tmp_path / "out"
    args = ["-q", "tile", str(raw), str(out), "--labels", str(gpkg), "--layer", "s2_busan"]
    args += ["--size", str(SIZE), "--overlap", str(OVERLAP), "--bands", "1,2,3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["stretch"]["bands"] == [1, 2, 3]
    assert meta["footprints"]["reprojected_from"] == "EPSG:32652"
    ships = gpd.read_file(out / "index.gpkg", layer="ships")
    assert ships.crs == "EPSG:3857" and set(ships.ship_id) == set(
        gpd.read_file(gpkg, layer="s2_busan").id
    )
    with rasterio.open(out / "chips" / "r000000_c000000.tif") as chip:
        pixels = chip.read()
        assert chip.crs == "EPSG:3857" and chip.dtypes[0] == "uint8"
    # A 2-98 % stretch uses the whole range without saturating most pixels.
    assert pixels.min() == 0 and pixels.max() == 255
    assert ((pixels == 0) | (pixels == 255)).mean() < 0.2


def test_landsat_nodata_border_is_honoured(tmp_path):
    scene = shared_path(LANDSAT)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["-q", "tile", str(scene), str(out), "--size", "256", "--overlap", "32"]
    )
    assert result.exit_code == 0, result.output
    chips = gpd.read_file(out / "index.gpkg", layer="chips")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["chips_written"] == len(chips) and meta["chips_skipped"] == 16 - len(chips)
    with rasterio.open(scene) as src:
        assert src.nodata == 0
        data = src.read()
        mask = src.dataset_mask() > 0  # GDAL: valid where any band holds data
    assert (mask == ~(data == 0).all(axis=0)).all()
    assert 0.2 < 1 - mask.mean() < 0.5  # a real nodata border
    for row in chips.itertuples():
        window = (slice(row.row_off, row.row_off + 256), slice(row.col_off, row.col_off + 256))
        with rasterio.open(out / "chips" / f"{row.chip_id}.tif") as chip:
            pixels = chip.read()
        nodata = ~mask[window]
        np.testing.assert_array_equal((pixels == 0).all(axis=0), nodata)
        np.testing.assert_array_equal(pixels, data[(slice(None), *window)])
        assert row.valid_fraction == pytest.approx(1 - nodata.mean(), abs=1e-6)


def test_the_default_stretch_of_raw_busan_keeps_the_products_colours():
    """The raw 16-bit scene, stretched by default, is coloured as the 8-bit product of the
    same place (one gain for every band): its blue stays darker than its red, as there. A
    stretch per band brightens the dim blue band to the others' level and tints it all."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    from geosam.io.reader import SceneReader

    raw = shared_path(SHIPS_DEV / "s2_busan_raw_rgbn_uint16.tif")
    product = shared_path(SHIPS_DEV / "s2_busan.tif")
    ratios = {}
    for per_band in (False, True):
        with SceneReader(raw, bands=(1, 2, 3), per_band_stretch=per_band) as reader:
            stretched = reader.read_overview(512)
            grid = reader.grid
        with (
            rasterio.open(product) as src,
            WarpedVRT(
                src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height
            ) as vrt,
        ):
            seen = vrt.read(out_shape=stretched.shape, resampling=Resampling.average)
        on_scene = seen.sum(axis=0) > 0
        means = stretched[:, on_scene].mean(axis=1)
        ratios[per_band] = (means[1] / means[0], means[2] / means[0])  # green, blue to red
        truth = seen[:, on_scene].mean(axis=1)
        ratios["product"] = (truth[1] / truth[0], truth[2] / truth[0])
    assert np.allclose(ratios[False], ratios["product"], atol=0.03), ratios
    assert ratios[True][1] > ratios["product"][1] + 0.1, ratios  # per band: a bluer scene
