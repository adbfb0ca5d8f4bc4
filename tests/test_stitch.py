import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.features import rasterize

from geosam.geometry.components import MaskPrompts, prompted_bodies
from geosam.geometry.detections import Detection, crops_to_detections
from geosam.geometry.grid import chip_grid
from geosam.geometry.masks import MaskCrop, crop_masks, masks_to_polygons
from geosam.geometry.stitch import stitch

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


def detections_from_truth(truth, keyed=False):
    """What a perfect model reports: each chip's mask of every ship it sees, cut at chip edges.

    With `keyed`, each mask carries its ship's index as the prompt key.
    """
    out = []
    for chip in chip_grid(WIDTH, HEIGHT, TRANSFORM, SIZE, OVERLAP):
        masks = [
            rasterize([(g, 1)], out_shape=(SIZE, SIZE), transform=chip.transform).astype(bool)
            for g in truth
        ]
        seen = [k for k, m in enumerate(masks) if m.any()]
        masks = np.array([masks[k] for k in seen]).reshape(-1, SIZE, SIZE)
        scores = np.linspace(0.9, 0.6, len(masks))
        keys = seen if keyed else None
        out += crops_to_detections(crop_masks(masks), scores, chip, WIDTH, HEIGHT, keys)
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


def test_ship_outlines_land_on_pixel_edges_and_have_no_holes():
    pixels = np.ones((6, 8), dtype=bool)
    pixels[2:4, 3:5] = False
    pixels[0, 0] = False
    geoms, _ = stitch([Detection(MaskCrop(100, 200, pixels), 0.9, True)], TRANSFORM)
    expected = ship(200, 100, 208, 106).difference(ship(200, 100, 201, 101))
    assert geoms[0].geom_type == "Polygon" and geoms[0].equals(expected)


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


# A dense marina: 100 hulls of about 6 x 20 px moored side by side (touching or 1 px apart) on
# five piers, on a 224 px scene cut into 64 px chips with 16 px overlap, so that many hulls are
# cut in every chip that sees them.
MARINA, MARINA_CHIP, MARINA_OVERLAP = 224, 64, 16


def marina_hulls(seed=0):
    """Scene labels (H, W) int: 0 water, k + 1 for hull k; and the number of hulls."""
    rng = np.random.default_rng(seed)
    hulls = []
    for pier, tilt in enumerate((0, 20, -35, 10, 45)):
        x, y = 12.0, 22.0 + 44 * pier
        for _ in range(20):
            angle = np.radians(tilt + rng.uniform(-4, 4))
            step = 6 / np.cos(np.radians(tilt)) + rng.choice([0.0, 0.5, 1.0])
            x += step / 2
            hull = shapely.affinity.rotate(shapely.box(-3, -10, 3, 10), -angle, use_radians=True)
            hulls.append(shapely.affinity.translate(hull, x, y + rng.uniform(-1, 1)))
            x += step / 2
    labels = rasterize(
        [(h, k + 1) for k, h in enumerate(hulls)], out_shape=(MARINA, MARINA), dtype="int32"
    )
    return labels, len(hulls)


def shift(mask, dr, dc):
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dr, 0) : h + min(dr, 0), max(dc, 0) : w + min(dc, 0)] = mask[
        max(-dr, 0) : h + min(-dr, 0), max(-dc, 0) : w + min(-dc, 0)
    ]
    return out


