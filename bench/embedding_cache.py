"""2. Embedding cache: the image encoder runs once per chip, not once per chip and epoch.

A real `finetune` with a frozen encoder on a synthetic harbour (examples/harbour.py), twice
over the same chips with one cache folder ($GEOSAM_HOME in a temporary directory): run 1
starts cold, run 2 must find every embedding on disk. Figures come from each run's
metrics.csv (encoder calls and seconds per epoch, validation included).
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.common import Outcome, Target, data_dir, in_child, random_checkpoint

# Scene size per model so that each has several chips of its input size.
SCENES = {"tiny": (1024, 768, 36), "vit_b": (2048, 1024, 40)}


def harbour(model_type: str) -> tuple[Path, Path]:
    """The benchmark harbour for a model type, generated once."""
    from examples.harbour import make_harbour

    width, height, ships = SCENES[model_type]
    folder = data_dir() / f"harbour_{width}x{height}"
    scene, labels = folder / "harbour.tif", folder / "harbour.gpkg"
    if not scene.exists():
        make_harbour(folder, width, height, ships, seed=11)
    return scene, labels


def two_runs(model_type: str, epochs: int) -> dict[str, Any]:
    """Fine-tune twice on one cache; per-epoch encoder calls and seconds of both runs."""
    from geosam.pipelines.finetune import finetune
    from geosam.pipelines.finetune_settings import FinetuneSettings
    from geosam.pipelines.training_data import TrainingPair

    scene, labels = harbour(model_type)
    with tempfile.TemporaryDirectory(prefix="geosam-bench-cache-") as tmp:
        os.environ["GEOSAM_HOME"] = f"{tmp}/home"
        settings = FinetuneSettings(
            model_type=model_type,
            checkpoint=random_checkpoint(model_type),
            epochs=epochs,
            train_encoder=False,
            patience=epochs,
            seed=0,
        )
        runs = []
        for n in (1, 2):
            out = Path(tmp) / f"run{n}"
            result = finetune([TrainingPair(scene, labels)], out, settings=settings)
            with open(out / "metrics.csv", newline="") as fh:
                rows = list(csv.DictReader(fh))
            runs.append(
                {
                    "calls": [int(r["encoder_calls"]) for r in rows],
                    "seconds": [float(r["seconds"]) for r in rows],
                    "chips": result["train_chips"] + result["val_chips"],
                }
            )
    return {"runs": runs}


def run(quick: bool) -> Outcome:
    figures, targets = [], []
    for model_type in ("tiny",) if quick else ("tiny", "vit_b"):
        result = in_child("embedding_cache:two_runs", model_type=model_type, epochs=3)
        first, second = result["runs"]
        for name, r in (("run 1 (cold cache)", first), ("run 2 (same chips)", second)):
            figures.append(
                f"{model_type}, {r['chips']} chips, {name}: encoder calls per epoch "
                f"{r['calls']}, seconds per epoch {[round(s, 2) for s in r['seconds']]}"
            )
        targets += [
            Target(f"{model_type} encoder calls in epochs 2+", sum(first["calls"][1:]), 0, ""),
            Target(
                f"{model_type} epoch 2 / epoch 1 time", first["seconds"][1] / first["seconds"][0], 1
            ),
            Target(f"{model_type} encoder calls in run 2", sum(second["calls"]), 0, ""),
            Target(
                f"{model_type} run 2 / run 1 epoch-1 time",
                second["seconds"][0] / first["seconds"][0],
                1,
            ),
        ]
    return Outcome("Embedding cache: encoder calls and epoch times", figures, targets)
