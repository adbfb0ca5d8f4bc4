"""`geosam detect SCENE... --model RUN_DIR/model.pt -o SHIPS.gpkg`: ships as polygons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geosam.cli.options import device_opt, overwrite_opt
from geosam.cli.progress import ProgressBar, progress_mode
from geosam.io.bands import parse_bands
from geosam.pipelines.detect import DetectSettings, detect


@click.command()
@click.argument("scenes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="model.pt written by `geosam finetune`.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output: .gpkg (one layer per scene, styled for QGIS), .geojson or .fgb.",
)
@click.option(
    "--prompts",
    type=click.Path(path_type=Path),
    default=None,
    help="Vector layer of boxes (polygons) or points, e.g. another detector or AIS "
    "positions: one ship per prompt, instead of the learned prompter. A polygon's bounding "
    "box bounds its ship: the mask stays inside it.",
)
@click.option("--prompts-layer", default=None, help="Layer of --prompts.")
@click.option(
    "--within",
    type=click.Path(path_type=Path),
    default=None,
    metavar="AREA",
    help="Look for ships only inside these polygons (water, a harbour outline; any CRS): "
    "chips away from them are not read, and a ship is kept when its outline's centre lies "
    "inside. Keeps roofs and quays out of a port's results.",
)
@click.option("--within-layer", default=None, help="Layer of --within.")
@click.option(
    "--point-grid",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Prompt with an N x N point grid per chip instead of the learned prompter.",
)
@click.option(
    "--min-score",
    type=click.FloatRange(0, 1),
    default=None,
    help="Keep ships scoring at least this (prompter centre score x predicted IoU). "
    "Default: the threshold with the best F1 on the validation chips, stored in the model.",
)
@click.option(
    "--mask-cut",
    type=float,
    default=None,
    metavar="LOGIT",
    help="A mask holds the pixels whose logit is above this (SAM's own cut is 0). Default: "
    "the cut with the best box-prompt IoU on the validation ships of the scene's sensor, "
    "stored in the model. A mask is kept inside its box; a mask no box bounds (a lone "
    "point's, a proposal's first) is cut no lower than 0.",
)
@click.option(
    "--prompter-threshold",
    type=click.FloatRange(0, 1),
    default=None,
    help="Minimum centre score of a proposed ship. Default: the model's (0.1 for models "
    "trained by this version).",
)
@click.option(
    "--simplify",
    type=click.FloatRange(min=0),
    default=None,
    metavar="TOLERANCE",
    help="Simplify polygons (scene CRS units).",
)
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    default=None,
    help="Override the chip overlap recorded in the model.",
)
@click.option(
    "--bands",
    default=None,
    metavar="R,G,B",
    help="Override the recorded bands (e.g. 1 on a one-band scene); the recorded stretch "
    "moves with them.",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="Base SAM checkpoint, if not where training found it.",
)
@click.option(
    "--mask-raster",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the ship mask as a Cloud-Optimized GeoTIFF.",
)
@click.option(
    "--preview",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a PNG of the ships drawn over the scene.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Start a Dask cluster of N worker processes on this machine and detect on it; each "
    'worker loads the model once. Needs the extra: pip install "geosam-ships[dask]". '
    "Example: --workers 4",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    default=None,
    help="Detect on a running Dask cluster, e.g. `dask scheduler` on one machine, "
    "`dask worker tcp://HOST:8786 --nthreads 1` on each, then --scheduler tcp://HOST:8786. "
    "Workers must see the scenes and model under the same paths (a shared filesystem).",
)
@device_opt
@overwrite_opt
@click.pass_context
def detect_cmd(
    ctx: click.Context,
    /,
    scenes: tuple[Path, ...],
    model_path: str,
    output: Path,
    prompts: Path | None,
    prompts_layer: str | None,
    within: Path | None,
    within_layer: str | None,
    point_grid: int | None,
    min_score: float | None,
    mask_cut: float | None,
    prompter_threshold: float | None,
    simplify: float | None,
    overlap: int | None,
    bands: str | None,
    checkpoint: str | None,
    mask_raster: Path | None,
    preview: Path | None,
    workers: int | None,
    scheduler: str | None,
    device: str,
    overwrite: bool,
) -> None:
    """Find ships on SCENES with a fine-tuned model; write one polygon per ship.

    Chip size, bands and stretch come from the model, so no flag is needed that training
    already decided. Ships seen by several overlapping chips become one feature. Attributes:
    id, score, area_m2, length_m, width_m, heading_deg, lon, lat, scene, model.

    Runs in this process by default. --workers or --scheduler send batches of chips to Dask
    workers instead (same result); stitching and writing stay here.

    \b
    Examples:
      geosam detect new.tif --model run/model.pt -o ships.gpkg
      geosam detect a.tif b.tif --model run/model.pt -o ships.gpkg --preview ships.png
      geosam detect new.tif --model run/model.pt -o ships.gpkg --prompts ais.gpkg
      geosam detect port.tif --model run/model.pt -o ships.gpkg --within water.gpkg
      geosam detect scenes/*.tif --model run/model.pt -o ships.gpkg --workers 4
      geosam detect scenes/*.tif --model run/model.pt -o ships.gpkg --scheduler tcp://head:8786
    """
    if workers is not None and scheduler is not None:
        raise click.UsageError(
            "--workers starts a local cluster, --scheduler uses a running one: give one of them"
        )
    quiet = bool(ctx.obj and ctx.obj.get("quiet"))
    overrides: dict[str, Any] = {}
    if overlap is not None:
        overrides["overlap"] = overlap
    if bands:
        overrides["bands"] = parse_bands(bands)
    settings = DetectSettings(
        prompter_threshold=prompter_threshold,
        min_score=min_score,
        mask_cut=mask_cut,
        point_grid=point_grid,
        simplify=simplify,
        device=device,
    )
    bars: dict[str, ProgressBar] = {}
    mode = progress_mode(ctx)

    def progress(scene: str, done: int, total: int) -> None:
        bar = bars.setdefault(scene, ProgressBar(f"detecting {scene}", "chip", quiet, mode))
        bar(done, total)

    try:
        layers = detect(
            list(scenes),
            model_path,
            output,
            settings,
            overrides,
            prompts,
            prompts_layer,
            checkpoint,
            mask_raster,
            preview,
            overwrite,
            progress,
            scheduler=scheduler,
            workers=workers,
            within=within,
            within_layer=within_layer,
        )
    finally:
        for bar in bars.values():
            bar.__exit__(None, None, None)
    if not quiet:
        for name, frame in layers.items():
            click.echo(f"{name}: {len(frame)} ships")
        click.echo(f"written to {output}")
