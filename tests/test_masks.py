import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.features import shapes

from geosam.geometry.components import (
    MaskPrompts,
    feret_length,
    fill_holes,
    label_components,
    prompted_bodies,
    prompted_body,
)
from geosam.geometry.masks import (
    MaskCrop,
    bridge_diagonals,
    crop_masks,
    masks_to_polygons,
    pixels_in,
    suppress_duplicates,
    touches_interior_edge,
    touching,
)

CHIP = Affine(0.5, 0, 500_000.0, 0, -0.5, 6_000_000.0)


def blobby_masks(n, size=64, seed=0):
    """Random masks with holes, several parts and chip-edge contact."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    for k in range(n):
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(-5, size, 2)
            h, w = rng.integers(3, 20, 2)
            masks[k, max(r, 0) : r + h, max(c, 0) : c + w] = True
        masks[k] &= rng.random((size, size)) > 0.05  # pinholes
    masks[-1] = False
    return masks


def reference_polygon(mask, transform):
    """One polygonize call per mask over the whole chip: the straightforward way."""
    parts = [
        shapely.geometry.shape(g)
        for g, v in shapes(mask.astype(np.uint8), mask=mask, transform=transform)
        if v == 1
    ]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def test_crops_are_tight_boxes():
    masks = blobby_masks(12)
    for mask, crop in zip(masks, crop_masks(masks), strict=True):
        if not mask.any():
            assert crop.empty
            continue
        rows, cols = np.nonzero(mask)
        assert crop.box == (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        assert (crop.pixels == mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]).all()


def test_atlas_polygons_equal_one_polygonize_per_mask():
    masks = blobby_masks(40, seed=3)
    got = masks_to_polygons(crop_masks(masks), CHIP)
    for mask, geom in zip(masks, got, strict=True):
        want = reference_polygon(mask, CHIP)
        assert geom.is_valid
        assert shapely.equals(geom, want) or (geom.is_empty and want.is_empty)
        assert geom.area == pytest.approx(mask.sum() * 0.25)


def test_edge_contact_from_the_crop_box():
    mask = np.zeros((1, 32, 32), dtype=bool)
    mask[0, 10:20, 25:32] = True  # reaches the right edge only
    crop = crop_masks(mask)[0]
    assert touches_interior_edge(crop, 32, (False, False, False, True))
    assert not touches_interior_edge(crop, 32, (True, True, True, False))


def test_pixel_counts_in_windows_and_contact():
    a = MaskCrop(10, 10, np.ones((3, 4), dtype=bool))  # rows 10-13, cols 10-14
    assert pixels_in(a, (0, 0, 100, 100)) == 12 and pixels_in(a, (11, 12, 20, 20)) == 4
    assert pixels_in(a, (13, 0, 20, 20)) == 0
    assert touching(a, MaskCrop(13, 14, np.ones((1, 1), dtype=bool)))  # corner to corner
    assert not touching(a, MaskCrop(13, 15, np.ones((1, 1), dtype=bool)))
    assert touching(a, MaskCrop(12, 13, np.ones((1, 1), dtype=bool)))  # shared pixel


def test_suppression_matches_dense_iou():
    masks = blobby_masks(30, seed=5)
    masks[5] = masks[4]  # exact duplicate
    masks[7] = masks[6].copy()
    masks[7][:, :2] = False  # near duplicate
    scores = np.random.default_rng(1).random(30)
    kept = suppress_duplicates(masks, scores, 0.5)
    flat = masks.reshape(30, -1)
    expected = []
    for i in np.argsort(-scores, kind="stable"):
        if not flat[i].any():
            continue
        inter = (flat[expected] & flat[i]).sum(1)
        union = flat[expected].sum(1) + flat[i].sum() - inter
        if not (inter / union > 0.5).any():
            expected.append(int(i))
    assert kept == expected
    assert not {4, 5} <= set(kept)


def flood_labels(mask, connectivity):
    """Reference labelling: a breadth-first flood fill from each unlabelled pixel, raster order."""
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    labels = np.zeros(mask.shape, dtype=int)
    n = 0
    for start in zip(*np.nonzero(mask), strict=True):
        if labels[start]:
            continue
        n += 1
        labels[start] = n
        queue = [start]
        while queue:
            r, c = queue.pop()
            for dr, dc in steps:
                rr, cc = r + dr, c + dc
                inside = 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1]
                if inside and mask[rr, cc] and not labels[rr, cc]:
                    labels[rr, cc] = n
                    queue.append((rr, cc))
    return labels, n


@pytest.mark.parametrize("connectivity", [4, 8])
def test_labelling_is_exact(connectivity):
    rng = np.random.default_rng(7)
    for density in (0.3, 0.5, 0.6):
        mask = rng.random((40, 57)) < density
        got, n = label_components(mask, connectivity)
        want, m = flood_labels(mask, connectivity)
        assert n == m and (got == want).all()
    spiral = np.zeros((31, 31), dtype=bool)  # one long winding part: many propagation steps
    for k in range(0, 15, 2):
        spiral[k, k : 31 - k] = spiral[k : 31 - k, 30 - k] = spiral[30 - k, k + 2 : 31 - k] = True
        spiral[k + 2 : 31 - k, k] = True
        spiral[k + 2, k + 1] = True
    got, n = label_components(spiral, connectivity)
    want, m = flood_labels(spiral, connectivity)
    assert n == m and (got == want).all()
    assert label_components(np.zeros((3, 4), dtype=bool))[1] == 0


def test_holes_are_filled_but_bays_are_not():
    mask = np.zeros((9, 9), dtype=bool)
    mask[1:8, 1:8] = True
    mask[3:5, 3:5] = False  # a hole
    mask[6:8, 4] = False  # a bay open to the outside
    mask[2, 6] = False  # a one-pixel hole touching the bay only at a corner: still a hole
    filled = fill_holes(mask)
    expected = mask.copy()
    expected[3:5, 3:5] = expected[2, 6] = True
    assert (filled == expected).all()


def test_mask_with_hole_and_speck_becomes_one_hole_free_body():
    pixels = np.zeros((14, 24), dtype=bool)
    pixels[2:10, 2:20] = True  # the ship, 8 x 18
    pixels[5:7, 8:12] = False  # a hole
    pixels[12:14, 21:23] = True  # a detached speck
    crop = MaskCrop(40, 30, pixels)
    body = prompted_body(crop, box=np.array([32.0, 42.0, 50.0, 50.0]))  # XYXY, chip pixels
    assert (body.row, body.col) == (42, 32) and body.pixels.shape == (8, 18)
    assert body.pixels.all()
    (geom,) = masks_to_polygons([body], CHIP)
    assert geom.geom_type == "Polygon" and not geom.interiors
    assert geom.area == pytest.approx(8 * 18 * 0.25)


def two_blobs():
    """A 6 x 6 blob at chip rows/cols 10-16 and a 3 x 3 one at rows 20-23, cols 20-23."""
    pixels = np.zeros((14, 14), dtype=bool)
    pixels[0:6, 0:6] = True
    pixels[10:13, 10:13] = True
    return MaskCrop(10, 10, pixels)


def test_the_kept_body_is_the_one_under_the_prompt():
    crop = two_blobs()
    small, large = (20, 20, 23, 23), (10, 10, 16, 16)  # (row0, col0, row1, col1)
    assert prompted_body(crop).box == large  # no prompt: the largest
    assert prompted_body(crop, box=np.array([19.0, 19.0, 24.0, 24.0])).box == small
    # A box over both: most pixels inside wins, not size.
    assert prompted_body(crop, box=np.array([14.0, 14.0, 24.0, 24.0])).box == small
    assert prompted_body(crop, box=np.array([0.0, 0.0, 30.0, 30.0])).box == large  # tie: size
    assert prompted_body(crop, point=np.array([21.5, 22.5])).box == small  # (x, y) on it
    assert prompted_body(crop, point=np.array([19.0, 19.0])).box == small  # nearest to it
    assert prompted_body(crop, point=np.array([17.0, 17.0])).box == large
    prompts = MaskPrompts.stack(boxes=np.array([[19, 19, 24, 24]]), points=np.array([[12, 12]]))
    got = prompted_bodies([crop, crop], prompts)
    assert [c.box for c in got] == [small, large]
    assert (prompts.keys == -1).all() and prompts.take([1]).points.tolist() == [[12.0, 12.0]]


def test_corner_contacts_make_one_polygon():
    stair = np.eye(6, dtype=bool)  # a diagonal line of pixels touching at corners
    stair[2, 0] = True  # and a spur off it
    assert label_components(stair)[1] == 1 and label_components(stair, 4)[1] > 1
    body = prompted_body(MaskCrop(0, 0, stair))
    assert label_components(body.pixels, 4)[1] == 1
    assert (body.pixels >= stair).all() and (body.pixels == fill_holes(body.pixels)).all()
    (plain,) = masks_to_polygons([MaskCrop(0, 0, stair)], CHIP)
    (whole,) = masks_to_polygons([MaskCrop(0, 0, stair)], CHIP, one_part=True)
    (clean,) = masks_to_polygons([body], CHIP)
    assert plain.geom_type == "MultiPolygon"
    assert whole.geom_type == clean.geom_type == "Polygon" and whole.is_valid
    assert (bridge_diagonals(stair) >= stair).all()
    labels = np.array([[1, 0, 2], [0, 1, 0], [2, 0, 0]])  # other labels are never bridged
    assert (bridge_diagonals(labels) == [[1, 1, 2], [0, 1, 0], [2, 0, 0]]).all()


def test_one_part_keeps_the_largest_part_without_holes():
    masks = blobby_masks(40, seed=3)
    crops = crop_masks(masks)
    for crop, geom in zip(crops, masks_to_polygons(crops, CHIP, one_part=True), strict=True):
        if crop.empty:
            assert geom.is_empty
            continue
        assert geom.geom_type == "Polygon" and geom.is_valid and not geom.interiors
        bridged = MaskCrop(crop.row, crop.col, bridge_diagonals(crop.pixels))
        parts = shapely.get_parts(masks_to_polygons([bridged], CHIP)[0])
        assert geom.area == pytest.approx(max(shapely.Polygon(p.exterior).area for p in parts))


def test_feret_length_of_pixel_squares():
    assert feret_length(np.ones((3, 4), dtype=bool)) == pytest.approx(5.0)
    assert feret_length(np.ones((1, 1), dtype=bool)) == pytest.approx(np.sqrt(2))
    assert feret_length(np.eye(4, dtype=bool)) == pytest.approx(4 * np.sqrt(2))
    assert feret_length(np.zeros((2, 2), dtype=bool)) == 0.0
