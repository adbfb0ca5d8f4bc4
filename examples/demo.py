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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harbour import make_harbour

from geosam.data.settings import ChipSettings
from geosam.errors import CheckpointError
from geosam.model.checkpoints import resolve_checkpoint
from geosam.pipelines.detect import DetectSettings, detect
from geosam.pipelines.evaluate import evaluate
from geosam.pipelines.finetune import finetune
from geosam.pipelines.tile import tile_scene
from geosam.pipelines.trainer import FinetuneSettings
from geosam.pipelines.training_data import TrainingPair

OUT = Path(__file__).resolve().parent / "output"


def pick_model() -> str:
    """vit_b when its official checkpoint is in the cache, else the offline `tiny` model."""
    try:
        resolve_checkpoint("vit_b", None)
    except CheckpointError:
        print("no SAM checkpoint cached: using the small from-scratch model `tiny`")
        return "tiny"
    print("using the cached official vit_b checkpoint")
    return "vit_b"


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    train_scene, train_ships = make_harbour(OUT / "train", seed=7)
    test_scene, test_ships = make_harbour(OUT / "test", seed=11)
    print(f"training harbour: {train_scene}\nunseen harbour:   {test_scene}")

    model_type = pick_model()
    size = 256 if model_type == "tiny" else 1024
    tiles = tile_scene(
        train_scene,
        OUT / "tiles",
        ChipSettings(size=size, overlap=size // 8),
        labels=train_ships,
        coco=True,
        overwrite=True,
    )
    print(f"tiled: {tiles.chips_written} chips, {tiles.ships} ship labels -> {OUT / 'tiles'}")

    settings = FinetuneSettings(
        model_type=model_type, epochs=60, patience=60, lr=1e-3, warmup_steps=10, seed=0
    )
    metrics = finetune(
        [TrainingPair(train_scene, train_ships)], OUT / "run", settings=settings, overwrite=True
    )
    print(
        f"fine-tuned: validation mask IoU {metrics['val_iou']:.3f} "
        f"(filled box {metrics['box_iou']:.3f}), prompter recall "
        f"{metrics['prompter_recall']:.2f} -> {OUT / 'run' / 'model.pt'}"
    )

    detect(
        [test_scene],
        OUT / "run" / "model.pt",
        OUT / "ships.gpkg",
        DetectSettings(),
        preview=OUT / "ships.png",
        overwrite=True,
    )
    report = evaluate(OUT / "ships.gpkg", test_ships, truth_layer="harbour", pred_layer="harbour")
    scores = report.overall
    print(
        f"detected on the unseen harbour: precision {scores.precision:.2f}, recall "
        f"{scores.recall:.2f}, F1 {scores.f1:.2f}, mean IoU {scores.mean_iou or 0:.2f}"
    )
    (OUT / "evaluation.json").write_text(json.dumps(report.to_dict(), indent=2))
    print(f"ships: {OUT / 'ships.gpkg'} (open in QGIS), picture: {OUT / 'ships.png'}")


if __name__ == "__main__":
    main()
