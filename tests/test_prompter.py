"""Ship prompter: CenterNet targets, their decoding back to boxes, and a head that learns."""

import math

import numpy as np
import pytest
import torch

# Importing from geosam.model runs its __init__ first, which makes segment_anything importable.
from geosam.model.detail import DETAIL_CHANNELS, pack_detail
from geosam.model.prompter import ShipPrompter, decode_boxes, encode_targets, prompter_loss

GRID, STRIDE = 16, 8.0
SIZE = int(GRID * STRIDE)  # 128 px chip


pytestmark = pytest.mark.usefixtures("torch_one_thread")


BOXES = [
    np.array([[10.0, 12.0, 30.0, 20.0], [60.5, 70.25, 64.0, 90.0], [100, 3, 127, 9]], np.float32),
    np.array([[0, 0, 8, 8], [40, 100, 41.5, 101]], np.float32),
    np.zeros((0, 4), np.float32),
]


def perfect_outputs(boxes, from_heatmap=False):
    """Prompter outputs that match the targets.

    Logits are +-20 at / off the centre cells, or with `from_heatmap` the logits of the
    Gaussian target heatmap itself (what a well-trained head approximates).
    """
    heat, offset, log_size, where = encode_targets(boxes, GRID, STRIDE)
    if from_heatmap:
        logits = torch.logit(heat.clamp(1e-6, 1 - 1e-6))
    else:
        logits = torch.where(where == 1, torch.tensor(20.0), torch.tensor(-20.0))
    return (logits, offset, log_size), heat, where


def centre_cells(boxes):
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 / STRIDE
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 / STRIDE
    return set(zip(cy.astype(int).tolist(), cx.astype(int).tolist(), strict=True))


def test_targets_peak_at_one_in_the_centre_cell_of_each_box():
    heat, offset, log_size, where = encode_targets(BOXES, GRID, STRIDE)
    for t in (heat, where):
        assert t.shape == (3, 1, GRID, GRID)
    assert offset.shape == log_size.shape == (3, 2, GRID, GRID)
    assert heat.min() >= 0 and heat.max() <= 1
    for b, boxes in enumerate(BOXES):
        cells = centre_cells(boxes)
        peaks = {tuple(rc) for rc in torch.nonzero(heat[b, 0] == 1).tolist()}
        assert peaks == cells
        assert {tuple(rc) for rc in torch.nonzero(where[b, 0] == 1).tolist()} == cells
    # Box 0 of chip 0: centre (20, 16) px = cell (2.5, 2.0); 20 x 8 px = 2.5 x 1 cells.
    assert offset[0, :, 2, 2].tolist() == pytest.approx([0.5, 0.0])
    assert log_size[0, :, 2, 2].tolist() == pytest.approx([math.log(2.5), 0.0])
    # Nothing is supervised off the ships' cells, and a chip without ships has no target.
    off = where == 0
    assert (offset.abs() * off).sum() == 0 and (log_size.abs() * off).sum() == 0
    assert heat[2].sum() == 0 and where[2].sum() == 0


def test_size_is_supervised_around_each_centre_and_every_cell_points_to_it():
    long_ship = [np.array([[8.0, 60.0, 120.0, 68.0]], np.float32)]  # 14 x 1 cells
    _, offset, log_size, where = encode_targets(long_ship, GRID, STRIDE)
    rows, cols = torch.nonzero(where[0, 0] > 0, as_tuple=True)
    along, across = cols.max() - cols.min(), rows.max() - rows.min()
    assert along >= 4 and along >= 2 * across  # along the hull more than across it
    assert where[0, 0].max() == 1 and where[0, 0, 8, 8] == 1
    centre_x = cols.float() + offset[0, 0, rows, cols]
    centre_y = rows.float() + offset[0, 1, rows, cols]
    torch.testing.assert_close(centre_x, torch.full_like(centre_x, 8.0))
    torch.testing.assert_close(centre_y, torch.full_like(centre_y, 8.0))
    torch.testing.assert_close(
        log_size[0, :, rows, cols].exp(), torch.tensor([[14.0], [1.0]]).expand(2, len(rows))
    )
    # Farther cells weigh less.
    assert where[0, 0, 8, 8] > where[0, 0, 8, 7] > where[0, 0, 8, 6] > 0


def test_a_cell_between_two_ships_belongs_to_the_nearer():
    pair = [np.array([[0.0, 60.0, 64.0, 68.0], [72.0, 60.0, 128.0, 68.0]], np.float32)]
    _, offset, _, where = encode_targets(pair, GRID, STRIDE)
    row = 8
    cols = torch.nonzero(where[0, 0, row] > 0).flatten()
    centres = cols.float() + offset[0, 0, row, cols]
    for col, centre in zip(cols.tolist(), centres.tolist(), strict=True):
        nearer = 4.0 if abs(col - 4) <= abs(col - 12.5) else 12.5
        assert centre == pytest.approx(nearer)


@pytest.mark.parametrize("from_heatmap", [False, True])
def test_decoding_perfect_outputs_gives_the_boxes_back(from_heatmap):
    outputs, _, _ = perfect_outputs(BOXES, from_heatmap)
    results = decode_boxes(outputs, STRIDE, SIZE)
    assert len(results) == 3
    for (found, scores), boxes in zip(results, BOXES, strict=True):
        assert found.dtype == np.float32 and scores.dtype == np.float32
        assert found.shape == (len(boxes), 4) and scores.shape == (len(boxes),)
        # Boxes of at least 1 px come back within 1 px (1 px boxes are encoded as 1 px).
        order_found = found[np.lexsort((found[:, 1], found[:, 0]))]
        order_true = boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]
        np.testing.assert_allclose(order_found, order_true, atol=1.0)
        assert (scores > 0.99).all()


