"""`geosam detect`: ships on new scenes as one georeferenced polygon each.

Per chip: one encoder pass, then prompts from the ship prompter (default), from a vector layer
(`prompts`), or from a point grid; masks from the fine-tuned decoder are kept by score,
duplicates within the chip are suppressed, and the rest become polygons through the chip's
transform. Chips overlap, so the polygons are stitched across seams (`geosam.geometry.stitch`
documents the rule) before attributes are measured and the layer is written.

The unit of work is a batch of chips of one scene (`detect_chips`: one encoder call for the
batch). In this process the batches run one after another (`detect_scene`); on a Dask cluster
they are tasks (`geosam.pipelines.distributed_detect`) whose detections come back to this
process and are stitched in the same batch order, so both ways write the same layer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from geosam.data.samples import ChipSample, SceneChips
from geosam.data.settings import ChipSettings
from geosam.geometry.components import MaskPrompts, prompted_bodies
from geosam.geometry.grid import Chip
from geosam.geometry.masks import crop_masks, suppress_duplicates
from geosam.geometry.stitch import Detection, crops_to_detections, stitch
from geosam.io.atomic import refuse_existing
from geosam.io.preview import write_mask_raster, write_preview
from geosam.io.prompt_layer import PromptLayer
from geosam.io.scene import SceneGrid
from geosam.io.ship_attributes import ship_attributes
from geosam.io.ship_layers import write_ship_layers
from geosam.model.device import pick_device
from geosam.model.model_file import load_model_file
from geosam.model.predict import ChipPredictor, load_detector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectSettings:
    """How detections are made and kept.

    Thresholds left None are the model's operating point (`for_model`): the ones training
    chose on its validation chips and stored in ``model.pt``.

    Attributes:
        prompter_threshold: minimum centre score of a prompter proposal.
        min_score: minimum final score (centre score x predicted IoU, or predicted IoU).
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
    max_ship_length_px: float | None = None
    max_mask_iou: float = 0.5
    point_grid: int | None = None
    simplify: float | None = None
    batch_chips: int = 4
    device: str = "auto"

    def for_model(self, meta: dict[str, Any]) -> DetectSettings:
        """These settings with every unset threshold taken from the model's operating point.

        Model files written before geosam recorded one fall back to 0.3 and 0.3, the old
        defaults, and no length limit.
        """
        point = meta.get("operating_point") or {}

        def pick(mine: float | None, key: str, old: float | None) -> float | None:
            return mine if mine is not None else point.get(key, old)

        return replace(
            self,
            prompter_threshold=pick(self.prompter_threshold, "prompter_threshold", 0.3),
            min_score=pick(self.min_score, "min_score", 0.3),
            max_ship_length_px=pick(self.max_ship_length_px, "max_ship_length_px", None),
        )

    def threshold(self, name: str) -> float:
        """A resolved threshold (``prompter_threshold`` or ``min_score``)."""
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
    size = sample.chip.size
    if prompt_layer is not None:
        found = prompt_layer.for_chip(sample.chip)
        box_masks, box_iou = predictor.masks(embedding, boxes=found.boxes)
        pt_masks, pt_iou = predictor.masks(embedding, points=found.points)
        keys = np.concatenate([found.box_rows, found.point_rows])
        prompts = MaskPrompts.stack(found.boxes, found.points, keys)
        return np.concatenate([box_masks, pt_masks]), np.concatenate([box_iou, pt_iou]), prompts
    if settings.point_grid:
        n = settings.point_grid
        centres = (np.arange(n) + 0.5) * size / n
        grid = np.stack(np.meshgrid(centres, centres), -1).reshape(-1, 2).astype(np.float32)
        on_data = sample.valid[grid[:, 1].astype(int), grid[:, 0].astype(int)]
        masks, iou = predictor.masks(embedding, points=grid[on_data])
        return masks, iou, MaskPrompts.stack(points=grid[on_data])
    boxes, centre_scores = predictor.propose(embedding, settings.threshold("prompter_threshold"))[0]
    masks, iou = predictor.masks(embedding, boxes=boxes)
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
        The chips' detections (`geosam.geometry.stitch.Detection`), chip by chip.
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
    detections: list[Detection], grid: SceneGrid, settings: DetectSettings
) -> gpd.GeoDataFrame:
    """Stitched ship polygons (one Polygon each) in the scene CRS with a score each.

    ``settings.max_ship_length_px`` bounds the length of a ship joined from cut pieces
    (scene pixels, see `geosam.geometry.stitch`). Attributes come later.
    """
    geoms, scores = stitch(
        detections, grid.transform, max_ship_length_px=settings.max_ship_length_px
    )
    frame = gpd.GeoDataFrame({"score": np.round(scores, 4)}, geometry=geoms, crs=grid.crs)
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
) -> gpd.GeoDataFrame:
    """Ship polygons of one open scene in its CRS, with a score each (before attributes)."""
    prompts = open_prompts(chips, prompt_layer_path, prompt_layer_name)
    detections: list[Detection] = []
    grid, total = chips.reader.grid, len(chips.chips)
    batch: list[ChipSample] = []
    done = 0
    for sample in chips.samples():  # read ahead in threads while the model works
        batch.append(sample)
        if len(batch) == settings.batch_chips or done + len(batch) == total:
            detections += detect_chips(batch, grid, predictor, settings, prompts)
            done, batch = done + len(batch), []
            if progress is not None:
                progress(done, total)
    return scene_frame(detections, grid, settings)


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
    scheduler: str | None = None,
    workers: int | None = None,
) -> dict[str, gpd.GeoDataFrame]:
    """Detect ships on `scenes` and write one layer per scene (named after it) to `output`.

    Chip size, overlap, bands and stretch come from the model's metadata; `chip_overrides`
    (e.g. ``{"overlap": 64}``) replaces single fields. With several scenes, `mask_raster` and
    `preview` get the scene name appended (``mask_<scene>.tif``).

    Detection runs in this process by default. With `scheduler` (the address of a running Dask
    scheduler, e.g. ``tcp://host:8786``) or `workers` (start a local Dask cluster of that many
    processes), batches of chips run as Dask tasks instead and the layers are the same; see
    `geosam.pipelines.distributed_detect`. This needs the ``dask`` extra.

    `progress(scene, done, total)` is called with the chips done so far.
    """
    settings = settings or DetectSettings()
    on_cluster = scheduler is not None or workers is not None
    if on_cluster:
        from geosam.pipelines.distributed_detect import check_cluster_options

        check_cluster_options(scheduler, workers)
    extras = {"mask": mask_raster, "preview": preview}
    targets = [Path(output)] + [
        per_scene_path(p, Path(sc).stem, len(scenes)) for p in extras.values() if p for sc in scenes
    ]
    for target in targets:
        refuse_existing(target, overwrite)
    names = [Path(scene).stem for scene in scenes]

    def report(name: str) -> Callable[[int, int], None]:
        def scene_progress(done: int, total: int) -> None:
            if progress is not None:
                progress(name, done, total)

        return scene_progress

    def finish(name: str, chips: SceneChips, frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        layer = _with_attributes(frame, name, Path(model_path))
        log.info("%s: %d ships", name, len(frame))
        if mask_raster:
            write_mask_raster(per_scene_path(mask_raster, name, len(scenes)), chips.reader, layer)
        if preview:
            write_preview(per_scene_path(preview, name, len(scenes)), chips.reader, layer)
        return layer

    found: dict[int, gpd.GeoDataFrame] = {}
    if on_cluster:
        from geosam.pipelines.distributed_detect import connect, detect_on_cluster

        _, meta = load_model_file(model_path)  # the workers load the model itself
        chip_settings = _chip_settings(meta, chip_overrides)
        settings = settings.for_model(meta)
        with connect(scheduler, workers) as client:
            results = detect_on_cluster(
                client,
                scenes,
                chip_settings,
                settings,
                model_path,
                checkpoint,
                prompts,
                prompts_layer,
                [report(name) for name in names],
            )
            for index, scene_settings, detections in results:
                # Reopened with the stretch the workers used: the same pixels for the extras.
                with SceneChips(scenes[index], settings=scene_settings) as chips:
                    frame = scene_frame(detections, chips.reader.grid, settings)
                    found[index] = finish(names[index], chips, frame)
    else:
        device = pick_device(settings.device)
        model, meta = load_detector(model_path, device, checkpoint)
        chip_settings = _chip_settings(meta, chip_overrides)
        settings = settings.for_model(meta)
        log.info(
            "operating point: proposals >= %.2f, ships scoring >= %.2f, stitched ships <= %s px",
            settings.prompter_threshold,
            settings.min_score,
            settings.max_ship_length_px,
        )
        predictor = ChipPredictor(model, device)
        for index, scene in enumerate(scenes):
            # One open scene serves detection, the mask raster and the preview (one stretch).
            with SceneChips(scene, settings=chip_settings) as chips:
                report_scene = report(names[index])
                frame = detect_scene(
                    chips, predictor, settings, prompts, prompts_layer, report_scene
                )
                found[index] = finish(names[index], chips, frame)
    layers = {names[i]: found[i] for i in range(len(scenes))}
    write_ship_layers(output, layers, overwrite=overwrite)
    return layers


def per_scene_path(path: str | os.PathLike[str], scene: str, scenes: int) -> Path:
    """`path` itself for one scene, else ``<stem>_<scene><suffix>``."""
    p = Path(path)
    return p if scenes == 1 else p.with_name(f"{p.stem}_{scene}{p.suffix}")


def _chip_settings(meta: dict[str, Any], overrides: dict[str, Any] | None) -> ChipSettings:
    chip_settings = ChipSettings.from_dict(meta["chip_settings"])
    return replace(chip_settings, **overrides) if overrides else chip_settings


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
