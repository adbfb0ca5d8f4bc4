"""Masks for one chip from a fine-tuned model: embed, propose boxes, decode in batches."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from geosam.data.settings import ChipSettings
from geosam.errors import CheckpointError, GeosamError
from geosam.geometry.pixels import mask_to_box
from geosam.model.checkpoints import RANDOM_INIT, detect_model_type, load_sam
from geosam.model.decoder import decode, filled_boxes
from geosam.model.embeddings import encode_images
from geosam.model.model_file import load_model_file
from geosam.model.prompter import decode_boxes
from geosam.model.registry import ModelSpec, build_sam, get_spec
from geosam.model.shipsam import ShipSam

log = logging.getLogger(__name__)

PROMPT_BATCH = 64

FIRST_MASK_MARGIN = 0.5
"""A proposal's first mask is kept inside its box widened by this share of its size per side.

On the held-out dev scenes no first mask reached beyond its proposal by more than 0.22 of
the box's size (918 proposals, `bench/RESULTS.md`, section 4), so the margin bounds where
the mask is decoded, not the mask.
"""

POINT_PROPOSAL_THRESHOLD = 0.02
"""Lowest centre score of a prompter box a user's point prompt may take (`prompted_masks`)."""


def load_detector(
    model_path: str | os.PathLike[str], device: torch.device, checkpoint: str | None = None
) -> tuple[ShipSam, dict[str, Any]]:
    """The fine-tuned model of a `model.pt` and its metadata, in eval mode on `device`.

    The base SAM weights come from `checkpoint`, else the path recorded at training time, else
    the cache; their hash must match the one the model was trained on.
    """
    state, meta = load_model_file(model_path)
    check_model_fits(model_path, state, meta)
    if (Path(model_path).parent / "UNFINISHED").exists():
        log.warning(
            "%s: its run has not finished (see UNFINISHED beside it); this is the best model "
            "so far",
            model_path,
        )
    base = checkpoint or meta.get("checkpoint")
    sam, base_hash = load_sam(meta["model_type"], base)
    if meta["base_hash"] not in (RANDOM_INIT, base_hash):
        raise CheckpointError(
            f"{model_path}: was trained on base weights {meta['base_hash'][:12]}…, but the "
            f"{meta['model_type']} checkpoint found has {base_hash[:12]}…; pass the original "
            "file with --checkpoint"
        )
    dense_box = bool(meta.get("prompt_settings", {}).get("dense_box", False))
    model = ShipSam(sam, meta["base_hash"], bool(meta.get("train_encoder")), dense_box)
    try:
        model.load_changed_state(state)
    except KeyError as exc:
        raise CheckpointError(
            f"{model_path}: weights do not fit {meta['model_type']}: {exc}"
        ) from exc
    return model.to(device).eval(), meta


