"""Tiny georeferenced rasters and footprint layers, built per test; paths to ../shared data."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHIPS_DEV = SHARED / "data" / "ships-dev"
LANDSAT = SHARED / "data" / "landsat" / "RGB.byte.tif"

UTM33 = "EPSG:32633"
# 2 m pixels, north-up, top-left corner at (500000, 4000000) in UTM 33N.
TRANSFORM = Affine(2.0, 0.0, 500000.0, 0.0, -2.0, 4000000.0)


@pytest.fixture(autouse=True)
def cli_logging_undone() -> Iterator[None]:
    """Undo what a command-line call does to logging (the package's level, a console handler).

    A real `geosam` process sets them once for its life; in the test process they would carry
    into later tests, and a `--quiet` call would hide the warnings a later test looks for.
    """
    package = logging.getLogger("geosam")
    root = logging.getLogger()
    level, handlers = package.level, list(root.handlers)
    yield
    package.setLevel(level)
    root.handlers = handlers
    logging.captureWarnings(False)


def shared_path(path: Path) -> Path:
    """Return `path` under ../shared, or skip the test naming what is missing."""
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


def gdal_blocks(path: Path) -> list[bytes]:
    """Every compressed block of a tiled file, found by GDAL (not by geosam's tile table)."""
    with rasterio.open(path) as src:
        block_rows, block_cols = src.block_shapes[0]
        rows, cols = -(-src.height // block_rows), -(-src.width // block_cols)
        places = [
            (
                int(src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1)),
                int(src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1)),
            )
            for row in range(rows)
            for col in range(cols)
        ]
    data = path.read_bytes()
    return [data[offset : offset + size] for offset, size in places]


def write_raster(
    path: Path,
    data: np.ndarray,
    transform: Affine | None = TRANSFORM,
    crs: str | None = UTM33,
    nodata: float | None = None,
    **profile: Any,
) -> Path:
    """Write a (bands, H, W) array as a GeoTIFF."""
    count, height, width = data.shape
    meta: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "nodata": nodata,
    }
    if crs is not None:
        meta["crs"] = crs
    if transform is not None:
        meta["transform"] = transform
    meta.update(profile)
    with rasterio.open(path, "w", **meta) as dst:
        dst.write(data)
    return path


@pytest.fixture
def make_scene(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a seeded random scene GeoTIFF of the given size, bands and dtype."""

    def make(
        width: int = 300,
        height: int = 200,
        count: int = 3,
        dtype: str = "uint8",
        name: str = "scene.tif",
        seed: int = 0,
        **kwargs: Any,
    ) -> Path:
        rng = np.random.default_rng(seed)
        high = 256 if dtype == "uint8" else 4000
        data = rng.integers(1, high, size=(count, height, width)).astype(dtype)
        return write_raster(tmp_path / name, data, **kwargs)

    return make


@pytest.fixture
def make_layer(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a GeoPackage layer from shapely geometries."""

    def make(
        geometries: list[Any],
        crs: str | None = UTM33,
        name: str = "ships.gpkg",
        layer: str = "ships",
        ids: list[int] | None = None,
    ) -> Path:
        path = tmp_path / name
        frame = gpd.GeoDataFrame(
            {"id": ids or list(range(1, len(geometries) + 1))}, geometry=geometries, crs=crs
        )
        frame.to_file(path, layer=layer, engine="pyogrio")
        return path

    return make


def pixel_polygon(col0: float, row0: float, col1: float, row1: float) -> Any:
    """A box given in scene pixels of TRANSFORM, as a UTM polygon."""
    import shapely

    x0, y0 = TRANSFORM @ (col0, row0)
    x1, y1 = TRANSFORM @ (col1, row1)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def read_orders(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The chip ids of every `SceneReader.read_chips` call, in the order each call read them."""
    from geosam.io import reader

    orders: list[list[str]] = []
    original = reader.SceneReader.read_chips

    def recorded(self: reader.SceneReader, chips: Any) -> Any:
        orders.append([c.chip_id for c in chips])
        return original(self, chips)

    monkeypatch.setattr(reader.SceneReader, "read_chips", recorded)
    return orders


@pytest.fixture(scope="session")
def harbour(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small synthetic harbour (scene, footprints) from examples/harbour.py, 512x384 px."""
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        from harbour import make_harbour
    finally:
        sys.path.remove(str(EXAMPLES))
    return make_harbour(tmp_path_factory.mktemp("harbour"), width=512, height=384, ships=14)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for the block: tiny models spin-wait badly on a busy 2-core machine,
    and one thread is what Dask workers use (distributed sets OMP_NUM_THREADS=1 in them)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """`one_torch_thread` for a whole test module (``pytest.mark.usefixtures``)."""
    with one_torch_thread():
        yield


def save_untrained_tiny(model: Any, path: Path, threshold: float) -> Path:
    """Write a random-init `tiny` ShipSam as a model.pt with metadata `detect` accepts.

    `threshold` is both the prompter threshold and the minimum score of its operating point.
    """
    from geosam.data.prompts import PromptSettings
    from geosam.data.settings import ChipSettings
    from geosam.model.checkpoints import RANDOM_INIT
    from geosam.model.model_file import save_model_file

    meta = {
        "operating_point": {
            "prompter_threshold": threshold,
            "min_score": threshold,
            "max_ship_length_px": 50,
        },
        "model_type": "tiny",
        "base_hash": RANDOM_INIT,
        "checkpoint": None,
        "train_encoder": True,
        "chip_settings": ChipSettings(size=256, overlap=32).to_dict(),
        "prompt_settings": PromptSettings().to_dict(),
    }
    save_model_file(path, model.changed_state(), meta)
    return path


def spilling_tiny() -> Any:
    """An untrained `tiny` ShipSam whose every mask logit is positive: masks cover the chip."""
    import torch

    from geosam.model.checkpoints import RANDOM_INIT
    from geosam.model.registry import build_sam
    from geosam.model.shipsam import ShipSam

    torch.manual_seed(0)
    model = ShipSam(build_sam("tiny"), RANDOM_INIT, train_encoder=True, dense_box=True).eval()
    assert model.refiner is not None
    torch.nn.init.constant_(model.refiner.out.bias, 50.0)
    return model


def stop_after_two_rounds(pairs: list[Any], run: Path, settings: Any) -> None:
    """Start a fine-tuning run and stop it as Ctrl-C would, right after its second round."""
    from geosam.pipelines.finetune import finetune

    def interrupt(event: Any) -> None:
        if event.metrics and event.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(pairs, run, settings=settings, report=interrupt)
