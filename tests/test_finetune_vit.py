"""The official-model path keeps the recipe: vit_b (random weights, saved like Meta's file)
with a frozen encoder trains on cached embeddings of every augmented view of its chips.

The ViT's forward pass is replaced by a cheap function of the pixels with the same output
shape: encoding eight 1024 px views with a real vit_b takes minutes on a CPU, and what is
tested here is the training path around the encoder (checkpoint, cache, views, decoder).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geosam.model.model_file import load_model_file
from geosam.model.registry import ImageEncoderViT, build_sam
from geosam.pipelines.finetune import finetune
from geosam.pipelines.finetune_settings import FinetuneSettings
from geosam.pipelines.training_data import TrainingPair


@pytest.fixture(scope="module")
def vit_b_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vit") / "vit_b_random.pth"
    torch.save(build_sam("vit_b").state_dict(), path)
    return path


def _cheap_vit_forward(self: ImageEncoderViT, x: torch.Tensor) -> torch.Tensor:
    """(B, 3, 1024, 1024) -> (B, 256, 64, 64), a fixed function of the pixels."""
    pooled = F.avg_pool2d(x, 16)  # (B, 3, 64, 64)
    return pooled.repeat(1, 86, 1, 1)[:, :256]


def test_vit_b_trains_on_cached_views_and_a_second_run_never_encodes(
    harbour, vit_b_checkpoint, tmp_path, monkeypatch
):
    monkeypatch.setenv("GEOSAM_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(ImageEncoderViT, "forward", _cheap_vit_forward)
    settings = FinetuneSettings(
        model_type="vit_b", checkpoint=str(vit_b_checkpoint), steps=2, val_every=1, batch_chips=1
    )
    first = finetune([TrainingPair(*harbour)], tmp_path / "a", settings=settings)
    rows = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    calls = [int(r.split(",")[header.index("encoder_calls")]) for r in rows[1:]]
    # The 512 x 384 harbour is one 1024 px chip: its 8 views are encoded in the first round
    # (in batches of 4), then never again.
    assert calls == [2, 0]
    assert first["train_chips"] == 1
    embeddings = list((tmp_path / "home" / "embeddings").rglob("*.npy"))
    assert len(embeddings) == 8
    second = finetune([TrainingPair(*harbour)], tmp_path / "b", settings=settings)
    assert second["encoder_calls"] == 0
    state, meta = load_model_file(tmp_path / "b" / "model.pt")
    assert meta["model_type"] == "vit_b" and not meta["train_encoder"]
    assert not any(k.startswith("sam.image_encoder.") for k in state)  # only what changed
