"""Half-resolution detail carried in `tiny`'s embedding and the mask refiner that reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import save_untrained_tiny

from geosam.model.checkpoints import RANDOM_INIT
from geosam.model.decoder import decode, filled_boxes
from geosam.model.detail import DETAIL_CHANNELS, MaskRefiner, pack_detail, split_embedding
from geosam.model.predict import load_detector
from geosam.model.registry import build_sam
from geosam.model.shipsam import ShipSam


def test_packed_detail_unpacks_to_the_same_features():
    embedding = torch.randn(2, 128, 32, 32)
    detail = torch.randn(2, DETAIL_CHANNELS, 128, 128)
    packed = pack_detail(embedding, detail)
    assert packed.shape == (2, 128 + DETAIL_CHANNELS * 16, 32, 32)
    sam_part, unpacked = split_embedding(packed, 128)
    assert torch.equal(sam_part, embedding)
    assert unpacked is not None and torch.equal(unpacked, detail)
    # A plain SAM embedding has no detail.
    assert split_embedding(embedding, 128) == (embedding, None)


def test_an_embedding_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="channels"):
        split_embedding(torch.zeros(1, 128 + 5, 32, 32), 128)


def test_an_untrained_refiner_passes_the_logits_through():
    refiner = MaskRefiner()
    logits = torch.randn(3, 1, 128, 128)
    detail = torch.randn(1, DETAIL_CHANNELS, 128, 128)
    assert torch.equal(refiner(detail, logits, torch.zeros(3, 1, 128, 128)), logits)


def test_the_refiner_reads_the_detail_around_its_box():
    """A trained refiner's masks follow the detail features within its reach."""
    torch.manual_seed(0)
    model = ShipSam(build_sam("tiny"), RANDOM_INIT, train_encoder=True, dense_box=True)
    assert model.refiner is not None
    torch.nn.init.normal_(model.refiner.out.weight)
    boxes = torch.tensor([[40.0, 40.0, 90.0, 70.0]])  # mask cells 20-45 by 20-35

    def masks(change: tuple[slice, slice]) -> torch.Tensor:
        with torch.no_grad():
            embedding = model.sam.image_encoder(torch.ones(1, 3, 256, 256))
            sam_part, detail = split_embedding(embedding, 128)
            assert detail is not None
            detail[(..., *change)] += 5.0
            logits, _ = decode(
                model.sam,
                pack_detail(sam_part, detail),
                boxes=boxes,
                dense_box=True,
                refiner=model.refiner,
            )
        return logits

    unchanged = masks((slice(0, 0), slice(0, 0)))
    near = masks((slice(25, 30), slice(30, 35)))
    far = masks((slice(100, None), slice(100, None)))  # chip pixels 200 and beyond
    assert not torch.allclose(near, unchanged)
    assert not torch.allclose(far, unchanged)
    # Four dilated 3 x 3 layers reach 15 cells (30 px) around a change, no further: the
    # masks up to pixel 150 never see the far change.
    assert torch.equal(far[:, :150, :150], unchanged[:, :150, :150])


def test_a_box_prompts_logits_inside_its_box_are_those_of_the_whole_grid():
    """Refining a window around each box changes nothing where its mask is kept."""
    torch.manual_seed(0)
    model = ShipSam(build_sam("tiny"), RANDOM_INIT, train_encoder=True, dense_box=True)
    assert model.refiner is not None
    torch.nn.init.normal_(model.refiner.out.weight)
    boxes = torch.tensor(
        [
            [40.0, 40.0, 90.0, 70.0],
            [0.0, 0.0, 12.5, 30.0],  # at the chip's corner: the window meets two edges
            [201.3, 150.7, 256.0, 255.2],  # at the opposite corner
            [120.0, 3.0, 124.0, 250.0],  # tall: every window spans the whole height
        ]
    )
    with torch.no_grad():
        embedding = model.sam.image_encoder(torch.rand(1, 3, 256, 256) * 255)
        whole, whole_iou = decode(
            model.sam, embedding, boxes=boxes, dense_box=True, refiner=model.refiner
        )
        windowed, iou = decode(
            model.sam,
            embedding,
            boxes=boxes,
            dense_box=True,
            refiner=model.refiner,
            within=boxes,
        )
    inside = filled_boxes(boxes, 256)
    assert torch.allclose(windowed[inside], whole[inside], atol=1e-5)
    assert torch.equal(iou, whole_iou)
    # Outside the windows the decoder's logits were left unrefined: the windows were used.
    assert not torch.allclose(windowed[~inside], whole[~inside], atol=1e-3)


def test_refining_no_prompts_gives_no_logits():
    refiner = MaskRefiner()
    none = torch.zeros(0, 1, 128, 128)
    cells = torch.zeros(0, 4, dtype=torch.long)
    refined = refiner.forward_within(torch.zeros(1, DETAIL_CHANNELS, 128, 128), none, none, cells)
    assert refined.shape == (0, 1, 128, 128)


def test_detail_without_the_refiner_is_an_error():
    sam = build_sam("tiny")
    embedding = torch.zeros(1, 128 + DETAIL_CHANNELS * 16, 32, 32)
    with pytest.raises(ValueError, match="refiner"):
        decode(sam, embedding, boxes=torch.tensor([[10.0, 10.0, 50.0, 50.0]]))


def test_vit_models_have_no_detail_and_no_refiner():
    model = ShipSam(build_sam("vit_b"), "f" * 64)
    assert model.refiner is None
    assert "refiner" not in model.saved_parts()
    assert getattr(model.sam.image_encoder, "detail_chans", 0) == 0


def test_a_model_file_keeps_the_refiner(tmp_path: Path):
    """Masks from a saved and reloaded `tiny` equal the trained model's, refiner included."""
    torch.manual_seed(1)
    model = ShipSam(build_sam("tiny"), RANDOM_INIT, train_encoder=True, dense_box=True).eval()
    assert model.refiner is not None and "refiner" in model.saved_parts()
    torch.nn.init.normal_(model.refiner.out.weight, std=0.5)
    path = save_untrained_tiny(model, tmp_path / "model.pt", 0.3)
    loaded, _ = load_detector(path, torch.device("cpu"))
    image = torch.randn(1, 3, 256, 256)
    boxes = torch.tensor([[40.0, 40.0, 90.0, 70.0]])
    with torch.no_grad():
        masks = [
            decode(
                m.sam, m.sam.image_encoder(image), boxes=boxes, dense_box=True, refiner=m.refiner
            )[0]
            for m in (model, loaded)
        ]
    assert torch.equal(masks[0], masks[1])
