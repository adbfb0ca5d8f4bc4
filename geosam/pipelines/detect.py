"""`geosam detect`: ships on new scenes as one georeferenced polygon each.

Per chip: one encoder pass, then prompts from the ship prompter (default), from a vector layer
(`prompts`), or from a point grid; masks from the fine-tuned decoder are kept by score,
duplicates within the chip are suppressed, and the rest become polygons through the chip's
transform. Chips overlap, so the polygons are stitched across seams (`geosam.geometry.stitch`
documents the rule) before attributes are measured and the layer is written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from geosam.data.samples import ChipSample, SceneChips
from geosam.data.settings import ChipSettings
from geosam.geometry.masks import suppress_duplicates
from geosam.geometry.stitch import Detection, masks_to_detections, stitch
from geosam.io.atomic import refuse_existing
from geosam.io.preview import write_mask_raster, write_preview
from geosam.io.prompt_layer import PromptLayer
from geosam.io.scene import SceneGrid
from geosam.io.ship_attributes import ship_attributes
from geosam.io.ship_layers import write_ship_layers
from geosam.model.device import pick_device
from geosam.model.predict import ChipPredictor, load_detector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectSettings:
    """How detections are made and kept.

    Attributes:
        prompter_threshold: minimum centre score of a prompter proposal.
        min_score: minimum final score (centre score x predicted IoU, or predicted IoU).
        max_mask_iou: two masks of one chip overlapping more than this are one ship.
        point_grid: prompt with an N x N point grid instead of the prompter.
        simplify: simplify polygons with this tolerance (scene CRS units).
        batch_chips: chips per encoder call.
        device: auto, cpu or cuda.
    """

    prompter_threshold: float = 0.3
    min_score: float = 0.3
    max_mask_iou: float = 0.5
    point_grid: int | None = None
    simplify: float | None = None
    batch_chips: int = 4
    device: str = "auto"


def chip_prompts(
    sample: ChipSample,
    predictor: ChipPredictor,
    embedding: Any,
    settings: DetectSettings,
    prompt_layer: PromptLayer | None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Masks (P, S, S) and scores (P,) of one chip, and whether each prompt is one ship."""
    size = sample.chip.size
    if prompt_layer is not None:
        boxes, points = prompt_layer.for_chip(sample.chip)
        box_masks, box_iou = predictor.masks(embedding, boxes=boxes)
        pt_masks, pt_iou = predictor.masks(embedding, points=points)
        return np.concatenate([box_masks, pt_masks]), np.concatenate([box_iou, pt_iou]), True
    if settings.point_grid:
        n = settings.point_grid
        centres = (np.arange(n) + 0.5) * size / n
        grid = np.stack(np.meshgrid(centres, centres), -1).reshape(-1, 2).astype(np.float32)
        on_data = sample.valid[grid[:, 1].astype(int), grid[:, 0].astype(int)]
        masks, iou = predictor.masks(embedding, points=grid[on_data])
        return masks, iou, False
    boxes, centre_scores = predictor.propose(embedding, settings.prompter_threshold)[0]
    masks, iou = predictor.masks(embedding, boxes=boxes)
    return masks, iou * centre_scores, False


