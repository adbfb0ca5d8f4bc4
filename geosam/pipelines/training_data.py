"""Chips to train on, straight from (scene, footprints) pairs through the tile API."""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geosam.data.samples import SceneChips
from geosam.data.scale import (
    median_ship_length_m,
    pixel_metres,
    read_factor,
    sensor_groups,
)
from geosam.data.settings import ChipSettings
from geosam.errors import InputNotFoundError, TrainingDataError
from geosam.geometry.grid import Chip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingPair:
    """One annotated scene: raster, footprints and (optionally) the layer."""

    scene: Path
    labels: Path
    layer: str | None = None


@dataclass(frozen=True)
class TrainChip:
    """A chip held in memory for training.

    Attributes:
        scene: scene name.
        chip: grid position.
        image: (3, S, S) uint8.
        valid: (S, S) bool.
        boxes: (N, 4) float32 XYXY chip pixels.
        masks: (N, S, S) bool.
        pixel_size: the ground pixel size in metres of the scene's sensor
            (`sensor_pixel_sizes`; None: unknown); chips of one sensor share an operating point.
    """

    scene: str
    chip: Chip
    image: NDArray[np.uint8]
    valid: NDArray[np.bool_]
    boxes: NDArray[np.float32]
    masks: NDArray[np.bool_]
    pixel_size: float | None = None


def read_manifest(path: str | os.PathLike[str]) -> list[TrainingPair]:
    """Pairs from a CSV with columns scene, labels, layer (paths relative to the CSV)."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such manifest; give a CSV with scene,labels,layer")
    with p.open(newline="", encoding="utf-8-sig") as fh:  # -sig: a BOM from Excel
        rows = list(csv.DictReader(fh))
    if not rows or not {"scene", "labels"} <= set(rows[0]):
        raise TrainingDataError(f"{p}: needs a header with columns scene, labels (and layer)")
    return [
        TrainingPair(p.parent / r["scene"], p.parent / r["labels"], r.get("layer") or None)
        for r in rows
    ]


def with_scale_rule(pairs: list[TrainingPair], settings: ChipSettings) -> ChipSettings:
    """`settings` with a scale rule learned from the pairs' ship sizes (`geosam.data.scale`).

    Scenes of one sensor (`sensor_pixel_sizes`, by ground pixel size) share one factor, from the
    median of their median ship lengths in the sensor's pixels, so that they are read alike.
    An explicit `gsd` wins: then scenes are read at it and no rule is made.
    """
    if settings.gsd is not None:
        return settings
    by_sensor: dict[float, list[tuple[str, float]]] = {}
    for pair, sensor in zip(pairs, sensor_pixel_sizes(pairs), strict=True):
        if sensor is None:
            continue
        length = median_ship_length_m(pair.scene, pair.labels, pair.layer)
        if length is not None:
            by_sensor.setdefault(sensor, []).append((pair.scene.name, length))
    rule = []
    for sensor, members in sorted(by_sensor.items()):
        length_px = float(np.median([length for _, length in members])) / sensor
        factor = read_factor(length_px)
        rule.append((sensor, factor))
        log.info(
            "%s: %.3g m pixels, median ship %.1f px long; read at x%.3g (%.3g m pixels)",
            ", ".join(name for name, _ in members),
            sensor,
            length_px,
            factor,
            sensor / factor,
        )
    return replace(settings, scale_rule=tuple(rule))


def sensor_pixel_sizes(pairs: list[TrainingPair]) -> list[float | None]:
    """Per pair, the ground pixel size in metres of its sensor (`sensor_groups`).

    Sentinel-2 in UTM (10 m) and on a Web Mercator grid at 34 deg (8.3 m of ground) are one
    sensor; an unreadable scene has None.
    """
    sizes = [pixel_metres(pair.scene) for pair in pairs]
    known = [(i, size) for i, size in enumerate(sizes) if size is not None]
    found: list[float | None] = [None] * len(pairs)
    for sensor, group in sensor_groups([size for _, size in known]):
        for k in group:
            found[known[k][0]] = sensor
    return found


def load_training_chips(
    pairs: list[TrainingPair], settings: ChipSettings
) -> tuple[list[TrainChip], list[ChipSettings]]:
    """All chips with valid pixels of every pair, and the resolved chip settings per scene.

    Raises `TrainingDataError` when no footprint lands on any chip.
    """
    chips: list[TrainChip] = []
    resolved: list[ChipSettings] = []
    sensors = sensor_pixel_sizes(pairs)
    for index, pair in enumerate(pairs):
        pixel_size = sensors[index]
        with SceneChips(pair.scene, pair.labels, pair.layer, settings) as scene_chips:
            resolved.append(scene_chips.settings)
            ships_here = 0
            # Read in panels on wide scenes, kept in grid order: a seed draws the same chips.
            for sample in sorted(scene_chips, key=lambda s: (s.chip.row_off, s.chip.col_off)):
                labels = sample.labels
                assert labels is not None  # labels were given
                chips.append(
                    TrainChip(
                        sample.scene,
                        sample.chip,
                        sample.image,
                        sample.valid,
                        labels.boxes,
                        labels.masks,
                        pixel_size,
                    )
                )
                ships_here += len(labels)
            log.info(
                "%s: %d chips, %d ship labels", scene_chips.scene_name, len(scene_chips), ships_here
            )
    if not any(len(c.boxes) for c in chips):
        names = ", ".join(str(p.labels) for p in pairs)
        raise TrainingDataError(
            f"{names}: no footprint lands on any chip of the scene(s); nothing to train on. "
            "Check that the footprints cover the scene (same place, right layer)"
        )
    return chips, resolved


def longest_ship_px(chips: list[TrainChip]) -> float:
    """The longest box diagonal among the chips' footprints, in chip pixels.

    The diagonal bounds a ship's length whatever its heading (a box side would be shorter
    than a diagonal ship).
    """
    lengths = [
        float(np.hypot(*(c.boxes[:, 2:] - c.boxes[:, :2]).T).max()) for c in chips if len(c.boxes)
    ]
    return max(lengths, default=0.0)
