"""Ships on one scene: per chip, prompts, masks, polygons; across chips, stitching.

Per chip: one encoder pass, then prompts from the ship prompter (default), from a vector layer
(`prompts`), or from a point grid; masks from the fine-tuned decoder are kept by score,
duplicates within the chip are suppressed, and the rest become polygons through the chip's
transform. Chips overlap, so the polygons are stitched across seams (`geosam.geometry.stitch`
documents the rule).

The unit of work is a batch of chips of one scene (`detect_chips`: one encoder call for the
batch). In this process the batches run one after another (`detect_scene`); on a Dask cluster
they are tasks (`geosam.pipelines.distributed_detect`) whose detections come back to this
process and are stitched in the same batch order, so both ways give the same ships.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import geopandas as gpd
import numpy as np
from rasterio.transform import array_bounds

from geosam.data.samples import ChipSample, SceneChips
from geosam.data.scale import nearest_pixel_size
from geosam.geometry.components import MaskPrompts, prompted_bodies
from geosam.geometry.detections import Detection, crops_to_detections
from geosam.geometry.grid import Chip
from geosam.geometry.masks import crop_masks, suppress_duplicates
from geosam.geometry.stitch import stitch
from geosam.io.area_layer import DetectionArea
from geosam.io.prompt_layer import PromptLayer
from geosam.io.scene import SceneGrid
from geosam.model.predict import ChipPredictor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectSettings:
    """How detections are made and kept.

    Thresholds left None are the model's operating point (`for_model`): the ones training
    chose on its validation chips and stored in ``model.pt``.

    Attributes:
        prompter_threshold: minimum centre score of a prompter proposal.
        min_score: minimum final score (centre score x predicted IoU, or predicted IoU).
        mask_cut: a mask holds the pixels whose logit is above this (SAM's is 0).
        max_ship_length_px: cut pieces are never stitched into a ship longer than this
            (scene pixels); None in a resolved setting means no limit.
        max_mask_iou: two masks of one chip overlapping more than this are one ship.
        point_grid: prompt with an N x N point grid instead of the prompter.
        simplify: simplify polygons with this tolerance (scene CRS units).
        batch_chips: chips per encoder call (and per task on a Dask cluster).
        device: auto, cpu or cuda (on a cluster: resolved by each worker).
    """

    prompter_threshold: float | None = None
    min_score: float | None = None
    mask_cut: float | None = None
    max_ship_length_px: float | None = None
    max_mask_iou: float = 0.5
    point_grid: int | None = None
    simplify: float | None = None
    batch_chips: int = 4
    device: str = "auto"

    def for_model(self, meta: dict[str, Any], pixel_size: float | None = None) -> DetectSettings:
        """These settings with every unset threshold taken from the model's operating point.

        A model trained on scenes of several pixel sizes (sensors) holds a score threshold
        and a mask cut per pixel size; a scene of `pixel_size` (ground metres) takes the
        nearest in log scale, and a scene of unknown size those chosen over all validation
        chips. Model files written before geosam recorded an operating point fall back to
        0.3 and 0.3, the old defaults, and no length limit; before it chose mask cuts, to 0.
        """
        point = meta.get("operating_point") or {}

        def pick(mine: float | None, key: str, old: float | None) -> float | None:
            return mine if mine is not None else point.get(key, old)

        def by_sensor(mine: float | None, key: str, old: float) -> float | None:
            chosen = pick(mine, key, old)
            by_size = point.get(f"{key}_by_pixel_size")
            if mine is None and by_size and pixel_size:
                chosen = nearest_pixel_size([tuple(e) for e in by_size], pixel_size)[1]
            return chosen

        return replace(
            self,
            prompter_threshold=pick(self.prompter_threshold, "prompter_threshold", 0.3),
            min_score=by_sensor(self.min_score, "min_score", 0.3),
            mask_cut=by_sensor(self.mask_cut, "mask_cut", 0.0),
            max_ship_length_px=pick(self.max_ship_length_px, "max_ship_length_px", None),
        )

    def threshold(self, name: str) -> float:
        """A resolved threshold (``prompter_threshold``, ``min_score`` or ``mask_cut``)."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"DetectSettings.{name} is unset; resolve with for_model(meta)")
        return float(value)


def chip_prompts(
    sample: ChipSample,
    predictor: ChipPredictor,
    embedding: Any,
    settings: DetectSettings,
    prompt_layer: PromptLayer | None,
) -> tuple[np.ndarray, np.ndarray, MaskPrompts]:
    """Masks (P, S, S) bool and scores (P,) of one chip, and the prompt of each mask.

    The prompts are in chip pixels; with a prompt layer, each carries its row in the layer
    (one prompt, one ship), else the key -1.
    """
    size, cut = sample.chip.size, settings.threshold("mask_cut")
    if prompt_layer is not None:
        found = prompt_layer.for_chip(sample.chip)
        box_masks, box_iou = predictor.prompted_masks(embedding, boxes=found.boxes, cut=cut)
        pt_masks, pt_iou = predictor.prompted_masks(embedding, points=found.points, cut=cut)
        keys = np.concatenate([found.box_rows, found.point_rows])
        prompts = MaskPrompts.stack(found.boxes, found.points, keys)
        return np.concatenate([box_masks, pt_masks]), np.concatenate([box_iou, pt_iou]), prompts
    if settings.point_grid:
        n = settings.point_grid
        centres = (np.arange(n) + 0.5) * size / n
        grid = np.stack(np.meshgrid(centres, centres), -1).reshape(-1, 2).astype(np.float32)
        on_data = sample.valid[grid[:, 1].astype(int), grid[:, 0].astype(int)]
        masks, iou = predictor.masks(embedding, points=grid[on_data], cut=cut)
        return masks, iou, MaskPrompts.stack(points=grid[on_data])
    boxes, centre_scores = predictor.propose(embedding, settings.threshold("prompter_threshold"))[0]
    masks, iou, boxes = predictor.proposal_masks(embedding, boxes, cut)
    return masks, iou * centre_scores, MaskPrompts.stack(boxes=boxes)


def chip_batches(chips: Sequence[Chip], batch_chips: int) -> list[list[Chip]]:
    """The scene's chips cut into consecutive batches of `batch_chips`, in grid order."""
    return [list(chips[i : i + batch_chips]) for i in range(0, len(chips), batch_chips)]


def open_prompts(
    chips: SceneChips,
    path: str | os.PathLike[str] | None,
    layer: str | None,
) -> PromptLayer | None:
    """The prompt layer of `path` reprojected to the scene's CRS, or None without one."""
    if path is None:
        return None
    return PromptLayer(path, chips.reader.grid.crs, layer, chips.scene_name)


def open_area(
    chips: SceneChips,
    path: str | os.PathLike[str] | None,
    layer: str | None,
) -> DetectionArea | None:
    """The detection area of `path` reprojected to the scene's CRS, or None without one."""
    if path is None:
        return None
    grid = chips.reader.grid
    west, south, east, north = array_bounds(grid.height, grid.width, grid.transform)
    pad = _chip_side(chips)
    near = (west - pad, south - pad, east + pad, north + pad)
    return DetectionArea(path, grid.crs, layer, chips.scene_name, near)


def _chip_side(chips: SceneChips) -> float:
    """A chip's side in the scene's CRS units."""
    transform = chips.reader.grid.transform
    return chips.settings.size * max(abs(transform.a), abs(transform.e))


def chips_to_detect(chips: SceneChips, area: DetectionArea | None) -> list[Chip]:
    """The scene's chips, or with an area those within half a chip of it."""
    if area is None:
        return list(chips.chips)
    selected = area.chips_near(chips.chips, _chip_side(chips) / 2)
    if not selected:
        log.warning(
            "%s: no part of the detection area %s lies on it; its layer is empty",
            chips.scene_name,
            area.source,
        )
    else:
        log.info(
            "%s: %d of %d chips lie near the detection area",
            chips.scene_name,
            len(selected),
            len(chips.chips),
        )
    return selected


def detect_chips(
    samples: Sequence[ChipSample],
    grid: SceneGrid,
    predictor: ChipPredictor,
    settings: DetectSettings,
    prompts: PromptLayer | None,
) -> list[Detection]:
    """Detections of a batch of read chips of one scene, in chip order (before stitching).

    Chips without a valid pixel are skipped; the others share one encoder call. This is the
    only place a chip is detected: in process and on a Dask worker alike.

    Args:
        samples: the chips' pixels (from `SceneChips.samples` or `SceneChips.sample`).
        grid: the scene's pixel grid.
        predictor: the model.
        settings: detection settings.
        prompts: prompt layer in the scene CRS, or None for the prompter or point grid.

    Returns:
        The chips' detections (`geosam.geometry.detections.Detection`), chip by chip.
    """
    samples = [s for s in samples if s.valid.any()]
    if not samples:
        return []
    embeddings = predictor.embed(np.stack([s.image for s in samples]))
    detections: list[Detection] = []
    for j, sample in enumerate(samples):
        detections += _chip_detections(
            sample, grid, predictor, embeddings[j : j + 1], settings, prompts
        )
    return detections


def scene_frame(
    detections: list[Detection],
    grid: SceneGrid,
    settings: DetectSettings,
    area: DetectionArea | None = None,
) -> gpd.GeoDataFrame:
    """Stitched ship polygons (one Polygon each) in the scene CRS with a score each.

    ``settings.max_ship_length_px`` bounds the length of a ship joined from cut pieces
    (scene pixels, see `geosam.geometry.stitch`). With an `area`, ships outside it are
    dropped (`DetectionArea.holds`). Attributes come later.
    """
    geoms, scores = stitch(
        detections, grid.transform, max_ship_length_px=settings.max_ship_length_px
    )
    frame = gpd.GeoDataFrame({"score": np.round(scores, 4)}, geometry=geoms, crs=grid.crs)
    if area is not None:
        frame = frame[area.holds(frame.geometry)].reset_index(drop=True)
    if settings.simplify:
        frame.geometry = frame.geometry.simplify(settings.simplify, preserve_topology=True)
    return frame


def detect_scene(
    chips: SceneChips,
    predictor: ChipPredictor,
    settings: DetectSettings,
    prompt_layer_path: str | os.PathLike[str] | None = None,
    prompt_layer_name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    area: DetectionArea | None = None,
) -> gpd.GeoDataFrame:
    """Ship polygons of one open scene in its CRS, with a score each (before attributes).

    With an `area`, only the chips near it are read and only ships in it are kept.
    """
    prompts = open_prompts(chips, prompt_layer_path, prompt_layer_name)
    selected = chips_to_detect(chips, area)
    detections: list[Detection] = []
    grid, total = chips.reader.grid, len(selected)
    batch: list[ChipSample] = []
    done = 0
    for sample in chips.samples(selected):  # read ahead in threads while the model works
        batch.append(sample)
        if len(batch) == settings.batch_chips or done + len(batch) == total:
            detections += detect_chips(batch, grid, predictor, settings, prompts)
            done, batch = done + len(batch), []
            if progress is not None:
                progress(done, total)
    return scene_frame(detections, grid, settings, area)


def _chip_detections(
    sample: ChipSample,
    grid: SceneGrid,
    predictor: ChipPredictor,
    embedding: Any,
    settings: DetectSettings,
    prompts: PromptLayer | None,
) -> list[Detection]:
    """One chip's masks kept, each cleaned to the one body under its prompt, as detections."""
    masks, scores, asked = chip_prompts(sample, predictor, embedding, settings, prompts)
    masks = masks & sample.valid
    if prompts is not None:  # each user prompt is one ship: keep every mask
        kept = [i for i in range(len(masks)) if masks[i].any()]
    else:
        good = np.flatnonzero(scores >= settings.threshold("min_score"))
        kept = good[suppress_duplicates(masks[good], scores[good], settings.max_mask_iou)].tolist()
    asked = asked.take(kept)
    bodies = prompted_bodies(crop_masks(masks[kept]), asked)
    keys = [int(k) if k >= 0 else None for k in asked.keys]
    return crops_to_detections(bodies, scores[kept], sample.chip, grid.width, grid.height, keys)
