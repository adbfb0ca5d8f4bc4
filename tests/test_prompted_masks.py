"""A user's prompts say more than a proposal: a box bounds its ship, a point finds its box."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import spilling_tiny

from geosam.model.checkpoints import RANDOM_INIT
from geosam.model.decoder import filled_boxes
from geosam.model.predict import ChipPredictor, containing_boxes, widened
from geosam.model.registry import build_sam
from geosam.model.shipsam import ShipSam

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_a_box_prompts_mask_stays_inside_its_box():
    predictor = ChipPredictor(spilling_tiny(), torch.device("cpu"))
    embedding = predictor.embed(np.zeros((1, 3, 256, 256), np.uint8))
    box = np.array([[20.4, 30.6, 60.0, 41.2]], np.float32)
    raw, _ = predictor.masks(embedding, boxes=box)
    kept, _ = predictor.prompted_masks(embedding, boxes=box)
    assert raw.all()  # this model's masks spill over the whole chip
    expected = np.zeros((256, 256), bool)
    expected[31:41, 20:60] = True  # pixels whose centres lie in the box
    assert np.array_equal(kept[0], expected)


def test_each_point_takes_the_nearest_proposal_that_contains_it():
    boxes = np.array([[0, 0, 50, 50], [20, 20, 40, 40], [100, 100, 120, 110]], np.float32)
    points = np.array([[30, 30], [5, 5], [45, 45], [200, 200], [120, 110]], np.float32)
    assert containing_boxes(boxes, points).tolist() == [1, 0, 0, -1, 2]
    assert containing_boxes(boxes[:0], points).tolist() == [-1] * 5


def test_a_point_prompt_is_decoded_as_the_proposal_around_it(monkeypatch):
    torch.manual_seed(2)
    model = ShipSam(build_sam("tiny"), RANDOM_INIT, train_encoder=True, dense_box=True).eval()
    assert model.refiner is not None
    torch.nn.init.normal_(model.refiner.out.weight, std=0.5)
    predictor = ChipPredictor(model, torch.device("cpu"))
    pixels = np.random.default_rng(0).integers(0, 255, (1, 3, 256, 256), np.uint8)
    embedding = predictor.embed(pixels)
    proposals = np.array([[40, 40, 120, 90], [150, 150, 200, 230]], np.float32)
    monkeypatch.setattr(
        predictor, "propose", lambda emb, threshold: [(proposals, np.ones(2, np.float32))]
    )
    points = np.array([[170, 200], [10, 240]], np.float32)  # in proposal 1; in none
    masks, iou = predictor.prompted_masks(embedding, points=points)
    as_box, box_iou, _ = predictor.proposal_masks(embedding, proposals[1:])
    as_point, point_iou = predictor.masks(embedding, points=points)
    assert not np.array_equal(as_box[0], as_point[0])  # the two ways differ on this model
    assert np.array_equal(masks[0], as_box[0]) and iou[0] == box_iou[0]
    assert np.array_equal(masks[1], as_point[1]) and iou[1] == point_iou[1]


def test_a_proposal_is_decoded_again_from_its_first_masks_own_box(monkeypatch):
    predictor = ChipPredictor(spilling_tiny(), torch.device("cpu"))
    embedding = predictor.embed(np.zeros((1, 3, 256, 256), np.uint8))
    proposals = np.array([[40, 40, 60, 50], [100, 100, 120, 110]], np.float32)
    first = np.zeros((2, 256, 256), bool)
    first[0, 35:52, 30:70] = True  # the ship is longer than the prompter thought
    asked, bounded = [], []

    def masks(emb, boxes=None, points=None, cut=0.0, within=None):
        asked.append(boxes.copy())
        bounded.append(within)
        if len(asked) == 1:
            return first, np.full(2, 0.5, np.float32)
        return first, np.array([0.9, 0.1], np.float32)

    monkeypatch.setattr(predictor, "masks", masks)
    out, iou, boxes = predictor.proposal_masks(embedding, proposals)
    np.testing.assert_array_equal(asked[0], proposals)
    # the first mask's own box (pixel edges); the empty second mask keeps its proposal
    np.testing.assert_array_equal(asked[1], [[30, 35, 70, 52], [100, 100, 120, 110]])
    np.testing.assert_array_equal(boxes, asked[1])
    # the first mask is kept inside its proposal widened by half its size on each side,
    # the second inside its own box
    np.testing.assert_array_equal(bounded[0], [[30, 35, 70, 55], [90, 95, 130, 115]])
    np.testing.assert_array_equal(bounded[1], asked[1])
    assert iou.tolist() == pytest.approx([0.9, 0.1]) and np.array_equal(out, first)


def fixed_logits(ship: tuple[slice, slice], outside: float) -> object:
    """A stand-in for `decode`: logit +4 on the ship, `outside` elsewhere, whatever the prompt."""

    def decode(sam, embedding, boxes=None, points=None, **_):
        prompts = boxes if boxes is not None else points
        logits = torch.full((len(prompts), 256, 256), outside)
        logits[:, ship[0], ship[1]] = 4.0
        return logits, torch.full((len(prompts),), 0.8)

    return decode


def predictor_drawing(
    ship: tuple[slice, slice], monkeypatch: pytest.MonkeyPatch
) -> tuple[ChipPredictor, torch.Tensor]:
    """A predictor whose decoder draws `ship` (+4) on a doubtful chip (-3), and an embedding."""
    monkeypatch.setattr("geosam.model.predict.decode", fixed_logits(ship, outside=-3.0))
    predictor = ChipPredictor(spilling_tiny(), torch.device("cpu"))
    return predictor, predictor.embed(np.zeros((1, 3, 256, 256), np.uint8))


def test_a_negative_cut_never_spreads_a_proposals_mask_over_the_chip(monkeypatch):
    # The decoder is sure of the ship (+4) and only doubtful of the rest of the chip (-3):
    # a cut of -6 (as the Sentinel-2 ports get) takes that rest in, unless bounded.
    ship = (slice(35, 52), slice(30, 70))
    predictor, embedding = predictor_drawing(ship, monkeypatch)
    proposal = np.array([[40, 40, 60, 50]], np.float32)
    masks, _, boxes = predictor.proposal_masks(embedding, proposal, cut=-6.0)
    expected = np.zeros((256, 256), bool)
    expected[ship] = True
    np.testing.assert_array_equal(boxes, [[30, 35, 70, 52]])
    assert np.array_equal(masks[0], expected)
    # a point inside the proposal is that proposal; a point outside every one is cut at 0
    monkeypatch.setattr(predictor, "propose", lambda emb, threshold: [(proposal, np.ones(1))])
    points = np.array([[50, 45], [200, 200]], np.float32)
    masks, _ = predictor.prompted_masks(embedding, points=points, cut=-6.0)
    assert np.array_equal(masks[0], expected) and np.array_equal(masks[1], expected)


def test_a_first_mask_beyond_its_widened_proposal_is_cut_there(monkeypatch):
    # The decoder draws the ship far past the proposal (columns 0-200 for a box at 40-60):
    # the first mask stops at the proposal widened by half its size, and so does the ship.
    ship = (slice(35, 52), slice(0, 200))
    predictor, embedding = predictor_drawing(ship, monkeypatch)
    proposal = np.array([[40, 40, 60, 50]], np.float32)
    masks, _, boxes = predictor.proposal_masks(embedding, proposal)
    np.testing.assert_array_equal(boxes, [[30, 35, 70, 52]])
    expected = np.zeros((256, 256), bool)
    expected[35:52, 30:70] = True
    assert np.array_equal(masks[0], expected)


def test_widened_grows_each_side_by_a_share_of_the_boxs_size():
    boxes = np.array([[10, 20, 30, 60], [5, 5, 5, 9]], np.float32)
    np.testing.assert_array_equal(widened(boxes, 0.5), [[0, 0, 40, 80], [5, 3, 5, 11]])
    assert widened(np.zeros((0, 4), np.float32), 0.5).shape == (0, 4)


def test_a_filled_box_that_overhangs_the_chip_is_cut_at_its_edges():
    # A widened proposal at the chip's corner reaches past it; a negative edge must not
    # count from the far side of the chip.
    filled = filled_boxes(np.array([[-10, -5, 20, 10], [250, 240, 270, 300]], np.float32), 256)
    expected = np.zeros((2, 256, 256), bool)
    expected[0, 0:10, 0:20] = True
    expected[1, 240:, 250:] = True
    np.testing.assert_array_equal(filled.numpy(), expected)


def test_no_proposal_gives_no_mask():
    predictor = ChipPredictor(spilling_tiny(), torch.device("cpu"))
    embedding = predictor.embed(np.zeros((1, 3, 256, 256), np.uint8))
    masks, iou, boxes = predictor.proposal_masks(embedding, np.zeros((0, 4), np.float32))
    assert masks.shape == (0, 256, 256) and iou.shape == (0,) and boxes.shape == (0, 4)


def test_a_point_grid_mask_is_cut_no_lower_than_zero(monkeypatch):
    from affine import Affine

    from geosam.data.samples import ChipSample
    from geosam.geometry.grid import chip_grid
    from geosam.pipelines.detect_scene import DetectSettings, chip_prompts

    ship = (slice(35, 52), slice(30, 70))
    predictor, embedding = predictor_drawing(ship, monkeypatch)
    chip = chip_grid(256, 256, Affine(1, 0, 0, 0, -1, 0), 256, 0)[0]
    valid = np.ones((256, 256), bool)
    sample = ChipSample("scene", chip, np.zeros((3, 256, 256), np.uint8), valid, None)
    settings = DetectSettings(point_grid=2, mask_cut=-6.0)
    masks, _, _ = chip_prompts(sample, predictor, embedding, settings, None)
    expected = np.zeros((256, 256), bool)
    expected[ship] = True
    assert len(masks) == 4 and all(np.array_equal(m, expected) for m in masks)
