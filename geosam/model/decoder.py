"""Prompts through SAM's prompt encoder and mask decoder, for one chip's embedding.

Boxes and points are in chip pixels, which are model pixels (chips are exactly the encoder's
input size), so no coordinate rescaling is needed. Logits are upsampled to the full chip for
losses and masks.

A box can also be given as a *dense* prompt: SAM's mask input (meant for a previous mask) is
fed the filled box, so the box's extent reaches the decoder as a map aligned with the image
embedding, not only as two corner tokens. A decoder trained from scratch learns "the ship
inside this box" from the map within a few hundred steps, where it learns to read corner
tokens far more slowly; the prompt encoder and mask decoder are SAM's own, unchanged.

Embeddings of `tiny` also carry half-resolution detail channels; with them, a `MaskRefiner`
corrects the decoder's low-resolution logits before they are upsampled (`geosam.model.detail`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from segment_anything.modeling import Sam

from geosam.model.detail import MaskRefiner, split_embedding

BOX_LOGIT = 4.0
"""Mask-input logit inside (+) and outside (-) a dense box prompt."""


def filled_boxes(boxes: NDArray[np.float32] | torch.Tensor, size: int) -> torch.Tensor:
    """(N, S, S) bool: the pixels of XYXY chip-pixel boxes, edges rounded to pixel edges.

    The filled box is the naive mask a trained model must beat, and the extent a box prompt
    gives its ship: a box drawn around a ship says where the ship is not, too.
    """
    out = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    edges = np.clip(np.round(np.asarray(boxes, dtype=np.float64)), 0, size).astype(int)
    for k, (x0, y0, x1, y1) in enumerate(edges):  # clipped: a box may overhang the chip
        out[k, y0:y1, x0:x1] = True
    return out


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
    refiner: MaskRefiner | None = None,
    within: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks for P prompts on one chip.

    Args:
        sam: the model.
        embedding: (1, C, E, E) image embedding, or (1, C + 16D, E, E) with packed detail.
        boxes: (P, 4) XYXY chip pixels, or None.
        points: (P, 2) positive point (x, y) in chip pixels, or None; exactly one of boxes
            and points is given.
        dense_box: also give each box as SAM's mask input (see the module docstring).
        refiner: corrects the decoder's logits from the embedding's detail channels; used
            when the embedding has them (a model with detail channels always has a refiner).
        within: (P, 4) XYXY chip-pixel regions the caller keeps each mask inside (its box,
            or a proposal's box widened), so the logits need only be right there: the
            refiner then works on a window around each region
            (`MaskRefiner.forward_within`), and outside it the logits are left unrefined.

    Returns:
        Mask logits (P, S, S) at full chip size and predicted IoU (P,).
    """
    point_arg = None
    if points is not None:
        labels = torch.ones(points.shape[0], 1, dtype=torch.int, device=points.device)
        point_arg = (points[:, None, :], labels)
    embedding, detail = split_embedding(embedding, sam.prompt_encoder.embed_dim)
    wants_map = dense_box or detail is not None
    box_map = box_mask_input(sam, boxes) if boxes is not None and wants_map else None
    masks = box_map if dense_box else None
    sparse, dense = sam.prompt_encoder(points=point_arg, boxes=boxes, masks=masks)
    low_res, iou = sam.mask_decoder(
        image_embeddings=embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    if detail is not None:
        if refiner is None:
            raise ValueError("an embedding with detail channels needs the model's refiner")
        prompt_map = torch.zeros_like(low_res) if box_map is None else box_map / BOX_LOGIT
        if within is not None:
            cells = box_cells(within, low_res.shape[-1] / sam.image_encoder.img_size)
            low_res = refiner.forward_within(detail, low_res, prompt_map, cells)
        else:
            low_res = refiner(detail, low_res, prompt_map)
    size = sam.image_encoder.img_size
    logits = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
    return logits[:, 0], iou[:, 0]


def box_cells(boxes: torch.Tensor, scale: float) -> torch.Tensor:
    """(P, 4) int64 mask-grid cells x0, y0, x1, y1 (end exclusive) that a box's pixels read.

    Upsampling to the chip reads the two cells around each pixel's centre, so the box's
    cells are widened by two on each side (one for the blend, one for rounding its edges).
    """
    b = boxes.detach().float().cpu() * scale
    low = torch.floor(b[:, :2]).long() - 2
    high = torch.ceil(b[:, 2:]).long() + 2
    return torch.cat([low, high], 1)
