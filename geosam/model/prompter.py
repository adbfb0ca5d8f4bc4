"""The ship prompter: a small head on SAM's image embedding that proposes ship boxes.

Detection must find ships without any prompt from the user. In the spirit of RSPrompter,
this head learns prompts from the same footprints the decoder learns from, reading the
(cached) image embedding, so training it costs almost nothing. It predicts, per embedding
cell, a ship-centre heatmap, the sub-cell centre offset and the box size (CenterNet
style); peaks of the heatmap become XYXY boxes that the fine-tuned decoder turns into masks.

The heads work at twice the embedding's resolution (`UPSAMPLE`): in a marina, yachts moored
side by side have centres a cell and a half apart on the embedding grid, closer than the
3 x 3 peak extraction can keep apart; on the finer grid they are three cells apart. When the
embedding carries half-resolution detail channels (`geosam.model.detail`), their average over
each fine cell is added to the fine grid's features: the gaps between moored hulls are visible
there and not in the embedding (held-out marina F1@0.5 0.63 -> 0.70, `bench/RESULTS.md`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from geosam.model.detail import split_embedding
from geosam.model.losses import heatmap_focal_loss

UPSAMPLE = 2
"""Heatmap cells per embedding cell, along each axis."""
DENSE_SIGMA = 0.09
"""Spread of the size-supervision Gaussian per box side (TTFNet's 0.54 / 6)."""
DENSE_MIN = 0.1
"""Lowest weight of a cell whose offset and size are supervised."""


class ShipPrompter(nn.Module):
    """Centre heatmap, offset and size head, at `UPSAMPLE` x the embedding's resolution.

    Args:
        in_channels: channels of the image embedding (SAM's prompt dimension).
        hidden: width of the head on the embedding grid (half of it on the finer grid).
        detail_channels: detail channels packed after the embedding's (0: none).
    """

    def __init__(self, in_channels: int, hidden: int = 128, detail_channels: int = 0) -> None:
        super().__init__()
        fine = hidden // 2
        self.trunk = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.GroupNorm(8, hidden),
            nn.GELU(),
            nn.Upsample(scale_factor=UPSAMPLE, mode="bilinear", align_corners=False),
            nn.Conv2d(hidden, fine, 3, padding=1),
            nn.GroupNorm(8, fine),
            nn.GELU(),
        )
        self.in_channels = in_channels
        self.heatmap = nn.Conv2d(fine, 1, 1)
        self.offset = nn.Conv2d(fine, 2, 1)
        self.size = nn.Conv2d(fine, 2, 1)
        # Start with a low ship prior so early training is not swamped by false centres.
        nn.init.constant_(self.heatmap.bias, -math.log((1 - 0.01) / 0.01))  # type: ignore[arg-type]
        self.detail_proj = nn.Conv2d(detail_channels, hidden, 1) if detail_channels else None

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, h, w) embeddings -> heatmap logits, offsets, log-sizes: (B, 1|2|2, 2h, 2w).

        Channels past `in_channels` are packed detail (`geosam.model.detail`), read only by a
        prompter built with `detail_channels`.
        """
        embedding, detail = split_embedding(embeddings, self.in_channels)
        x = self.trunk[:4](embedding)  # to the fine grid
        if self.detail_proj is not None:
            if detail is None:
                raise ValueError("this prompter reads detail channels; the embedding has none")
            x = x + self.detail_proj(F.adaptive_avg_pool2d(detail, x.shape[-2:]))
        x = self.trunk[4:](x)
        return self.heatmap(x), self.offset(x), self.size(x)


def encode_targets(
    boxes: list[NDArray[np.float32]], grid: int, stride: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training targets from XYXY chip-pixel boxes, one array per chip.

    Offset and size are supervised on every cell near the centre, not on the centre cell
    only (as TTFNet does): an elliptical Gaussian over the box weights the cells, 1 at the
    centre, down to `DENSE_MIN`; a cell near two ships belongs to the one that weighs it more
    (the nearer, relative to each ship's size). With a few dozen ships per scene, one
    supervised cell per ship left the size head guessing near-squares.

    Returns:
        heatmap (B,1,g,g) Gaussian peaks of 1 at ship centres; offset (B,2,g,g) from each
        supervised cell to its ship's centre and log_size (B,2,g,g) (log of box width and
        height in cells); and (B,1,g,g) weights of the supervised cells (1 at centres, 0 off
        ships).
    """
    n = len(boxes)
    heat = torch.zeros(n, 1, grid, grid)
    offset = torch.zeros(n, 2, grid, grid)
    log_size = torch.zeros(n, 2, grid, grid)
    where = torch.zeros(n, 1, grid, grid)
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    for b, chip_boxes in enumerate(boxes):
        for x0, y0, x1, y1 in np.asarray(chip_boxes, dtype=np.float64):
            cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
            w, h = max(x1 - x0, 1.0) / stride, max(y1 - y0, 1.0) / stride
            col, row = min(int(cx), grid - 1), min(int(cy), grid - 1)
            sigma = max(0.5, 0.15 * math.sqrt(w * h))
            g = torch.exp(-((xs - col) ** 2 + (ys - row) ** 2) / (2 * sigma**2))
            heat[b, 0] = torch.maximum(heat[b, 0], g)
            sx, sy = max(0.5, DENSE_SIGMA * w), max(0.5, DENSE_SIGMA * h)
            weight = torch.exp(-((xs - col) ** 2) / (2 * sx**2) - (ys - row) ** 2 / (2 * sy**2))
            own = (weight >= DENSE_MIN) & (weight > where[b, 0])
            own[row, col] = True
            offset[b, 0][own] = (cx - xs[own]).float()
            offset[b, 1][own] = (cy - ys[own]).float()
            log_size[b, 0][own] = math.log(w)
            log_size[b, 1][own] = math.log(h)
            where[b, 0][own] = weight[own].float()
    return heat, offset, log_size, where


