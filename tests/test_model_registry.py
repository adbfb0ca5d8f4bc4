from __future__ import annotations

import pytest
import torch

import geosam.model  # noqa: F401  (makes segment_anything importable)
from geosam.errors import GeosamError, ModelError
from geosam.model.registry import MODEL_TYPES, build_sam, get_spec, model_names


def test_model_names():
    assert model_names() == ["tiny", "vit_b", "vit_h", "vit_l"]


def test_unknown_model_type():
    with pytest.raises(
        ModelError, match=r"unknown model type 'x'; choose one of tiny, vit_b, vit_h, vit_l"
    ):
        get_spec("x")
    assert issubclass(ModelError, GeosamError) and issubclass(ModelError, ValueError)


def test_official_specs():
    vit_b = get_spec("vit_b")
    assert vit_b.embedding_size == 64
    assert (
        vit_b.official_url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    )
    assert vit_b.sha256_prefix == "01ec64"
    assert get_spec("vit_h").sha256_prefix == "4b8939"
    assert get_spec("tiny").official_filename is None
    assert get_spec("tiny").sha256_prefix is None


def test_tiny_builds_and_encodes():
    sam = build_sam("tiny")
    assert not sam.training
    n_params = sum(p.numel() for p in sam.parameters())
    assert 2_500_000 < n_params < 4_000_000
    with torch.no_grad():
        embedding = sam.image_encoder(torch.zeros(1, 3, 256, 256))
    # SAM's 128 channels, then 16 detail channels at 128 x 128 packed into 16 x 16 x 16.
    assert embedding.shape == (1, 128 + 16 * 16, 32, 32)
    assert get_spec("tiny").embedding_channels == embedding.shape[1]
    assert sam.prompt_encoder.get_dense_pe().shape == (1, 128, 32, 32)


def test_tiny_decoder_low_res_masks():
    sam = build_sam(get_spec("tiny"))
    with torch.no_grad():
        embedding = torch.zeros(1, 128, 32, 32)
        sparse, dense = sam.prompt_encoder(
            points=None, boxes=torch.tensor([[10.0, 20.0, 60.0, 90.0]]), masks=None
        )
        masks, iou = sam.mask_decoder(
            image_embeddings=embedding,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
    assert masks.shape == (1, 1, 128, 128)
    assert iou.shape == (1, 1)


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_official_types_match_segment_anything(name):
    """Same parameter names and shapes as segment_anything's builders (on the meta device)."""
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        ours = build_sam(name).state_dict()
        theirs = sam_model_registry[name]().state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert MODEL_TYPES[name].name == name
