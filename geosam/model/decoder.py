"""Prompts through SAM's prompt encoder and mask decoder, for one chip's embedding.

Boxes and points are in chip pixels, which are model pixels (chips are exactly the encoder's
input size), so no coordinate rescaling is needed. Logits are upsampled to the full chip for
losses and masks.

A box can also be given as a *dense* prompt: SAM's mask input (meant for a previous mask) is
fed the filled box, so the box's extent reaches the decoder as a map aligned with the image
embedding, not only as two corner tokens. A decoder trained from scratch learns "the ship
inside this box" from the map within a few hundred steps, where it learns to read corner
tokens far more slowly; the prompt encoder and mask decoder are SAM's own, unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam

BOX_LOGIT = 4.0
"""Mask-input logit inside (+) and outside (-) a dense box prompt."""


def box_mask_input(sam: Sam, boxes: torch.Tensor) -> torch.Tensor:
    """(P, 1, 4E, 4E) mask-input logits of filled XYXY chip-pixel boxes (P, 4).

    The mask input is SAM's low-resolution mask grid (4 x the embedding edge); a cell is
    inside when its centre lies in the box.
    """
    cells = sam.prompt_encoder.mask_input_size[0]
    scale = cells / sam.image_encoder.img_size
    centres = (torch.arange(cells, device=boxes.device, dtype=torch.float32) + 0.5) / scale
    b = boxes.float()
    inside_x = (centres[None, :] >= b[:, 0:1]) & (centres[None, :] <= b[:, 2:3])
    inside_y = (centres[None, :] >= b[:, 1:2]) & (centres[None, :] <= b[:, 3:4])
    inside = inside_y[:, :, None] & inside_x[:, None, :]
    return (inside.float() * 2 - 1)[:, None] * BOX_LOGIT


def decode(
    sam: Sam,
    embedding: torch.Tensor,
    boxes: torch.Tensor | None = None,
    points: torch.Tensor | None = None,
    dense_box: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks for P prompts on one chip.

    Args:
        sam: the model.
        embedding: (1, C, E, E) image embedding.
        boxes: (P, 4) XYXY chip pixels, or None.
        points: (P, 2) positive point (x, y) in chip pixels, or None; exactly one of boxes
            and points is given.
        dense_box: also give each box as SAM's mask input (see the module docstring).

    Returns:
        Mask logits (P, S, S) at full chip size and predicted IoU (P,).
    """
    point_arg = None
    if points is not None:
        labels = torch.ones(points.shape[0], 1, dtype=torch.int, device=points.device)
        point_arg = (points[:, None, :], labels)
    masks = box_mask_input(sam, boxes) if dense_box and boxes is not None else None
    sparse, dense = sam.prompt_encoder(points=point_arg, boxes=boxes, masks=masks)
    low_res, iou = sam.mask_decoder(
        image_embeddings=embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    size = sam.image_encoder.img_size
    logits = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
    return logits[:, 0], iou[:, 0]
