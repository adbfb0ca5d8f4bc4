"""Training data: the scene/labels manifest and chips of several scenes in their own CRSs."""

import math

import numpy as np
import pytest
import shapely
from affine import Affine
from conftest import pixel_polygon
from pyproj import Transformer

from geosam.data.settings import ChipSettings
from geosam.errors import InputNotFoundError, TrainingDataError
from geosam.pipelines.training_data import TrainingPair, load_training_chips, read_manifest

SETTINGS = ChipSettings(size=64, overlap=0)

# Scene b: 10 m pixels in Web Mercator; its footprints are stored in WGS 84 lon/lat.
MERCATOR = Affine(10.0, 0.0, 1_000_000.0, 0.0, -10.0, 5_000_000.0)
TO_LONLAT = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)


def lonlat_polygon(col0, row0, col1, row1):
    """A box given in scene-b pixels, as a lon/lat polygon (Mercator keeps boxes boxes)."""
    x0, y0 = MERCATOR @ (col0, row0)
    x1, y1 = MERCATOR @ (col1, row1)
    lon, lat = TO_LONLAT.transform([x0, x1], [y0, y1])
    return shapely.box(min(lon), min(lat), max(lon), max(lat))


# Scene pixel boxes (col0, row0, col1, row1) of each scene's ships.
SHIPS_A = [(10, 20, 30, 26), (70, 80, 90, 84)]
SHIPS_B = [(5, 70, 15, 90), (100, 10, 120, 14)]


