"""Fine detail for the from-scratch `tiny` SAM: carried in its embedding, read by a mask refiner.

SAM's mask decoder sees the image only through its embedding, one cell per 8 (`tiny`) or 16
(`vit_*`) pixels, and upsamples from there. Yachts moored side by side in a marina are about
a dozen pixels wide with two- or three-pixel gaps between them: on that grid a box around one
hull also covers its neighbours, and a mask one pixel too wide all round already costs a
quarter of its IoU. Measured on the dev marina, the decoder alone drew blobs over the whole
box; with these two parts, held-out box-prompt IoU went from 0.574 to 0.692 after the same 400
training steps (`bench/RESULTS.md`, section 6).

- The encoder also makes a few feature channels at half the chip's resolution and packs them
  into extra channels of the embedding (space-to-depth), so the embedding stays one tensor for
  the cache, batching and distributed training; `split_embedding` undoes it.
- `MaskRefiner`, a small dilated CNN, corrects the decoder's low-resolution logits from those
  features, the logits themselves and the prompt box, for each prompt.

Models built on Meta's checkpoints have no detail channels and no refiner: their decoder runs as
released.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DETAIL_CHANNELS = 16
"""Detail feature channels at half the chip's resolution (the decoder's mask resolution)."""


def pack_detail(embedding: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
    """(B, C, E, E) embedding and (B, D, 4E, 4E) detail -> (B, C + 16D, E, E)."""
    factor = detail.shape[-1] // embedding.shape[-1]
    return torch.cat([embedding, F.pixel_unshuffle(detail, factor)], 1)


def split_embedding(
    embedding: torch.Tensor, channels: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first `channels` (SAM's embedding) and the unpacked detail, or None if there is none."""
    if embedding.shape[1] == channels:
        return embedding, None
    extra = embedding.shape[1] - channels
    factor = round((extra / DETAIL_CHANNELS) ** 0.5)
    if factor * factor * DETAIL_CHANNELS != extra:
        raise ValueError(f"embedding has {embedding.shape[1]} channels; expected {channels}")
    return embedding[:, :channels], F.pixel_shuffle(embedding[:, channels:], factor)


class MaskRefiner(nn.Module):
    """Residual correction of low-resolution mask logits from detail features and the box.

    Four 3 x 3 convolutions with dilations 1, 2, 4 and 8 see 31 x 31 cells (62 chip pixels,
    longer than a marina yacht), enough to follow a hull from the box's centre to its corners
    and stop at the gap to the next one. The last layer starts at zero, so an untrained
    refiner passes the decoder's logits through unchanged.

    Args:
        detail_channels: channels of the detail features.
        width: channels of the hidden layers.
    """

    def __init__(self, detail_channels: int = DETAIL_CHANNELS, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(detail_channels + 2, width, 3, padding=1), nn.GELU()]
        for dilation in (2, 4, 8):
            layers += [nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]

    def forward(
        self, detail: torch.Tensor, logits: torch.Tensor, box_map: torch.Tensor
    ) -> torch.Tensor:
        """Refined (P, 1, h, w) logits.

        The whole mask grid is refined, not a window around the prompt: trained on windows
        the refiner learned markedly slower (validation IoU 0.61 against 0.70 at step 300),
        as the decoder's stray logits away from the box were then left to the decoder alone.

        Args:
            detail: (1, D, h, w) detail features of the chip.
            logits: (P, 1, h, w) the decoder's low-resolution mask logits, one per prompt.
            box_map: (P, 1, h, w) +1 inside each prompt's box, -1 outside (0 for points).
        """
        if detail.shape[-2:] != logits.shape[-2:]:  # an encoder of another stride
            detail = F.interpolate(detail, size=logits.shape[-2:], mode="bilinear")
        features = detail.to(logits.dtype).expand(logits.shape[0], -1, -1, -1)
        x = torch.cat([features, logits, box_map.to(logits.dtype)], 1)
        correction: torch.Tensor = self.out(self.body(x))
        return logits + correction

    @property
    def reach(self) -> int:
        """Cells on each side of an output cell that it reads: the dilated layers' radii."""
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        return sum(int(c.dilation[0]) * (int(c.kernel_size[0]) // 2) for c in convs)

    def forward_within(
        self,
        detail: torch.Tensor,
        logits: torch.Tensor,
        box_map: torch.Tensor,
        cells: torch.Tensor,
    ) -> torch.Tensor:
        """`forward` where each prompt needs it only: the same logits on its `cells`.

        A mask kept inside its box needs the refined logits there alone, yet `forward`
        refines the whole grid for every prompt, most of a box prompt's decoding time on the
        CPU. Here each prompt is refined on one window (the same size for all, for one
        batched call) that holds its cells widened by the `reach`, shifted inside the grid
        where it would cross an edge: the zero padding at the window's border is then
        either the grid's own or too far away to reach the cells. Elsewhere the decoder's
        logits pass unrefined.

        Args:
            detail: (1, D, h, w) detail features of the chip, as for `forward`.
            logits: (P, 1, h, w) the decoder's low-resolution mask logits.
            box_map: (P, 1, h, w) +1 inside each prompt's box, -1 outside.
            cells: (P, 4) int64 x0, y0, x1, y1 (end exclusive) grid cells per prompt.
        """
        height, width = logits.shape[-2:]
        if len(cells) == 0:
            return self(detail, logits, box_map)
        if detail.shape[-2:] != logits.shape[-2:]:
            detail = F.interpolate(detail, size=logits.shape[-2:], mode="bilinear")
        low, high = cells[:, :2] - self.reach, cells[:, 2:] + self.reach
        win_w, win_h = (int(v) for v in (high - low).amax(0))
        win_w, win_h = min(win_w, width), min(win_h, height)
        if win_w == width and win_h == height:
            return self(detail, logits, box_map)
        left = low[:, 0].clamp(0, width - win_w).tolist()
        top = low[:, 1].clamp(0, height - win_h).tolist()
        windows = [
            (slice(y, y + win_h), slice(x, x + win_w)) for x, y in zip(left, top, strict=True)
        ]
        refined = self(
            torch.stack([detail[0, :, rows, cols] for rows, cols in windows]),
            torch.stack([logits[k, :, rows, cols] for k, (rows, cols) in enumerate(windows)]),
            torch.stack([box_map[k, :, rows, cols] for k, (rows, cols) in enumerate(windows)]),
        )
        out = logits.clone()
        for k, (rows, cols) in enumerate(windows):
            out[k, :, rows, cols] = refined[k]
        return out