def ragged(labels, k, rng):
    """Hull k's mask as a rough decoder makes it: edge pixels flipped, a spur that reaches into
    the nearest neighbour hull, maybe a detached speck and a pinhole.

    Returns the mask on a window of the scene grid and the window's (row, col) offset.
    """
    rows, cols = np.nonzero(labels == k + 1)
    r0, c0 = max(rows.min() - 14, 0), max(cols.min() - 14, 0)
    local = labels[r0 : rows.max() + 15, c0 : cols.max() + 15]
    hull = local == k + 1
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    grown = np.logical_or.reduce([shift(hull, *s) for s in steps]) | hull
    shrunk = np.logical_and.reduce([shift(hull, *s) for s in steps]) & hull
    mask = hull.copy()
    mask[(hull & ~shrunk) & (rng.random(hull.shape) < 0.25)] = False
    mask[(grown & ~hull) & (rng.random(hull.shape) < 0.25)] = True
    mine = np.argwhere(hull)
    reach = hull
    for _ in range(3):
        reach = np.logical_or.reduce([shift(reach, *s) for s in steps]) | reach
    near = np.argwhere(reach & (local > 0) & ~hull)  # other hulls' pixels within 3 px
    if len(near) and rng.random() < 0.7:  # a spur from the hull 2 px into its neighbour
        gaps = ((mine[:, None] - near[None]) ** 2).sum(axis=2)
        a, b = np.unravel_index(gaps.argmin(), gaps.shape)
        start, end = mine[a], near[b]
        direction = (end - start) / max(np.linalg.norm(end - start), 1e-9)
        for t in np.arange(0, np.linalg.norm(end - start) + 2.5, 0.5):
            r, c = np.round(start + t * direction).astype(int)
            if 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1]:
                mask[r, c] = True
    if rng.random() < 0.5:  # a 2 x 2 speck 7-9 px off the hull's centre
        r, c = (mine.mean(axis=0) + rng.choice([-1, 1], 2) * rng.uniform(7, 9, 2)).astype(int)
        mask[max(r, 0) : r + 2, max(c, 0) : c + 2] = True
    if rng.random() < 0.3 and shrunk.any():
        inner = np.argwhere(shrunk)
        mask[tuple(inner[rng.integers(len(inner))])] = False
    return mask, (r0, c0)


def in_chip(mask, offset, chip):
    """A mask on a window of the scene grid (at `offset`) as a (S, S) chip mask."""
    out = np.zeros((chip.size, chip.size), dtype=bool)
    r0, c0 = offset[0] - chip.row_off, offset[1] - chip.col_off
    h, w = mask.shape
    top, left = max(r0, 0), max(c0, 0)
    bottom, right = min(r0 + h, chip.size), min(c0 + w, chip.size)
    if top < bottom and left < right:
        out[top:bottom, left:right] = mask[top - r0 : bottom - r0, left - c0 : right - c0]
    return out


def marina_detections(labels, count, seed=1):
    """Each chip's ragged masks of the hulls it sees, cleaned to one body under a box prompt
    (the hull's box in the chip, jittered by up to 1 px), as `detect` hands them to `stitch`."""
    rng = np.random.default_rng(seed)
    out = []
    for chip in chip_grid(MARINA, MARINA, TRANSFORM, MARINA_CHIP, MARINA_OVERLAP):
        window = np.s_[
            chip.row_off : chip.row_off + chip.size, chip.col_off : chip.col_off + chip.size
        ]
        seen = [k for k in range(count) if (labels[window] == k + 1).any()]
        if not seen:
            continue
        masks = np.array([in_chip(*ragged(labels, k, rng), chip) for k in seen])
        boxes = []
        for k in seen:
            rows, cols = np.nonzero(labels[window] == k + 1)
            box = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], float)
            boxes.append(np.clip(box + rng.uniform(-1, 1, 4), 0, chip.size))
        crops = prompted_bodies(crop_masks(masks), MaskPrompts.stack(boxes=np.array(boxes)))
        scores = rng.uniform(0.5, 1.0, len(seen))
        out += crops_to_detections(crops, scores, chip, MARINA, MARINA)
    return out


@pytest.mark.parametrize(("seed", "max_length"), [(0, None), (0, 30), (1, None), (2, 30)])
def test_dense_marina_with_ragged_masks_gives_one_polygon_per_hull(seed, max_length):
    labels, count = marina_hulls(seed)
    hulls = masks_to_polygons(
        crop_masks(np.array([labels == k + 1 for k in range(count)])), TRANSFORM
    )
    assert count == 100 and all(h.area > 90 for h in hulls)
    detections = marina_detections(labels, count, seed + 1)
    assert sum(not d.complete for d in detections) > 100  # many cut pieces to join
    geoms, scores = stitch(detections, TRANSFORM, max_ship_length_px=max_length)
    assert all(g.geom_type == "Polygon" and g.is_valid for g in geoms)
    assert len(geoms) == count == len(scores)
    tree = shapely.STRtree(hulls)
    matched = set()
    for geom in geoms:
        near = tree.query(geom, predicate="intersects")
        shares = sorted(
            ((shapely.area(shapely.intersection(geom, hulls[k])), k) for k in near), reverse=True
        )
        (best_area, best), rest = shares[0], shares[1:]
        assert best_area / shapely.area(shapely.union(geom, hulls[best])) >= 0.5
        for area, k in rest:  # never a substantial part of a second hull
            assert area < 0.2 * hulls[k].area
        matched.add(best)
    assert matched == set(range(count))