def check_model_fits(
    model_path: str | os.PathLike[str], state: dict[str, torch.Tensor], meta: dict[str, Any]
) -> ModelSpec:
    """The spec of a model file's type, once its metadata and weights are known to fit it.

    Checked before the base weights are looked for, so an edited or damaged model.pt is
    named as the cause instead of a missing checkpoint, and never runs with weights left at
    random because the file lacks them.
    """
    damaged = "the file was edited or damaged; use the model.pt of a finetune run"
    try:
        spec = get_spec(str(meta["model_type"]))
    except GeosamError as exc:
        raise CheckpointError(f"{model_path}: {exc}; {damaged}") from exc
    dense_box = bool(meta.get("prompt_settings", {}).get("dense_box", False))
    with torch.device("meta"):
        model = ShipSam(
            build_sam(spec), meta["base_hash"], bool(meta.get("train_encoder")), dense_box
        )
    expected = model.state_dict()
    parts = tuple(f"{part}." for part in model.saved_parts())
    wrong = [k for k, v in state.items() if k not in expected or expected[k].shape != v.shape]
    missing = [k for k in expected if k.startswith(parts) and k not in state]
    if wrong or missing:
        encoder = {k[4:]: v for k, v in state.items() if k.startswith("sam.image_encoder.")}
        found = detect_model_type(encoder)
        example = f"{wrong[0]} unexpected" if wrong else f"{missing[0]} missing"
        what = f"do not fit its model type {spec.name} ({example})"
        if found is not None and found.name != spec.name:
            what = f"are a {found.name} model, but its metadata says {spec.name}"
        raise CheckpointError(f"{model_path}: its weights {what}; {damaged}")
    try:
        size = ChipSettings.from_dict(meta["chip_settings"]).size
    except (GeosamError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{model_path}: its chip settings are unusable; {damaged}") from exc
    if size != spec.image_size:
        raise CheckpointError(
            f"{model_path}: records {size} px chips, but a {spec.name} model takes "
            f"{spec.image_size} px chips; {damaged}"
        )
    return spec


class ChipPredictor:
    """Runs a `ShipSam` on chips: one encoder pass per chip, many prompts per embedding."""

    def __init__(self, model: ShipSam, device: torch.device) -> None:
        self.model, self.device = model, device
        self.autocast = device.type == "cuda"

    @torch.no_grad()
    def embed(self, images: NDArray[np.uint8]) -> torch.Tensor:
        """(B, 3, S, S) uint8 chips -> (B, C, E, E) embeddings on the device."""
        pixels = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return encode_images(self.model.sam, pixels).float()

    @torch.no_grad()
    def propose(
        self, embeddings: torch.Tensor, threshold: float
    ) -> list[tuple[NDArray[np.float32], NDArray[np.float32]]]:
        """Ship boxes (K, 4) XYXY chip pixels and centre scores (K,) per chip, from the prompter."""
        outputs = self.model.prompter(embeddings)
        return decode_boxes(outputs, self.model.heatmap_stride, self.model.chip_size, threshold)

    @torch.no_grad()
    def masks(
        self,
        embedding: torch.Tensor,
        boxes: NDArray[np.float32] | None = None,
        points: NDArray[np.float32] | None = None,
        cut: float = 0.0,
        within: NDArray[np.float32] | None = None,
    ) -> tuple[NDArray[np.bool_], NDArray[np.float32]]:
        """Masks (P, S, S) bool and predicted IoU (P,) for box or point prompts on one chip.

        The prompts are taken as they are (prompter proposals, a point grid); a user's
        prompts go through `prompted_masks`. A mask holds the pixels whose logit is above
        `cut` (the model's per-sensor cut, `geosam.pipelines.mask_cuts`; SAM's is 0); no box
        bounds a point's mask, so for points the cut is `bounded_cut`. With `within` ((P, 4)
        XYXY chip pixels) each mask is kept inside its region, and only what that needs is
        decoded.
        """
        prompts = boxes if boxes is not None else points
        if boxes is None:
            cut = bounded_cut(cut)
        size = self.model.chip_size
        if prompts is None or len(prompts) == 0:
            return np.zeros((0, size, size), bool), np.zeros(0, np.float32)
        out_masks, out_iou = [], []
        for start in range(0, len(prompts), PROMPT_BATCH):
            part = slice(start, start + PROMPT_BATCH)
            chunk = torch.from_numpy(np.asarray(prompts[part])).float()
            regions = None if within is None else torch.from_numpy(np.asarray(within[part]))
            kind = "boxes" if boxes is not None else "points"
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                logits, iou = decode(
                    self.model.sam,
                    embedding,
                    **{kind: chunk.to(self.device)},
                    dense_box=self.model.dense_box,
                    refiner=self.model.refiner,
                    within=regions,
                )
            drawn = (logits.float() > cut).cpu().numpy()
            if regions is not None:
                drawn &= filled_boxes(regions, size).numpy()
            out_masks.append(drawn)
            out_iou.append(iou.float().clamp(0, 1).cpu().numpy())
        return np.concatenate(out_masks), np.concatenate(out_iou).astype(np.float32)

    def proposal_masks(
        self, embedding: torch.Tensor, boxes: NDArray[np.float32], cut: float = 0.0
    ) -> tuple[NDArray[np.bool_], NDArray[np.float32], NDArray[np.float32]]:
        """Masks, predicted IoU and final boxes of prompter proposals, decoded twice.

        A proposal's size comes from the prompter's size head, which is rougher than the mask
        the decoder draws from it; that mask's own box is the better prompt, so each proposal
        is decoded again from it (a proposal whose first mask is empty keeps its box).

        A sensor's cut is chosen on box prompts whose masks stay inside their boxes, so a
        proposal's mask is drawn the same way: the first mask, which finds the ship's box,
        is cut no lower than SAM's 0 (`bounded_cut`), and the second is kept inside that box.
        Without that, a negative cut (one model's Sentinel-2 ports had -6.5) let a first mask
        spread over its chip, the box with it, and the ship written was a harbour. The first
        mask is kept inside its proposal widened by `FIRST_MASK_MARGIN` on each side (the
        mask is decoded on that window alone).
        """
        masks, _ = self.masks(
            embedding, boxes=boxes, cut=bounded_cut(cut), within=widened(boxes, FIRST_MASK_MARGIN)
        )
        if len(masks) == 0:
            return masks, np.zeros(0, np.float32), boxes
        own = np.stack(
            [mask_to_box(m) if m.any() else b for m, b in zip(masks, boxes, strict=True)]
        )
        masks, iou = self.masks(embedding, boxes=own, cut=cut, within=own)
        return masks, iou, own

    def prompted_masks(
        self,
        embedding: torch.Tensor,
        boxes: NDArray[np.float32] | None = None,
        points: NDArray[np.float32] | None = None,
        cut: float = 0.0,
    ) -> tuple[NDArray[np.bool_], NDArray[np.float32]]:
        """`masks` for a user's (or a reference) prompts, which say more than a proposal.

        - A box bounds its ship, so its mask is kept inside it. On the held-out dev ports a
          box-prompt mask's IoU rose from 0.617 to 0.665 (`bench/RESULTS.md`, section 6).
        - A point becomes the nearest prompter proposal that contains it, decoded as a
          proposal is (`proposal_masks`): SAM's decoder, trained mostly on boxes, draws little
          from a lone point (held-out marina one-point IoU 0.000, 0.602 through the box). A
          point no proposal covers is decoded as a point, cut no lower than 0 (`bounded_cut`).
        """
        size = self.model.chip_size
        if boxes is not None and len(boxes):
            return self.masks(embedding, boxes=boxes, cut=cut, within=boxes)
        if points is None or len(points) == 0:
            return self.masks(embedding, boxes=boxes, points=points, cut=cut)
        found, _ = self.propose(embedding, POINT_PROPOSAL_THRESHOLD)[0]
        around = containing_boxes(found, np.asarray(points, dtype=np.float32))
        snapped = around >= 0
        masks = np.zeros((len(points), size, size), bool)
        iou = np.zeros(len(points), np.float32)
        if snapped.any():
            masks[snapped], iou[snapped], _ = self.proposal_masks(
                embedding, found[around[snapped]], cut
            )
        masks[~snapped], iou[~snapped] = self.masks(embedding, points=points[~snapped], cut=cut)
        return masks, iou


def widened(boxes: NDArray[np.float32], margin: float) -> NDArray[np.float32]:
    """XYXY boxes grown on each side by `margin` times their width (x) and height (y)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    grow = np.tile((b[:, 2:] - b[:, :2]) * margin, 2)
    return b + grow * np.array([-1, -1, 1, 1], np.float32)


def bounded_cut(cut: float) -> float:
    """The cut for a mask that no box bounds: a sensor's cut, but never below SAM's 0.

    Cuts are chosen on box-prompt masks kept inside their boxes; below 0 they widen a mask
    to nearly its box, and a mask no box bounds (a point's, a proposal's first) then spreads
    over the chip.
    """
    return max(cut, 0.0)


def containing_boxes(boxes: NDArray[np.float32], points: NDArray[np.float32]) -> NDArray[np.intp]:
    """Per (x, y) point, the box that contains it with the nearest centre (index), or -1."""
    x, y = points[:, :1], points[:, 1:2]
    inside = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
    centre_x, centre_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    distance = np.where(inside, (centre_x - x) ** 2 + (centre_y - y) ** 2, np.inf)
    nearest = distance.argmin(axis=1) if len(boxes) else np.zeros(len(points), np.intp)
    return np.where(inside.any(axis=1), nearest, -1).astype(np.intp)
