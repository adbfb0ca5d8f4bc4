"""Where a mask's logits are cut, chosen per sensor on the validation ships.

SAM cuts its mask logits at 0. A model trained from scratch on two sensors is not calibrated
alike on both: on the held-out dev scenes the Sentinel-2 ports' box-prompt masks came out too
small (IoU 0.662 at a cut of 0, 0.689 at -2) and the marina's aerial ones too large (0.739 at
0, 0.776 at +3), one model (`bench/RESULTS.md`, section 6). So validation scores every
candidate cut on each sensor's ships, each sensor keeps the cut with the best mean IoU, and
`detect` cuts a scene's masks at its sensor's cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from geosam.model.losses import mask_iou

MASK_CUTS = np.round(np.arange(-8.0, 8.01, 0.5), 1)
"""Candidate logit cuts; 0 (SAM's) is among them and wins ties. Within -3..+3 the ports'
choice sat on the edge (-3; on the held-out ports -5 scored 0.713 against -3's 0.699)."""


@dataclass
class MaskCutTally:
    """Sums of box-prompt mask IoU and Dice at every cut of `MASK_CUTS`, per sensor.

    A sensor is a scene pixel size (None: unknown), as in `DetectionTally`.
    """

    iou: dict[float | None, np.ndarray] = field(default_factory=dict)
    dice: dict[float | None, np.ndarray] = field(default_factory=dict)
    masks: dict[float | None, int] = field(default_factory=dict)

    def add(
        self,
        logits: torch.Tensor,
        inside: torch.Tensor,
        target: torch.Tensor,
        group: float | None,
    ) -> None:
        """Masks of one chip: logits (P, S, S), kept `inside` (P, S, S) bool, true `target`."""
        logits, inside, target = logits.float().cpu(), inside.cpu(), target.cpu()
        size = target.flatten(1).sum(1).float()
        iou, dice = np.zeros(len(MASK_CUTS)), np.zeros(len(MASK_CUTS))
        for k, cut in enumerate(MASK_CUTS):
            pred = (logits > float(cut)) & inside
            inter = (pred & target).flatten(1).sum(1).float()
            iou[k] = float(mask_iou(pred, target).double().sum())
            total = (pred.flatten(1).sum(1) + size).clamp(min=1)
            dice[k] = float((2 * inter / total).double().sum())
        self._add(group, iou, dice, len(logits))

    def _add(self, group: float | None, iou: np.ndarray, dice: np.ndarray, masks: int) -> None:
        self.iou[group] = self.iou.get(group, 0) + iou
        self.dice[group] = self.dice.get(group, 0) + dice
        self.masks[group] = self.masks.get(group, 0) + masks

    @staticmethod
    def join(parts: list[MaskCutTally]) -> MaskCutTally:
        """The tallies of several ranks as one."""
        joined = MaskCutTally()
        for part in parts:
            for group, count in part.masks.items():
                joined._add(group, part.iou[group], part.dice[group], count)
        return joined

    def pooled(self) -> MaskCutTally:
        """All sensors' masks as one group (None), for scenes of unknown pixel size."""
        pooled = MaskCutTally()
        for group, count in self.masks.items():
            pooled._add(None, self.iou[group], self.dice[group], count)
        return pooled

    def best_cuts(self) -> dict[float | None, float]:
        """Each sensor's cut with the best mean IoU (the one nearest 0 among equals)."""
        order = np.argsort(np.abs(MASK_CUTS), kind="stable")
        return {
            group: float(MASK_CUTS[order[int(np.argmax(sums[order]))]])
            for group, sums in self.iou.items()
        }

    def means(self, cuts: dict[float | None, float]) -> tuple[float, float]:
        """(IoU, Dice) over all masks, each sensor's masks cut at its cut in `cuts`."""
        total = sum(self.masks.values())
        if not total:
            return 0.0, 0.0
        index = {g: int(np.argmin(np.abs(MASK_CUTS - cuts[g]))) for g in self.masks}
        iou = sum(float(self.iou[g][index[g]]) for g in self.masks)
        dice = sum(float(self.dice[g][index[g]]) for g in self.masks)
        return iou / total, dice / total
