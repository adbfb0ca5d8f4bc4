"""SceneReader: chip pixels, transforms, padding, bands, stretch, nodata and resampling."""

import gc
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import TRANSFORM, write_raster
from rasterio.env import get_gdal_config

from geosam.errors import BandError, InputNotFoundError, SceneError
from geosam.io.reader import READ_CACHE_BYTES, SceneReader
from geosam.io.stretch import Stretch, load_stretch, save_stretch


def test_uint8_chips_are_the_scene_windows_exactly(make_scene):
    path = make_scene(width=150, height=100)
    with rasterio.open(path) as src, SceneReader(path) as reader:
        scene = src.read()
        chips = reader.chips(64, 16)
        assert len(chips) == 3 * 2
        for chip in chips:
            assert chip.transform == src.window_transform(chip.window)
            got = reader.read(chip)
            assert got.image.dtype == np.uint8 and got.image.shape == (3, 64, 64)
            r, c = chip.row_off, chip.col_off
            np.testing.assert_array_equal(got.image, scene[:, r : r + 64, c : c + 64])
            assert got.valid.all() and got.valid_fraction == 1.0
    # The last column and row end exactly at the scene edge, nothing is padded.
    assert max(c.col_off for c in chips) == 150 - 64
    assert max(c.row_off for c in chips) == 100 - 64


def test_scene_smaller_than_a_chip_is_zero_padded(make_scene):
    path = make_scene(width=50, height=40)
    with rasterio.open(path) as src, SceneReader(path) as reader:
        scene = src.read()
        (chip,) = reader.chips(64, 16)
        got = reader.read(chip)
    assert chip.padding == (24, 14)
    assert chip.transform == TRANSFORM
    np.testing.assert_array_equal(got.image[:, :40, :50], scene)
    assert not got.image[:, 40:, :].any() and not got.image[:, :, 50:].any()
    assert got.valid[:40, :50].all() and not got.valid[40:].any() and not got.valid[:, 50:].any()
    assert got.valid_fraction == pytest.approx(40 * 50 / 64**2)


def test_single_band_is_repeated_to_three(make_scene):
    path = make_scene(count=1, width=64, height=64)
    with rasterio.open(path) as src, SceneReader(path) as reader:
        band = src.read(1)
        assert reader.bands == (1, 1, 1)
        image = reader.read(reader.chips(64, 0)[0]).image
    for channel in image:
        np.testing.assert_array_equal(channel, band)


def test_bands_pick_scene_bands_in_order(make_scene):
    path = make_scene(count=4, width=64, height=64)
    with rasterio.open(path) as src, SceneReader(path, bands=(4, 1, 3)) as reader:
        scene = src.read()
        image = reader.read(reader.chips(64, 0)[0]).image
    np.testing.assert_array_equal(image, scene[[3, 0, 2]])


def test_default_bands_follow_colour_interpretation(tmp_path):
    data = np.stack([np.full((32, 32), v, np.uint8) for v in (10, 20, 30)])
    path = write_raster(tmp_path / "bgr.tif", data, photometric="RGB")
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [
            rasterio.enums.ColorInterp.blue,
            rasterio.enums.ColorInterp.green,
            rasterio.enums.ColorInterp.red,
        ]
    with SceneReader(path) as reader:
        assert reader.bands == (3, 2, 1)
        image = reader.read(reader.chips(32, 0)[0]).image
    assert image[:, 0, 0].tolist() == [30, 20, 10]


@pytest.mark.parametrize(("bands", "match"), [((1, 2, 5), "band 5 is out of range"), ((1, 2), "")])
def test_bad_band_selection_is_refused(make_scene, bands, match):
    path = make_scene(count=3, width=32, height=32)
    with pytest.raises(BandError, match=match or "one band .* or three"):
        SceneReader(path, bands=bands)


def two_level_scene(tmp_path, name="u16.tif"):
    """uint16 scene: dim left half, bright right half, and a 1500 patch in each half."""
    rng = np.random.default_rng(1)
    data = np.empty((3, 64, 128), np.uint16)
    data[:, :, :64] = rng.integers(100, 200, size=(3, 64, 64))
    data[:, :, 64:] = rng.integers(1000, 3000, size=(3, 64, 64))
    data[:, 10:20, 10:20] = 1500
    data[:, 10:20, 74:84] = 1500
    return write_raster(tmp_path / name, data), data


