"""The loss of one training batch: masks from prompts plus the prompter's heads.

`Trainer.step_loss` draws the views, prompts and targets and runs the encoder; this adds the
terms. With several ranks each computes its share of the batch, so each term, computed
on the share, is scaled by the share's count over the batch's count (all 1 for a single
process): the ranks' parts add up to the batch's loss.
"""

from __future__ import annotations

import torch

from geosam.data.prompts import PromptBatch
from geosam.model.losses import prompt_losses
from geosam.model.prompter import prompter_loss
from geosam.model.shipsam import ShipSam


def batch_loss(
    model: ShipSam,
    embeddings: torch.Tensor,
    prompts: list[PromptBatch],
    targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    share: tuple[float, float, float],
) -> torch.Tensor:
    """Mean mask loss over the prompts of the chips, plus the prompter loss.

    The prompter's heatmap term is normalised by the batch's ship centres and its offset/size
    term by the weights of its supervised cells (`geosam.model.prompter`).

    Args:
        model: the model being trained.
        embeddings: (B, C, h, w) embeddings of this rank's chips, in their views.
        prompts: per chip, its drawn prompts.
        targets: the prompter's targets (`encode_targets`) of the chips.
        share: this rank's share of the batch's prompts, ship centres and supervised-cell
            weights.
    """
    losses = [
        prompt_losses(model.sam, embeddings[j : j + 1], chip, model.dense_box, model.refiner)
        for j, chip in enumerate(prompts)
        if len(chip)
    ]
    mask_loss = torch.cat(losses).mean() * share[0] if losses else embeddings.sum() * 0
    outputs = model.prompter(embeddings.float())
    # prompter_loss = heatmap term + offset/size term, each over its own count; rescale
    # the two terms apart: the heatmap term alone is the loss with no supervised cells.
    p_loss = prompter_loss(outputs, targets) * share[2]
    if share[1] != share[2]:
        heat_only = (*targets[:3], torch.zeros_like(targets[3]))
        p_loss = p_loss + prompter_loss(outputs, heat_only) * (share[1] - share[2])
    return mask_loss + p_loss
