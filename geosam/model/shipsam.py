"""SAM plus the ship prompter (and mask refiner), with the rules of what trains and what is kept.

The image and prompt encoders stay frozen unless `train_encoder` (the from-scratch `tiny`
model needs it); the mask decoder, the prompter and, for encoders that make detail features,
the mask refiner (`geosam.model.detail`) always learn. A model file keeps only weights that
differ from the base checkpoint: those three, plus the encoders when they were trained or when
the base is a random initialisation that cannot be rebuilt.
"""

from __future__ import annotations

import torch
from segment_anything.modeling import Sam
from torch import nn

from geosam.model.checkpoints import RANDOM_INIT
from geosam.model.detail import MaskRefiner
from geosam.model.prompter import UPSAMPLE, ShipPrompter


class ShipSam(nn.Module):
    """A SAM model and its ship prompter.

    Args:
        sam: segment_anything's Sam.
        base_hash: sha256 of the base checkpoint, or "random-init".
        train_encoder: also train the image and prompt encoders (bypasses the embedding
            cache); for models that start from random weights.
        dense_box: box prompts also go in as SAM's mask input (`geosam.model.decoder`).
    """

    def __init__(
        self, sam: Sam, base_hash: str, train_encoder: bool = False, dense_box: bool = False
    ) -> None:
        super().__init__()
        self.sam = sam
        detail_chans = int(getattr(sam.image_encoder, "detail_chans", 0))
        self.prompter = ShipPrompter(sam.prompt_encoder.embed_dim, detail_channels=detail_chans)
        self.refiner = MaskRefiner(detail_chans) if detail_chans else None
        self.base_hash = base_hash
        self.train_encoder = train_encoder
        self.dense_box = dense_box
        for p in self.sam.image_encoder.parameters():
            p.requires_grad_(train_encoder)
        for p in self.sam.prompt_encoder.parameters():
            p.requires_grad_(train_encoder)

    @property
    def chip_size(self) -> int:
        """The encoder's input size: chips are exactly this many pixels."""
        return int(self.sam.image_encoder.img_size)

    @property
    def heatmap_grid(self) -> int:
        """Cells along each axis of the prompter's heatmap."""
        return int(self.sam.prompt_encoder.image_embedding_size[0]) * UPSAMPLE

    @property
    def heatmap_stride(self) -> float:
        """Chip pixels per prompter heatmap cell."""
        return self.chip_size / self.heatmap_grid

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates."""
        return [p for p in self.parameters() if p.requires_grad]

    def saved_parts(self) -> list[str]:
        """Names of the submodules a model file must keep."""
        parts = ["sam.mask_decoder", "prompter"]
        if self.refiner is not None:
            parts.append("refiner")
        if self.train_encoder or self.base_hash == RANDOM_INIT:
            parts += ["sam.image_encoder", "sam.prompt_encoder"]
        return parts

    def changed_state(self) -> dict[str, torch.Tensor]:
        """State dict entries of `saved_parts` only."""
        parts = tuple(f"{p}." for p in self.saved_parts())
        return {k: v for k, v in self.state_dict().items() if k.startswith(parts)}

    def load_changed_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load entries written by `changed_state` (strict about names and shapes)."""
        own = self.state_dict()
        unknown = [k for k in state if k not in own]
        if unknown:
            raise KeyError(f"unexpected weights {unknown[:3]}")
        for key, value in state.items():
            if own[key].shape != value.shape:
                raise KeyError(
                    f"{key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}"
                )
        self.load_state_dict({**own, **state})
