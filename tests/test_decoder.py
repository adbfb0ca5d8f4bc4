"""Box prompts through SAM's decoder, with and without the dense (mask-input) box."""

from __future__ import annotations

import torch

from geosam.model.decoder import BOX_LOGIT, box_mask_input, decode
from geosam.model.registry import build_sam


def test_dense_box_marks_the_mask_cells_whose_centres_lie_in_the_box():
    sam = build_sam("tiny")  # 256 px chips, 128 x 128 mask input: 2 px per cell
    boxes = torch.tensor([[10.0, 20.0, 30.0, 21.0], [0.0, 0.0, 256.0, 256.0]])
    grid = box_mask_input(sam, boxes)
    assert grid.shape == (2, 1, 128, 128)
    inside = grid[0, 0] > 0
    rows, cols = torch.nonzero(inside, as_tuple=True)
    # Cell centres are at 1, 3, 5, ... px: x in [10, 30] -> cells 5..14; y in [20, 21] -> 10.
    assert set(cols.tolist()) == set(range(5, 15)) and set(rows.tolist()) == {10}
    assert torch.all(grid[0, 0][~inside] == -BOX_LOGIT)
    assert torch.all(grid[1] == BOX_LOGIT)


def test_the_dense_box_reaches_the_masks():
    torch.manual_seed(0)
    sam = build_sam("tiny")
    embedding = torch.randn(1, 128, 32, 32)
    boxes = torch.tensor([[40.0, 40.0, 90.0, 70.0]])
    sparse_only, _ = decode(sam, embedding, boxes=boxes)
    dense, iou = decode(sam, embedding, boxes=boxes, dense_box=True)
    assert dense.shape == (1, 256, 256) and iou.shape == (1,)
    assert not torch.allclose(sparse_only, dense)
    # Points never get a dense box.
    points = torch.tensor([[60.0, 55.0]])
    a, _ = decode(sam, embedding, points=points)
    b, _ = decode(sam, embedding, points=points, dense_box=True)
    assert torch.equal(a, b)
