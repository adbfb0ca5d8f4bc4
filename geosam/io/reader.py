"""Read chips from a scene: band mapping, stretch and nodata applied, one window at a time.

`SceneReader` is the single way geosam turns scene pixels into model pixels, so tiling,
fine-tuning and detection see identical chips for identical settings.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
from numpy.typing import NDArray
from rasterio.enums import Resampling
from rasterio.env import get_gdal_config, set_gdal_config
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT

from geosam.errors import BandError, SceneError
from geosam.geometry.grid import Chip, chip_grid, panel_order
from geosam.io.bands import resolve_bands
from geosam.io.scene import SceneGrid, grid_dataset, open_scene, scene_grid
from geosam.io.stretch import DEFAULT_PERCENTILES, Stretch, estimate_stretch

log = logging.getLogger(__name__)

# GDAL's block cache defaults to 5 % of RAM and fills with every block of a large scene; 128 MB
# holds the blocks neighbouring chips share, so memory stays flat with the scene size. A
# GDAL_CACHEMAX set by the user in the environment wins.
READ_CACHE_BYTES = 128 * 2**20
READ_THREADS = 2

_cache_lock = threading.Lock()
_cache_readers = 0
_cache_before: object = None


@contextmanager
def bounded_block_cache() -> Iterator[None]:
    """GDAL's block cache capped at READ_CACHE_BYTES while any chip reading is under way.

    The cap is process-wide in GDAL, so it goes through GDAL's global configuration, counted:
    the first reader sets it, the last one puts the previous value back. (A rasterio.Env would
    push onto a per-thread stack that must unwind in order, which a chip iterator abandoned
    half-way and collected later does not do.) A GDAL_CACHEMAX in the environment wins.
    """
    global _cache_readers, _cache_before
    if "GDAL_CACHEMAX" in os.environ:
        yield
        return
    with _cache_lock:
        if _cache_readers == 0:
            _cache_before = get_gdal_config("GDAL_CACHEMAX")
            set_gdal_config("GDAL_CACHEMAX", READ_CACHE_BYTES)
        _cache_readers += 1
    try:
        yield
    finally:
        with _cache_lock:
            _cache_readers -= 1
            if _cache_readers == 0:  # GDAL_CACHEMAX always reads as the size in force
                set_gdal_config("GDAL_CACHEMAX", _cache_before)


@dataclass(frozen=True)
class ChipImage:
    """Pixels of one chip.

    Attributes:
        chip: where the chip sits on the scene grid.
        image: (3, size, size) uint8, channels R, G, B; nodata and padding are 0.
        valid: (size, size) bool, True where the scene has data.
    """

    chip: Chip
    image: NDArray[np.uint8]
    valid: NDArray[np.bool_]

    @property
    def valid_fraction(self) -> float:
        """Share of the chip's pixels that hold scene data (padding and nodata excluded)."""
        return np.count_nonzero(self.valid) / self.valid.size


