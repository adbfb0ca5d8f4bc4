"""The main job on an embedded example, end to end and offline.

1. paints two synthetic harbours (examples/harbour.py): one to train on, one to test on;
2. tiles the training harbour with its footprints (what `geosam tile` does);
3. fine-tunes SAM on it (`geosam finetune`): a real checkpoint if one is cached
   (vit_b via `geosam weights download vit_b`), otherwise the small from-scratch model;
4. detects ships on the unseen harbour (`geosam detect`), writing a GeoPackage and a preview;
5. scores the detections against that harbour's footprints (`geosam evaluate`).

Outputs go to examples/output/ (replaced on each run).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harbour import make_harbour

from geosam.data.settings import ChipSettings
from geosam.errors import CheckpointError
from geosam.model.checkpoints import resolve_checkpoint
from geosam.pipelines.detect import DetectSettings, detect
from geosam.pipelines.evaluate import EvaluationReport, evaluate
from geosam.pipelines.finetune import finetune
from geosam.pipelines.finetune_settings import FinetuneSettings
from geosam.pipelines.tile import tile_scene
from geosam.pipelines.training_data import TrainingPair

OUT = Path(__file__).resolve().parent / "output"
DEMO_STEPS = 400


def pick_model(say: Any = print) -> str:
    """vit_b when its official checkpoint is in the cache, else the offline `tiny` model."""
    try:
        resolve_checkpoint("vit_b", None)
    except CheckpointError:
        say("no SAM checkpoint cached: using the small from-scratch model `tiny`")
        return "tiny"
    say("using the cached official vit_b checkpoint")
    return "vit_b"


def run_demo(
    out: Path = OUT, steps: int = DEMO_STEPS, lr: float | None = None, say: Any = print
) -> EvaluationReport:
    """The main job into `out`; returns the scores on the unseen harbour.

    `steps` and `lr` exist for the test that runs a shortened demo (lr 0: an untrained model).
    """
    train_scene, train_ships = make_harbour(out / "train", seed=7)
    test_scene, test_ships = make_harbour(out / "test", seed=11)
    say(f"training harbour: {train_scene}\nunseen harbour:   {test_scene}")

    model_type = pick_model(say)
    size = 256 if model_type == "tiny" else 1024
    tiles = tile_scene(
        train_scene,
        out / "tiles",
        ChipSettings(size=size, overlap=size // 8),
        labels=train_ships,
        coco=True,
        overwrite=True,
    )
    say(f"tiled: {tiles.chips_written} chips, {tiles.ships} ship labels -> {out / 'tiles'}")

    # The README's recipe (`geosam finetune` defaults) with fewer steps: the painted harbour
    # is easier than real scenes, and the whole demo should take minutes on a laptop.
    settings = FinetuneSettings(model_type=model_type, steps=steps, seed=0)
    if lr is not None:
        settings = replace(settings, lr=lr)
    metrics = finetune(
        [TrainingPair(train_scene, train_ships)], out / "run", settings=settings, overwrite=True
    )
    say(
        f"fine-tuned: validation mask IoU {metrics['val_iou']:.3f} "
        f"(filled box {metrics['box_iou']:.3f}), prompt-free F1 {metrics['val_f1']:.2f} "
        f"-> {out / 'run' / 'model.pt'}"
    )

    detect(
        [test_scene],
        out / "run" / "model.pt",
        out / "ships.gpkg",
        DetectSettings(),  # thresholds: the operating point training chose
        preview=out / "ships.png",
        overwrite=True,
    )
    report = evaluate(out / "ships.gpkg", test_ships, truth_layer="harbour", pred_layer="harbour")
    scores = report.overall
    say(
        f"detected on the unseen harbour: precision {scores.precision:.2f}, recall "
        f"{scores.recall:.2f}, F1 {scores.f1:.2f}, mean IoU {scores.mean_iou or 0:.2f}"
    )
    (out / "evaluation.json").write_text(json.dumps(report.to_dict(), indent=2))
    say(f"ships: {out / 'ships.gpkg'} (open in QGIS), picture: {out / 'ships.png'}")
    return report


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    run_demo()
    print(f"demo took {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
