import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.features import shapes

from geosam.geometry.masks import (
    crop_masks,
    masks_to_polygons,
    suppress_duplicates,
    touches_interior_edge,
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