class SceneReader:
    """An open scene with its band mapping, stretch, nodata and chip grid.

    Args:
        path: the scene (any GDAL raster, north-up, with CRS).
        bands: 1-based bands for R, G, B (one band is repeated); default from colour
            interpretation or the first three.
        nodata: value marking missing data; default the file's own nodata.
        gsd: resample on read to this many CRS units per pixel (one size, or x and y).
        stretch: a recorded stretch to reuse; default: none for uint8, else estimated.
        percentiles: low/high percentiles for an estimated stretch.
        per_band_stretch: estimate each band's percentiles on its own (see `geosam.io.stretch`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        bands: Sequence[int] | None = None,
        nodata: float | None = None,
        gsd: float | tuple[float, float] | None = None,
        stretch: Stretch | None = None,
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
        per_band_stretch: bool = False,
    ) -> None:
        self.path = Path(path)
        self._src = open_scene(self.path)
        try:
            self.grid: SceneGrid = scene_grid(self._src, gsd)
            self.nodata = nodata if nodata is not None else self._src.nodata
            self._dataset = grid_dataset(self._src, self.grid, self.nodata)
            if stretch is not None:
                self.bands = resolve_bands(self._src, stretch.bands)
                if bands and tuple(resolve_bands(self._src, bands)) != self.bands:
                    raise BandError(
                        f"--bands {bands} differs from the stretch's bands {stretch.bands}; "
                        "drop one of them"
                    )
            else:
                self.bands = resolve_bands(self._src, bands)
            self.dtype = np.dtype(self._src.dtypes[self.bands[0] - 1])
            if stretch is None and self.dtype != np.uint8:
                try:
                    stretch = estimate_stretch(
                        self._dataset, self.bands, self.nodata, percentiles, per_band_stretch
                    )
                except RasterioError as exc:
                    raise self.read_failed(exc, "its overview (for the stretch)") from exc
                log.info("%s: %s stretched to uint8 with %s", self.path.name, self.dtype, stretch)
            self.stretch = stretch
        except Exception:
            self.close()
            raise

    @property
    def name(self) -> str:
        """The scene's file stem, used as its name in outputs."""
        return self.path.stem

    def chips(self, size: int, overlap: int) -> list[Chip]:
        """The chip grid over this scene."""
        return chip_grid(self.grid.width, self.grid.height, self.grid.transform, size, overlap)

    def reading_order(self, chips: Sequence[Chip]) -> list[Chip]:
        """`chips` in the order that decodes each scene block about once (`panel_order`).

        Panels are as wide as READ_CACHE_BYTES holds the blocks of one chip row plus a block
        row above and below, for every band of the file (a pixel-interleaved file decodes
        them all). On a 20000 px 16-bit DEFLATE scene with 1024 px chips, reading row by row
        took 1.4x the CPU of reading in panels; narrow scenes and small chips keep grid order.
        """
        if not chips:
            return []
        size = chips[0].size
        block_rows = self._dataset.block_shapes[0][0]
        column_bytes = self._src.count * self.dtype.itemsize * (size + 2 * block_rows)
        return panel_order(chips, max(size, READ_CACHE_BYTES // column_bytes))

    def read(self, chip: Chip) -> ChipImage:
        """Read one chip: a windowed read of the valid part, padded with zeros to full size."""
        with bounded_block_cache():
            return self._to_image(chip, self._read_raw(chip))

    def read_chips(self, chips: Sequence[Chip]) -> Iterator[ChipImage]:
        """Chips in order, read and stretched ahead by a few threads while this one is used.

        One handle on the scene (GDAL handles are not thread-safe) reads the windows one at a
        time, in the order given, so neighbouring chips share its decoded blocks as a plain read
        loop does; separate handles per thread would each decode the blocks chips share. The
        stretch, valid mask and padding run outside the lock, on several threads, and GDAL
        and numpy release the GIL, so this overlaps the caller's work (compressing, the model).
        """
        src = open_scene(self.path)
        dataset = grid_dataset(src, self.grid, self.nodata)
        lock = threading.Lock()

        def read(chip: Chip) -> ChipImage:
            with lock:
                raw = self._read_raw(chip, dataset)
            return self._to_image(chip, raw)

        threads = max(1, min(READ_THREADS, os.cpu_count() or 1))
        pending: deque[Future[ChipImage]] = deque()
        try:
            with (
                bounded_block_cache(),
                ThreadPoolExecutor(threads, thread_name_prefix="geosam-read") as pool,
            ):
                for chip in chips:
                    pending.append(pool.submit(read, chip))
                    if len(pending) > 2 * threads:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
        finally:
            for future in pending:  # a failed read or an abandoned iterator: read no further
                future.cancel()
            with lock:
                if dataset is not src:
                    dataset.close()
                src.close()

    def _read_raw(
        self, chip: Chip, dataset: DatasetReader | WarpedVRT | None = None
    ) -> NDArray[np.generic]:
        """(3, h, w) scene values of the chip's valid window, in chip channel order."""
        unique = sorted(set(self.bands))
        try:
            raw = (dataset or self._dataset).read(unique, window=chip.read_window)
        except RasterioError as exc:
            window = chip.read_window
            where = f"window rows {window.row_off}-{window.row_off + window.height}, columns "
            where += f"{window.col_off}-{window.col_off + window.width}"
            raise self.read_failed(exc, where) from exc
        return self._in_chip_order(raw)

    def read_failed(self, exc: RasterioError, where: str) -> SceneError:
        """The one-line error of a failed pixel read: the file, where, GDAL's reason, the fix.

        Raised in the reading thread, it reaches the caller's thread through the future of
        the chip (`read_chips`), so a damaged file ends a command with this line, never with
        a traceback from a read-ahead thread.
        """
        detail = exc.__cause__ or exc.__context__ or exc  # rasterio puts GDAL's words there
        reason = (str(detail).strip() or str(exc).strip() or type(exc).__name__).splitlines()[0]
        return SceneError(
            f"{self.path}: reading {where} failed ({reason}); the file is damaged or "
            "incomplete: download or copy it again, or rewrite it with gdal_translate, and "
            "check the disk"
        )

    def _in_chip_order(self, raw: NDArray[np.generic]) -> NDArray[np.generic]:
        """Bands read as sorted(set(bands)) rearranged to R, G, B (a repeated band repeats)."""
        unique = sorted(set(self.bands))
        if unique == list(self.bands):
            return raw
        return raw[[unique.index(b) for b in self.bands]]

    def _model_pixels(
        self, pixels: NDArray[np.generic]
    ) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
        """(3, h, w) scene values to uint8 model pixels (nodata 0) and their valid mask."""
        valid = self._valid_mask(pixels)
        image = (
            self.stretch.apply(pixels)
            if self.stretch is not None
            else pixels.astype(np.uint8, copy=False)  # a fresh read: ours to change
        )
        if not valid.all():
            image[:, ~valid] = 0
        return image, valid

    def _to_image(self, chip: Chip, pixels: NDArray[np.generic]) -> ChipImage:
        image, valid = self._model_pixels(pixels)
        h, w = valid.shape
        if (h, w) == (chip.size, chip.size):
            return ChipImage(chip, image, valid)
        full = np.zeros((3, chip.size, chip.size), dtype=np.uint8)
        full_valid = np.zeros((chip.size, chip.size), dtype=bool)
        full[:, :h, :w] = image
        full_valid[:h, :w] = valid
        return ChipImage(chip, full, full_valid)

    def read_overview(self, max_side: int) -> NDArray[np.uint8]:
        """The whole grid as (3, h, w) uint8 with the longest side <= `max_side` (averaged read)."""
        scale = max(1.0, max(self.grid.width, self.grid.height) / max_side)
        height = max(1, round(self.grid.height / scale))
        width = max(1, round(self.grid.width / scale))
        unique = sorted(set(self.bands))
        try:
            raw = self._dataset.read(
                unique, out_shape=(len(unique), height, width), resampling=Resampling.average
            )
        except RasterioError as exc:
            raise self.read_failed(exc, "its overview") from exc
        return self._model_pixels(self._in_chip_order(raw))[0]

    def _valid_mask(self, pixels: NDArray[np.generic]) -> NDArray[np.bool_]:
        """True where any chip band holds data (GDAL's per-dataset mask convention)."""
        floating = np.issubdtype(pixels.dtype, np.floating)
        has_nodata = self.nodata is not None and not np.isnan(self.nodata)
        if not floating and not has_nodata:
            return np.ones(pixels.shape[1:], dtype=bool)
        missing = np.isnan(pixels) if floating else np.zeros(pixels.shape, dtype=bool)
        if has_nodata:
            missing |= pixels == self.nodata
        return np.asarray(~missing.all(axis=0))

    def close(self) -> None:
        """Close the scene (and its warped VRT)."""
        dataset = getattr(self, "_dataset", None)
        if dataset is not None and dataset is not self._src:
            dataset.close()
        self._src.close()

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