def test_decoding_keeps_only_scores_above_threshold_highest_first():
    boxes = [np.array([[8 * k + 1, 8 * k + 1, 8 * k + 7, 8 * k + 7] for k in range(0, 16, 2)])]
    outputs, _, _ = perfect_outputs(boxes)
    # Centre scores 0.1, 0.2, ..., 0.8 along the diagonal, in scrambled order.
    scores = torch.tensor([0.5, 0.1, 0.8, 0.3, 0.7, 0.2, 0.6, 0.4])
    logits = torch.full_like(outputs[0], -20.0)
    for k, s in enumerate(scores):
        logits[0, 0, 2 * k, 2 * k] = torch.logit(s)
    outputs = (logits, outputs[1], outputs[2])
    ((found, got),) = decode_boxes(outputs, STRIDE, SIZE, threshold=0.45)
    assert got.tolist() == pytest.approx([0.8, 0.7, 0.6, 0.5])
    np.testing.assert_allclose(found[0], boxes[0][2], atol=1.0)  # score 0.8 is ship 2
    ((found, got),) = decode_boxes(outputs, STRIDE, SIZE, threshold=0.0, max_boxes=3)
    assert got.tolist() == pytest.approx([0.8, 0.7, 0.6]) and found.shape == (3, 4)
    ((found, got),) = decode_boxes(outputs, STRIDE, SIZE, threshold=0.9)
    assert found.shape == (0, 4) and got.shape == (0,)


def test_decoded_boxes_are_clipped_to_the_chip():
    logits = torch.full((1, 1, GRID, GRID), -20.0)
    logits[0, 0, 0, GRID - 1] = 20.0
    offset = torch.zeros(1, 2, GRID, GRID)
    log_size = torch.full((1, 2, GRID, GRID), math.log(6.0))  # 48 px, past two chip edges
    ((found, _),) = decode_boxes((logits, offset, log_size), STRIDE, SIZE)
    np.testing.assert_allclose(found, [[SIZE - 8 - 24, 0, SIZE, 24]])


def test_prompter_loss_is_lower_for_perfect_outputs_and_falls_with_training():
    torch.manual_seed(0)
    outputs, _, _ = perfect_outputs(BOXES)
    targets = encode_targets(BOXES, GRID, STRIDE)
    wrong = (-outputs[0], outputs[1] + 1.0, outputs[2] - 1.0)
    assert prompter_loss(outputs, targets) < 0.1 * prompter_loss(wrong, targets)

    head = ShipPrompter(in_channels=16, hidden=16)
    embedding = torch.randn(len(BOXES), 16, GRID // 2, GRID // 2)  # heads work at 2x
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = prompter_loss(head(embedding), targets).item()
    for _ in range(40):
        loss = prompter_loss(head(embedding), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    last = prompter_loss(head(embedding), targets).item()
    assert math.isfinite(first) and last < 0.5 * first


def test_a_new_head_starts_with_a_low_ship_prior():
    head = ShipPrompter(in_channels=16, hidden=16)
    heat, offset, size = head(torch.randn(2, 16, GRID // 2, GRID // 2))
    assert heat.shape == (2, 1, GRID, GRID) and offset.shape == size.shape == (2, 2, GRID, GRID)
    assert heat.sigmoid().mean() < 0.1
    assert all(len(found) == 0 for found, _ in decode_boxes((heat, offset, size), STRIDE, SIZE))


def test_a_prompter_with_detail_reads_it_where_it_is():
    """Detail changed in one fine cell moves the heatmap there; far cells move far less.

    (GroupNorm's statistics spread a little of any change over the whole grid.)
    """
    torch.manual_seed(0)
    head = ShipPrompter(in_channels=16, hidden=16, detail_channels=DETAIL_CHANNELS).eval()
    embedding = torch.randn(1, 16, GRID // 2, GRID // 2)
    detail = torch.randn(1, DETAIL_CHANNELS, GRID * 2, GRID * 2)  # 2 x 2 pixels per fine cell
    changed = detail.clone()
    changed[..., 10:12, 20:22] += 5.0  # fine cell (5, 10)
    with torch.no_grad():
        before = head(pack_detail(embedding, detail))[0][0, 0]
        after = head(pack_detail(embedding, changed))[0][0, 0]
    moved = (after - before).abs()
    near = torch.zeros_like(moved, dtype=torch.bool)
    near[4:7, 9:12] = True  # one 3 x 3 convolution away
    assert moved[near].max() > 5 * moved[~near].max()
    with pytest.raises(ValueError, match="detail"):
        head(embedding)


def test_a_prompter_without_detail_ignores_packed_channels():
    torch.manual_seed(0)
    head = ShipPrompter(in_channels=16, hidden=16).eval()
    embedding = torch.randn(1, 16, GRID // 2, GRID // 2)
    packed = pack_detail(embedding, torch.randn(1, DETAIL_CHANNELS, GRID * 2, GRID * 2))
    with torch.no_grad():
        assert torch.equal(head(packed)[0], head(embedding)[0])
