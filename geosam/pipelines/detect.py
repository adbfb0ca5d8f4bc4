"""`geosam detect`: ships on new scenes as one georeferenced polygon each, in one layer file.

Each scene is detected in this process (`geosam.pipelines.detect_scene`) or on a Dask
cluster (`geosam.pipelines.distributed_detect`); attributes are measured and the layers
written. Every output (the ship layer, mask rasters, previews) is written under a hidden
name and renamed when all are complete, so a failed or killed run leaves none of them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from geosam.data.samples import SceneChips
from geosam.data.scale import pixel_metres
from geosam.data.settings import ChipSettings
from geosam.io.area_layer import AREA_FIX
from geosam.io.atomic import refuse_existing
from geosam.io.footprints import existing_file
from geosam.io.preview import write_mask_raster, write_preview
from geosam.io.prompt_layer import PROMPTS_FIX
from geosam.io.ship_attributes import ship_attributes
from geosam.io.ship_layers import write_ship_layers
from geosam.io.staging import StagedFiles
from geosam.model.device import pick_device
from geosam.model.model_file import load_model_file
from geosam.model.predict import ChipPredictor, load_detector
from geosam.pipelines.detect_scene import DetectSettings, detect_scene, open_area, scene_frame

log = logging.getLogger(__name__)

__all__ = ["DetectSettings", "detect", "per_scene_path"]


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
    within: str | os.PathLike[str] | None = None,
    within_layer: str | None = None,
) -> dict[str, gpd.GeoDataFrame]:
    """Detect ships on `scenes` and write one layer per scene (named after it) to `output`.

    Chip size, overlap, bands and stretch come from the model's metadata; `chip_overrides`
    (e.g. ``{"overlap": 64}``) replaces single fields. With several scenes, `mask_raster` and
    `preview` get the scene name appended (``mask_<scene>.tif``).

    `within` (polygons, e.g. water, any CRS; layer `within_layer`) restricts detection to an
    area: only chips near it are read, and a ship is kept when a point inside its outline
    lies in it (`geosam.io.area_layer`).

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
    for given, fix in ((prompts, PROMPTS_FIX), (within, AREA_FIX)):
        if given is not None:
            existing_file(given, fix)  # before a model of gigabytes loads
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
            mask_path = staged.path(per_scene_path(mask_raster, name, len(scenes)))
            write_mask_raster(mask_path, chips.reader, layer)
        if preview:
            write_preview(
                staged.path(per_scene_path(preview, name, len(scenes))), chips.reader, layer
            )
        return layer

    with StagedFiles() as staged:
        ships_path = staged.path(output)  # registered first: renamed last, once all is in
        found: dict[int, gpd.GeoDataFrame] = {}
        if on_cluster:
            from geosam.pipelines.distributed_detect import connect, detect_on_cluster

            _, meta = load_model_file(model_path)  # the workers load the model itself
            chip_settings = _chip_settings(meta, chip_overrides)
            per_scene = [_scene_settings(settings, meta, scene) for scene in scenes]
            with connect(scheduler, workers) as client:
                results = detect_on_cluster(
                    client,
                    scenes,
                    chip_settings,
                    per_scene,
                    model_path,
                    checkpoint,
                    prompts,
                    prompts_layer,
                    [report(name) for name in names],
                    within,
                    within_layer,
                )
                for index, scene_settings, detections, area in results:
                    # Reopened with the stretch the workers used: the same pixels for the extras.
                    with SceneChips(scenes[index], settings=scene_settings) as chips:
                        grid = chips.reader.grid
                        frame = scene_frame(detections, grid, per_scene[index], area)
                        found[index] = finish(names[index], chips, frame)
        else:
            device = pick_device(settings.device)
            model, meta = load_detector(model_path, device, checkpoint)
            chip_settings = _chip_settings(meta, chip_overrides)
            predictor = ChipPredictor(model, device)
            for index, scene in enumerate(scenes):
                resolved = _scene_settings(settings, meta, scene)
                # One open scene serves detection, the mask raster and the preview (one stretch).
                with SceneChips(scene, settings=chip_settings) as chips:
                    report_scene = report(names[index])
                    area = open_area(chips, within, within_layer)
                    frame = detect_scene(
                        chips, predictor, resolved, prompts, prompts_layer, report_scene, area
                    )
                    found[index] = finish(names[index], chips, frame)
        layers = {names[i]: found[i] for i in range(len(scenes))}
        write_ship_layers(ships_path, layers, overwrite=True)  # the hidden name, refused above
    return layers


def per_scene_path(path: str | os.PathLike[str], scene: str, scenes: int) -> Path:
    """`path` itself for one scene, else ``<stem>_<scene><suffix>``."""
    p = Path(path)
    return p if scenes == 1 else p.with_name(f"{p.stem}_{scene}{p.suffix}")


def _scene_settings(
    settings: DetectSettings, meta: dict[str, Any], scene: str | os.PathLike[str]
) -> DetectSettings:
    """`settings` resolved for one scene: the model's operating point for its pixel size."""
    resolved = settings.for_model(meta, pixel_metres(scene))
    log.info(
        "%s: operating point: proposals >= %.2f, ships scoring >= %.2f, masks cut at logit "
        "%+.1f, stitched ships <= %s px",
        Path(scene).name,
        resolved.prompter_threshold,
        resolved.min_score,
        resolved.mask_cut,
        resolved.max_ship_length_px,
    )
    return resolved


def _chip_settings(meta: dict[str, Any], overrides: dict[str, Any] | None) -> ChipSettings:
    """The model's chip settings with `overrides`; other bands take the recorded stretch along.

    A model trained on one 16-bit scene records that scene's stretch, for its bands; with
    other bands (``--bands``) the stretch moves to them (`Stretch.for_bands`) or, if it was
    estimated band by band, is estimated again on each scene.
    """
    chip_settings = ChipSettings.from_dict(meta["chip_settings"])
    if not overrides:
        return chip_settings
    chosen = replace(chip_settings, **overrides)
    recorded = chip_settings.stretch
    if "bands" in overrides and "stretch" not in overrides and recorded is not None:
        moved = recorded.for_bands(overrides["bands"])
        if moved is None:
            log.warning(
                "the model's stretch was estimated band by band for bands %s; bands %s get "
                "a stretch estimated on each scene",
                ",".join(map(str, recorded.bands)),
                ",".join(map(str, overrides["bands"])),
            )
        chosen = replace(chosen, stretch=moved)
    return chosen


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