def test_uint16_stretch_is_one_per_scene(tmp_path):
    path, data = two_level_scene(tmp_path)
    with SceneReader(path) as reader:
        stretch = reader.stretch
        assert stretch is not None and stretch.bands == (1, 2, 3)
        left, right = (reader.read(chip).image for chip in reader.chips(64, 0))
    # Percentiles over the whole scene, not per chip, and over its three bands together.
    lo, hi = np.percentile(data.astype(float), [2, 98])
    assert stretch.low == pytest.approx((lo,) * 3) and stretch.high == pytest.approx((hi,) * 3)
    # The same raw value maps to the same uint8 value in both chips (a per-chip stretch would
    # put 1500 at the top of the dim chip and in the middle of the bright one).
    np.testing.assert_array_equal(left[:, 10:20, 10:20], right[:, 10:20, 10:20])
    expected = np.rint(
        (1500 - np.array(stretch.low)) * 255 / np.subtract(stretch.high, stretch.low)
    )
    assert left[:, 15, 15].tolist() == expected.astype(int).tolist()
    assert 0 < left[0, 15, 15] < 255


def test_recorded_stretch_reproduces_pixels_on_another_scene(tmp_path):
    path, data = two_level_scene(tmp_path)
    with SceneReader(path) as reader:
        stretch = reader.stretch
        right = reader.read(reader.chips(64, 0)[1]).image
    assert stretch is not None
    save_stretch(stretch, tmp_path / "stretch.json")
    loaded = load_stretch(tmp_path / "stretch.json")
    assert loaded == stretch
    # The bright half alone, written as its own scene with the same georeference.
    crop = write_raster(
        tmp_path / "crop.tif", data[:, :, 64:], transform=TRANSFORM @ Affine.translation(64, 0)
    )
    with SceneReader(crop, stretch=loaded) as reader:
        np.testing.assert_array_equal(reader.read(reader.chips(64, 0)[0]).image, right)
    with SceneReader(crop) as reader:  # its own estimate differs: the test can fail
        assert not np.array_equal(reader.read(reader.chips(64, 0)[0]).image, right)


def test_stretch_with_other_bands_than_requested_is_refused(tmp_path):
    path, _ = two_level_scene(tmp_path)
    stretch = Stretch(bands=(1, 2, 3), low=(0, 0, 0), high=(1, 1, 1))
    with pytest.raises(BandError, match="differs from the stretch's bands"):
        SceneReader(path, bands=(3, 2, 1), stretch=stretch)


def test_a_shared_stretch_moves_to_other_bands_and_a_per_band_one_does_not():
    shared = Stretch(bands=(1, 2, 3), low=(100.0,) * 3, high=(3000.0,) * 3)
    moved = shared.for_bands((4,))
    assert moved is not None and moved.bands == (4, 4, 4)
    assert (moved.low, moved.high, moved.percentiles) == (shared.low, shared.high, (2.0, 98.0))
    assert shared.for_bands((1, 2, 3)) is shared
    per_band = Stretch(bands=(1, 2, 3), low=(100.0, 120.0, 90.0), high=(3000.0,) * 3)
    assert per_band.for_bands((3, 2, 1)) is None
    assert per_band.for_bands((1, 2, 3)) is per_band


def test_bad_stretch_file_is_refused(tmp_path):
    with pytest.raises(InputNotFoundError, match="no such stretch file"):
        load_stretch(tmp_path / "missing.json")
    (tmp_path / "meta.json").write_text(json.dumps({"stretch": None}))
    with pytest.raises(BandError, match="not a geosam stretch file"):
        load_stretch(tmp_path / "meta.json")


