"""4. Detection throughput and 5. training steps, on the model layer alone.

Random weights (no checkpoint exists offline): speed does not depend on their values. Detection
per chip: the batched encoder, the prompter, 16 box prompts decoded as a user's (each mask kept
inside its box), and the masks cut to crops and turned into detections, as `geosam detect
--prompts` does. Training: decoder steps of a
frozen-encoder `Trainer` on cached embeddings (the harbour of `embedding_cache`).
On CUDA (when a GPU is present) detection and training are also measured there, in bf16
autocast as `geosam` runs them, and the vit_b encoder in fp32 against bf16, with peak memory and
the largest encoder batch that fits.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Outcome, in_child, random_checkpoint, record

PROMPTS_PER_CHIP = 16
GPU_CASES = [("tiny", 64, 1), ("tiny", 64, 8), ("vit_b", 16, 1), ("vit_b", 16, 4)]
"""(model, chips, encoder batch) of detection measured on a GPU, in bf16 autocast."""


def _predictor(model_type: str, device: str) -> Any:
    import torch

    from geosam.model.checkpoints import RANDOM_INIT, load_sam
    from geosam.model.predict import ChipPredictor
    from geosam.model.shipsam import ShipSam

    torch.manual_seed(0)
    sam, _ = load_sam(model_type, random_checkpoint(model_type))
    model = ShipSam(sam, RANDOM_INIT, False).to(device).eval()
    return ChipPredictor(model, torch.device(device))


def detection_speed(model_type: str, chips: int, batch: int, device: str = "cpu") -> dict[str, Any]:
    """Chips per second through embed -> propose -> 16 box prompts -> detections."""
    import torch
    from affine import Affine

    from geosam.geometry.detections import crops_to_detections
    from geosam.geometry.grid import chip_grid
    from geosam.geometry.masks import crop_masks

    predictor = _predictor(model_type, device)
    size = predictor.model.chip_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (chips, 3, size, size), dtype=np.uint8)
    starts = rng.uniform(0, size - 64, (PROMPTS_PER_CHIP, 2))
    boxes = np.hstack([starts, starts + rng.uniform(8, 64, (PROMPTS_PER_CHIP, 2))]).astype(
        np.float32
    )
    grid = chip_grid(size * 4, size * 4, Affine(1, 0, 0, 0, -1, 0), size, 0)

    def once(n: int) -> None:
        for start in range(0, n, batch):
            embeddings = predictor.embed(images[start : start + batch])
            predictor.propose(embeddings, 0.3)
            for j in range(len(embeddings)):
                masks, iou = predictor.prompted_masks(embeddings[j : j + 1], boxes=boxes)
                crops_to_detections(crop_masks(masks), iou, grid[5], size * 4, size * 4)

    once(min(batch, chips))  # warm-up: allocator, kernels
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    once(chips)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {"chips_per_s": chips / seconds, "seconds": seconds, "chips": chips, "batch": batch}
    if device == "cuda":
        result["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def gpu_detection(model_type: str) -> dict[str, Any]:
    """fp32 vs bf16 chips/s, peak GPU memory, and the largest encoder batch that fits."""
    import torch

    out: dict[str, Any] = {}
    for name, autocast in (("fp32", False), ("bf16", True)):
        predictor = _predictor(model_type, "cuda")
        predictor.autocast = autocast
        images = torch.randint(0, 255, (8, 3, 1024, 1024), dtype=torch.uint8).numpy()
        predictor.embed(images[:2])
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for k in range(0, 8, 4):
            predictor.embed(images[k : k + 4])
        torch.cuda.synchronize()
        out[name] = {
            "chips_per_s": 8 / (time.perf_counter() - start),
            "peak_gib_batch4": torch.cuda.max_memory_allocated() / 2**30,
        }
        largest, batch = 0, 4
        while batch <= 256:
            try:
                predictor.embed(np.zeros((batch, 3, 1024, 1024), np.uint8))
                largest, batch = batch, batch * 2
            except torch.OutOfMemoryError:
                break
            finally:
                torch.cuda.empty_cache()
        out[name]["largest_batch"] = largest
    return out


def training_speed(
    model_type: str, epochs: int, device: str = "cpu", round_steps: int = 100
) -> dict[str, Any]:
    """Decoder steps per second of a frozen-encoder Trainer, embeddings fetched beforehand.

    One warm-up round and `epochs` timed rounds of `round_steps` steps each.
    """
    from bench.embedding_cache import harbour
    from geosam.data.prompts import PromptSettings
    from geosam.data.settings import ChipSettings
    from geosam.model.registry import get_spec
    from geosam.pipelines.finetune_settings import FinetuneSettings
    from geosam.pipelines.trainer import Trainer
    from geosam.pipelines.training_data import TrainingPair, load_training_chips

    scene, labels = harbour(model_type)
    size = get_spec(model_type).image_size
    chips, resolved = load_training_chips(
        [TrainingPair(scene, labels)], ChipSettings(size=size, overlap=size // 8)
    )
    settings = FinetuneSettings(
        model_type=model_type,
        checkpoint=random_checkpoint(model_type),
        train_encoder=False,
        cache=False,
        device=device,
        val_every=round_steps,
    )
    prompts = PromptSettings()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(chips, resolved[0], settings, prompts, Path(tmp))
        trainer.embeddings([0], grad=False)  # encode every chip once, outside the timing
        trainer.train_epoch(None)  # warm-up
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(epochs):
            trainer.train_epoch(None)
        _synchronize(device)
        seconds = time.perf_counter() - start
    steps = trainer.steps_per_epoch * epochs
    per_step = settings.batch_chips * (prompts.ships_per_chip + prompts.background_points)
    return {
        "steps_per_s": steps / seconds,
        "steps": steps,
        "max_prompts_per_step": per_step,
        "train_chips": len(trainer.train_idx),
    }


def _where(device: str) -> str:
    return "GPU (bf16)" if device == "cuda" else "CPU"


def _synchronize(device: str) -> None:
    """Wait for queued GPU work, so that a timer reads the work done rather than launched."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def run(quick: bool) -> Outcome:
    import torch

    figures: list[str] = []
    gpu = torch.cuda.is_available()
    cases = [(*case, "cuda") for case in GPU_CASES] if gpu else []  # first: the scarce ones
    cases += [("tiny", 16, 1, "cpu"), ("tiny", 16, 4, "cpu")]
    if not quick:
        cases += [("vit_b", 2, 1, "cpu"), ("vit_b", 2, 2, "cpu")]
    if gpu:
        g = in_child("model_speed:gpu_detection", model_type="vit_b")
        for name in ("fp32", "bf16"):
            record(
                figures,
                f"GPU vit_b encoder {name}: {g[name]['chips_per_s']:.3g} chips/s, peak "
                f"{g[name]['peak_gib_batch4']:.2f} GiB at batch 4, largest batch "
                f"{g[name]['largest_batch']}",
            )
    speed = {}
    for model_type, chips, batch, device in cases:
        r = in_child(
            "model_speed:detection_speed",
            model_type=model_type,
            chips=chips,
            batch=batch,
            device=device,
        )
        peak = f", peak {r['peak_gpu_gib']:.2f} GiB" if device == "cuda" else ""
        speed[(model_type, batch, device)] = r["chips_per_s"]
        record(
            figures,
            f"detect {model_type} on {_where(device)}, encoder batch {batch}: "
            f"{r['chips_per_s']:.3g} chips/s{peak} ({r['chips']} chips, {PROMPTS_PER_CHIP} "
            "box prompts each)",
        )
    # The issue sets no target here: figures only. On a CPU batching the encoder is about
    # neutral (its matrix products already use every core); on a GPU it is what fills it.
    figures.append(
        f"tiny encoder batch 4 / batch 1 on CPU: "
        f"{speed[('tiny', 4, 'cpu')] / speed[('tiny', 1, 'cpu')]:.2f}x"
    )
    devices = ("cuda", "cpu") if gpu else ("cpu",)
    for model_type, device in itertools.product(("tiny",) if quick else ("tiny", "vit_b"), devices):
        # vit_b on 2 CPU cores makes under 0.25 steps/s: 3 x 100 steps took over 20 minutes.
        steps = 10 if (model_type, device) == ("vit_b", "cpu") else 100
        r = in_child(
            "model_speed:training_speed",
            model_type=model_type,
            epochs=2,
            device=device,
            round_steps=steps,
        )
        record(
            figures,
            f"train {model_type} decoder + prompter on {_where(device)}: "
            f"{r['steps_per_s']:.3g} steps/s "
            f"({r['steps']} steps of up to {r['max_prompts_per_step']} prompts, "
            f"{r['train_chips']} train chips)",
        )
    return Outcome("Detection throughput and training steps (model layer)", figures, [])
