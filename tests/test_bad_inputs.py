"""Hardening: a corpus of bad inputs run through the real CLI.

Every input is generated here (small, never downloaded). A bad input must end with a non-zero
exit, exactly one visible line on stderr that names the offending file, no traceback, and no
file created or changed where outputs go (a pre-existing output stays byte for byte). Inputs
that geosam rightly accepts (a 1 px scene, float64, a scene across the antimeridian, repairable
footprints, Z/M coordinates) are in `test_accepted_input_gives_outputs` with what they give.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from click.testing import CliRunner, Result
from conftest import TRANSFORM, UTM33, pixel_polygon, save_untrained_tiny, write_raster

import geosam.model  # noqa: F401  (first: makes segment_anything's torchvision importable)
from geosam.cli.main import cli
from geosam.data.settings import ChipSettings

pytestmark = [
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
    pytest.mark.filterwarnings("ignore:'crs' was not provided:UserWarning"),
    pytest.mark.filterwarnings("ignore:Measured \\(M\\) geometry types:UserWarning"),
]

TILE = ["--size", "64", "--overlap", "8"]


# --------------------------------------------------------------------------------------------
# The workspace: inputs under in/, outputs under out/, and what a case is.


@dataclass
class Case:
    """One CLI run: its arguments and the file its error must name.

    Attributes:
        args: ``geosam`` arguments.
        culprit: the offending file; its name must be in the error line.
        expect: text the error line must also hold (besides the file name), or None.
    """

    args: list[str]
    culprit: Path
    expect: str | None = None


@dataclass
class Kit:
    """Per-test folders and helpers that the case builders share."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    model: Path
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def inputs(self) -> Path:
        return self.tmp / "in"

    @property
    def out(self) -> Path:
        """Where outputs go; compared before and after every run."""
        return self.tmp / "out"

    def scene(
        self,
        name: str = "scene.tif",
        width: int = 96,
        height: int = 80,
        count: int = 3,
        dtype: str = "uint8",
        seed: int = 0,
        **kwargs: Any,
    ) -> Path:
        """A random scene GeoTIFF (values 1..255 or 1..3999: no zeros)."""
        rng = np.random.default_rng(seed)
        high = 256 if dtype == "uint8" else 4000
        data = rng.integers(1, high, size=(count, height, width)).astype(dtype)
        return write_raster(self.inputs / name, data, **kwargs)

    def layer(
        self, geometries: list[Any], name: str = "ships.gpkg", crs: str | None = UTM33, **kw: Any
    ) -> Path:
        """A GeoPackage (or, by extension, GeoJSON) footprint layer."""
        path = self.inputs / name
        frame = gpd.GeoDataFrame({"id": list(range(1, len(geometries) + 1))}, geometry=geometries)
        if crs is not None:
            frame = frame.set_crs(crs)
        frame.to_file(path, layer=kw.pop("layer", "ships"), engine="pyogrio", **kw)
        return path

    def tile(self, scene: Path, *extra: object) -> list[str]:
        return ["tile", str(scene), str(self.out / "chips"), *TILE, *map(str, extra)]

    def detect(self, scene: Path, model: Path) -> list[str]:
        return ["detect", str(scene), "--model", str(model), "-o", str(self.out / "ships.gpkg")]

    def finetune(self, scene: Path, labels: Path, *extra: object) -> list[str]:
        run = self.out / "run"
        return ["finetune", str(scene), str(labels), "--out", str(run), "--steps", "1", *extra]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, untrained `tiny` model.pt (random weights, 256 px chips), written in a second.

    It finds nothing (the prompter threshold is above any score), which keeps detection quick;
    what matters here is that it is a valid model file for the bad variants to differ from.
    """
    import torch

    from geosam.model.checkpoints import RANDOM_INIT
    from geosam.model.registry import build_sam
    from geosam.model.shipsam import ShipSam

    torch.manual_seed(0)
    model = ShipSam(build_sam("tiny"), RANDOM_INIT, train_encoder=True)
    return save_untrained_tiny(model, tmp_path_factory.mktemp("model") / "model.pt", 1.0)


@pytest.fixture
def kit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path) -> Iterator[Kit]:
    monkeypatch.setenv("GEOSAM_HOME", str(tmp_path / "home"))  # never the user's cache
    box = Kit(tmp_path, monkeypatch, tiny_model)
    box.inputs.mkdir()
    box.out.mkdir()
    yield box
    for undo in reversed(box.cleanups):
        undo()


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder`: file bytes, or None for a folder."""
    return {
        str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
    }


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args)


