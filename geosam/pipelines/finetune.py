"""`geosam finetune`: teach SAM's mask decoder and the ship prompter from annotated scenes.

Run folder:
    model.pt       best weights by validation IoU, with the metadata `detect` needs
    last.pt        full resumable state after the last finished epoch
    metrics.csv    one row per epoch; curves.png draws it
    finetune.log   the run's log

Under `torchrun` (see `geosam.pipelines.distributed`) every process trains on its share of each
batch and only rank 0 writes these files; the result equals a single process's.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from geosam.data.prompts import PromptSettings
from geosam.data.settings import ChipSettings
from geosam.errors import CheckpointError, ResumeError
from geosam.io.atomic import atomic_path, atomic_write_text, refuse_existing
from geosam.model.device import pick_device
from geosam.model.model_file import save_model_file
from geosam.model.registry import get_spec
from geosam.pipelines.distributed import (
    barrier,
    broadcast_from_main,
    launched,
    process_group,
)
from geosam.pipelines.finetune_settings import EpochEvent, FinetuneSettings
from geosam.pipelines.run_report import write_curves, write_metrics
from geosam.pipelines.time_budget import rounds_within
from geosam.pipelines.trainer import Trainer
from geosam.pipelines.training_data import TrainingPair, load_training_chips, with_scale_rule

log = logging.getLogger(__name__)

BEFORE_RECORDED = {"colour_jitter": False}
"""Settings as they were for runs recorded before the setting existed: a resumed old run
continues as it started, whatever today's default."""


