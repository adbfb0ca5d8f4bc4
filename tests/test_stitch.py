import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.features import rasterize

from geosam.geometry.grid import chip_grid
from geosam.geometry.masks import MaskCrop
from geosam.geometry.stitch import Detection, masks_to_detections, stitch

# 1 m pixels, UTM-like origin; a 300 x 300 px scene cut in 128 px chips with 32 px overlap.
TRANSFORM = Affine(1.0, 0.0, 500000.0, 0.0, -1.0, 4000000.0)
SIZE, OVERLAP, WIDTH, HEIGHT = 128, 32, 300, 300


def ship(col0, row0, col1, row1):
    x0, y0 = TRANSFORM @ (col0, row0)
    x1, y1 = TRANSFORM @ (col1, row1)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def detection(col0, row0, col1, row1, score, complete):
    """A rectangular mask on the scene grid."""
    pixels = np.ones((row1 - row0, col1 - col0), dtype=bool)
    return Detection(MaskCrop(row0, col0, pixels), score, complete)


def detections_from_truth(truth):
    """What a perfect model reports: each chip's mask of every ship it sees, cut at chip edges."""
    out = []
    for chip in chip_grid(WIDTH, HEIGHT, TRANSFORM, SIZE, OVERLAP):
        masks = [
            rasterize([(g, 1)], out_shape=(SIZE, SIZE), transform=chip.transform).astype(bool)
            for g in truth
        ]
        masks = np.array([m for m in masks if m.any()]).reshape(-1, SIZE, SIZE)
        scores = np.linspace(0.9, 0.6, len(masks))
        out += masks_to_detections(masks, scores, chip, WIDTH, HEIGHT)
    return out


def test_grid_corner_ship_and_long_ship_become_one_polygon_each():
    chips = chip_grid(WIDTH, HEIGHT, TRANSFORM, SIZE, OVERLAP)
    assert {c.col_off for c in chips} == {0, 96, 172}
    corner = ship(100, 100, 124, 124)  # inside the 4-chip overlap around (96..128, 96..128)
    across = ship(80, 140, 140, 150)  # crosses the seam, longer than the 32 px overlap
    long_ship = ship(20, 200, 290, 210)  # spans every chip column: cut in all of them
    lone = ship(10, 10, 30, 20)
    truth = [corner, across, long_ship, lone]
    geoms, scores = stitch(detections_from_truth(truth), TRANSFORM)
    assert len(geoms) == len(truth)
    for expected in truth:
        best = max(geoms, key=lambda g: shapely.area(shapely.intersection(g, expected)))
        assert abs(best.area - expected.area) / expected.area < 0.01
        assert shapely.area(shapely.symmetric_difference(best, expected)) < 0.01 * expected.area
    for i in range(len(geoms)):
        for j in range(i + 1, len(geoms)):
            inter = shapely.area(shapely.intersection(geoms[i], geoms[j]))
            assert inter / shapely.area(shapely.union(geoms[i], geoms[j])) < 0.05
    assert np.all(scores > 0)


def test_complete_detection_wins_over_its_cut_pieces():
    whole = detection(10, 10, 40, 20, 0.5, complete=True)
    piece = detection(10, 10, 25, 20, 0.99, complete=False)
    geoms, scores = stitch([piece, whole], TRANSFORM)
    assert len(geoms) == 1 and geoms[0].equals(ship(10, 10, 40, 20)) and scores[0] == 0.5


def test_cut_pieces_of_one_ship_are_joined_and_keep_the_best_score():
    left = detection(10, 10, 30, 20, 0.6, complete=False)
    right = detection(25, 10, 50, 20, 0.8, complete=False)  # shares a 5 px strip
    geoms, scores = stitch([left, right], TRANSFORM)
    assert len(geoms) == 1 and geoms[0].equals(ship(10, 10, 50, 20)) and scores[0] == 0.8


def test_mask_outlines_keep_holes_and_land_on_pixel_edges():
    pixels = np.ones((6, 8), dtype=bool)
    pixels[2:4, 3:5] = False
    geoms, _ = stitch([Detection(MaskCrop(100, 200, pixels), 0.9, True)], TRANSFORM)
    expected = ship(200, 100, 208, 106).difference(ship(203, 102, 205, 104))
    assert geoms[0].equals(expected) and len(geoms[0].interiors) == 1


def test_neighbouring_ships_are_not_merged():
    a = detection(10, 10, 40, 20, 0.9, complete=True)
    b = detection(10, 20, 40, 30, 0.8, complete=True)  # shares an edge only
    geoms, _ = stitch([a, b], TRANSFORM)
    assert len(geoms) == 2


@pytest.mark.parametrize("n", [0, 1])
def test_stitch_handles_tiny_inputs(n):
    dets = [detection(0, 0, 5, 5, 0.7, True)][:n]
    geoms, scores = stitch(dets, TRANSFORM)
    assert len(geoms) == len(scores) == n


def test_dense_harbour_of_ships_comes_out_once_each_with_pixel_exact_area():
    rng = np.random.default_rng(4)
    truth = []
    for row in range(8, HEIGHT - 24, 23):
        for col in range(8, WIDTH - 30, 31):
            c0, r0 = col + int(rng.integers(0, 6)), row + int(rng.integers(0, 4))
            truth.append(ship(c0, r0, c0 + int(rng.integers(8, 22)), r0 + int(rng.integers(4, 15))))
    detections = detections_from_truth(truth)
    assert len(detections) > 1.2 * len(truth)  # many ships are seen by several chips
    geoms, _ = stitch(detections, TRANSFORM)
    assert len(geoms) == len(truth)
    tree = shapely.STRtree(truth)
    for geom in geoms:
        (match,) = tree.query(geom, predicate="intersects")
        assert geom.equals(truth[match])