def visible_lines(stream: str) -> list[str]:
    """Non-empty lines as a terminal shows them: a carriage return overwrites the line."""
    lines = (line.rsplit("\r", 1)[-1] for line in stream.split("\n"))
    return [line for line in lines if line.strip()]


# What Python shows on stderr by default (the rest it ignores unless asked).
HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def run_case(kit: Kit, case: Case) -> tuple[Result, list[str]]:
    """Run the case; check it left inputs and outputs as they were.

    Returns the result and the lines a terminal would show on stderr: under pytest, Python
    warnings are captured rather than printed, so those a plain `geosam` run would print
    (one per place, with their source line) are counted as lines too.
    """
    before = {"in": snapshot(kit.inputs), "out": snapshot(kit.out)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        result = invoke(case.args)
    after = {"in": snapshot(kit.inputs), "out": snapshot(kit.out)}
    shown = [w for w in caught if not issubclass(w.category, HIDDEN_WARNINGS)]
    lines = visible_lines(result.stderr)
    lines += [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in shown]
    assert after == before, f"files left or changed: {result.stderr}"
    return result, lines


# --------------------------------------------------------------------------------------------
# Read-only folders and full disks, in process.


def read_only(kit: Kit, folder: Path) -> None:
    """Make `folder` unwritable: chmod 0o500, and for root (whom chmod does not stop) refuse
    creating anything under it at the os level, as the kernel would for another user."""
    folder.chmod(0o500)
    kit.cleanups.append(lambda: folder.chmod(0o700))
    if os.geteuid() != 0:
        return
    root = os.path.abspath(folder)

    def under(path: Any) -> bool:
        p = os.path.abspath(os.fspath(path))
        return p == root or p.startswith(root + os.sep)

    def denied(path: Any) -> PermissionError:
        return PermissionError(errno.EACCES, "Permission denied", os.fspath(path))

    real_mkdir, real_open, real_replace = os.mkdir, os.open, os.replace
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        if under(path) and not os.path.exists(path):
            raise denied(path)
        real_mkdir(path, mode, dir_fd=dir_fd)

    def open_(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if under(path) and flags & writing:
            raise denied(path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def replace(src: Any, dst: Any, **kw: Any) -> None:
        if under(dst):
            raise denied(dst)
        real_replace(src, dst, **kw)

    kit.monkeypatch.setattr(os, "mkdir", mkdir)
    kit.monkeypatch.setattr(os, "open", open_)
    kit.monkeypatch.setattr(os, "replace", replace)


def disk_full(*_: Any, **__: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


# --------------------------------------------------------------------------------------------
# Rasters: `geosam tile SCENE OUT`.


def cut(path: Path, keep: float) -> Path:
    """Keep the first `keep` share of the file's bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def tiled_scene(kit: Kit, name: str, dtype: str = "uint8") -> Path:
    """A 256 x 256 px, 64 px-tiled DEFLATE GeoTIFF of random (incompressible) pixels."""
    return kit.scene(
        name,
        width=256,
        height=256,
        dtype=dtype,
        tiled=True,
        blockxsize=64,
        blockysize=64,
        compress="deflate",
    )


def garble_last_tile(path: Path) -> Path:
    """Overwrite the middle of the last tile's compressed bytes: same size, undecodable."""
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_3_3", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_3_3", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[offset + 2 : offset + size - 4] = b"\xff" * (size - 6)
    path.write_bytes(bytes(data))
    return path


def opens_but_cannot_be_read(path: Path) -> Path:
    """Check the premise of a corrupt-file case: GDAL opens it, reading a block fails."""
    with rasterio.open(path) as src:
        assert src.shape == (256, 256)
        with pytest.raises(rasterio.errors.RasterioIOError):
            src.read()
    return path


def truncated_half(kit: Kit) -> Case:
    path = cut(kit.scene("half.tif", width=200, height=150), 0.5)
    with rasterio.open(path):  # the header survives: GDAL opens it
        pass
    return Case(kit.tile(path), path)


def truncated_tiles(kit: Kit) -> Case:
    path = opens_but_cannot_be_read(cut(tiled_scene(kit, "tiles.tif"), 0.7))
    return Case(kit.tile(path), path)


def garbled_tile(kit: Kit) -> Case:
    path = opens_but_cannot_be_read(garble_last_tile(tiled_scene(kit, "garbled.tif")))
    return Case(kit.tile(path), path)


def garbled_tile_uint16(kit: Kit) -> Case:
    """The same damage in a 16-bit scene, which fails already while its stretch is estimated."""
    path = opens_but_cannot_be_read(garble_last_tile(tiled_scene(kit, "garbled16.tif", "uint16")))
    return Case(kit.tile(path), path)


def netcdf_name(text: str) -> bytes:
    """A netCDF-3 name: length, bytes, zero padding to 4."""
    raw = text.encode()
    return struct.pack(">i", len(raw)) + raw + b"\0" * (-len(raw) % 4)


def zero_bands(kit: Kit) -> Case:
    """A netCDF-3 file with two variables: a container GDAL opens with zero bands.

    (GeoTIFF cannot hold zero bands and GDAL refuses a VRT without any.)
    """
    h = w = 8
    absent = struct.pack(">ii", 0, 0)
    dims = struct.pack(">ii", 0x0A, 2) + netcdf_name("y") + struct.pack(">i", h)
    dims += netcdf_name("x") + struct.pack(">i", w)

    def variable(name: str, begin: int) -> bytes:  # NC_BYTE (y, x), no attributes
        return (
            netcdf_name(name)
            + struct.pack(">iii", 2, 0, 1)
            + absent
            + struct.pack(">iii", 1, h * w, begin)
        )

    head = b"CDF\x01" + struct.pack(">i", 0) + dims + absent
    start = len(head) + 8 + 2 * len(variable("a", 0))
    variables = struct.pack(">ii", 0x0B, 2) + variable("a", start) + variable("b", start + h * w)
    path = kit.inputs / "two_variables.nc"
    path.write_bytes(head + variables + bytes(2 * h * w))
    with rasterio.open(path) as src:
        assert src.count == 0 and len(src.subdatasets) == 2
    return Case(kit.tile(path), path, "no bands")


def rotated(kit: Kit) -> Case:
    path = kit.scene("rotated.tif", transform=Affine.translation(5e5, 4e6) @ Affine.rotation(20))
    return Case(kit.tile(path), path, "rotated or sheared")


def sheared(kit: Kit) -> Case:
    path = kit.scene("sheared.tif", transform=Affine(2.0, 0.5, 5e5, 0.0, -2.0, 4e6))
    return Case(kit.tile(path), path, "rotated or sheared")


def no_crs(kit: Kit) -> Case:
    path = kit.scene("nocrs.tif", crs=None)
    return Case(kit.tile(path), path, "no CRS")


def no_geotransform(kit: Kit) -> Case:
    path = kit.scene("nogt.tif", transform=None)
    return Case(kit.tile(path), path, "no geotransform")


def nan_only(kit: Kit) -> Case:
    data = np.full((3, 80, 96), np.nan, np.float32)
    path = write_raster(kit.inputs / "nan.tif", data)
    return Case(kit.tile(path), path, "no valid pixel")


def all_nodata_uint16(kit: Kit) -> Case:
    path = write_raster(kit.inputs / "nodata16.tif", np.zeros((3, 80, 96), np.uint16), nodata=0)
    return Case(kit.tile(path), path, "no valid pixel")


def all_nodata_uint8(kit: Kit) -> Case:
    path = write_raster(kit.inputs / "nodata8.tif", np.zeros((3, 80, 96), np.uint8), nodata=0)
    return Case(kit.tile(path), path, "no valid pixel")


def complex64(kit: Kit) -> Case:
    rng = np.random.default_rng(1)
    data = (rng.normal(size=(1, 80, 96)) + 1j * rng.normal(size=(1, 80, 96))).astype(np.complex64)
    path = write_raster(kit.inputs / "slc.tif", data)
    return Case(kit.tile(path), path, "complex")


def palette(kit: Kit) -> Case:
    """A one-band colour-table raster: its values are indices, not brightness."""
    data = (np.arange(80 * 96).reshape(1, 80, 96) % 4).astype(np.uint8)
    path = write_raster(kit.inputs / "palette.tif", data, photometric="palette")
    with rasterio.open(path, "r+") as dst:
        dst.write_colormap(1, {0: (0, 0, 0, 255), 1: (0, 0, 255, 255), 2: (0, 255, 0, 255)})
    with rasterio.open(path) as src:
        assert src.colorinterp[0] == rasterio.enums.ColorInterp.palette
    return Case(kit.tile(path), path, "colour table")


def text_as_tif(kit: Kit) -> Case:
    path = kit.inputs / "notes.tif"
    path.write_text("ships: 3\nweather: fine\n")
    return Case(kit.tile(path), path, "not a raster")


def empty_tif(kit: Kit) -> Case:
    path = kit.inputs / "empty.tif"
    path.write_bytes(b"")
    return Case(kit.tile(path), path, "not a raster")


def folder_as_scene(kit: Kit) -> Case:
    path = kit.inputs / "folder.tif"
    path.mkdir()
    return Case(kit.tile(path), path, "folder")


def missing_scene(kit: Kit) -> Case:
    path = kit.inputs / "nowhere.tif"
    return Case(kit.tile(path), path, "no such file")


# --------------------------------------------------------------------------------------------
# Vectors: `geosam tile SCENE OUT --labels FILE` and `geosam finetune SCENE FILE`.

SHIP = pixel_polygon(10, 10, 30, 16)
FAR = shapely.affinity.translate(SHIP, 50_000, 50_000)  # 50 km away from the scene


def geojson_without_crs(kit: Kit) -> Case:
    """RFC 7946 GeoJSON has no crs member, so OGR reads lon/lat; these are UTM metres."""
    scene = kit.scene()
    path = kit.inputs / "ships.geojson"
    feature = {"type": "Feature", "properties": {"id": 1}, "geometry": SHIP.__geo_interface__}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return Case(kit.tile(scene, "--labels", path), path, "CRS")


def gpkg_without_crs(kit: Kit) -> Case:
    scene, path = kit.scene(), kit.layer([SHIP], crs=None)
    return Case(kit.tile(scene, "--labels", path), path, "has no CRS")


def empty_layer(kit: Kit) -> Case:
    scene, path = kit.scene(), kit.layer([])
    return Case(kit.tile(scene, "--labels", path), path, "is empty")


def points(kit: Kit) -> Case:
    scene, path = kit.scene(), kit.layer([SHIP.centroid])
    return Case(kit.tile(scene, "--labels", path), path, "Point")


def lines(kit: Kit) -> Case:
    scene, path = kit.scene(), kit.layer([shapely.LineString(SHIP.exterior.coords)])
    return Case(kit.tile(scene, "--labels", path), path, "LineString")


def points_finetune(kit: Kit) -> Case:
    scene, path = kit.scene(), kit.layer([SHIP.centroid])
    return Case(kit.finetune(scene, path), path, "Point")


def degenerate_polygons(kit: Kit) -> Case:
    """Zero-area rings: repair leaves no polygon, so nothing is left to label."""
    x0, y0 = TRANSFORM @ (10, 10)
    x1, y1 = TRANSFORM @ (30, 10)
    flat = shapely.Polygon([(x0, y0), (x1, y1), ((x0 + x1) / 2, y0), (x0, y0)])
    scene, path = kit.scene(), kit.layer([flat, flat])
    return Case(kit.tile(scene, "--labels", path), path, "no usable polygon")


def empty_geometries(kit: Kit) -> Case:
    scene = kit.scene()
    path = kit.layer([shapely.Polygon(), shapely.from_wkt("MULTIPOLYGON EMPTY")])
    return Case(kit.tile(scene, "--labels", path), path, "no usable polygon")


def far_away_tile(kit: Kit) -> Case:
    scene, path = kit.scene(), kit.layer([FAR])
    return Case(kit.tile(scene, "--labels", path), path)


def far_away_finetune(kit: Kit) -> Case:
    scene, path = kit.scene(), kit.layer([FAR])
    return Case(kit.finetune(scene, path), path, "no footprint lands on any chip")


def unknown_layer(kit: Kit) -> Case:
    scene, path = kit.scene(), kit.layer([SHIP], layer="harbour")
    return Case(kit.tile(scene, "--labels", path, "--layer", "docks"), path, "no layer 'docks'")


def several_layers(kit: Kit) -> Case:
    scene, path = kit.scene(), kit.layer([SHIP], layer="harbour")
    kit.layer([SHIP], layer="anchorage")
    return Case(kit.tile(scene, "--labels", path), path, "--layer")


def csv_as_gpkg(kit: Kit) -> Case:
    scene, path = kit.scene(), kit.inputs / "ships.gpkg"
    path.write_text("id,x,y\n1,500020,3999980\n2,500060,3999940\n")
    return Case(kit.tile(scene, "--labels", path), path, "not a vector file")


def text_as_gpkg(kit: Kit) -> Case:
    scene, path = kit.scene(), kit.inputs / "ships.gpkg"
    path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84 + b"truncated")
    return Case(kit.tile(scene, "--labels", path), path, "not a vector file")


def missing_labels(kit: Kit) -> Case:
    scene, path = kit.scene(), kit.inputs / "nowhere.gpkg"
    return Case(kit.tile(scene, "--labels", path), path, "no such file")


# --------------------------------------------------------------------------------------------
# Models: `geosam detect SCENE --model MODEL -o OUT.gpkg`.


def sea(kit: Kit) -> Path:
    return kit.scene("sea.tif", width=256, height=256)


def model_variant(kit: Kit, name: str, **changes: Any) -> Path:
    """The tiny model re-saved with `changes` to its metadata."""
    from geosam.model.model_file import load_model_file, save_model_file

    state, meta = load_model_file(kit.model)
    path = kit.inputs / name
    save_model_file(path, state, {**meta, **changes})
    return path


def raw_payload(kit: Kit, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    """The tiny model's payload as torch.save wrote it, edited in place and saved again."""
    import torch

    payload = torch.load(kit.model, map_location="cpu", weights_only=True)
    edit(payload)
    path = kit.inputs / name
    torch.save(payload, path)
    return path


def one_band_scene_three_band_model(kit: Kit) -> Case:
    """A model trained on bands 1-3 of a colour scene, run on a panchromatic one."""
    model = model_variant(
        kit, "rgb_model.pt", chip_settings=ChipSettings(size=256, bands=(1, 2, 3)).to_dict()
    )
    scene = kit.scene("pan.tif", width=256, height=256, count=1)
    return Case(kit.detect(scene, model), scene, "bands 1-1: choose bands it has with --bands")


def empty_model(kit: Kit) -> Case:
    path = kit.inputs / "model.pt"
    path.write_bytes(b"")
    return Case(kit.detect(sea(kit), path), path, "not a readable geosam model file")


def truncated_model(kit: Kit) -> Case:
    path = kit.inputs / "model.pt"
    path.write_bytes(kit.model.read_bytes())
    return Case(kit.detect(sea(kit), cut(path, 0.5)), path, "corrupt or truncated")


def text_model(kit: Kit) -> Case:
    path = kit.inputs / "model.pt"
    path.write_text("weights: none\n")
    return Case(kit.detect(sea(kit), path), path, "not a readable geosam model file")


def plain_state_dict(kit: Kit) -> Case:
    import torch

    from geosam.model.registry import build_sam

    path = kit.inputs / "sam_state.pt"
    torch.save(build_sam("tiny").state_dict(), path)
    return Case(kit.detect(sea(kit), path), path, "not a geosam model file")


def other_model_type(kit: Kit) -> Case:
    """Tiny weights recorded as vit_b: must be caught from the file, not from a missing base."""
    path = model_variant(kit, "vit_b_model.pt", model_type="vit_b")
    return Case(kit.detect(sea(kit), path), path, "are a tiny model, but its metadata says vit_b")


def unknown_model_type(kit: Kit) -> Case:
    path = model_variant(kit, "odd_model.pt", model_type="vit_x")
    return Case(kit.detect(sea(kit), path), path, "vit_x")


def other_chip_size(kit: Kit) -> Case:
    from geosam.data.settings import ChipSettings

    path = model_variant(kit, "size_model.pt", chip_settings=ChipSettings(512, 64).to_dict())
    return Case(kit.detect(sea(kit), path), path, "512")


def newer_format(kit: Kit) -> Case:
    def newer(payload: dict[str, Any]) -> None:
        payload.update(format="geosam-model/2", geosam_version="9.0.0")

    path = raw_payload(kit, "future_model.pt", newer)
    return Case(kit.detect(sea(kit), path), path, "newer")


def metadata_missing(kit: Kit) -> Case:
    def strip(payload: dict[str, Any]) -> None:
        del payload["metadata"]["model_type"]

    path = raw_payload(kit, "partial_model.pt", strip)
    return Case(kit.detect(sea(kit), path), path, "model_type")


def missing_model(kit: Kit) -> Case:
    path = kit.inputs / "nowhere.pt"
    return Case(kit.detect(sea(kit), path), path, "no such model file")


# --------------------------------------------------------------------------------------------
# Environment: unwritable output folder, full disk, existing outputs.


def tile_read_only(kit: Kit) -> Case:
    scene = kit.scene()
    read_only(kit, kit.out)
    return Case(kit.tile(scene), kit.out / "chips", "permission denied")


def detect_read_only(kit: Kit) -> Case:
    scene = sea(kit)
    read_only(kit, kit.out)
    return Case(kit.detect(scene, kit.model), kit.out / "ships.gpkg", "permission denied")


def tile_disk_full(kit: Kit) -> Case:
    """The second chip cannot be written: the disk is full."""
    from geosam.io.atomic import atomic_path
    from geosam.io.chipfile import write_chip

    written: list[Path] = []

    def write_then_fill(path: Path, *args: Any) -> None:
        if written:
            with atomic_path(path) as tmp:
                tmp.write_bytes(b"half a chip")
                disk_full()
        write_chip(path, *args)
        written.append(path)

    kit.monkeypatch.setattr("geosam.pipelines.tile.write_chip", write_then_fill)
    scene = kit.scene()
    return Case(kit.tile(scene), kit.out / "chips", "disk full")


def detect_disk_full(kit: Kit) -> Case:
    """Writing the output layer fails half-way: the disk is full."""
    import pyogrio

    def write_then_fill(frame: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(b"SQLite format 3\x00 and then nothing")
        disk_full()

    kit.monkeypatch.setattr(pyogrio, "write_dataframe", write_then_fill)
    return Case(kit.detect(sea(kit), kit.model), kit.out / "ships.gpkg", "disk full")


def tile_existing(kit: Kit) -> Case:
    scene = kit.scene()
    chips = kit.out / "chips"
    chips.mkdir()
    (chips / "metadata.json").write_text('{"mine": true}')
    return Case(kit.tile(scene), chips, "--overwrite")


def detect_existing(kit: Kit) -> Case:
    scene = sea(kit)
    (kit.out / "ships.gpkg").write_text("an earlier result")
    return Case(kit.detect(scene, kit.model), kit.out / "ships.gpkg", "--overwrite")


def finetune_existing(kit: Kit) -> Case:
    scene, labels = kit.scene(), kit.layer([SHIP])
    (kit.out / "run").mkdir()
    (kit.out / "run" / "model.pt").write_bytes(b"an earlier model")
    return Case(kit.finetune(scene, labels), kit.out / "run", "--overwrite")


# --------------------------------------------------------------------------------------------
# The corpus.


ERRORS: dict[str, Callable[[Kit], Case]] = {
    # rasters
    "raster-truncated-half": truncated_half,
    "raster-truncated-tiles": truncated_tiles,
    "raster-garbled-tile": garbled_tile,
    "raster-garbled-tile-uint16": garbled_tile_uint16,
    "raster-zero-bands-netcdf": zero_bands,
    "raster-rotated": rotated,
    "raster-sheared": sheared,
    "raster-no-crs": no_crs,
    "raster-no-geotransform": no_geotransform,
    "raster-nan-only-float32": nan_only,
    "raster-all-nodata-uint16": all_nodata_uint16,
    "raster-all-nodata-uint8": all_nodata_uint8,
    "raster-complex64": complex64,
    "raster-palette": palette,
    "raster-text-file": text_as_tif,
    "raster-empty-file": empty_tif,
    "raster-folder": folder_as_scene,
    "raster-missing": missing_scene,
    # vectors
    "vector-geojson-no-crs": geojson_without_crs,
    "vector-gpkg-no-crs": gpkg_without_crs,
    "vector-empty-layer": empty_layer,
    "vector-points": points,
    "vector-lines": lines,
    "vector-points-finetune": points_finetune,
    "vector-degenerate-polygons": degenerate_polygons,
    "vector-empty-geometries": empty_geometries,
    "vector-far-away-tile": far_away_tile,
    "vector-far-away-finetune": far_away_finetune,
    "vector-unknown-layer": unknown_layer,
    "vector-several-layers": several_layers,
    "vector-csv-as-gpkg": csv_as_gpkg,
    "vector-broken-sqlite": text_as_gpkg,
    "vector-missing": missing_labels,
    # models
    "model-empty-file": empty_model,
    "model-truncated": truncated_model,
    "model-text-file": text_model,
    "model-plain-state-dict": plain_state_dict,
    "model-other-type": other_model_type,
    "model-unknown-type": unknown_model_type,
    "model-other-chip-size": other_chip_size,
    "model-newer-format": newer_format,
    "model-metadata-missing": metadata_missing,
    "model-missing": missing_model,
    "model-bands-beyond-the-scene": one_band_scene_three_band_model,
    # environment
    "env-tile-read-only-output": tile_read_only,
    "env-detect-read-only-output": detect_read_only,
    "env-tile-disk-full": tile_disk_full,
    "env-detect-disk-full": detect_disk_full,
    "env-tile-existing-output": tile_existing,
    "env-detect-existing-output": detect_existing,
    "env-finetune-existing-output": finetune_existing,
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_bad_input_is_one_line_naming_the_file(kit: Kit, name: str) -> None:
    case = ERRORS[name](kit)
    result, lines = run_case(kit, case)
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # handled, no traceback
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert case.culprit.name in lines[0], lines[0]
    if case.expect is not None:
        assert case.expect in lines[0], lines[0]


def test_corpus_is_large_enough() -> None:
    assert len(ERRORS) >= 30


# --------------------------------------------------------------------------------------------
# Inputs that look odd but are right to accept, and what they give.


def chips_index(kit: Kit) -> gpd.GeoDataFrame:
    return gpd.read_file(kit.out / "chips" / "index.gpkg", layer="chips")


def ships_index(kit: Kit) -> gpd.GeoDataFrame:
    return gpd.read_file(kit.out / "chips" / "index.gpkg", layer="ships")


def one_pixel(kit: Kit) -> tuple[list[str], Callable[[Result], None]]:
    """A 1 x 1 px scene is one chip, padded with zeros."""
    scene = kit.scene("dot.tif", width=1, height=1)

    def check(result: Result) -> None:
        (row,) = chips_index(kit).itertuples()
        assert (row.pad_bottom, row.pad_right) == (63, 63)
        assert row.valid_fraction == pytest.approx(1 / 64**2, abs=1e-6)  # recorded to 6 places
        with rasterio.open(kit.out / "chips" / "chips" / f"{row.chip_id}.tif") as chip:
            pixels = chip.read()
        with rasterio.open(scene) as src:
            data = src.read()
        assert (pixels[:, :1, :1] == data).all()
        assert pixels.astype(int).sum() == data.astype(int).sum()  # the rest is padding

    return kit.tile(scene), check


def float64(kit: Kit) -> tuple[list[str], Callable[[Result], None]]:
    """float64 is stretched to uint8 like any other non-uint8 type."""
    scene = kit.scene("f64.tif", dtype="float64")

    def check(result: Result) -> None:
        meta = json.loads((kit.out / "chips" / "metadata.json").read_text())
        assert meta["stretch"]["bands"] == [1, 2, 3]
        assert len(chips_index(kit)) == 4
        with rasterio.open(next((kit.out / "chips" / "chips").iterdir())) as chip:
            assert chip.dtypes == ("uint8",) * 3 and chip.read().std() > 10

    return kit.tile(scene), check


def antimeridian(kit: Kit) -> tuple[list[str], Callable[[Result], None]]:
    """Lon/lat pixels from 179.9 E running past 180: chips are windows of the same grid, so
    their coordinates continue past 180 exactly as the scene's do (GDAL's convention)."""
    transform = Affine(0.002, 0, 179.9, 0, -0.002, -17.0)
    scene = kit.scene("fiji.tif", crs="EPSG:4326", transform=transform)

    def check(result: Result) -> None:
        chips = chips_index(kit)
        assert chips.crs == "EPSG:4326" and len(chips) == 4
        left, _, right, _ = chips.total_bounds
        assert left == pytest.approx(179.9) and right == pytest.approx(179.9 + 96 * 0.002)
        with rasterio.open(kit.out / "chips" / "chips" / "r000000_c000032.tif") as chip:
            assert chip.transform == transform @ Affine.translation(32, 0)

    return kit.tile(scene), check


def repaired(name: str, geometry: Any) -> Callable[[Kit], tuple[list[str], Any]]:
    """An invalid footprint is repaired (`shapely.make_valid`), counted, and used."""

    def build(kit: Kit) -> tuple[list[str], Callable[[Result], None]]:
        scene, layer = kit.scene(), kit.layer([geometry], name=name)

        def check(result: Result) -> None:
            assert "(1 repaired" in result.stdout
            ships = ships_index(kit)
            assert ships.is_valid.all() and not ships.is_empty.any()

        return kit.tile(scene, "--labels", layer, "--layer", "ships"), check

    return build


def labelled(name: str, write: Callable[[Kit], Path]) -> Callable[[Kit], tuple[list[str], Any]]:
    """Footprints that are used as they are: one ship, on the scene, in the ships layer."""

    def build(kit: Kit) -> tuple[list[str], Callable[[Result], None]]:
        scene, layer = kit.scene(), write(kit)

        def check(result: Result) -> None:
            from geosam.io.labelfile import read_labels

            assert "1 ship labels" in result.stdout
            ships = ships_index(kit)
            assert set(ships.ship_id) == {1} and ships.is_valid.all()
            assert ships.union_all().area == pytest.approx(SHIP.area)
            labels = read_labels(kit.out / "chips" / "labels" / "r000000_c000000.npz")
            np.testing.assert_array_equal(labels.boxes, [[10, 10, 30, 16]])
            assert labels.masks.sum() == 20 * 6  # Z and M play no part in the mask

        return kit.tile(scene, "--labels", layer), check

    return build


def z_layer(kit: Kit) -> Path:
    return kit.layer([shapely.force_3d(SHIP, 5.0)], name="z.gpkg")


def zm_layer(kit: Kit) -> Path:
    """A GeoPackage of Polygon ZM (pyogrio cannot write M, so the blob is set with sqlite)."""
    path = kit.layer([shapely.force_3d(SHIP, 5.0)], name="zm.gpkg", SPATIAL_INDEX="NO")
    coords = shapely.get_coordinates(SHIP)
    ring = ", ".join(f"{x} {y} 5 {m}" for m, (x, y) in enumerate(coords))
    wkb = shapely.to_wkb(shapely.from_wkt(f"POLYGON ZM (({ring}))"), flavor="iso", byte_order=1)
    with sqlite3.connect(path) as con:
        srs = con.execute("SELECT srs_id FROM gpkg_geometry_columns").fetchone()[0]
        blob = b"GP" + bytes([0, 1]) + struct.pack("<i", srs) + wkb  # no envelope, little end.
        con.execute("UPDATE ships SET geom = ?", (blob,))
        con.execute("UPDATE gpkg_geometry_columns SET m = 1")
    con.close()
    import pyogrio

    with pytest.warns(UserWarning, match="Measured"):
        assert pyogrio.read_info(path)["geometry_type"] == "Polygon Z"  # M read as Z
    return path


def multipolygon_with_empty_part(kit: Kit) -> Path:
    coords = ", ".join(f"{x} {y}" for x, y in shapely.get_coordinates(SHIP))
    return kit.layer([shapely.from_wkt(f"MULTIPOLYGON ((({coords})), EMPTY)")], name="mp.gpkg")


def newer_version(kit: Kit) -> tuple[list[str], Callable[[Result], None]]:
    """Same format from a newer geosam: read as usual, with a warning naming the file."""

    def bump(payload: dict[str, Any]) -> None:
        payload["geosam_version"] = "9.0.0"

    model = raw_payload(kit, "newer_model.pt", bump)
    scene = sea(kit)

    def check(result: Result) -> None:
        assert "newer_model.pt: written by geosam 9.0.0" in result.stderr
        assert len(gpd.read_file(kit.out / "ships.gpkg", layer="sea")) == 0

    return kit.detect(scene, model), check


def valid_model(kit: Kit) -> tuple[list[str], Callable[[Result], None]]:
    """The unedited model: the baseline the model errors differ from."""
    scene = sea(kit)

    def check(result: Result) -> None:
        assert visible_lines(result.stderr) == []
        assert len(gpd.read_file(kit.out / "ships.gpkg", layer="sea")) == 0

    return kit.detect(scene, kit.model), check


x0, y0 = TRANSFORM @ (10, 10)
x1, y1 = TRANSFORM @ (30, 20)
BOWTIE = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
HOLE_OUTSIDE = shapely.Polygon(
    SHIP.exterior.coords, [pixel_polygon(40, 40, 44, 44).exterior.coords]
)

ACCEPTED: dict[str, Callable[[Kit], tuple[list[str], Callable[[Result], None]]]] = {
    "raster-1x1-px": one_pixel,
    "raster-float64": float64,
    "raster-geographic-antimeridian": antimeridian,
    "vector-bowtie": repaired("bowtie.gpkg", BOWTIE),
    "vector-hole-outside-shell": repaired("hole.gpkg", HOLE_OUTSIDE),
    "vector-z": labelled("z", z_layer),
    "vector-zm": labelled("zm", zm_layer),
    "vector-multipolygon-empty-part": labelled("mp", multipolygon_with_empty_part),
    "model-newer-version-same-format": newer_version,
    "model-valid": valid_model,
}


@pytest.mark.parametrize("name", list(ACCEPTED), ids=list(ACCEPTED))
def test_accepted_input_gives_outputs(kit: Kit, name: str) -> None:
    args, check = ACCEPTED[name](kit)
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert result.exception is None and "Traceback" not in result.output
    assert not list(kit.inputs.glob("*.aux.xml"))  # nothing written beside the inputs
    check(result)