def detect_scene(
    chips: SceneChips,
    predictor: ChipPredictor,
    settings: DetectSettings,
    prompt_layer_path: str | os.PathLike[str] | None = None,
    prompt_layer_name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> gpd.GeoDataFrame:
    """Ship polygons of one open scene in its CRS, with a score each (before attributes)."""
    detections: list[Detection] = []
    grid = chips.reader.grid
    prompts = (
        PromptLayer(prompt_layer_path, grid.crs, prompt_layer_name, chips.scene_name)
        if prompt_layer_path is not None
        else None
    )
    todo = chips.chips
    for start in range(0, len(todo), settings.batch_chips):
        samples = [chips.sample(c) for c in todo[start : start + settings.batch_chips]]
        samples = [s for s in samples if s.valid.any()]
        if samples:
            embeddings = predictor.embed(np.stack([s.image for s in samples]))
            for j, sample in enumerate(samples):
                detections += _chip_detections(
                    sample, grid, predictor, embeddings[j : j + 1], settings, prompts
                )
        if progress is not None:
            progress(min(start + settings.batch_chips, len(todo)), len(todo))
    geoms, scores = stitch(detections)
    frame = gpd.GeoDataFrame({"score": np.round(scores, 4)}, geometry=geoms, crs=grid.crs)
    if settings.simplify:
        frame.geometry = frame.geometry.simplify(settings.simplify, preserve_topology=True)
    return frame


def _chip_detections(
    sample: ChipSample,
    grid: SceneGrid,
    predictor: ChipPredictor,
    embedding: Any,
    settings: DetectSettings,
    prompts: PromptLayer | None,
) -> list[Detection]:
    masks, scores, one_per_prompt = chip_prompts(sample, predictor, embedding, settings, prompts)
    masks = masks & sample.valid
    if one_per_prompt:
        kept = [i for i in range(len(masks)) if masks[i].any()]
    else:
        good = np.flatnonzero(scores >= settings.min_score)
        kept = good[suppress_duplicates(masks[good], scores[good], settings.max_mask_iou)].tolist()
    return masks_to_detections(masks[kept], scores[kept], sample.chip, grid.width, grid.height)


def detect(
    scenes: list[str | os.PathLike[str]],
    model_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: DetectSettings | None = None,
    chip_overrides: dict[str, Any] | None = None,
    prompts: str | os.PathLike[str] | None = None,
    prompts_layer: str | None = None,
    checkpoint: str | None = None,
    mask_raster: str | os.PathLike[str] | None = None,
    preview: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, gpd.GeoDataFrame]:
    """Detect ships on `scenes` and write one layer per scene (named after it) to `output`.

    Chip size, overlap, bands and stretch come from the model's metadata; `chip_overrides`
    (e.g. ``{"overlap": 64}``) replaces single fields. With several scenes, `mask_raster` and
    `preview` get the scene name appended (``mask_<scene>.tif``).
    """
    settings = settings or DetectSettings()
    extras = {"mask": mask_raster, "preview": preview}
    targets = [Path(output)] + [
        per_scene_path(p, Path(sc).stem, len(scenes)) for p in extras.values() if p for sc in scenes
    ]
    for target in targets:
        refuse_existing(target, overwrite)
    device = pick_device(settings.device)
    model, meta = load_detector(model_path, device, checkpoint)
    chip_settings = ChipSettings.from_dict(meta["chip_settings"])
    if chip_overrides:
        chip_settings = replace(chip_settings, **chip_overrides)
    predictor = ChipPredictor(model, device)
    layers: dict[str, gpd.GeoDataFrame] = {}
    for scene in scenes:
        name = Path(scene).stem

        def report(done: int, total: int, name: str = name) -> None:
            if progress is not None:
                progress(name, done, total)

        # One open scene serves detection, the mask raster and the preview (one stretch).
        with SceneChips(scene, settings=chip_settings) as chips:
            frame = detect_scene(chips, predictor, settings, prompts, prompts_layer, report)
            layers[name] = _with_attributes(frame, name, Path(model_path))
            log.info("%s: %d ships", name, len(frame))
            if mask_raster:
                path = per_scene_path(mask_raster, name, len(scenes))
                write_mask_raster(path, chips.reader, layers[name])
            if preview:
                path = per_scene_path(preview, name, len(scenes))
                write_preview(path, chips.reader, layers[name])
    write_ship_layers(output, layers, overwrite=overwrite)
    return layers


def per_scene_path(path: str | os.PathLike[str], scene: str, scenes: int) -> Path:
    """`path` itself for one scene, else ``<stem>_<scene><suffix>``."""
    p = Path(path)
    return p if scenes == 1 else p.with_name(f"{p.stem}_{scene}{p.suffix}")


def _with_attributes(frame: gpd.GeoDataFrame, scene: str, model: Path) -> gpd.GeoDataFrame:
    attributes = ship_attributes(frame.geometry)
    result = gpd.GeoDataFrame(
        {
            "id": np.arange(1, len(frame) + 1, dtype=np.int64),
            "score": frame["score"].to_numpy(),
            **{c: attributes[c].to_numpy() for c in attributes.columns},
            "scene": scene,
            "model": str(model),
        },
        geometry=frame.geometry.to_numpy(),
        crs=frame.crs,
    )
    return result