def test_pieces_of_different_prompts_are_never_joined():
    # Two ships moored side by side, each cut by a seam at column 30 (chips 0-40 and 20-60);
    # every piece bleeds 2 rows into the neighbour, so the pieces of the two ships overlap.
    left, right = (0, 0, 40, 40), (20, 20, 60, 60)  # chip windows: row0, col0, row1, col1

    def piece(row0, row1, col0, col1, key, window):
        return Detection(
            MaskCrop(row0, col0, np.ones((row1 - row0, col1 - col0), dtype=bool)),
            0.9,
            False,
            key,
            window,
        )

    dets = [
        piece(10, 22, 10, 40, 0, left),  # ship 0 is rows 10-20, cols 10-50
        piece(10, 22, 20, 50, 0, right),
        piece(18, 30, 12, 40, 1, left),  # ship 1 is rows 20-30, cols 12-52
        piece(18, 30, 20, 52, 1, right),
    ]
    geoms, scores = stitch(dets, TRANSFORM)
    assert len(geoms) == 2 and list(scores) == [0.9, 0.9]
    assert geoms[0].equals(ship(10, 10, 50, 22)) and geoms[1].equals(ship(12, 18, 52, 30))
    # Without keys the bleed is a quarter of each piece: they would be one ship.
    unkeyed = [Detection(d.mask, d.score, d.complete, None, d.window) for d in dets]
    assert len(stitch(unkeyed, TRANSFORM)[0]) == 1


def test_one_prompt_seen_by_several_chips_is_one_ship():
    corner = ship(100, 100, 124, 124)  # whole in the four chips around (96..128, 96..128)
    across = ship(80, 140, 140, 150)  # cut in the two chips that see it
    long_ship = ship(20, 200, 290, 210)  # cut in all six chips that see it
    truth = [corner, across, long_ship]
    detections = detections_from_truth(truth, keyed=True)
    seen_by = np.bincount([d.prompt for d in detections])
    assert list(seen_by) == [4, 2, 6]
    geoms, scores = stitch(detections, TRANSFORM)
    assert len(geoms) == 3 and all(g.geom_type == "Polygon" for g in geoms)
    for geom, expected in zip(geoms, truth, strict=True):  # ships come in prompt order
        assert geom.equals(expected)
    assert len(scores) == 3


def test_a_prompt_whose_pieces_do_not_touch_is_still_one_ship():
    # Two chips segment different halves of a box prompt: the ship is the larger part.
    a = Detection(MaskCrop(10, 10, np.ones((10, 30), dtype=bool)), 0.8, False, 7)
    b = Detection(MaskCrop(30, 10, np.ones((5, 5), dtype=bool)), 0.9, False, 7)
    geoms, scores = stitch([a, b], TRANSFORM)
    assert len(geoms) == 1 and geoms[0].equals(ship(10, 10, 40, 20)) and scores[0] == 0.9


def test_a_piece_between_two_ships_joins_one_of_them_only():
    # Two cut ships end to end along a row, 20 px long each; a piece overlaps the ends of both,
    # the left one more. Ships are at most 30 px long: it joins the left one, nothing more.
    def piece(col0, col1, window_col0, window_col1, score):
        pixels = np.ones((6, col1 - col0), dtype=bool)
        return Detection(
            MaskCrop(10, col0, pixels), score, False, None, (0, window_col0, 64, window_col1)
        )

    left, right = piece(10, 30, 0, 30, 0.9), piece(31, 51, 31, 95, 0.8)
    bridge = piece(22, 36, 22, 36, 0.7)
    geoms, _ = stitch([left, right, bridge], TRANSFORM, max_ship_length_px=30)
    assert len(geoms) == 2
    assert geoms[0].equals(ship(10, 10, 36, 16)) and geoms[1].equals(ship(31, 10, 51, 16))
    # Without a length limit the three are what a 41 px ship cut by three chips looks like.
    geoms, _ = stitch([left, right, bridge], TRANSFORM)
    assert len(geoms) == 1 and geoms[0].equals(ship(10, 10, 51, 16))
