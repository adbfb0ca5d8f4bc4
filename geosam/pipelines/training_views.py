"""Training chips in their augmented views, and the image embeddings of those views.

A trained encoder (the from-scratch `tiny`) encodes each step's views afresh. A frozen one
(the official `vit_*` checkpoints) makes the same embedding for the same pixels every time, so
every view of every chip is encoded once per run, through the on-disk embedding cache, and then
read from memory at each step: augmentation costs a frozen encoder nothing after the first pass.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from geosam.data.augment import jitter_colours, shift_chip, view_chip
from geosam.data.copy_paste import ShipCutout, cut_ships, paste_ships
from geosam.model.embeddings import EmbeddingCache, encode_images
from geosam.model.shipsam import ShipSam
from geosam.pipelines.distributed import Ranks, barrier
from geosam.pipelines.training_data import TrainChip

MAX_SHIFT = 12
"""Largest shift, in pixels, of a view for an encoder that trains (1.5 cells at stride 8)."""


class View(NamedTuple):
    """How a chip is seen: `turn` 0..7 (`geosam.data.augment.view_chip`), then a shift.

    `paste` seeds the ships pasted onto the view (`geosam.data.copy_paste`); `colour` seeds
    its colour jitter (`geosam.data.augment.jitter_colours`); 0: none.
    """

    turn: int
    dx: int = 0
    dy: int = 0
    paste: int = 0
    colour: int = 0


class ChipViews:
    """The training chips, each in `views` views (see `geosam.data.augment`).

    Args:
        chips: the chips in memory.
        views: how many views are used (1: the chips as they are).
        cache: where frozen-encoder embeddings come from.
        ranks: the process group (frozen embeddings are shared through the cache folder).
        device: where embeddings are returned.
        paste_ships: most ships pasted onto a view whose `paste` seed is set.
        cut_from: the chips whose ships may be pasted (the training chips: never a
            validation chip's ship); a ship is pasted onto chips of its own scene only.
    """

    def __init__(
        self,
        chips: list[TrainChip],
        views: int,
        cache: EmbeddingCache,
        ranks: Ranks,
        device: torch.device,
        paste_ships: int = 0,
        cut_from: list[int] | None = None,
    ) -> None:
        self.chips, self.views, self.cache = chips, views, cache
        self.ranks, self.device = ranks, device
        self._frozen: dict[tuple[int, int], torch.Tensor] | None = None
        self.paste_ships = paste_ships
        self.cutouts: dict[str, list[ShipCutout]] = {}
        for i in cut_from or []:
            if not paste_ships:
                break
            c = chips[i]
            found = cut_ships((c.image, c.valid, c.boxes, c.masks))
            self.cutouts.setdefault(c.scene, []).extend(found)

    def view(self, chip: int, view: View) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Chip `chip` in `view`: image (3, S, S), valid (S, S), boxes (N, 4) XYXY, masks."""
        c = self.chips[chip]
        turned = view_chip((c.image, c.valid, c.boxes, c.masks), view.turn)
        seen = shift_chip(turned, view.dx, view.dy)
        if view.paste:
            rng = np.random.default_rng(view.paste)
            count = int(rng.integers(1, self.paste_ships + 1))
            seen = paste_ships(seen, self.cutouts.get(c.scene, []), count, rng)
        if view.colour:
            image, valid, boxes, masks = seen
            colours = jitter_colours(image, valid, np.random.default_rng(view.colour))
            seen = (colours, valid, boxes, masks)
        return seen

    def prepare(self, model: ShipSam) -> int | None:
        """With a frozen encoder, fetch every view's embedding once; chips encoded here.

        Returns None when there is nothing to do (a trained encoder, or already prepared).
        Several ranks share the work through the cache folder: each encodes and stores its
        share, waits for the others, then reads them all. Without a cache folder every rank
        encodes every view itself.
        """
        if model.train_encoder or self._frozen is not None:
            return None
        keys = [(i, v) for i in range(len(self.chips)) for v in range(self.views)]
        images = [self.view(i, View(v))[0] for i, v in keys]
        before = self.cache.chips_encoded
        if self.ranks.distributed and self.cache.folder is not None:
            self.cache.get(self.ranks.share(images))
            barrier()
        embeddings = self.cache.get(images)
        self._frozen = {key: embeddings[k] for k, key in enumerate(keys)}
        return self.cache.chips_encoded - before

    def embeddings(
        self, model: ShipSam, indices: list[int], grad: bool, views: list[View] | None = None
    ) -> torch.Tensor:
        """(B, C, E, E) embeddings of chips in `views` (default: as they are).

        A frozen encoder's embeddings exist for unshifted views only.
        """
        views = views or [View(0)] * len(indices)
        pairs = list(zip(indices, views, strict=True))
        if not model.train_encoder:
            if self._frozen is None:  # once per run: no per-step hashing or cache lookups
                self.prepare(model)
            frozen = self._frozen or {}
            return torch.stack([frozen[i, v.turn] for i, v in pairs]).to(self.device)
        images = [self.view(i, v)[0] for i, v in pairs]
        pixels = torch.from_numpy(np.stack(images)).to(self.device)
        with torch.set_grad_enabled(grad):
            self.cache.encoder_calls += 1
            return encode_images(model.sam, pixels)