def test_manifest_paths_are_relative_to_the_csv(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    manifest = folder / "train.csv"
    manifest.write_text(
        "scene,labels,layer\n"
        "scenes/a.tif,labels/a.gpkg,ships\n"
        f"b.tif,{tmp_path / 'elsewhere' / 'b.gpkg'},\n",
        encoding="utf-8",
    )
    pairs = read_manifest(str(manifest))
    assert pairs == [
        TrainingPair(folder / "scenes" / "a.tif", folder / "labels" / "a.gpkg", "ships"),
        TrainingPair(folder / "b.tif", tmp_path / "elsewhere" / "b.gpkg", None),
    ]


def test_manifest_without_a_layer_column_has_no_layers(tmp_path):
    manifest = tmp_path / "train.csv"
    manifest.write_text("labels,scene\nl.gpkg,s.tif\n", encoding="utf-8")
    assert read_manifest(manifest) == [TrainingPair(tmp_path / "s.tif", tmp_path / "l.gpkg")]


def test_manifest_saved_by_excel_with_a_byte_order_mark_is_read(tmp_path):
    manifest = tmp_path / "train.csv"
    manifest.write_bytes("scene,labels\r\ns.tif,l.gpkg\r\n".encode("utf-8-sig"))
    assert read_manifest(manifest) == [TrainingPair(tmp_path / "s.tif", tmp_path / "l.gpkg")]


@pytest.mark.parametrize(
    "text", ["image,footprints\ns.tif,l.gpkg\n", "scene\ns.tif\n", "", "scene,labels\n"]
)
def test_manifest_without_the_columns_is_refused(tmp_path, text):
    manifest = tmp_path / "train.csv"
    manifest.write_text(text, encoding="utf-8")
    with pytest.raises(TrainingDataError, match="scene, labels") as info:
        read_manifest(manifest)
    assert str(manifest) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_manifest_is_refused(tmp_path):
    with pytest.raises(InputNotFoundError, match="no such manifest") as info:
        read_manifest(tmp_path / "nope.csv")
    assert isinstance(info.value, FileNotFoundError)
    assert "nope.csv" in str(info.value)


@pytest.fixture
def two_scenes(make_scene, make_layer):
    """Scene a in UTM 33N with UTM footprints; scene b in Web Mercator with lon/lat ones."""
    a = make_scene(width=128, height=128, name="a.tif", seed=1)
    a_labels = make_layer([pixel_polygon(*s) for s in SHIPS_A], name="a.gpkg")
    b = make_scene(width=128, height=128, name="b.tif", seed=2, crs="EPSG:3857", transform=MERCATOR)
    b_labels = make_layer(
        [lonlat_polygon(*s) for s in SHIPS_B], crs="EPSG:4326", name="b.gpkg", ids=[7, 8]
    )
    return [TrainingPair(a, a_labels), TrainingPair(b, b_labels, "ships")]


def expected_chip_boxes(ships):
    """{chip_id: [XYXY chip-pixel box]} of scene-pixel ships on a 64 px grid."""
    out = {}
    for col0, row0, col1, row1 in ships:
        r, c = int(row0) // 64 * 64, int(col0) // 64 * 64
        out.setdefault(f"r{r:06d}_c{c:06d}", []).append([col0 - c, row0 - r, col1 - c, row1 - r])
    return out


def test_chips_of_scenes_in_different_crss_carry_their_ships(two_scenes):
    chips, resolved = load_training_chips(two_scenes, SETTINGS)
    assert len(resolved) == 2 and all(s.size == 64 and s.overlap == 0 for s in resolved)
    assert resolved[0].bands == resolved[1].bands == (1, 2, 3)
    assert sorted((c.scene, c.chip.chip_id) for c in chips) == sorted(
        (s, f"r{r:06d}_c{c:06d}") for s in ("a", "b") for r in (0, 64) for c in (0, 64)
    )
    for scene, ships in (("a", SHIPS_A), ("b", SHIPS_B)):
        expected = expected_chip_boxes(ships)
        for chip in (c for c in chips if c.scene == scene):
            assert chip.image.shape == (3, 64, 64) and chip.image.dtype == np.uint8
            assert chip.valid.shape == (64, 64) and chip.valid.all()
            want = np.array(expected.get(chip.chip.chip_id, []), np.float32).reshape(-1, 4)
            assert chip.boxes.dtype == np.float32 and chip.boxes.shape == want.shape
            np.testing.assert_allclose(chip.boxes, want, atol=1.0)
            assert chip.masks.shape == (len(want), 64, 64) and chip.masks.dtype == bool
            for box, mask in zip(want, chip.masks, strict=True):
                x0, y0, x1, y1 = (int(v) for v in box)
                assert mask[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].all()  # inside, whatever rounding
                outside = np.ones_like(mask)
                outside[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = False
                assert not (mask & outside).any()
    # The pixels are the scenes' own: chip r0 c64 of scene b is columns 64-127, rows 0-63.
    import rasterio

    with rasterio.open(two_scenes[1].scene) as src:
        data = src.read(window=((0, 64), (64, 128)))
    (b_chip,) = [c for c in chips if c.scene == "b" and c.chip.chip_id == "r000000_c000064"]
    np.testing.assert_array_equal(b_chip.image, data)


def test_footprints_off_every_chip_leave_nothing_to_train_on(make_scene, make_layer):
    scene = make_scene(width=128, height=128, name="a.tif")
    labels = make_layer([pixel_polygon(-500, -500, -480, -490)], name="far.gpkg")
    with pytest.raises(TrainingDataError, match="nothing to train on") as info:
        load_training_chips([TrainingPair(scene, labels)], SETTINGS)
    assert "far.gpkg" in str(info.value)


@pytest.mark.parametrize(
    "length, factor",
    [
        (17.9, 2.75),
        (19.0, 2.5),
        (37.5, 1.25),
        (43.0, 1.0),
        (9.8, 4),
        (4.0, 4),
        (55.0, 1.0),
        (96.0, 1.0),
        (98.0, 0.5),
        (168.0, 1 / 3.5),
        (2000.0, 1 / 16),
    ],
)
def test_ships_are_read_at_the_quarter_factor_nearest_the_target_length(length, factor):
    """The dev Sentinel-2 ports (17.9 px) are read at x2.75, the marina (37.5 px) at x1.25,
    the demo's boats (43 px) as they are, its ships painted at 0.125 m (168 px) 3.5 times
    coarser; ships up to 96 px as they are; at most 4 times finer and 16 times coarser."""
    from geosam.data.scale import read_factor

    assert read_factor(length) == pytest.approx(factor)


def test_scale_rule_reads_small_ships_finer_per_pixel_size(make_scene, make_layer):
    """Two scenes of one pixel size share a factor; each pixel size gets its own."""
    from geosam.pipelines.training_data import with_scale_rule

    fine = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0)
    pairs = []
    for name, transform, length in (("a", fine, 40), ("b", None, 16), ("c", None, 20)):
        kwargs = {"transform": transform} if transform is not None else {}
        scene = make_scene(width=200, height=200, name=f"{name}.tif", **kwargs)
        res = 0.5 if transform is not None else 2.0
        ships = [
            shapely.box(
                500000 + 20 * res,
                4000000 - (30 + 10 * k) * res,
                500000 + (20 + length) * res,
                4000000 - (27 + 10 * k) * res,
            )
            for k in range(3)
        ]
        pairs.append(TrainingPair(scene, make_layer(ships, name=f"{name}.gpkg")))
    rule = with_scale_rule(pairs, SETTINGS).scale_rule
    # Ground pixel sizes: UTM's grid is 0.9996 of the ground at its central meridian.
    # 40 px: x1.25 (50 px); median 18 px: x2.75 (49.5 px).
    assert [factor for _, factor in rule] == [1.25, 2.75]
    assert [size for size, _ in rule] == pytest.approx([0.5 / 0.9996, 2.0 / 0.9996], rel=1e-5)


def test_scenes_of_one_sensor_share_a_pixel_size_and_chips_carry_it(make_scene, make_layer):
    """10 m in UTM, on a Web Mercator grid at 34 deg (8.3 m of ground) and 1e-4 deg at 45 deg
    (7.9 x 11.1 m) are one sensor; 0.5 m another; 10 m of Web Mercator at 60 deg (5 m) a third."""
    from geosam.pipelines.training_data import sensor_pixel_sizes

    transforms = {
        "utm10": ("EPSG:32633", Affine(10.0, 0, 500000.0, 0, -10.0, 4000000.0)),
        "merc10": ("EPSG:3857", Affine(10.003, 0, 1e6, 0, -10.003, 4e6)),
        "aerial": ("EPSG:32633", Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.0)),
        "lonlat": ("EPSG:4326", Affine(1e-4, 0, 10.0, 0, -1e-4, 45.0)),
        "merc60": ("EPSG:3857", Affine(10.0, 0, 1e6, 0, -10.0, 8.4e6)),
    }
    pairs = []
    for name, (crs, transform) in transforms.items():
        scene = make_scene(width=64, height=64, name=f"{name}.tif", crs=crs, transform=transform)
        x0, y0 = transform @ (10, 10)
        x1, y1 = transform @ (30, 16)
        ship = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        pairs.append(TrainingPair(scene, make_layer([ship], crs=crs, name=f"{name}.gpkg")))
    utm = 10.0 / 0.9996  # the ground under UTM's 10 m at its central meridian
    _, lat60 = TO_LONLAT.transform(1e6 + 320, 8.4e6 - 320)  # merc60's centre
    merc60 = 10.0 * math.cos(math.radians(lat60))
    sizes = sensor_pixel_sizes(pairs)
    # (Web Mercator is spherical: on the ellipsoid its ground differs by up to 0.3 %.)
    assert sizes == pytest.approx([utm, utm, 0.5 / 0.9996, utm, merc60], rel=3e-3)
    chips, _ = load_training_chips(pairs, SETTINGS)
    assert {c.scene: c.pixel_size for c in chips} == dict(zip(transforms, sizes, strict=True))


def test_a_scene_read_in_panels_gives_its_chips_in_grid_order(
    make_scene, make_layer, monkeypatch, read_orders
):
    """Wide scenes are read in panels; training sees the same chips in the same order."""
    from geosam.io import reader

    scene = make_scene(width=600, height=300, tiled=True, blockxsize=64, blockysize=64)
    labels = make_layer([pixel_polygon(c, r, c + 30, r + 8) for c in (40, 470) for r in (50, 170)])
    pair = [TrainingPair(scene, labels)]
    settings = ChipSettings(size=128, overlap=16)
    loaded = {}
    for name, cache in (("rows", 2**30), ("panels", 100_000)):
        monkeypatch.setattr(reader, "READ_CACHE_BYTES", cache)
        loaded[name] = load_training_chips(pair, settings)[0]
    rows, panels = read_orders
    assert panels != rows and sorted(panels) == rows  # the small cache read in panels
    assert [c.chip.chip_id for c in loaded["panels"]] == rows
    for a, b in zip(loaded["rows"], loaded["panels"], strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
