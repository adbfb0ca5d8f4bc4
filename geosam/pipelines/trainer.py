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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geosam import __version__
from geosam.data.prompts import PromptBatch, PromptSettings, sample_prompts
from geosam.data.settings import ChipSettings
from geosam.data.split import SplitChip, spatial_split
from geosam.model.checkpoints import RANDOM_INIT, cache_dir, load_sam
from geosam.model.decoder import decode
from geosam.model.device import pick_device
from geosam.model.embeddings import EmbeddingCache, encode_images
from geosam.model.losses import balanced_focal_loss, dice_loss, mask_iou
from geosam.model.prompter import decode_boxes, encode_targets, prompter_loss
from geosam.model.shipsam import ShipSam
from geosam.pipelines.distributed import (
    Ranks,
    all_reduce_sum,
    barrier,
    broadcast_from_main,
    sum_gradients,
)
from geosam.pipelines.training_data import TrainChip, TrainingPair
from geosam.pipelines.validation import filled_boxes, match_centres

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneSettings:
    """Hyper-parameters of a fine-tuning run (all recorded in the run's files)."""

    model_type: str = "tiny"
    checkpoint: str | None = None
    epochs: int = 30
    batch_chips: int = 4
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 20
    grad_clip: float = 1.0
    val_fraction: float = 0.2
    patience: int = 8
    train_encoder: bool | None = None
    device: str = "auto"
    seed: int = 0
    cache: bool = True


