"""Prompts through SAM's prompt encoder and mask decoder, for one chip's embedding.

Boxes and points are in chip pixels, which are model pixels (chips are exactly the encoder's
input size), so no coordinate rescaling is needed. Logits are upsampled to the full chip for
losses and masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam


def decode(
    sam: Sam,
    embedding: torch.Tensor,
    boxes: torch.Tensor | None = None,
    points: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks for P prompts on one chip.

    Args:
        sam: the model.
        embedding: (1, C, E, E) image embedding.
        boxes: (P, 4) XYXY chip pixels, or None.
        points: (P, 2) positive point (x, y) in chip pixels, or None; exactly one of boxes
            and points is given.

    Returns:
        Mask logits (P, S, S) at full chip size and predicted IoU (P,).
    """
    point_arg = None
    if points is not None:
        labels = torch.ones(points.shape[0], 1, dtype=torch.int, device=points.device)
        point_arg = (points[:, None, :], labels)
    sparse, dense = sam.prompt_encoder(points=point_arg, boxes=boxes, masks=None)
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
