"""Learning on real ships: the small model on the dev marina (../shared/data/ships-dev)."""

import torch
from conftest import SHIPS_DEV, shared_path

from geosam.data.prompts import PromptSettings
from geosam.data.settings import ChipSettings
from geosam.pipelines.trainer import FinetuneSettings, Trainer
from geosam.pipelines.training_data import TrainingPair, load_training_chips


def test_short_run_on_real_yachts_beats_the_untrained_model(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSAM_HOME", str(tmp_path / "home"))
    scene = shared_path(SHIPS_DEV / "dota_P0706_top.tif")
    pair = TrainingPair(scene, SHIPS_DEV / "ships.gpkg", "dota_P0706_top")
    chips, resolved = load_training_chips([pair], ChipSettings(size=256, overlap=32))
    settings = FinetuneSettings(
        epochs=8, batch_chips=2, lr=1e-3, warmup_steps=5, train_encoder=False, seed=0
    )
    torch.manual_seed(0)
    trainer = Trainer(chips, resolved[0], settings, PromptSettings(ships_per_chip=16), tmp_path)
    before = trainer.validate()
    losses = [trainer.train_epoch(None) for _ in range(settings.epochs)]
    after = trainer.validate()
    print(
        f"\nuntrained val IoU {before['val_iou']:.4f}, after {settings.epochs} epochs "
        f"{after['val_iou']:.4f} (filled box {after['box_iou']:.4f}); prompter precision "
        f"{after['prompter_precision']:.3f} recall {after['prompter_recall']:.3f}; "
        f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"
    )
    assert losses[-1] < losses[0]
    assert after["val_iou"] > 1.5 * before["val_iou"]
    assert after["prompter_recall"] > before["prompter_recall"]
