"""One fine-tuning run in memory: model, optimiser, schedule, steps, validation and state.

`geosam.pipelines.finetune` drives it epoch by epoch and writes the run folder. Under
`torchrun` (see `geosam.pipelines.distributed`) every process holds a Trainer that trains on
its share of each batch; the result equals a single process's.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geosam import __version__
from geosam.data.augment import VIEWS
from geosam.data.prompts import PromptBatch, PromptSettings, sample_prompts
from geosam.data.settings import ChipSettings
from geosam.data.split import SplitChip, spatial_split
from geosam.model.checkpoints import RANDOM_INIT, cache_dir, load_sam
from geosam.model.device import pick_device
from geosam.model.embeddings import EmbeddingCache
from geosam.model.prompter import encode_targets
from geosam.model.shipsam import ShipSam
from geosam.pipelines.batch_loss import batch_loss
from geosam.pipelines.distributed import (
    Ranks,
    all_reduce_sum,
    broadcast_from_main,
    gather_objects,
    sum_gradients,
)
from geosam.pipelines.finetune_settings import EpochEvent, FinetuneSettings
from geosam.pipelines.lr_schedule import warmup_cosine, warmup_length
from geosam.pipelines.mask_cuts import MaskCutTally
from geosam.pipelines.training_data import TrainChip, TrainingPair, longest_ship_px
from geosam.pipelines.training_views import MAX_SHIFT, ChipViews, View
from geosam.pipelines.validation import DetectionTally, ValidationSums, operating_point
from geosam.pipelines.weight_average import WeightAverage

log = logging.getLogger(__name__)

SHIP_LENGTH_MARGIN = 1.5


class Trainer:
    """One fine-tuning run: data, model, optimiser, schedule and their exact resumable state.

    With several ranks (`torchrun`), every rank holds the same model, optimiser and batch
    order; it trains on its share of each batch and the gradients are summed over ranks, so
    every rank takes the step a single process would take on the whole batch.
    """

    def __init__(
        self,
        chips: list[TrainChip],
        chip_settings: ChipSettings,
        settings: FinetuneSettings,
        prompts: PromptSettings,
        run_dir: Path,
        pairs: list[TrainingPair] | None = None,
        ranks: Ranks | None = None,
    ) -> None:
        self.settings, self.prompts, self.run_dir = settings, prompts, run_dir
        self.pairs = list(pairs or [])
        self.chip_settings = chip_settings
        self.ranks = ranks or Ranks()
        self.device = pick_device(
            settings.device, self.ranks.local_rank if self.ranks.distributed else None
        )
        torch.manual_seed(settings.seed)
        random.seed(settings.seed)
        self.shuffle = torch.Generator().manual_seed(settings.seed)
        sam, base_hash = load_sam(
            settings.model_type, settings.checkpoint and Path(settings.checkpoint)
        )
        train_encoder = settings.train_encoder
        if train_encoder is None:
            train_encoder = base_hash == RANDOM_INIT
        self.model = ShipSam(sam, base_hash, train_encoder, prompts.dense_box).to(self.device)
        if self.ranks.distributed:  # the same start everywhere, whatever each rank's RNG did
            broadcast_from_main([*self.model.parameters(), *self.model.buffers()])
        self.chips = chips
        split = [SplitChip(c.scene, c.chip, len(c.boxes)) for c in chips]
        self.train_idx, self.val_idx, fell_back = spatial_split(split, settings.val_fraction)
        if fell_back:
            log.warning(
                "too few annotated chips for a separate validation set; validating on "
                "training chips (scores will be optimistic)"
            )
        scenes = sorted({c.scene for c in chips})
        validating = sorted({chips[i].scene for i in self.val_idx})
        log.info(
            "validating on %d chips of %s; too small to split, so training only: %s",
            len(self.val_idx),
            ", ".join(validating) or "none",
            ", ".join(s for s in scenes if s not in validating) or "no scene",
        )
        self.cache = EmbeddingCache(
            sam,
            f"{settings.model_type}:{base_hash}",
            cache_dir().parent / "embeddings" if settings.cache else None,
            self.device,
        )
        self.views = VIEWS if settings.augment else 1
        self.chip_views = ChipViews(
            chips,
            self.views,
            self.cache,
            self.ranks,
            self.device,
            # Pasted ships change pixels, which a frozen encoder's cached views cannot hold.
            settings.paste_ships if settings.augment and self.model.train_encoder else 0,
            self.train_idx,
        )
        if settings.paste_ships and not self.chip_views.paste_ships:
            log.warning("paste_ships needs augmentation and an encoder that trains (tiny): off")
        elif settings.paste_ships:
            cut = sum(len(found) for found in self.chip_views.cutouts.values())
            log.info("pasting up to %d ships per view, from %d cut out", settings.paste_ships, cut)
        passes = max(1, math.ceil(len(self.train_idx) / settings.batch_chips))
        if settings.epochs is not None:
            self.steps_per_epoch, self.epochs = passes, settings.epochs
        else:
            self.steps_per_epoch = max(1, min(settings.val_every, settings.steps))
            self.epochs = math.ceil(settings.steps / self.steps_per_epoch)
        total = self.total_steps = (
            passes * settings.epochs if settings.epochs is not None else settings.steps
        )
        self.fitted_rounds: int | None = None  # rounds in all, once a time budget shortened them
        self.global_step = 0
        self.optimizer = torch.optim.AdamW(
            self.model.trainable_parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        self.average = WeightAverage(self.model.trainable_parameters(), settings.average_decay)
        warm = warmup_length(settings.warmup_steps, total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(  # total read at each step
            self.optimizer, lambda step: warmup_cosine(step, warm, self.total_steps)
        )
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.best_score = -1.0
        self.stale_epochs = 0
        self.autocast = self.device.type == "cuda"

    # --- embeddings -----------------------------------------------------------------------
    def prepare_embeddings(self) -> None:
        """With a frozen encoder, fetch every chip view's embedding once (all ranks call)."""
        encoded = self.chip_views.prepare(self.model)
        if encoded is not None:
            log.info(
                "image embeddings of %d chips in %d views: %d encoded, the rest read from the "
                "cache",
                len(self.chips),
                self.views,
                self.sum_over_ranks(encoded),
            )

    def embeddings(
        self, indices: list[int], grad: bool, views: list[View] | None = None
    ) -> torch.Tensor:
        """Embeddings of chips (in `views`, default 0): cached when frozen, else encoded."""
        return self.chip_views.embeddings(self.model, indices, grad, views)

    def sum_over_ranks(self, value: float) -> float:
        """`value` summed over all ranks (itself for a single process)."""
        if not self.ranks.distributed:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        all_reduce_sum([total])
        return float(total)

    # --- one step ---------------------------------------------------------------------------
    def chip_rng(self, chip: int) -> np.random.Generator:
        """The generator of one chip's view and prompts at this step, the same on any rank."""
        return np.random.default_rng([self.settings.seed % 2**64, self.global_step, chip])

    def step_loss(self, batch: list[int]) -> torch.Tensor:
        """The loss of a batch of chips, or with several ranks this rank's part of it.

        Each chip is seen in a random view (flips and quarter turns, see
        `geosam.data.augment`) with freshly drawn prompts; `batch_loss` adds up the terms.
        A rank sees its share of the chips only; the batch's counts of prompts, ship centres
        and supervised cells are summed over ranks so that each rank scales its part.
        """
        mine = self.ranks.share(batch)
        drawn = [self._sample(i) for i in mine]
        views = [view for view, _, _ in drawn]
        sampled = [prompts for _, prompts, _ in drawn]
        targets = encode_targets(
            [boxes for _, _, boxes in drawn], self.model.heatmap_grid, self.model.heatmap_stride
        )
        local = [
            sum(len(prompts) for prompts in sampled),
            int(targets[0].eq(1).sum()),
            float(targets[3].sum()),
        ]
        totals = local
        if self.ranks.distributed:
            counts = torch.tensor(local, dtype=torch.float64, device=self.device)
            all_reduce_sum([counts])
            totals = counts.tolist()
        if not mine:
            return torch.zeros((), device=self.device)
        emb = self.embeddings(mine, grad=True, views=views)
        prompt_share, centre_share, cell_share = (
            max(1, n) / max(1, t) for n, t in zip(local, totals, strict=True)
        )
        share = (prompt_share, centre_share, cell_share)
        return batch_loss(self.model, emb, sampled, targets, share)

    def _sample(self, chip: int) -> tuple[View, PromptBatch, np.ndarray]:
        """A random view of the chip, its prompts, and its (N, 4) XYXY boxes in that view.

        With augmentation the view is one of the eight flips and quarter turns; an encoder
        that trains also sees it shifted by up to `MAX_SHIFT` pixels and, on request, with
        ships of its scene pasted onto it (`paste_ships`) and in jittered colours
        (`colour_jitter`); a frozen one reads cached embeddings, which exist
        for unshifted views of the chips as they are.
        """
        rng = self.chip_rng(chip)
        view = View(int(rng.integers(self.views)))
        if self.views > 1 and self.model.train_encoder:
            dx, dy = (int(d) for d in rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=2))
            paste = int(rng.integers(1, 2**31)) if self.chip_views.paste_ships else 0
            colour = int(rng.integers(1, 2**31)) if self.settings.colour_jitter else 0
            view = View(view.turn, dx, dy, paste, colour)
        _, valid, boxes, masks = self.chip_views.view(chip, view)
        return view, sample_prompts(boxes, masks, valid, self.prompts, rng), boxes

    def epoch_batches(self) -> list[list[int]]:
        """The batches of the current round, drawn with the run's seeded generator.

        With `epochs`, a round is one pass over the training chips in random order (the
        last batch may be short). Otherwise it is `val_every` batches of chips drawn with
        replacement in proportion to the ships they hold plus one: supervision spreads over
        ships rather than over area, so a dense marina and a sparse port trained together
        both get their share, and chips of open water still teach the prompter.
        """
        n, size = len(self.train_idx), self.settings.batch_chips
        if self.settings.epochs is not None:
            order = torch.randperm(n, generator=self.shuffle).tolist()
            return [[self.train_idx[k] for k in order[s : s + size]] for s in range(0, n, size)]
        steps = min(self.steps_per_epoch, self.total_steps - self.global_step)
        weights = torch.tensor(
            [len(self.chips[i].boxes) + 1.0 for i in self.train_idx], dtype=torch.float64
        )
        drawn = torch.multinomial(weights, steps * size, replacement=True, generator=self.shuffle)
        picks = [self.train_idx[k] for k in drawn.tolist()]
        return [picks[s * size : (s + 1) * size] for s in range(steps)]

    def train_epoch(self, report: Callable[[EpochEvent], None] | None) -> float:
        """One round of training steps; the mean step loss."""
        self.model.train()
        self.prepare_embeddings()
        batches = self.epoch_batches()
        total = 0.0
        for n, batch in enumerate(batches, start=1):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                loss = self.step_loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:
                loss.backward()  # type: ignore[no-untyped-call]
            if self.ranks.distributed:
                value = sum_gradients(self.model.trainable_parameters(), loss)
            else:
                value = loss.item()
            torch.nn.utils.clip_grad_norm_(
                self.model.trainable_parameters(), self.settings.grad_clip
            )
            self.optimizer.step()
            self.scheduler.step()
            self.average.update()
            self.global_step += 1
            total += value
            if report:
                report(EpochEvent(self.epoch + 1, self.epochs, n, len(batches), total / n))
        return total / max(1, len(batches))

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation scores (see `geosam.pipelines.validation.ValidationSums`).

        Each rank scores its share of the validation chips; the sums are added over ranks, so
        every rank gets the same metrics (and takes the same early-stopping decision). With
        `average_decay`, the averaged weights are scored: they are the ones a run saves.
        """
        self.model.eval()
        self.prepare_embeddings()
        sums = ValidationSums()
        with self.average.applied():
            for i in self.ranks.share(self.val_idx):
                sums.add_chip(self.model, self.chips[i], self.embeddings([i], grad=False))
        if self.ranks.distributed:
            counts = torch.tensor(sums.counts(), dtype=torch.float64, device=self.device)
            all_reduce_sum([counts])
            broadcast_from_main([counts])  # bit-identical everywhere: one stopping decision
            sums = ValidationSums.from_counts(
                counts.tolist(),
                DetectionTally.join(gather_objects(sums.tally)),
                MaskCutTally.join(gather_objects(sums.cuts)),
            )
        return sums.metrics()

    def saved_state(self) -> dict[str, torch.Tensor]:
        """The weights a model file keeps: the averaged ones with `average_decay`."""
        with self.average.applied():
            return {k: v.detach().clone() for k, v in self.model.changed_state().items()}

    def shorten_to(self, rounds: int) -> None:
        """Train `rounds` rounds in all instead of `epochs`; the schedule ends with them."""
        self.fitted_rounds = self.epochs = rounds
        self.total_steps = min(self.total_steps, rounds * self.steps_per_epoch)

    # --- state ------------------------------------------------------------------------------
    def resume_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly after the current epoch.

        Prompts need no state: each chip's generator derives from (seed, epoch, chip).
        """
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "history": self.history,
            "best_score": self.best_score,
            "stale_epochs": self.stale_epochs,
            "fitted_rounds": self.fitted_rounds,
            "average": self.average.state_dict(),
            "rng_shuffle": self.shuffle.get_state(),
            "rng_torch": torch.get_rng_state(),
            "rng_python": random.getstate(),
        }

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Inverse of `resume_state`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state.get("global_step", self.scheduler.last_epoch))
        self.history = list(state["history"])
        self.best_score = float(state.get("best_score", state.get("best_iou", -1.0)))
        self.stale_epochs = int(state["stale_epochs"])
        fitted = state.get("fitted_rounds")
        if fitted is not None and self.settings.minutes is not None:
            self.shorten_to(int(fitted))
        self.average.load_state_dict(state.get("average", {}))
        self.shuffle.set_state(state["rng_shuffle"])
        torch.set_rng_state(state["rng_torch"])
        random.setstate(state["rng_python"])

    def metadata(self, metrics: dict[str, float]) -> dict[str, Any]:
        """What `detect` needs and what made the model.

        ``operating_point`` holds the detection thresholds chosen on the validation chips
        and the length beyond which two pieces are never stitched into one ship (the longest
        training ship with a margin), so `detect` runs as training measured (see
        `geosam.pipelines.validation.operating_point`).
        """
        return {
            "operating_point": operating_point(
                metrics, round(SHIP_LENGTH_MARGIN * longest_ship_px(self.chips), 1)
            ),
            "model_type": self.settings.model_type,
            "base_hash": self.model.base_hash,
            "checkpoint": self.settings.checkpoint,
            "train_encoder": self.model.train_encoder,
            "chip_settings": self.chip_settings.to_dict(),
            "prompt_settings": self.prompts.to_dict(),
            "finetune_settings": asdict(self.settings),
            "geosam_version": __version__,
            "metrics": metrics,
            "epoch": self.epoch,
        }