def finetune(
    pairs: list[TrainingPair],
    run_dir: str | Path,
    chip_settings: ChipSettings | None = None,
    settings: FinetuneSettings | None = None,
    prompts: PromptSettings | None = None,
    overwrite: bool = False,
    report: Callable[[EpochEvent], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune on annotated scenes; returns the best epoch's metrics.

    Chips are exactly the model's input size (256 px for `tiny`, 1024 px for `vit_*`), so
    `chip_settings.size` is replaced by it; the overlap defaults to an eighth of a chip.
    Under `torchrun` every process calls this (and `report`, on every rank) and only rank 0
    writes the run folder.
    """
    settings = settings or FinetuneSettings()
    prompts = prompts or PromptSettings()
    spec = get_spec(settings.model_type)
    ranks = launched()
    # Fail before reading any scene.
    device = pick_device(settings.device, ranks.local_rank if ranks.distributed else None)
    chip_settings = chip_settings or ChipSettings(
        size=spec.image_size, overlap=spec.image_size // 8
    )
    if chip_settings.size != spec.image_size:
        overlap = min(chip_settings.overlap, spec.image_size // 2)
        chip_settings = replace(chip_settings, size=spec.image_size, overlap=overlap)
    out = Path(run_dir)
    with process_group(ranks, device):
        if out.exists():
            refuse_existing(out, overwrite)
        chip_settings = with_scale_rule(pairs, chip_settings)
        chips, resolved = load_training_chips(pairs, chip_settings)
        recorded = (
            resolved[0]
            if len(resolved) == 1
            else replace(resolved[0], stretch=chip_settings.stretch)
        )
        if ranks.distributed:
            barrier()  # every rank has looked at the run folder before rank 0 makes it
        if ranks.main:
            out.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(chips, recorded, settings, prompts, out, pairs, ranks)
        return _run(trainer, report)


def resume_finetune(
    run_dir: str | Path,
    report: Callable[[EpochEvent], None] | None = None,
    steps: int | None = None,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Continue a run from its `last.pt` exactly where it stopped (with any number of ranks).

    With `steps` (or `epochs`, for a run counted in epochs) the run trains on to that new
    total, as trainers do when their limit is raised: the learning-rate schedule is stretched
    to the new total (so the figures differ from a run started with it), and a run that
    stopped early trains on, with no time budget. Without them, the resumed run equals an
    uninterrupted one.
    """
    out = Path(run_dir)
    path = out / "last.pt"
    if not path.exists():
        raise CheckpointError(f"{path}: no resumable state; start the run again without --resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        config = state["config"]
    except Exception as exc:  # any unreadable pickle is the same user-facing problem
        raise CheckpointError(f"{path}: unreadable (corrupt or truncated?); start again") from exc
    pairs = [TrainingPair(Path(p["scene"]), Path(p["labels"]), p["layer"]) for p in config["pairs"]]
    chip_settings = ChipSettings.from_dict(config["chip_settings"])
    settings = FinetuneSettings(**{**BEFORE_RECORDED, **config["finetune_settings"]})
    done = state["trainer"]
    longer = _longer(settings, steps, epochs, int(done["global_step"]), int(done["epoch"]), out)
    prompts = PromptSettings(**config["prompt_settings"])
    ranks = launched()
    device = pick_device(settings.device, ranks.local_rank if ranks.distributed else None)
    with process_group(ranks, device):
        chips, _ = load_training_chips(pairs, chip_settings)
        trainer = Trainer(chips, chip_settings, longer, prompts, out, pairs, ranks)
        trainer.load_resume_state(done)
        if longer != settings:
            trainer.stale_epochs = 0  # the user asked for more: early stopping starts afresh
        log.info("resuming %s after epoch %d of %d", out, trainer.epoch, trainer.epochs)
        return _run(trainer, report)


def _longer(
    settings: FinetuneSettings,
    steps: int | None,
    epochs: int | None,
    steps_done: int,
    epochs_done: int,
    out: Path,
) -> FinetuneSettings:
    """`settings` with the raised total of a resumed run; refuses a total it cannot train to."""
    if steps is None and epochs is None:
        return settings
    by_epochs = settings.epochs is not None
    if (epochs if by_epochs else steps) is None:
        unit = "--epochs" if by_epochs else "--steps"
        raise ResumeError(f"{out}: this run counts its length in {unit[2:]}; give {unit} instead")
    if by_epochs:
        assert epochs is not None
        if epochs <= epochs_done:
            raise ResumeError(
                f"{out}: has trained {epochs_done} epochs already; give --epochs above "
                f"{epochs_done} to train longer"
            )
        return replace(settings, epochs=epochs, minutes=None)
    assert steps is not None
    if steps <= steps_done:
        raise ResumeError(
            f"{out}: has trained {steps_done} steps already; give --steps above {steps_done} "
            "to train longer"
        )
    return replace(settings, steps=steps, minutes=None)


@contextlib.contextmanager
def _run_log(path: Path | None) -> Iterator[None]:
    """Copy the package's log from INFO up into `path` during the block (None: no file)."""
    if path is None:
        yield
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package_log = logging.getLogger("geosam")
    level = package_log.level
    package_log.setLevel(min(level or logging.WARNING, logging.INFO))
    package_log.addHandler(handler)
    try:
        yield
    finally:
        package_log.removeHandler(handler)
        package_log.setLevel(level)
        handler.close()


UNFINISHED = "UNFINISHED"
"""A file in a run folder while its run has not reached its end (stopped, killed, or still
training): its model.pt is the best so far, not the run's result."""


@contextlib.contextmanager
def _flush_denormals(on: bool) -> Iterator[None]:
    """Flush denormal floats to zero during the block (CPU training), then restore the state.

    Denormals slow CPU steps about 8x while masks collapse early in training. The flag is the
    processor's, for the whole process, so it is put back as it was: a user's process (or
    a test run) must not keep flushing after `finetune` returns.
    """
    smallest_normal = 2.2250738585072014e-308
    before = smallest_normal / 2 == 0.0  # True when the processor already flushes
    if on and not before:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if on and not before:
            torch.set_flush_denormal(False)


def _run(trainer: Trainer, report: Callable[[EpochEvent], None] | None) -> dict[str, Any]:
    with _flush_denormals(trainer.device.type == "cpu"):
        return _train(trainer, report)


def _train(trainer: Trainer, report: Callable[[EpochEvent], None] | None) -> dict[str, Any]:
    out = trainer.run_dir
    main = trainer.ranks.main
    marker = out / UNFINISHED
    if main:
        if trainer.epoch >= trainer.epochs or trainer.stale_epochs >= trainer.settings.patience:
            log.warning(
                "%s: the run has finished; nothing to train (give --steps to train longer)", out
            )
        atomic_write_text(
            marker,
            "This run has not finished: model.pt is the best model so far.\n"
            f"Continue it with: geosam finetune --resume {out}\n",
        )
    with _run_log(out / "finetune.log" if main else None):
        settings = trainer.settings
        while trainer.epoch < trainer.epochs and trainer.stale_epochs < settings.patience:
            started = time.perf_counter()
            calls_before = trainer.cache.encoder_calls
            loss = trainer.train_epoch(report)
            metrics = trainer.validate()
            trainer.epoch += 1
            row = {
                "epoch": trainer.epoch,
                "step": trainer.global_step,
                "train_loss": loss,
                **metrics,
                "lr": float(trainer.scheduler.get_last_lr()[0]),
                "encoder_calls": int(
                    trainer.sum_over_ranks(trainer.cache.encoder_calls - calls_before)
                ),
                "seconds": time.perf_counter() - started,
            }
            trainer.history.append(row)
            log.info(
                "epoch %d: %s",
                trainer.epoch,
                ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"),
            )
            if metrics["val_score"] > trainer.best_score:
                trainer.best_score, trainer.stale_epochs = metrics["val_score"], 0
                if main:
                    save_model_file(out / "model.pt", trainer.saved_state(), trainer.metadata(row))
            else:
                trainer.stale_epochs += 1
            if settings.minutes is not None:
                _fit_to_budget(trainer, settings.minutes)
            if main:
                _save_resume(trainer)
                write_metrics(out / "metrics.csv", trainer.history)
            if report:
                report(
                    EpochEvent(
                        trainer.epoch,
                        trainer.epochs,
                        trainer.steps_per_epoch,
                        trainer.steps_per_epoch,
                        loss,
                        row,
                    )
                )
        if trainer.stale_epochs >= settings.patience:
            log.info("early stop: validation IoU did not improve for %d epochs", settings.patience)
        elif trainer.fitted_rounds is not None:
            log.info("stopped at the time budget after %d steps", trainer.global_step)
        if main:
            write_curves(out / "curves.png", trainer.history)
            marker.unlink(missing_ok=True)
        best = max(trainer.history, key=lambda r: r["val_score"]) if trainer.history else {}
        encoder_calls = int(trainer.sum_over_ranks(trainer.cache.encoder_calls))
        if trainer.ranks.distributed:
            barrier()  # no rank returns before the run folder is complete
        return {
            **best,
            "encoder_calls": encoder_calls,
            "train_chips": len(trainer.train_idx),
            "val_chips": len(trainer.val_idx),
        }


def _fit_to_budget(trainer: Trainer, minutes: float) -> None:
    """Shorten the run to the rounds its time budget still allows (the same on every rank)."""
    spent = [float(row["seconds"]) for row in trainer.history]
    rounds = rounds_within(minutes * 60, spent, trainer.epochs)
    if trainer.ranks.distributed:  # each rank timed itself: all follow rank 0, stop together
        decided = torch.tensor([rounds], dtype=torch.int64, device=trainer.device)
        broadcast_from_main([decided])
        rounds = int(decided)
    if rounds < trainer.epochs:
        planned = trainer.epochs
        trainer.shorten_to(rounds)
        log.info(
            "time budget of %g min: %.0f s per round so far, so %d rounds (%d steps) instead of %d",
            minutes,
            sum(spent) / len(spent),
            rounds,
            trainer.total_steps,
            planned,
        )


def _save_resume(trainer: Trainer) -> None:
    config = {
        "pairs": [
            {"scene": str(p.scene), "labels": str(p.labels), "layer": p.layer}
            for p in trainer.pairs
        ],
        "chip_settings": trainer.chip_settings.to_dict(),
        "finetune_settings": asdict(trainer.settings),
        "prompt_settings": trainer.prompts.to_dict(),
    }
    with atomic_path(trainer.run_dir / "last.pt") as tmp:
        torch.save({"config": config, "trainer": trainer.resume_state()}, tmp)
