"""`geosam finetune SCENE SHIPS --out RUN_DIR`: fine-tune SAM on annotated scenes."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from geosam.cli.options import device_opt, overwrite_opt, per_band_stretch_opt, seed_opt
from geosam.cli.progress import progress_mode
from geosam.cli.training_progress import training_progress
from geosam.data.prompts import PromptSettings
from geosam.data.settings import ChipSettings
from geosam.io.bands import parse_bands
from geosam.model.registry import get_spec, model_names
from geosam.pipelines.distributed import launched
from geosam.pipelines.finetune import finetune, resume_finetune
from geosam.pipelines.finetune_settings import FinetuneSettings
from geosam.pipelines.training_data import TrainingPair, read_manifest
from geosam.pipelines.validation import thresholds_text


@click.command()
@click.argument("scene", type=click.Path(path_type=Path), required=False)
@click.argument("ships", type=click.Path(path_type=Path), required=False)
@click.option(
    "--layer",
    default=None,
    help="Footprint layer (default: the only one, or the one named after the scene).",
)
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CSV with columns scene,labels,layer to train on several scenes.",
)
@click.option(
    "--out",
    "run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run folder for model.pt, metrics.csv, curves.png, log.",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Continue the run in this folder exactly where it stopped.",
)
@click.option(
    "--model-type",
    type=click.Choice(model_names()),
    default="tiny",
    show_default=True,
    help="SAM variant; tiny trains from scratch, no download.",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="Official SAM checkpoint (default: the cache, see `geosam weights`).",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=FinetuneSettings.steps,
    show_default=True,
    help="Optimiser steps in all (early stopping may end sooner). The default trains the "
    "from-scratch tiny model to the accuracy bench/accuracy.py measures (13-30 min on 2 cores; "
    "--minutes caps the time instead).",
)
@click.option(
    "--val-every",
    type=click.IntRange(min=1),
    default=FinetuneSettings.val_every,
    show_default=True,
    help="Validate (and keep the model if it is the best so far) every this many steps.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Instead of --steps: this many passes over the training chips, validating after each.",
)
@click.option(
    "--minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Time budget for training and validation. After each round the rounds still "
    "affordable are judged from the rounds so far, and the run (with its learning-rate "
    "schedule) is shortened to fit; it never trains more than --steps. The step count then "
    "depends on the machine's speed. Default: no budget.",
)
@click.option(
    "--batch",
    "batch_chips",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Chips per step.",
)
@click.option(
    "--lr", type=float, default=FinetuneSettings.lr, show_default=True, help="Peak learning rate."
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=FinetuneSettings.patience,
    show_default=True,
    help="Stop after this many validations without a better score.",
)
@click.option(
    "--average-decay",
    type=click.FloatRange(0, 1, max_open=True),
    default=FinetuneSettings.average_decay,
    show_default=True,
    help="Validate and save a moving average of the weights over about 1/(1-DECAY) steps "
    "(0.995: the last ~200) rather than the last step's; 0 turns it off.",
)
@click.option(
    "--no-augment",
    is_flag=True,
    help="Do not train on flipped and rotated views of the chips (on by default).",
)
@click.option(
    "--paste-ships",
    type=click.IntRange(0, 10),
    default=FinetuneSettings.paste_ships,
    show_default=True,
    help="Paste up to N annotated ships, cut from training chips of the same scene, onto "
    "each training view where the surroundings match those they were cut from (open water). "
    "Needs a trained encoder (tiny).",
)
@click.option(
    "--colour-jitter/--no-colour-jitter",
    default=FinetuneSettings.colour_jitter,
    show_default=True,
    help="Show each training view with a random contrast, brightness and tint (within "
    "x1/1.2..1.2), as another stretch or scene would show the same ships. Applies to an "
    "encoder that trains (tiny); a frozen vit_* encoder reads cached views as they are.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 0.9),
    default=0.2,
    show_default=True,
    help="Share of ships (eastmost chips) held out for validation.",
)
@click.option(
    "--train-encoder/--freeze-encoder",
    default=None,
    help="Also train the image encoder. Default: only for models without pretrained "
    "weights (tiny); frozen encoders use the embedding cache.",
)
@click.option(
    "--box-jitter",
    type=click.FloatRange(0, 0.5),
    default=0.1,
    show_default=True,
    help="Training boxes move by up to this share of their side.",
)
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    default=None,
    help="Chip overlap in pixels (default: an eighth of the chip).",
)
@click.option("--bands", default=None, metavar="R,G,B", help="1-based bands for R,G,B.")
@click.option(
    "--gsd",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="METRES",
    help="Resample scenes on read to this ground sample distance in metres (any CRS). "
    "Default: each sensor's scenes are read by the factor (quarter steps) that brings their "
    "median ship nearest 48 px: finer for short ships (at most 4x; 10 m Sentinel-2 ports: "
    "3.6 m), coarser for ships over 96 px (at most 16x; 168 px ships at 0.125 m: 0.44 m), "
    "as they are in between; detect reads alike.",
)
@per_band_stretch_opt
@device_opt
@click.option("--no-cache", is_flag=True, help="Do not keep image embeddings on disk.")
@seed_opt
@overwrite_opt
@click.pass_context
def finetune_cmd(
    ctx: click.Context,
    /,
    scene: Path | None,
    ships: Path | None,
    layer: str | None,
    manifest: Path | None,
    run_dir: Path | None,
    resume_dir: Path | None,
    model_type: str,
    checkpoint: str | None,
    steps: int,
    val_every: int,
    epochs: int | None,
    minutes: float | None,
    batch_chips: int,
    lr: float,
    patience: int,
    average_decay: float,
    no_augment: bool,
    paste_ships: int,
    colour_jitter: bool,
    val_fraction: float,
    train_encoder: bool | None,
    box_jitter: float,
    overlap: int | None,
    bands: str | None,
    gsd: float | None,
    per_band_stretch: bool,
    device: str,
    no_cache: bool,
    seed: int,
    overwrite: bool,
) -> None:
    """Fine-tune SAM's mask decoder and a ship prompter on SCENE and its SHIPS footprints.

    One annotated scene is enough. Each step trains on a few chips, each seen in a random
    flip or quarter turn, with a box or point prompt per ship. Every --val-every steps the
    model is scored on the eastmost chips (box-prompt IoU and prompt-free F1); the best is
    kept in RUN_DIR/model.pt with the detection threshold that gave that F1, and Ctrl-C
    leaves a run that --resume continues exactly. Frozen encoders (vit_*) compute each
    chip view's embedding once and cache it.

    Under torchrun each process trains on its share of every --batch (on the GPU of its
    LOCAL_RANK), with the result of a single process; only rank 0 writes and reports.

    \b
    Examples:
      geosam finetune scene.tif ships.gpkg --out run/
      geosam finetune scene.tif ships.gpkg --layer harbour --model-type vit_b --out run/
      geosam finetune --manifest scenes.csv --out run/ --steps 3000 --seed 1
      geosam finetune scene.tif ships.gpkg --out run/ --minutes 20
      geosam finetune --resume run/
      torchrun --standalone --nproc-per-node 8 -m geosam finetune scene.tif ships.gpkg --out run/
    """
    quiet = bool(ctx.obj and ctx.obj.get("quiet"))
    ranks = launched()
    if not ranks.main:  # progress and logs from rank 0 only; errors from every rank
        quiet = True
        logging.getLogger("geosam").setLevel(logging.ERROR)
    report = training_progress(quiet, progress_mode(ctx))
    if resume_dir is not None:
        _refuse_settings_on_resume(ctx)
        given = {n for n in ("steps", "epochs") if _given(ctx, n)}
        metrics = resume_finetune(
            resume_dir,
            report,
            steps if "steps" in given else None,
            epochs if "epochs" in given else None,
        )
        _summary(metrics, resume_dir, quiet)
        return
    if manifest is not None:
        pairs = read_manifest(manifest)
    elif scene is not None and ships is not None:
        pairs = [TrainingPair(scene, ships, layer)]
    else:
        raise click.UsageError("give SCENE and SHIPS, or --manifest FILE, or --resume RUN_DIR")
    if run_dir is None:
        raise click.UsageError("give --out RUN_DIR for the model and its metrics")
    size = get_spec(model_type).image_size
    chip_settings = ChipSettings(
        size=size,
        overlap=size // 8 if overlap is None else overlap,
        bands=parse_bands(bands) if bands else None,
        gsd=gsd,
        per_band_stretch=per_band_stretch,
    )
    settings = FinetuneSettings(
        model_type=model_type,
        checkpoint=checkpoint,
        steps=steps,
        val_every=val_every,
        epochs=epochs,
        minutes=minutes,
        batch_chips=batch_chips,
        lr=lr,
        patience=patience,
        average_decay=average_decay,
        augment=not no_augment,
        paste_ships=paste_ships,
        colour_jitter=colour_jitter,
        val_fraction=val_fraction,
        train_encoder=train_encoder,
        device=device,
        seed=seed,
        cache=not no_cache,
    )
    prompts = PromptSettings(box_jitter=box_jitter)
    try:
        metrics = finetune(pairs, run_dir, chip_settings, settings, prompts, overwrite, report)
    except KeyboardInterrupt:
        if ranks.main:
            again = "torchrun ... -m geosam" if ranks.distributed else "geosam"
            click.echo(f"Interrupted; continue with: {again} finetune --resume {run_dir}", err=True)
        ctx.exit(130)
    _summary(metrics, run_dir, quiet)


RESUMABLE = ("resume_dir", "steps", "epochs", "device")
"""The options --resume takes: the raised length of the run and where to train it."""


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user gave option `name` (not its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source != click.core.ParameterSource.DEFAULT


def _refuse_settings_on_resume(ctx: click.Context) -> None:
    """A resumed run keeps its recorded settings; refuse, in one line, a flag it would ignore."""
    ignored = [
        f"--{name.replace('_', '-')}" if isinstance(param, click.Option) else name.upper()
        for param in ctx.command.params
        if (name := param.name or "") not in RESUMABLE and _given(ctx, name)
    ]
    if ignored:
        raise click.UsageError(
            f"--resume continues a run with its recorded settings; {', '.join(ignored)} cannot "
            "change (only --steps, --epochs and --device can); start a new run to change them"
        )


def _summary(metrics: dict[str, float], run_dir: Path, quiet: bool) -> None:
    if quiet:
        return
    click.echo(
        f"best at step {metrics.get('step', 0):.0f}: validation IoU "
        f"{metrics.get('val_iou', 0):.3f} "
        f"(filled box {metrics.get('box_iou', 0):.3f}), prompt-free F1 "
        f"{metrics.get('val_f1', 0):.2f} at {thresholds_text(metrics)}"
        f"\nmodel: {run_dir / 'model.pt'}"
    )
