"""A small convolutional image encoder for the from-scratch `tiny` SAM.

A ViT learns locality from data; with one annotated scene and a CPU there is not enough of
either. Convolutions know locality from the start, which is why MobileSAM and EfficientSAM-style
small models swap SAM's encoder while keeping its prompt encoder and mask decoder. This one is
a residual CNN down to 1/32 of the chip with a feature-pyramid top-down path back to the
embedding stride, so every embedding cell sees both the hull under it and the harbour around it.
It makes embeddings shaped like SAM's: (B, C, S/stride, S/stride), ending in SAM's LayerNorm2d,
optionally followed by packed half-resolution detail channels (`geosam.model.detail`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from geosam.model.detail import pack_detail


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(8, c_out),
        nn.GELU(),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.GroupNorm(8, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x + self.body(x))


class ConvImageEncoder(nn.Module):
    """Residual CNN plus a top-down pyramid: (B, 3, S, S) normalised RGB -> (B, C, S/s, S/s).

    Args:
        img_size: input edge S in pixels (the chip size).
        out_chans: channels C of the embedding (SAM's prompt dimension).
        stride: embedding stride s in pixels: 4, 8 or 16.
        widths: channels at strides 2, 4, 8, 16 and 32.
        depths: residual blocks at strides 4, 8, 16 and 32.
        detail_chans: channels of detail features at stride 2, made from the stride 2 and 4
            features and packed after the embedding's channels; 0 for none.
    """

    def __init__(
        self,
        img_size: int = 256,
        out_chans: int = 128,
        stride: int = 8,
        widths: tuple[int, int, int, int, int] = (24, 48, 96, 160, 160),
        depths: tuple[int, int, int, int] = (1, 2, 2, 1),
        detail_chans: int = 0,
    ) -> None:
        super().__init__()
        if stride not in (4, 8, 16):
            raise ValueError(f"stride must be 4, 8 or 16, got {stride}")
        self.img_size = img_size
        self.stride = stride
        self.stem = _conv(3, widths[0], stride=2)
        self.stages = nn.ModuleList(
            nn.Sequential(
                _conv(widths[k], widths[k + 1], stride=2),
                *[_Residual(widths[k + 1]) for _ in range(depths[k])],
            )
            for k in range(4)
        )
        # Pyramid levels at strides 4, 8, 16, 32; only those at or below the output stride.
        self.first_level = {4: 0, 8: 1, 16: 2}[stride]
        self.lateral = nn.ModuleList(
            nn.Conv2d(widths[k + 1], out_chans, 1) for k in range(self.first_level, 4)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self.detail_chans = detail_chans
        self.detail = (
            nn.Sequential(
                _conv(widths[0] + widths[1], detail_chans),
                nn.Conv2d(detail_chans, detail_chans, 1),
            )
            if detail_chans
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels -> (B, out_chans [+ detail], S/stride, S/stride)."""
        x = half = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        top = self.lateral[-1](features[-1])
        for level in range(len(self.lateral) - 2, -1, -1):
            lateral = self.lateral[level](features[self.first_level + level])
            top = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
        out: torch.Tensor = self.neck(top)
        if self.detail is None:
            return out
        quarter = F.interpolate(
            features[0], size=half.shape[-2:], mode="bilinear", align_corners=False
        )
        return pack_detail(out, self.detail(torch.cat([half, quarter], 1)))
