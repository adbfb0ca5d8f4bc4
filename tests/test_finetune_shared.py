"""Learning on real ships: the small model on the dev marina (../shared/data/ships-dev)."""

import torch
from conftest import SHIPS_DEV, shared_path

from geosam.data.prompts import PromptSettings
from geosam.data.settings import ChipSettings
from geosam.model.decoder import decode, filled_boxes
from geosam.model.losses import mask_iou
from geosam.pipelines.finetune_settings import FinetuneSettings
from geosam.pipelines.trainer import Trainer
from geosam.pipelines.training_data import TrainingPair, load_training_chips

STEPS = 60


def raw_masks_scores(trainer: Trainer) -> tuple[float, float]:
    """Mean IoU of the decoder's own box-prompt masks on the validation chips, before they are
    kept inside their boxes (an untrained model's whole-chip masks would become the boxes),
    and how much those masks look like the filled boxes."""
    truth_iou, box_like = [], []
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
            truth_iou += mask_iou(logits > 0, torch.from_numpy(chip.masks)).tolist()
            box_like += mask_iou(logits > 0, filled).tolist()
    return sum(truth_iou) / len(truth_iou), sum(box_like) / len(box_like)


def test_short_run_on_real_yachts_beats_the_untrained_model(tmp_path, monkeypatch):
    """The default recipe (from scratch, trained encoder) learns yachts, not boxes."""
    monkeypatch.setenv("GEOSAM_HOME", str(tmp_path / "home"))
    scene = shared_path(SHIPS_DEV / "dota_P0706_top.tif")
    pair = TrainingPair(scene, SHIPS_DEV / "ships.gpkg", "dota_P0706_top")
    chips, resolved = load_training_chips([pair], ChipSettings(size=256, overlap=32))
    settings = FinetuneSettings(steps=STEPS, val_every=STEPS, seed=0)
    trainer = Trainer(chips, resolved[0], settings, PromptSettings(), tmp_path)
    before = trainer.validate()
    raw_before, _ = raw_masks_scores(trainer)
    loss = trainer.train_epoch(None)
    after = trainer.validate()
    raw_after, like_box = raw_masks_scores(trainer)
    print(
        f"\nval IoU (masks kept in their boxes) {before['val_iou']:.4f} -> {after['val_iou']:.4f}"
        f" after {STEPS} steps (filled box {after['box_iou']:.4f}); the decoder's own masks "
        f"{raw_before:.4f} -> {raw_after:.4f}, vs filled box IoU {like_box:.3f}; prompter "
        f"recall {before['prompter_recall']:.3f} -> {after['prompter_recall']:.3f}; mean loss "
        f"{loss:.3f}"
    )
    assert raw_after > raw_before + 0.2
    assert after["val_iou"] > before["val_iou"]
    assert like_box < 0.8  # masks follow the hulls inside the boxes, not the boxes
    assert after["prompter_recall"] > before["prompter_recall"]
