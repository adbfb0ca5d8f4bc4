"""SAM model types by name: their hyper-parameters, official weights, and a builder.

Each `ModelSpec` holds the numbers of one model type. `build_sam` composes SAM from
segment-anything's own parts with these numbers, so the ``vit_*`` models built here have
exactly the parameter names and shapes of Meta's official checkpoints. ``tiny`` is geosam's
own small SAM (about 3.2M parameters, 256 px input) for CPUs and tests; it has no official
weights and is trained from scratch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from geosam.errors import ModelError
from geosam.model.conv_encoder import ConvImageEncoder
from geosam.model.detail import DETAIL_CHANNELS

OFFICIAL_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

# SAM's pixel normalisation (ImageNet mean and std on the 0-255 scale), RGB order.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ModelSpec:
    """Hyper-parameters of one SAM model type.

    Attributes:
        name: registry key, e.g. ``"vit_b"``.
        image_size: encoder input edge in pixels (input is image_size x image_size RGB).
        patch_size: ViT patch edge in pixels.
        encoder_embed_dim: width of the image encoder's ViT.
        encoder_depth: number of ViT blocks.
        encoder_num_heads: attention heads per block.
        encoder_global_attn_indexes: blocks with global attention; the others use windows.
        window_size: window edge, in patches, of windowed attention.
        prompt_embed_dim: channels of the image embedding, prompt tokens and mask decoder.
        decoder_mlp_dim: hidden width of the two-way transformer's MLPs.
        decoder_num_heads: attention heads of the two-way transformer.
        encoder: ``"vit"`` (SAM's own image encoder) or ``"conv"`` (`ConvImageEncoder`, for
            models trained from scratch; patch_size is then its stride, and the ViT fields
            other than image_size are unused).
        detail_chans: half-resolution detail channels the conv encoder packs into the
            embedding for the mask refiner (`geosam.model.detail`); 0 for none.
        official_filename: file name of Meta's released weights, or None.
        official_url: where those weights are downloaded from, or None.
    """

    name: str
    image_size: int
    patch_size: int
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    window_size: int
    prompt_embed_dim: int
    decoder_mlp_dim: int
    decoder_num_heads: int
    encoder: str = "vit"
    detail_chans: int = 0
    official_filename: str | None = None
    official_url: str | None = None

    @property
    def embedding_size(self) -> int:
        """Edge of the image embedding in cells: the embedding is (prompt_embed_dim, E, E)."""
        return self.image_size // self.patch_size

    @property
    def embedding_channels(self) -> int:
        """Channels of what the encoder returns: SAM's, plus packed half-resolution detail."""
        packing = (self.image_size // 2 // self.embedding_size) ** 2
        return self.prompt_embed_dim + self.detail_chans * packing

    @property
    def sha256_prefix(self) -> str | None:
        """The sha256 prefix Meta put in the official file name (``01ec64`` for vit_b)."""
        if self.official_filename is None:
            return None
        match = re.search(r"_([0-9a-f]{6,})\.pth$", self.official_filename)
        return match.group(1) if match else None


def _official(
    name: str, dim: int, depth: int, heads: int, global_attn: tuple[int, ...], filename: str
) -> ModelSpec:
    """A spec with the numbers shared by all of segment-anything's ViT models (build_sam.py)."""
    return ModelSpec(
        name=name,
        image_size=1024,
        patch_size=16,
        encoder_embed_dim=dim,
        encoder_depth=depth,
        encoder_num_heads=heads,
        encoder_global_attn_indexes=global_attn,
        window_size=14,
        prompt_embed_dim=256,
        decoder_mlp_dim=2048,
        decoder_num_heads=8,
        official_filename=filename,
        official_url=OFFICIAL_BASE_URL + filename,
    )


MODEL_TYPES: dict[str, ModelSpec] = {
    "tiny": ModelSpec(
        name="tiny",
        image_size=256,
        patch_size=8,  # stride 8: 32x32 embedding, 128x128 low-res masks
        encoder_embed_dim=160,
        encoder_depth=6,
        encoder_num_heads=0,
        encoder_global_attn_indexes=(),
        window_size=0,
        prompt_embed_dim=128,
        decoder_mlp_dim=512,
        decoder_num_heads=4,
        encoder="conv",
        detail_chans=DETAIL_CHANNELS,
    ),
    "vit_b": _official("vit_b", 768, 12, 12, (2, 5, 8, 11), "sam_vit_b_01ec64.pth"),
    "vit_l": _official("vit_l", 1024, 24, 16, (5, 11, 17, 23), "sam_vit_l_0b3195.pth"),
    "vit_h": _official("vit_h", 1280, 32, 16, (7, 15, 23, 31), "sam_vit_h_4b8939.pth"),
}


def model_names() -> list[str]:
    """Registered model types, sorted."""
    return sorted(MODEL_TYPES)


def get_spec(name: str) -> ModelSpec:
    """The spec of model type `name`; `ModelError` lists the choices if it is unknown."""
    try:
        return MODEL_TYPES[name]
    except KeyError:
        choices = ", ".join(model_names())
        raise ModelError(f"unknown model type {name!r}; choose one of {choices}") from None


def build_sam(spec_or_name: ModelSpec | str) -> Sam:
    """A randomly initialised SAM of the given type, in eval mode, on the CPU.

    Mirrors ``segment_anything.build_sam._build_sam`` with the spec's numbers. The model takes
    (B, 3, S, S) normalised RGB with S = image_size and makes (B, prompt_embed_dim, E, E)
    embeddings with E = embedding_size; low-res mask logits are (4E, 4E).
    """
    spec = get_spec(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    size, dim, cells = spec.image_size, spec.prompt_embed_dim, spec.embedding_size
    encoder: torch.nn.Module
    if spec.encoder == "conv":
        encoder = ConvImageEncoder(
            img_size=size, out_chans=dim, stride=spec.patch_size, detail_chans=spec.detail_chans
        )
    else:
        encoder = ImageEncoderViT(
            depth=spec.encoder_depth,
            embed_dim=spec.encoder_embed_dim,
            img_size=size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=spec.encoder_num_heads,
            patch_size=spec.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=spec.encoder_global_attn_indexes,
            window_size=spec.window_size,
            out_chans=dim,
        )
    sam = Sam(
        image_encoder=encoder,  # type: ignore[arg-type]
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(cells, cells),
            input_image_size=(size, size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=dim,
                mlp_dim=spec.decoder_mlp_dim,
                num_heads=spec.decoder_num_heads,
            ),
            transformer_dim=dim,
            iou_head_depth=3,
            iou_head_hidden_dim=dim,  # 256 for the official models, as in build_sam.py
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    sam.eval()
    return sam