@dataclass
class EpochEvent:
    """Progress report after each step (`step` counts within the epoch) and epoch end."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)


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
        self.model = ShipSam(sam, base_hash, train_encoder).to(self.device)
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
        self.cache = EmbeddingCache(
            sam,
            f"{settings.model_type}:{base_hash}",
            cache_dir().parent / "embeddings" if settings.cache else None,
            self.device,
        )
        self._frozen: torch.Tensor | None = None
        self.steps_per_epoch = max(1, math.ceil(len(self.train_idx) / settings.batch_chips))
        total = self.steps_per_epoch * settings.epochs
        self.optimizer = torch.optim.AdamW(
            self.model.trainable_parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        warm = max(1, min(settings.warmup_steps, total // 4))

        def schedule(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.best_iou = -1.0
        self.stale_epochs = 0
        self.autocast = self.device.type == "cuda"
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormals slow CPU steps ~8x while masks collapse

    # --- embeddings -----------------------------------------------------------------------
    def prepare_embeddings(self) -> None:
        """With a frozen encoder, fetch every chip's embedding once per run (all ranks call).

        Several ranks share the work through the cache folder: each encodes and stores its
        share of the chips, waits for the others, then reads them all. Without a cache folder
        there is nothing to share and every rank encodes every chip itself.
        """
        if self.model.train_encoder or self._frozen is not None:
            return
        images = [c.image for c in self.chips]
        before = self.cache.chips_encoded
        if self.ranks.distributed and self.cache.folder is not None:
            self.cache.get(self.ranks.share(images))
            barrier()
        self._frozen = self.cache.get(images)
        encoded = self.sum_over_ranks(self.cache.chips_encoded - before)
        log.info(
            "image embeddings of %d chips: %d encoded, the rest read from the cache",
            len(images),
            encoded,
        )

    def embeddings(self, indices: list[int], grad: bool) -> torch.Tensor:
        """Embeddings of chips: from the cache with a frozen encoder, else by the encoder."""
        if not self.model.train_encoder:
            if self._frozen is None:  # once per run: no per-step hashing or cache lookups
                self._frozen = self.cache.get([c.image for c in self.chips])
            return self._frozen[indices].to(self.device)
        images = [self.chips[i].image for i in indices]
        pixels = torch.from_numpy(np.stack(images)).to(self.device)
        with torch.set_grad_enabled(grad):
            self.cache.encoder_calls += 1
            return encode_images(self.model.sam, pixels)

    def sum_over_ranks(self, value: float) -> float:
        """`value` summed over all ranks (itself for a single process)."""
        if not self.ranks.distributed:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        all_reduce_sum([total])
        return float(total)

    # --- one step ---------------------------------------------------------------------------
    def prompt_rng(self, chip: int) -> np.random.Generator:
        """The generator of one chip's prompts in this epoch, the same on whichever rank."""
        return np.random.default_rng([self.settings.seed % 2**64, self.epoch, chip])

    def step_loss(self, batch: list[int]) -> torch.Tensor:
        """The loss of a batch of chips, or with several ranks this rank's part of it.

        The loss of a batch is the mean mask loss over the prompts of all its chips plus the
        prompter loss, whose heatmap term is normalised by the ship centres of all its chips
        and whose offset/size term by its supervised cells. A rank sees its share of the
        chips only, so each term, computed on the share, is scaled by the share's count over
        the batch's count (all 1 for a single process); the parts add up to the batch's loss.
        """
        mine = self.ranks.share(batch)
        sampled = [self._sample(i) for i in mine]
        grid = self.model.sam.prompt_encoder.image_embedding_size[0]
        targets = encode_targets([self.chips[i].boxes for i in mine], grid, self.model.stride)
        local = [
            sum(len(prompts) for prompts in sampled),
            int(targets[0].eq(1).sum()),
            int(targets[3].sum()),
        ]
        totals = local
        if self.ranks.distributed:
            counts = torch.tensor(local, dtype=torch.float64, device=self.device)
            all_reduce_sum([counts])
            totals = [round(c) for c in counts.tolist()]
        if not mine:
            return torch.zeros((), device=self.device)
        emb = self.embeddings(mine, grad=True)
        losses = []
        for j, prompts in enumerate(sampled):
            if len(prompts) == 0:
                continue
            is_box = ~np.isnan(prompts.boxes[:, 0])
            for sel, kind in ((is_box, "boxes"), (~is_box, "points")):
                if not sel.any():
                    continue
                prompt = torch.from_numpy(
                    prompts.boxes[sel] if kind == "boxes" else prompts.points[sel]
                )
                logits, iou_pred = decode(
                    self.model.sam, emb[j : j + 1], **{kind: prompt.to(self.device)}
                )
                target = torch.from_numpy(prompts.targets[sel]).to(self.device).float()
                logits = logits.float()
                with torch.no_grad():
                    actual = mask_iou(logits > 0, target > 0.5)
                # Dice is undefined for an empty target (any positive pixel costs ~1), so
                # background prompts learn from the focal term alone.
                has_ship = target.flatten(1).any(1).float()
                losses.append(
                    balanced_focal_loss(logits, target)
                    + has_ship * dice_loss(logits, target)
                    + (iou_pred.float() - actual) ** 2
                )
        share = [max(1, n) / max(1, t) for n, t in zip(local, totals, strict=True)]
        mask_loss = torch.cat(losses).mean() * share[0] if losses else emb.sum() * 0
        outputs = self.model.prompter(emb.float())
        # prompter_loss = heatmap term + offset/size term, each over its own count; rescale
        # the two terms apart: the heatmap term alone is the loss with no supervised cells.
        p_loss = prompter_loss(outputs, targets) * share[2]
        if share[1] != share[2]:
            heat_only = (*targets[:3], torch.zeros_like(targets[3]))
            p_loss = p_loss + prompter_loss(outputs, heat_only) * (share[1] - share[2])
        return mask_loss + p_loss

    def _sample(self, chip: int) -> PromptBatch:
        c = self.chips[chip]
        return sample_prompts(c.boxes, c.masks, c.valid, self.prompts, self.prompt_rng(chip))

    def train_epoch(self, report: Callable[[EpochEvent], None] | None) -> float:
        """One pass over the training chips in a seeded random order; the mean step loss."""
        self.model.train()
        self.prepare_embeddings()
        order = torch.randperm(len(self.train_idx), generator=self.shuffle).tolist()
        batches = [
            [self.train_idx[k] for k in order[s : s + self.settings.batch_chips]]
            for s in range(0, len(order), self.settings.batch_chips)
        ]
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
            total += value
            if report:
                report(EpochEvent(self.epoch + 1, self.settings.epochs, n, len(batches), total / n))
        return total / max(1, len(batches))

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mask IoU and Dice with exact box prompts, the filled-box baseline, prompter P/R.

        Each rank scores its share of the validation chips; the sums are added over ranks,
        so every rank gets the same metrics (and takes the same early-stopping decision).
        """
        self.model.eval()
        self.prepare_embeddings()
        masks = iou = dice = box_iou = tp = fp = fn = 0.0
        for i in self.ranks.share(self.val_idx):
            chip = self.chips[i]
            emb = self.embeddings([i], grad=False)
            if len(chip.boxes):
                boxes = torch.from_numpy(chip.boxes).to(self.device)
                logits, _ = decode(self.model.sam, emb, boxes=boxes)
                pred = (logits.float() > 0).cpu()
                target = torch.from_numpy(chip.masks)
                inter = (pred & target).flatten(1).sum(1).float()
                dices = 2 * inter / (pred.flatten(1).sum(1) + target.flatten(1).sum(1)).clamp(min=1)
                filled = filled_boxes(chip.boxes, chip.image.shape[-1])
                masks += len(chip.boxes)
                iou += float(mask_iou(pred, target).double().sum())
                dice += float(dices.double().sum())
                box_iou += float(mask_iou(filled, target).double().sum())
            found = decode_boxes(
                self.model.prompter(emb.float()), self.model.stride, self.model.chip_size
            )[0][0]
            t, f, n = match_centres(found, chip.boxes)
            tp, fp, fn = tp + t, fp + f, fn + n
        sums = [masks, iou, dice, box_iou, tp, fp, fn]
        if self.ranks.distributed:
            summed = torch.tensor(sums, dtype=torch.float64, device=self.device)
            all_reduce_sum([summed])
            broadcast_from_main([summed])  # bit-identical everywhere: one stopping decision
            sums = summed.tolist()
        masks, iou, dice, box_iou, tp, fp, fn = sums
        return {
            "val_iou": iou / masks if masks else 0.0,
            "val_dice": dice / masks if masks else 0.0,
            "box_iou": box_iou / masks if masks else 0.0,
            "prompter_precision": tp / max(1, tp + fp),
            "prompter_recall": tp / max(1, tp + fn),
        }

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
            "history": self.history,
            "best_iou": self.best_iou,
            "stale_epochs": self.stale_epochs,
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
        self.history = list(state["history"])
        self.best_iou = float(state["best_iou"])
        self.stale_epochs = int(state["stale_epochs"])
        self.shuffle.set_state(state["rng_shuffle"])
        torch.set_rng_state(state["rng_torch"])
        random.setstate(state["rng_python"])

    def metadata(self, metrics: dict[str, float]) -> dict[str, Any]:
        """What `detect` needs and what made the model."""
        return {
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
