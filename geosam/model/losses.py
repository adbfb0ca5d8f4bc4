"""Losses for fine-tuning: mask focal + Dice, IoU-head MSE, and the prompter's heatmap focal loss.

Mask losses are computed at full chip resolution (the decoder's low-resolution logits are
upsampled first) so that 10-pixel Sentinel-2 ships weigh what they cover. Ship and background
pixels are weighted equally, which keeps the from-scratch model from collapsing to empty
masks, as plain BCE on mostly-background chips encourages.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam

from geosam.data.prompts import PromptBatch
from geosam.model.decoder import decode
from geosam.model.detail import MaskRefiner


def balanced_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss per mask, averaged over ship pixels and background pixels separately.

    A ship covers ~1 % of a chip; averaging over all pixels lets "everything is water" win
    and the model collapses to empty masks for hundreds of steps. Giving both classes equal
    weight makes the box prompt's inside count from the first step.

    Args:
        logits: (P, H, W) mask logits.
        targets: (P, H, W) float 0/1.
        gamma: focusing exponent; larger ignores easy pixels more.

    Returns:
        (P,) losses; a mask with no ship pixel (background prompt) has the background term only.
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = (ce * (1 - p_t) ** gamma).flatten(1)
    pos = targets.flatten(1)
    neg = 1 - pos
    pos_n, neg_n = pos.sum(1), neg.sum(1)
    pos_term = (loss * pos).sum(1) / pos_n.clamp(min=1)
    neg_term = (loss * neg).sum(1) / neg_n.clamp(min=1)
    return torch.where(pos_n > 0, 0.5 * (pos_term + neg_term), neg_term)


def mean_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per mask, averaged over its pixels. (P, H, W) -> (P,)."""
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return ce.flatten(1).mean(1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - Dice per mask. logits, targets: (P, H, W); returns (P,)."""
    prob = logits.sigmoid().flatten(1)
    t = targets.flatten(1)
    inter = (prob * t).sum(1)
    return 1 - (2 * inter + eps) / (prob.sum(1) + t.sum(1) + eps)


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU per mask of two boolean (P, H, W) tensors; 1 where both are empty."""
    inter = (pred & target).flatten(1).sum(1).float()
    union = (pred | target).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def heatmap_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss. logits, target: (B, 1, h, w), target in [0, 1]."""
    prob = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    peak = target.eq(1).float()
    pos = -torch.log(prob) * (1 - prob) ** 2 * peak
    neg = -torch.log(1 - prob) * prob**2 * (1 - target) ** 4 * (1 - peak)
    return (pos.sum() + neg.sum()) / peak.sum().clamp(min=1)


def prompt_losses(
    sam: Sam,
    embedding: torch.Tensor,
    prompts: PromptBatch,
    dense_box: bool,
    refiner: MaskRefiner | None = None,
) -> torch.Tensor:
    """(P,) losses of one chip's prompts: BCE + Dice of the mask, plus the IoU head's MSE.

    Box and point prompts are decoded in two calls (SAM takes one kind per call). Dice is
    undefined for an empty target (any positive pixel costs ~1), so background prompts learn
    from the cross-entropy term alone.

    Args:
        sam: the model.
        embedding: (1, C, E, E) image embedding of the chip.
        prompts: the chip's prompts and target masks (chip pixels).
        dense_box: boxes also go in as SAM's mask input.
        refiner: the model's mask refiner, if its embeddings carry detail channels.
    """
    is_box = ~np.isnan(prompts.boxes[:, 0])
    parts = []
    for sel, kind in ((is_box, "boxes"), (~is_box, "points")):
        if not sel.any():
            continue
        prompt = torch.from_numpy(prompts.boxes[sel] if kind == "boxes" else prompts.points[sel])
        prompt = prompt.to(embedding.device)
        logits, iou_pred = decode(
            sam,
            embedding,
            boxes=prompt if kind == "boxes" else None,
            points=prompt if kind == "points" else None,
            dense_box=dense_box,
            refiner=refiner,
        )
        target = torch.from_numpy(prompts.targets[sel]).to(embedding.device).float()
        logits = logits.float()
        with torch.no_grad():
            actual = mask_iou(logits > 0, target > 0.5)
        has_ship = target.flatten(1).any(1).float()
        parts.append(
            mean_bce(logits, target)
            + has_ship * dice_loss(logits, target)
            + (iou_pred.float() - actual) ** 2
        )
    return torch.cat(parts)
