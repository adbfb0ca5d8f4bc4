"""Validation scores: the filled-box baseline, centre matches, the detection operating point.

The operating point is the detection score threshold with the best F1 on validation chips,
per sensor, with F1 averaged over a strict and a loose match (`MATCH_IOUS`), and the cut of
the mask logits with the best box-prompt IoU, per sensor (`geosam.pipelines.mask_cuts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from geosam.geometry.masks import suppress_duplicates
from geosam.model.decoder import decode, filled_boxes
from geosam.model.losses import mask_iou
from geosam.model.predict import ChipPredictor
from geosam.model.prompter import decode_boxes
from geosam.model.shipsam import ShipSam
from geosam.pipelines.mask_cuts import MaskCutTally
from geosam.pipelines.training_data import TrainChip

PROPOSAL_THRESHOLD = 0.1
"""Centre score above which prompter proposals are decoded in validation (and in `detect`)."""


def match_centres(found: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """Greedy one-to-one match of proposed box centres inside true boxes: (TP, FP, FN)."""
    used = np.zeros(len(truth), dtype=bool)
    tp = 0
    for x0, y0, x1, y1 in found:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        inside = (
            (truth[:, 0] <= cx) & (cx <= truth[:, 2]) & (truth[:, 1] <= cy) & (cy <= truth[:, 3])
        )
        candidates = np.flatnonzero(inside & ~used)
        if candidates.size:
            used[candidates[0]] = True
            tp += 1
    return tp, len(found) - tp, len(truth) - tp


# Candidate operating points: final scores (centre score x predicted IoU) a detection must reach.
SCORE_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)
MATCH_IOUS = (0.3, 0.5)
"""Mask IoUs at which a detection matches a reference ship; F1 is averaged over them, so a
sensor whose ships are too small to outline at 0.5 (10 m ships) still gets a useful
threshold (COCO averages AP over IoUs for the same reason)."""
THRESHOLD_KEY = "score_threshold"
CUT_KEY = "mask_cut"


@dataclass
class DetectionTally:
    """Prompt-free detections on validation chips, kept to choose the score threshold.

    For every validation chip, all proposals above a low centre score are decoded and
    duplicate masks suppressed; each surviving detection is recorded with its score and
    whether it matches a reference mask at each of `MATCH_IOUS` (greedy by score). Greedy
    suppression and greedy matching both go by descending score, so the detections kept at
    any threshold t are exactly those recorded with score >= t, with the same matches: one
    pass scores every threshold at once.
    """

    scores: list[float] = field(default_factory=list)
    matched: dict[float, list[bool]] = field(default_factory=dict)
    groups: list[float | None] = field(default_factory=list)
    references: dict[float | None, int] = field(default_factory=dict)

    def add_chip(
        self,
        masks: np.ndarray,
        scores: np.ndarray,
        truth: np.ndarray,
        group: float | None = None,
        max_iou: float = 0.5,
    ) -> None:
        """One chip: masks (P, S, S) bool with scores (P,), reference masks (N, S, S) bool.

        `group` is the chip's scene pixel size (see `group_thresholds`).
        """
        self.references[group] = self.references.get(group, 0) + len(truth)
        kept = suppress_duplicates(masks, scores, max_iou) if len(masks) else []
        if not kept:
            return
        pred = masks[kept].reshape(len(kept), -1).astype(np.float32)
        ref = truth.reshape(len(truth), pred.shape[1]).astype(np.float32)
        inter = pred @ ref.T
        union = pred.sum(1)[:, None] + ref.sum(1)[None, :] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        for match in MATCH_IOUS:
            free = np.ones(len(truth), dtype=bool)
            hits = self.matched.setdefault(match, [])
            for row in range(len(kept)):
                candidates = np.flatnonzero(free & (iou[row] >= match))
                if candidates.size:
                    free[candidates[np.argmax(iou[row, candidates])]] = False
                hits.append(bool(candidates.size))
        self.scores += [float(scores[k]) for k in kept]
        self.groups += [group] * len(kept)

    @staticmethod
    def join(parts: list[DetectionTally]) -> DetectionTally:
        """The tallies of several ranks as one."""
        joined = DetectionTally()
        for part in parts:
            joined.scores += part.scores
            for match, hits in part.matched.items():
                joined.matched.setdefault(match, []).extend(hits)
            joined.groups += part.groups
            for group, count in part.references.items():
                joined.references[group] = joined.references.get(group, 0) + count
        return joined

    def counts_at(
        self, thresholds: float | dict[float | None, float], match: float = 0.5
    ) -> tuple[int, int, int]:
        """(TP, FP, FN) at mask IoU >= `match` of the detections scoring >= the threshold.

        `thresholds` is one threshold for all, or one per group (groups left out of the
        dict are left out of the counts).
        """
        if not isinstance(thresholds, dict):
            thresholds = dict.fromkeys(self.references, thresholds)
        scores = np.asarray(self.scores)
        matched = np.asarray(self.matched.get(match, []), dtype=bool)
        groups = np.asarray(self.groups, dtype=object)
        tp = fp = fn = 0
        for group, threshold in thresholds.items():
            keep = (scores >= threshold) & (groups == group)
            hits = int(matched[keep].sum())
            tp, fp, fn = tp + hits, fp + int(keep.sum()) - hits, fn + self.references[group] - hits
        return tp, fp, fn

    def f1_at(self, thresholds: float | dict[float | None, float]) -> float:
        """F1 of the detections scoring >= the threshold(s), averaged over `MATCH_IOUS`."""
        f1s = []
        for match in MATCH_IOUS:
            tp, fp, fn = self.counts_at(thresholds, match)
            f1s.append(2 * tp / max(1, 2 * tp + fp + fn))
        return float(np.mean(f1s))

    def best(self, groups: list[float | None] | None = None) -> tuple[float, float]:
        """(F1, threshold) of the best threshold on `SCORE_GRID` for `groups` (default all).

        The lowest threshold wins ties.
        """
        chosen = list(self.references) if groups is None else groups
        f1s = [self.f1_at(dict.fromkeys(chosen, float(t))) for t in SCORE_GRID]
        k = int(np.argmax(f1s))
        return f1s[k], float(SCORE_GRID[k])

    def group_thresholds(self) -> dict[float | None, float]:
        """The best threshold of each group of scenes of one pixel size (one sensor).

        Scores of one model are not calibrated alike across sensors: on the held-out dev
        ports the best threshold was 0.15 while the marina's was 0.20 (`bench/RESULTS.md`),
        so each group gets its own. Chips of unknown pixel size (None) form a group too.
        """
        return {group: self.best([group])[1] for group in self.references}


@dataclass
class ValidationSums:
    """Running sums of the validation scores over chips (added up over ranks as counts).

    Box-prompt mask IoU and Dice of every reference ship at every candidate cut of the
    logits (`MaskCutTally`), the filled-box baseline, prompter centre precision and recall
    (centre score >= 0.3), and prompt-free detections as `detect` makes them (prompter
    proposals decoded into masks, `ChipPredictor.proposal_masks`, scored by centre score x
    predicted IoU, duplicates suppressed), from which the operating point is chosen. The
    proposals' masks are cut at 0: the cuts are being chosen in the same pass.
    """

    masks: float = 0.0
    box_iou: float = 0.0
    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0
    tally: DetectionTally = field(default_factory=DetectionTally)
    cuts: MaskCutTally = field(default_factory=MaskCutTally)

    def add_chip(self, model: ShipSam, chip: TrainChip, embedding: torch.Tensor) -> None:
        """Score one chip from its (1, C, E, E) embedding."""
        dense, sam = model.dense_box, model.sam
        if len(chip.boxes):
            boxes = torch.from_numpy(chip.boxes).to(embedding.device)
            logits, _ = decode(
                sam,
                embedding,
                boxes=boxes,
                dense_box=dense,
                refiner=model.refiner,
                within=boxes,
            )
            filled = filled_boxes(chip.boxes, chip.image.shape[-1])
            target = torch.from_numpy(chip.masks)
            # Kept inside the box, as `detect` keeps a box prompt's mask.
            self.cuts.add(logits, filled, target, chip.pixel_size)
            self.masks += len(chip.boxes)
            self.box_iou += float(mask_iou(filled, target).double().sum())
        outputs = model.prompter(embedding.float())
        found, centre = decode_boxes(
            outputs, model.heatmap_stride, model.chip_size, PROPOSAL_THRESHOLD
        )[0]
        tp, fp, fn = match_centres(found[centre >= 0.3], chip.boxes)
        self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn
        proposed = np.zeros((0, *chip.valid.shape), dtype=bool)
        scores = np.zeros(0, dtype=np.float32)
        if len(found):
            predictor = ChipPredictor(model, embedding.device)
            proposed, iou_pred, _ = predictor.proposal_masks(embedding, found)
            proposed &= chip.valid
            scores = centre * iou_pred
        self.tally.add_chip(proposed, scores, chip.masks, chip.pixel_size)

    def counts(self) -> list[float]:
        """The numeric sums, in field order (for an all-reduce)."""
        return [self.masks, self.box_iou, self.tp, self.fp, self.fn]

    @staticmethod
    def from_counts(
        counts: list[float], tally: DetectionTally, cuts: MaskCutTally
    ) -> ValidationSums:
        """Inverse of `counts`, with the joined detection and mask-cut tallies."""
        masks, box_iou, tp, fp, fn = counts
        return ValidationSums(masks, box_iou, tp, fp, fn, tally, cuts)

    def metrics(self) -> dict[str, float]:
        """Means and ratios; ``val_score`` (mean of IoU and F1) picks the best model.

        ``score_threshold`` is the best threshold over all chips; with chips of several pixel
        sizes, ``score_threshold@<size>`` is each size's own (`group_thresholds`) and
        ``val_f1`` the F1 with each size at its own threshold, as `detect` will run.
        ``mask_cut`` (and ``mask_cut@<size>`` with several sizes) is the logit cut with the
        best box-prompt IoU; ``val_iou`` and ``val_dice`` are scored at each size's cut.
        """
        f1, threshold = self.tally.best()
        by_size: dict[str, float] = {}
        if len(self.tally.references) > 1:
            chosen = self.tally.group_thresholds()
            f1 = self.tally.f1_at(chosen)
            by_size = {
                f"{THRESHOLD_KEY}@{size:.4g}": value
                for size, value in chosen.items()
                if size is not None
            }
        cuts = self.cuts.best_cuts()
        val_iou, val_dice = self.cuts.means(cuts)
        pooled = self.cuts.pooled().best_cuts().get(None, 0.0)
        cut_by_size: dict[str, float] = {}
        if len(cuts) > 1:
            cut_by_size = {f"{CUT_KEY}@{size:.4g}": v for size, v in cuts.items() if size}
        return {
            "val_iou": val_iou,
            "val_dice": val_dice,
            "box_iou": self.box_iou / self.masks if self.masks else 0.0,
            "prompter_precision": self.tp / max(1, self.tp + self.fp),
            "prompter_recall": self.tp / max(1, self.tp + self.fn),
            "val_f1": f1,
            THRESHOLD_KEY: threshold,
            **by_size,
            CUT_KEY: pooled,
            **cut_by_size,
            "val_score": (val_iou + f1) / 2,
        }


def thresholds_by_pixel_size(
    metrics: dict[str, float], key: str = THRESHOLD_KEY
) -> list[tuple[float, float]]:
    """The (pixel size, value) pairs of `key` (a score threshold, or `CUT_KEY`), finest first."""
    prefix = f"{key}@"
    found = [(float(k[len(prefix) :]), v) for k, v in metrics.items() if k.startswith(prefix)]
    return sorted(found)


def thresholds_text(metrics: dict[str, float]) -> str:
    """The score threshold(s) and mask cut(s) of `metrics` for people: one, or one per sensor."""
    by_size = thresholds_by_pixel_size(metrics)
    cuts = dict(thresholds_by_pixel_size(metrics, CUT_KEY))
    if not by_size:
        return (
            f"score {metrics.get(THRESHOLD_KEY, 0.0):.2f}, masks cut at logit "
            f"{metrics.get(CUT_KEY, 0.0):+.1f}"
        )
    return "score " + ", ".join(
        f"{t:.2f} and masks cut at {cuts.get(size, metrics.get(CUT_KEY, 0.0)):+.1f} "
        f"({size:g} m pixels)"
        for size, t in by_size
    )


def operating_point(metrics: dict[str, float], max_ship_length_px: float) -> dict[str, Any]:
    """What `detect` needs from a validation: the thresholds it chose, and the longest ship.

    ``min_score_by_pixel_size`` and ``mask_cut_by_pixel_size`` list (pixel size, value) per
    sensor when training had several; `detect` takes the entry nearest a scene's pixel size
    (see `DetectSettings`).
    """
    point: dict[str, Any] = {
        "prompter_threshold": PROPOSAL_THRESHOLD,
        "min_score": float(metrics.get(THRESHOLD_KEY, 0.3)),
        "mask_cut": float(metrics.get(CUT_KEY, 0.0)),
        "max_ship_length_px": max_ship_length_px,
    }
    for key, name in ((THRESHOLD_KEY, "min_score"), (CUT_KEY, "mask_cut")):
        by_size = thresholds_by_pixel_size(metrics, key)
        if by_size:
            point[f"{name}_by_pixel_size"] = [list(entry) for entry in by_size]
    return point