def test_nodata_becomes_zero_and_is_left_out_of_the_stretch(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.integers(1000, 3000, size=(3, 64, 128)).astype(np.uint16)
    data[:, :, :32] = 65535  # nodata strip
    data[0, 40, 40] = 65535  # nodata in one band only: still valid
    path = write_raster(tmp_path / "nd.tif", data, nodata=65535)
    with SceneReader(path) as reader:
        assert reader.stretch is not None and max(reader.stretch.high) < 3000
        left, right = (reader.read(chip) for chip in reader.chips(64, 0))
    assert not left.image[:, :, :32].any()
    assert not left.valid[:, :32].any() and left.valid[:, 32:].all()
    assert left.valid_fraction == 0.5 and right.valid_fraction == 1.0
    assert left.valid[40, 40]
    assert (left.image[:, :, 32:].max(axis=0) > 0).mean() > 0.9


def test_nodata_option_overrides_the_scene(make_scene):
    path = make_scene(width=64, height=64)
    with rasterio.open(path) as src:
        scene = src.read()
    value = int(scene[0, 0, 0])
    with SceneReader(path, nodata=value) as reader:
        got = reader.read(reader.chips(64, 0)[0])
    missing = (scene == value).all(axis=0)
    np.testing.assert_array_equal(got.valid, ~missing)
    assert not got.image[:, missing].any()


def test_gsd_resamples_to_the_target_pixel_size(tmp_path):
    data = np.zeros((3, 100, 120), np.uint8)
    data[:, :50] = 200  # top half bright
    path = write_raster(tmp_path / "s.tif", data)
    with SceneReader(path, gsd=4.0) as reader:
        assert (reader.grid.width, reader.grid.height) == (60, 50)
        chips = reader.chips(32, 8)
        for chip in chips:
            assert (chip.transform.a, chip.transform.e) == (4.0, -4.0)
            assert chip.transform == reader.grid.transform @ Affine.translation(
                chip.col_off, chip.row_off
            )
        image = reader.read(chips[0]).image
    assert reader.grid.transform == Affine(4.0, 0, TRANSFORM.c, 0, -4.0, TRANSFORM.f)
    assert (image[:, :20] == 200).all() and (image[:, 28:] == 0).all()  # edge at row 25


@pytest.mark.parametrize(("file_nodata", "nodata"), [(7, None), (None, 7)])
def test_gsd_keeps_nodata_out_of_the_resampling(tmp_path, file_nodata, nodata):
    data = np.full((3, 60, 60), 200, np.uint8)
    data[:, :, :30] = 7  # left half missing
    path = write_raster(tmp_path / "s.tif", data, nodata=file_nodata)
    with SceneReader(path, gsd=3.0, nodata=nodata) as reader:
        got = reader.read(reader.chips(40, 0)[0])
    # 3 m pixels: columns 0-19 cover the missing 60 m exactly, columns 20-39 the data.
    assert not got.valid[:, :20].any() and got.valid[:, 20:].all()
    assert not got.image[:, :, :20].any()
    assert (got.image[:, :, 20:] == 200).all()  # never blended with the nodata value


def test_one_gsd_in_degrees_is_refused(make_scene):
    path = make_scene(
        width=32, height=32, crs="EPSG:4326", transform=Affine(1e-4, 0, 15.0, 0, -1e-4, 36.0)
    )
    with pytest.raises(SceneError, match=r"geographic \(degrees\): give the read size as \(x, y\)"):
        SceneReader(path, gsd=10.0)
    with SceneReader(path) as reader:  # without --gsd a geographic scene is fine
        assert reader.chips(32, 0)[0].transform == Affine(1e-4, 0, 15.0, 0, -1e-4, 36.0)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"crs": None}, "has no CRS"),
        ({"transform": None}, "has no geotransform"),
        ({"transform": Affine(2.0, 0.5, 500000.0, 0.5, -2.0, 4000000.0)}, "rotated or sheared"),
    ],
)
def test_scene_without_usable_georeference_is_refused(make_scene, kwargs, match):
    path = make_scene(width=32, height=32, **kwargs)
    with pytest.raises(SceneError, match=match):
        SceneReader(path)


def test_missing_and_non_raster_scenes_are_refused(tmp_path):
    with pytest.raises(InputNotFoundError, match="no such file"):
        SceneReader(tmp_path / "missing.tif")
    (tmp_path / "notes.tif").write_text("not a raster\n")
    with pytest.raises(SceneError, match="not a raster"):
        SceneReader(tmp_path / "notes.tif")


