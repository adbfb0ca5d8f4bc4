"""Learning on real ships: the small model on the dev marina (../shared/data/ships-dev)."""

import torch
from conftest import SHIPS_DEV, shared_path

from geosam.data.prompts import PromptSettings
from geosam.data.settings import ChipSettings
from geosam.model.decoder import decode
from geosam.model.losses import mask_iou
from geosam.pipelines.trainer import FinetuneSettings, Trainer
from geosam.pipelines.training_data import TrainingPair, load_training_chips
from geosam.pipelines.validation import filled_boxes

STEPS = 60


def test_short_run_on_real_yachts_beats_the_untrained_model(tmp_path, monkeypatch):
    """The default recipe (from scratch, trained encoder) learns yachts, not boxes."""
    monkeypatch.setenv("GEOSAM_HOME", str(tmp_path / "home"))
    scene = shared_path(SHIPS_DEV / "dota_P0706_top.tif")
    pair = TrainingPair(scene, SHIPS_DEV / "ships.gpkg", "dota_P0706_top")
    chips, resolved = load_training_chips([pair], ChipSettings(size=256, overlap=32))
    settings = FinetuneSettings(steps=STEPS, val_every=STEPS, seed=0)
    trainer = Trainer(chips, resolved[0], settings, PromptSettings(), tmp_path)
    before = trainer.validate()
    loss = trainer.train_epoch(None)
    after = trainer.validate()
    # How much the masks look like the filled boxes they were prompted with.
    like_box = []
    with torch.no_grad():
        for i in trainer.val_idx:
            chip = trainer.chips[i]
            emb = trainer.embeddings([i], grad=False)
            logits, _ = decode(
                trainer.model.sam,
                emb,
                boxes=torch.from_numpy(chip.boxes),
                dense_box=True,
                refiner=trainer.model.refiner,
            )
            filled = filled_boxes(chip.boxes, chip.image.shape[-1])
            like_box += mask_iou(logits > 0, filled).tolist()
    mean_like_box = sum(like_box) / len(like_box)
    print(
        f"\nuntrained val IoU {before['val_iou']:.4f}, after {STEPS} steps "
        f"{after['val_iou']:.4f} (filled box {after['box_iou']:.4f}); masks vs filled box "
        f"IoU {mean_like_box:.3f}; prompter recall {before['prompter_recall']:.3f} -> "
        f"{after['prompter_recall']:.3f}; mean loss {loss:.3f}"
    )
    assert after["val_iou"] > before["val_iou"] + 0.2
    assert mean_like_box < 0.8  # masks follow the hulls inside the boxes, not the boxes
    assert after["prompter_recall"] > before["prompter_recall"]