def prompter_loss(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """Heatmap focal loss plus the weighted mean L1 of offset and log-size near ship centres."""
    heat_logits, offset, log_size = outputs
    heat_t, offset_t, size_t, where = (t.to(heat_logits.device) for t in targets)
    n = where.sum().clamp(min=1)
    regress = ((offset - offset_t).abs() * where).sum() + ((log_size - size_t).abs() * where).sum()
    return heatmap_focal_loss(heat_logits.float(), heat_t) + 0.5 * regress / n


def decode_boxes(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    stride: float,
    size: int,
    threshold: float = 0.3,
    max_boxes: int = 200,
) -> list[tuple[NDArray[np.float32], NDArray[np.float32]]]:
    """Heatmap peaks to boxes, per chip.

    Returns:
        Per chip: (K, 4) float32 XYXY boxes in chip pixels and (K,) float32 centre scores,
        highest first, at most `max_boxes`, scores >= `threshold`.
    """
    heat_logits, offset, log_size = outputs
    heat = heat_logits.float().sigmoid()
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    results = []
    for b in range(heat.shape[0]):
        flat = peaks[b, 0].flatten()
        k = min(max_boxes, flat.numel())
        scores, idx = flat.topk(k)
        keep = scores >= threshold
        scores, idx = scores[keep], idx[keep]
        grid = heat.shape[-1]
        rows, cols = idx // grid, idx % grid
        off = offset[b, :, rows, cols].float()
        wh = log_size[b, :, rows, cols].float().exp() * stride
        cx = (cols.float() + off[0]) * stride
        cy = (rows.float() + off[1]) * stride
        boxes = torch.stack([cx - wh[0] / 2, cy - wh[1] / 2, cx + wh[0] / 2, cy + wh[1] / 2], 1)
        boxes = boxes.clamp(0, size)
        results.append(
            (
                boxes.detach().cpu().numpy().astype(np.float32),
                scores.detach().cpu().numpy().astype(np.float32),
            )
        )
    return results