@pytest.mark.parametrize(
    "dtype", ["uint16", "int16", "uint8", "int8", "float32", "float64", "int32", "uint32"]
)
def test_the_stretch_in_slices_equals_its_definition(dtype, monkeypatch):
    # 7 rows a slice: five whole slices and a partial one, each written to its own rows.
    monkeypatch.setattr("geosam.io.stretch.STRETCH_SLICE_VALUES", 3 * 50 * 7)
    rng = np.random.default_rng(1)
    if np.dtype(dtype).kind == "f":
        bottom, top = -3000.0, 3000.0
        pixels = rng.uniform(bottom, top, (3, 40, 50)).astype(dtype)
        pixels[0, 0, :3] = [np.nan, np.inf, -np.inf]
    else:
        info = np.iinfo(dtype)
        bottom, top = float(info.min), float(info.max)
        pixels = rng.integers(info.min, info.max, (3, 40, 50), endpoint=True).astype(dtype)
    span = top - bottom  # each band its own range, inside the data's: every level is met
    low = tuple(bottom + span * f for f in (0.1, 0.2, 0.05))
    high = tuple(top - span * f for f in (0.1, 0.3, 0.05))
    stretch = Stretch((1, 2, 3), low, high)
    expected = stretch.scale(pixels)
    assert all(len(np.unique(band)) > 100 for band in expected)
    np.testing.assert_array_equal(stretch.apply(pixels), expected)


@pytest.mark.parametrize("per_band", [False, True])
@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32"])
def test_estimated_percentiles_equal_numpy_on_the_sampled_pixels(tmp_path, dtype, per_band):
    rng = np.random.default_rng(2)
    data = rng.integers(-3000, 9000, (3, 90, 70)).astype(dtype)
    if dtype == "uint16":
        data = np.abs(data.astype(np.int32)).astype(dtype)
    data[1] += 900  # bands of different ranges: pooled and per band differ
    data[:, :5, :5] = 7  # nodata corner, left out
    path = write_raster(tmp_path / "s.tif", data, nodata=7)
    with SceneReader(path, per_band_stretch=per_band) as reader:
        stretch = reader.stretch
    pooled = np.percentile(data[data != 7].astype(float), [2, 98])
    for i in range(3):
        values = data[i][data[i] != 7].astype(float)
        lo, hi = np.percentile(values, [2, 98]) if per_band else pooled
        assert stretch.low[i] == pytest.approx(lo, abs=1e-9)
        assert stretch.high[i] == pytest.approx(hi, abs=1e-9)


def test_the_default_stretch_keeps_grey_grey_and_per_band_does_not(tmp_path):
    """Bands of different ranges (a dim blue, as over water): one shared stretch keeps a
    pixel whose bands are equal neutral, as an 8-bit product shows it; per band tints it."""
    rng = np.random.default_rng(4)
    data = np.stack(
        [
            rng.integers(200, 4000, (64, 64)),
            rng.integers(200, 3000, (64, 64)),
            rng.integers(100, 1500, (64, 64)),
        ]
    ).astype(np.uint16)
    data[:, 30:34, 30:34] = 1200  # a grey roof
    path = write_raster(tmp_path / "s.tif", data)
    for per_band, neutral in ((False, True), (True, False)):
        with SceneReader(path, per_band_stretch=per_band) as reader:
            image = reader.read(reader.chips(64, 0)[0]).image
        grey = image[:, 31, 31].astype(int)
        assert (np.ptp(grey) == 0) == neutral, (per_band, grey)


def nodata_scene(tmp_path, width, height, count, dtype):
    rng = np.random.default_rng(5)
    data = rng.integers(1, 4000 if dtype == "uint16" else 255, (count, height, width)).astype(dtype)
    data[:, rng.random((height, width)) < 0.05] = 0  # scattered nodata
    data[:, :7, :] = 0  # a nodata border
    return write_raster(tmp_path / "nd.tif", data, nodata=0)


