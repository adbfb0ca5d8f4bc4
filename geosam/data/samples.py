"""The Python API for chips: a scene (and optional footprints) as an iterable of samples.

`SceneChips` yields, chip by chip, the image array and (with footprints) the boxes and masks
of the ships on it, without writing any file. `geosam tile` writes exactly these samples;
fine-tuning trains from them directly.

Example:
    >>> settings = ChipSettings(size=1024, overlap=128)
    >>> with SceneChips("scene.tif", labels="ships.gpkg", settings=settings) as chips:
    ...     for sample in chips:
    ...         sample.image.shape, sample.labels.boxes  # (3, 1024, 1024), (N, 4) XYXY px
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType

import numpy as np
from numpy.typing import NDArray

from geosam.data.labels import ChipLabeler, ChipLabels
from geosam.data.scale import gsd_for_scene, resolution_for_gsd
from geosam.data.settings import ChipSettings
from geosam.geometry.grid import Chip
from geosam.io.footprints import FootprintReport, read_footprints
from geosam.io.reader import ChipImage, SceneReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChipSample:
    """One chip ready for SAM.

    Attributes:
        scene: scene name (file stem).
        chip: grid position and transform.
        image: (3, size, size) uint8 RGB, nodata and padding 0.
        valid: (size, size) bool, True where the scene has data.
        labels: ships on the chip, or None when no footprints were given.
    """

    scene: str
    chip: Chip
    image: NDArray[np.uint8]
    valid: NDArray[np.bool_]
    labels: ChipLabels | None

    @property
    def valid_fraction(self) -> float:
        """Share of chip pixels holding scene data."""
        return np.count_nonzero(self.valid) / self.valid.size


class SceneChips:
    """A scene cut into chips, with footprints turned into per-chip prompts and masks.

    Args:
        scene: raster path.
        labels: vector path of ship footprints (optional).
        layer: footprint layer; default the only layer or the one named after the scene.
        settings: chip size, overlap, bands, nodata, resampling, stretch.
    """

    def __init__(
        self,
        scene: str | os.PathLike[str],
        labels: str | os.PathLike[str] | None = None,
        layer: str | None = None,
        settings: ChipSettings | None = None,
    ) -> None:
        s = settings or ChipSettings()
        gsd: float | tuple[float, float] | None
        if s.gsd is not None:
            gsd = resolution_for_gsd(scene, s.gsd)
        else:
            gsd = gsd_for_scene(scene, s.scale_rule)
        self.reader = SceneReader(
            scene, s.bands, s.nodata, gsd, s.stretch, s.percentiles, s.per_band_stretch
        )
        # Record what was resolved (default bands, estimated stretch) so it can be replayed.
        self.settings = replace(s, bands=self.reader.bands, stretch=self.reader.stretch)
        try:
            self.chips: list[Chip] = self.reader.chips(s.size, s.overlap)
            self.labeler: ChipLabeler | None = None
            self.footprint_report: FootprintReport | None = None
            if labels is not None:
                footprints, report = read_footprints(
                    labels, self.reader.grid.crs, layer, prefer_layer=self.reader.name
                )
                self.labeler = ChipLabeler(footprints, self.reader.grid.bounds, s.min_visible)
                report.outside_scene = self.labeler.outside_scene
                if 0 < report.outside_scene < len(footprints):  # none on it: callers refuse
                    log.warning(
                        "%s: %d of %d footprints lie outside the scene %s",
                        report.source,
                        report.outside_scene,
                        len(footprints),
                        self.reader.name,
                    )
                self.footprint_report = report
        except Exception:
            self.reader.close()
            raise

    @property
    def scene_name(self) -> str:
        """The scene's file stem."""
        return self.reader.name

    def __len__(self) -> int:
        """Number of chips in the grid (chips without valid pixels are skipped on iteration)."""
        return len(self.chips)

    def sample(self, chip: Chip) -> ChipSample:
        """Read one chip and label it."""
        return self._labelled(self.reader.read(chip))

    def samples(self, chips: Sequence[Chip] | None = None) -> Iterator[ChipSample]:
        """Samples of `chips` in their order, read ahead in threads.

        By default the whole grid in reading order (`SceneReader.reading_order`): row by row
        on most scenes, in panels on scenes too wide for the block cache, so that each block
        is read once. Each sample names its chip: a caller that needs grid order sorts by
        its offsets, as training does (`load_training_chips`).
        """
        order = self.reader.reading_order(self.chips) if chips is None else chips
        for pixels in self.reader.read_chips(order):
            yield self._labelled(pixels)

    def _labelled(self, pixels: ChipImage) -> ChipSample:
        labels = self.labeler.labels(pixels.chip) if self.labeler is not None else None
        return ChipSample(self.scene_name, pixels.chip, pixels.image, pixels.valid, labels)

    def __iter__(self) -> Iterator[ChipSample]:
        """Samples of every chip that holds at least one valid pixel, in reading order."""
        for sample in self.samples():
            if not sample.valid.any():
                chip_id = sample.chip.chip_id
                log.debug("%s: skipped chip %s (no valid pixel)", self.scene_name, chip_id)
                continue
            yield sample

    def close(self) -> None:
        """Close the scene."""
        self.reader.close()

    def __enter__(self) -> SceneChips:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