@pytest.mark.parametrize(
    ("kind", "size", "overlap", "options"),
    [
        ("uint8", 64, 16, {}),
        ("uint16", 48, 12, {}),
        ("uint16", 64, 30, {"gsd": 1.5}),
        ("small", 64, 16, {}),
        ("one-band", 40, 8, {}),
    ],
)
@pytest.mark.parametrize("order", ["grid", "reversed", "every-other", "one"])
def test_chips_read_ahead_equal_chips_read_one_by_one(
    tmp_path, make_scene, kind, size, overlap, options, order
):
    if kind == "uint8":
        path = make_scene(width=150, height=100)
    elif kind == "small":
        path = make_scene(width=40, height=30, dtype="uint16")
    elif kind == "one-band":
        path = nodata_scene(tmp_path, 97, 61, 1, "uint8")
    else:
        path = nodata_scene(tmp_path, 131, 117, 3, "uint16")
    with SceneReader(path, **options) as reader:
        chips = reader.chips(size, overlap)
        chips = {
            "grid": chips,
            "reversed": chips[::-1],
            "every-other": chips[::2],
            "one": chips[-1:],
        }[order]
        ahead = list(reader.read_chips(chips))
        assert [a.chip for a in ahead] == chips
        for got in ahead:
            want = reader.read(got.chip)
            np.testing.assert_array_equal(got.image, want.image)
            np.testing.assert_array_equal(got.valid, want.valid)


def test_block_cache_is_capped_while_reading_and_restored_after(make_scene, monkeypatch):
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    before = get_gdal_config("GDAL_CACHEMAX")
    path = make_scene(width=150, height=100)
    with SceneReader(path) as reader:
        chips = reader.chips(64, 16)
        finished = reader.read_chips(chips)
        abandoned = reader.read_chips(chips)
        next(finished)
        next(abandoned)
        assert get_gdal_config("GDAL_CACHEMAX") == READ_CACHE_BYTES
        assert len(list(finished)) == len(chips) - 1
        assert get_gdal_config("GDAL_CACHEMAX") == READ_CACHE_BYTES  # one reader still open
        del abandoned
        gc.collect()
    assert get_gdal_config("GDAL_CACHEMAX") == before


def truncated_tiles(tmp_path: Path) -> Path:
    """A tiled GeoTIFF cut in half on disk: GDAL opens it, then fails reading later tiles."""
    data = np.random.default_rng(0).integers(0, 255, (3, 512, 512)).astype("uint8")
    path = write_raster(
        tmp_path / "truncated.tif",
        data,
        tiled=True,
        blockxsize=64,
        blockysize=64,
        compress="deflate",
    )
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    return path


def test_a_failed_read_on_a_read_ahead_thread_is_one_scene_error(tmp_path: Path) -> None:
    path = truncated_tiles(tmp_path)
    with SceneReader(path) as reader:
        chips = reader.chips(64, 0)
        with pytest.raises(SceneError) as info:
            for _ in reader.read_chips(chips):
                pass
        assert threading.current_thread() is threading.main_thread()
        message = str(info.value)
        assert message.startswith(f"{path}: reading window rows ") and "\n" not in message
        assert "gdal_translate" in message
        with pytest.raises(SceneError, match="damaged or incomplete"):
            for chip in chips:
                reader.read(chip)


def test_scene_chips_read_the_whole_grid_in_reading_order(make_scene, monkeypatch):
    """Without chips named, samples come in the reader's order: panels when the cache is small."""
    from geosam.data.samples import SceneChips
    from geosam.data.settings import ChipSettings
    from geosam.io import reader

    scene = make_scene(width=600, height=300, tiled=True, blockxsize=64, blockysize=64)
    monkeypatch.setattr(reader, "READ_CACHE_BYTES", 100_000)
    with SceneChips(scene, settings=ChipSettings(size=128, overlap=16)) as chips:
        got = [s.chip.chip_id for s in chips.samples()]
        panels = [c.chip_id for c in chips.reader.reading_order(chips.chips)]
        grid = [c.chip_id for c in chips.chips]
    assert got == panels and got != grid and sorted(got) == sorted(grid)
