"""Property tests: what holds for every chip grid, geometry, view and stretch, not just examples.

Each property is stated exactly as the code guarantees it; hypothesis looks for the scene,
chip size, polygon or array that breaks it.
"""

from __future__ import annotations

import math
from typing import Any
from unittest import mock

import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import geosam.model  # noqa: F401  (first: makes segment_anything's torchvision importable)
from geosam.data.augment import VIEWS, shift_chip, view_array, view_boxes
from geosam.geometry.detections import crops_to_detections
from geosam.geometry.grid import Chip, axis_offsets, chip_grid
from geosam.geometry.masks import crop_masks, masks_to_polygons
from geosam.geometry.pixels import geometry_to_pixels, mask_to_box, pixel_box
from geosam.io.stretch import (
    SAMPLE_WINDOW_SIZE,
    SAMPLE_WINDOWS_PER_AXIS,
    Stretch,
    _histogram_percentiles,
    sample_windows,
)


def floats(*args: Any, **kwargs: Any) -> st.SearchStrategy[float]:
    """Hypothesis floats without subnormals: a library loaded earlier in the suite may switch
    the CPU to flush-to-zero (-ffast-math), where hypothesis cannot draw subnormal floats."""
    return st.floats(*args, allow_subnormal=False, **kwargs)


FAST = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@st.composite
def grids(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """(width, height, size, overlap): any valid chip size and overlap, scenes up to ~12 strides
    beyond a chip (or smaller than one) so the grid stays small enough to check pixel by pixel."""
    size = draw(st.integers(16, 128))
    overlap = draw(st.integers(0, size - 1))
    stride = size - overlap
    limit = min(600, size + 12 * stride)
    return draw(st.integers(1, limit)), draw(st.integers(1, limit)), size, overlap


@st.composite
def north_up(draw: st.DrawFn) -> Affine:
    """A north-up transform: square or not, metres or degrees, anywhere."""
    xres = draw(floats(1e-5, 100))
    yres = draw(floats(1e-5, 100))
    x0 = draw(floats(-1e6, 1e6))
    y0 = draw(floats(-1e6, 1e7))
    return Affine(xres, 0.0, x0, 0.0, -yres, y0)


# --------------------------------------------------------------------------------------------
# The chip grid.


@FAST
@given(grids())
def test_chips_cover_every_pixel_and_stay_inside_or_pad(grid: tuple[int, int, int, int]) -> None:
    """Every scene pixel is read by some chip. A chip lies inside the scene along an axis at
    least a chip long; along a shorter axis it starts at 0, reads the whole axis and is padded
    at the far side by exactly the rest. Chip ids are unique, in row-major order."""
    width, height, size, overlap = grid
    chips = chip_grid(width, height, Affine.identity(), size, overlap)
    covered = np.zeros((height, width), dtype=np.int32)
    for chip in chips:
        assert chip.size == size
        for off, valid, length in (
            (chip.col_off, chip.valid_width, width),
            (chip.row_off, chip.valid_height, height),
        ):
            if length >= size:
                assert off >= 0 and off + size <= length and valid == size
            else:
                assert off == 0 and valid == length
        assert chip.padding == (size - chip.valid_height, size - chip.valid_width)
        w = chip.read_window
        covered[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert covered.min() >= 1
    ids = [chip.chip_id for chip in chips]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


@FAST
@given(grids())
def test_cores_at_the_grid_stride_tile_the_scene_exactly_once(
    grid: tuple[int, int, int, int],
) -> None:
    """Along each axis the offsets step by exactly the stride (size - overlap), except that the
    last chip is moved back to end at the scene edge (so the last step is at most the stride).
    Hence the cores [offset_i, offset_i+1) and, for the last chip, [offset_last, length) tile
    the axis exactly once, each inside its own chip: one owner per scene pixel."""
    width, height, size, overlap = grid
    stride = size - overlap
    for length in (width, height):
        offsets = axis_offsets(length, size, overlap)
        steps = np.diff(offsets)
        assert (steps[:-1] == stride).all() and ((steps > 0) & (steps <= stride)).all()
    chips = chip_grid(width, height, Affine.identity(), size, overlap)
    cols, rows = axis_offsets(width, size, overlap), axis_offsets(height, size, overlap)
    owners = np.zeros((height, width), dtype=np.int32)
    for chip in chips:
        i, j = rows.index(chip.row_off), cols.index(chip.col_off)
        r0, r1 = chip.row_off, rows[i + 1] if i + 1 < len(rows) else height
        c0, c1 = chip.col_off, cols[j + 1] if j + 1 < len(cols) else width
        assert r1 <= chip.row_off + chip.valid_height and c1 <= chip.col_off + chip.valid_width
        owners[r0:r1, c0:c1] += 1
    assert (owners == 1).all()


@FAST
@given(grids(), st.data())
def test_anything_up_to_the_overlap_is_whole_in_some_chip(
    grid: tuple[int, int, int, int], data: st.DataObject
) -> None:
    """The promise of the overlap: any box of at most `overlap` x `overlap` pixels (a ship no
    longer than the overlap) lies entirely inside the valid part of at least one chip."""
    width, height, size, overlap = grid
    w = data.draw(st.integers(1, max(1, min(overlap, width))))  # with no overlap: one pixel
    h = data.draw(st.integers(1, max(1, min(overlap, height))))
    col = data.draw(st.integers(0, width - w))
    row = data.draw(st.integers(0, height - h))
    chips = chip_grid(width, height, Affine.identity(), size, overlap)
    assert any(
        c.col_off <= col
        and col + w <= c.col_off + c.valid_width
        and c.row_off <= row
        and row + h <= c.row_off + c.valid_height
        for c in chips
    )


@FAST
@given(grids(), north_up())
def test_a_chip_pixel_is_the_scene_pixel_at_its_offset(
    grid: tuple[int, int, int, int], transform: Affine
) -> None:
    """Chip pixel (c, r) has the CRS coordinates of scene pixel (col_off + c, row_off + r)."""
    width, height, size, overlap = grid
    for chip in chip_grid(width, height, transform, size, overlap)[:20]:
        for c, r in ((0, 0), (size, size), (0.5, size - 0.25)):
            x, y = chip.transform @ (c, r)
            ex, ey = transform @ (chip.col_off + c, chip.row_off + r)
            assert abs(x - ex) <= ulps(ex) and abs(y - ey) <= ulps(ey)


# --------------------------------------------------------------------------------------------
# Scene CRS <-> chip pixels.


@st.composite
def chip_and_box(draw: st.DrawFn) -> tuple[Chip, Affine, shapely.Polygon]:
    """A chip of a random north-up scene and a box (in the scene CRS) of at least 2 x 2 chip
    pixels, anywhere on the chip or partly off it."""
    transform = draw(north_up())
    size = draw(st.sampled_from([16, 64, 256]))
    chips = chip_grid(3 * size, 2 * size, transform, size, size // 8)
    chip = draw(st.sampled_from(chips))
    c0 = draw(floats(-4, size - 2))
    r0 = draw(floats(-4, size - 2))
    c1 = c0 + draw(floats(2, size / 2))
    r1 = r0 + draw(floats(2, size / 2))
    (x0, y0), (x1, y1) = chip.transform @ (c0, r0), chip.transform @ (c1, r1)
    return chip, transform, shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def pixel_sizes(transform: Affine) -> tuple[float, float]:
    return abs(transform.a), abs(transform.e)


def ulps(*coordinates: float) -> float:
    """Floating-point slack for CRS coordinates of this size: 64 units in the last place
    (around 1e-7 m at UTM northings; far below any pixel the strategies draw)."""
    return 64 * float(np.spacing(max(abs(c) for c in coordinates) + 1.0))


@FAST
@given(chip_and_box(), floats(0, 90))
def test_scene_geometry_to_chip_pixels_and_back_is_the_same_geometry(
    case: tuple[Chip, Affine, shapely.Polygon], angle: float
) -> None:
    """A polygon (any rotation) taken to chip pixels and back through the chip transform is the
    polygon again: to floating point, far inside half a pixel."""
    chip, _, box = case
    polygon = shapely.affinity.rotate(box, angle, origin="centroid")
    pixels = geometry_to_pixels(polygon, chip.transform)
    back = shapely.transform(
        pixels, lambda xy: np.column_stack(chip.transform @ (xy[:, 0], xy[:, 1]))
    )
    assert back.hausdorff_distance(polygon) <= ulps(*polygon.bounds)


@FAST
@given(chip_and_box())
def test_a_box_prompt_maps_back_to_the_clipped_footprint_bounds(
    case: tuple[Chip, Affine, shapely.Polygon],
) -> None:
    """The XYXY box prompt of a footprint, taken from chip pixels back to the scene CRS, is the
    bounding box of the footprint clipped to the chip (float32 rounding aside)."""
    chip, transform, box = case
    prompt = pixel_box(box, chip.transform, chip.size).astype(np.float64)
    (x0, y0), (x1, y1) = chip.transform @ prompt[:2], chip.transform @ prompt[2:]
    clipped = shapely.intersection(box, shapely.box(*chip.bounds))
    assume(clipped.area > 0)
    xres, yres = pixel_sizes(transform)
    # float32 keeps 24 bits: a chip coordinate up to `size` is exact to size * 2**-24 px; the
    # CRS coordinates themselves are float64 (exact to ~1e-16 of their magnitude).
    tol = chip.size * 2.0**-23
    eps = ulps(*clipped.bounds)
    left, bottom, right, top = clipped.bounds
    assert abs(min(x0, x1) - left) <= tol * xres + eps
    assert abs(max(x0, x1) - right) <= tol * xres + eps
    assert abs(min(y0, y1) - bottom) <= tol * yres + eps
    assert abs(max(y0, y1) - top) <= tol * yres + eps


@FAST
@given(chip_and_box(), floats(0, 90))
def test_a_rasterized_footprint_stays_within_half_a_pixel(
    case: tuple[Chip, Affine, shapely.Polygon], angle: float
) -> None:
    """A footprint rasterized as a training mask and polygonized back (the detection path)
    lands within half a pixel: for an axis-aligned box every edge moves by at most half a
    pixel; for any rotation every mask pixel's centre is inside the footprint, so the mask
    polygon lies within half a pixel diagonal of it. The box prompt bounds the mask."""
    import geopandas as gpd

    from geosam.data.labels import ChipLabeler

    chip, transform, box = case
    polygon = shapely.affinity.rotate(box, angle, origin="centroid")
    labeler = ChipLabeler(
        gpd.GeoDataFrame({"ship_id": [1]}, geometry=[polygon]),
        shapely.box(*chip.bounds).bounds,
        min_visible=0.0,
    )
    labels = labeler.labels(chip)
    assume(len(labels) == 1 and labels.masks[0].any())
    mask, prompt = labels.masks[0], labels.boxes[0]
    found = mask_to_box(mask)
    assert (found[:2] >= np.floor(prompt[:2])).all() and (found[2:] <= np.ceil(prompt[2:])).all()

    (shape,) = masks_to_polygons(crop_masks(mask[None]), chip.transform)
    clipped = shapely.intersection(polygon, shapely.box(*chip.bounds))
    xres, yres = pixel_sizes(transform)
    eps = ulps(*clipped.bounds)
    if angle == 0:
        for got, want, res in zip(
            shape.bounds, clipped.bounds, (xres, yres, xres, yres), strict=True
        ):
            assert abs(got - want) <= 0.5 * res + eps
    half_diagonal = 0.5 * math.hypot(xres, yres) * 1.01  # 1 %: a buffer's circle is a polygon
    outside = shapely.difference(shape, clipped.buffer(half_diagonal + eps))
    assert outside.area <= eps * shape.length


@FAST
@given(chip_and_box())
def test_a_mask_polygon_is_the_same_from_chip_or_scene_pixels(
    case: tuple[Chip, Affine, shapely.Polygon],
) -> None:
    """A detection moved to scene pixels (`crops_to_detections`) and polygonized with the
    scene transform is the polygon of the chip mask through the chip transform."""
    chip, transform, box = case
    c0, r0, c1, r1 = np.clip(
        np.rint(np.array(geometry_to_pixels(box, chip.transform).bounds)), 0, chip.size
    ).astype(int)
    assume(c1 > c0 and r1 > r0)
    mask = np.zeros((1, chip.size, chip.size), bool)
    mask[0, r0:r1, c0:c1] = True
    (detection,) = crops_to_detections(
        crop_masks(mask), np.array([0.5]), chip, 3 * chip.size, 2 * chip.size
    )
    (in_chip,) = masks_to_polygons(crop_masks(mask), chip.transform)
    (in_scene,) = masks_to_polygons([detection.mask], transform)
    assert in_chip.hausdorff_distance(in_scene) <= ulps(*in_chip.bounds)


# --------------------------------------------------------------------------------------------
# Augmented views.


@st.composite
def masked_boxes(draw: st.DrawFn) -> tuple[int, np.ndarray, np.ndarray]:
    """(size, boxes (N, 4) float32 XYXY, masks (N, size, size)) with each mask inside its box."""
    size = draw(st.sampled_from([16, 32, 64]))
    n = draw(st.integers(1, 4))
    boxes, masks = [], []
    for _ in range(n):
        x0 = draw(floats(0, size - 1))
        y0 = draw(floats(0, size - 1))
        x1 = draw(floats(x0 + 0.5, size))
        y1 = draw(floats(y0 + 0.5, size))
        x0, y0, x1, y1 = (float(v) for v in np.float32([x0, y0, x1, y1]))  # as boxes are kept
        mask = np.zeros((size, size), bool)
        cols = range(math.floor(x0), math.ceil(x1))
        rows = range(math.floor(y0), math.ceil(y1))
        inside = draw(
            st.lists(st.tuples(st.sampled_from(rows), st.sampled_from(cols)), max_size=30)
        )
        for r, c in inside:
            mask[r, c] = True
        boxes.append([x0, y0, x1, y1])
        masks.append(mask)
    return size, np.array(boxes, np.float32), np.stack(masks)


def pixel_extent(box: np.ndarray) -> np.ndarray:
    """The pixels a float box touches: floor of its low edges, ceiling of its high ones."""
    return np.concatenate([np.floor(box[:2]), np.ceil(box[2:])])


@FAST
@given(masked_boxes(), st.integers(0, VIEWS - 1))
def test_every_view_keeps_each_box_around_its_mask(
    chip: tuple[int, np.ndarray, np.ndarray], view: int
) -> None:
    """For all eight views: a mask's tight box moves exactly as `view_boxes` moves it, and any
    box that bounds a mask still bounds the viewed mask in the view."""
    size, boxes, masks = chip
    moved_boxes = view_boxes(boxes, size, view)
    moved_masks = view_array(masks, view)
    filled = masks.any(axis=(1, 2))
    tight = np.array([mask_to_box(m) for m in masks[filled]]).reshape(-1, 4)
    moved_tight = np.array([mask_to_box(m) for m in moved_masks[filled]]).reshape(-1, 4)
    np.testing.assert_array_equal(moved_tight, view_boxes(tight, size, view))
    for box, mask in zip(moved_boxes, moved_masks, strict=True):
        assert (box[:2] <= box[2:]).all() and box.min() >= 0 and box.max() <= size
        if mask.any():
            found, extent = mask_to_box(mask), pixel_extent(box)
            assert (found[:2] >= extent[:2]).all() and (found[2:] <= extent[2:]).all()


def inverse_views(view: int) -> list[int]:
    """Views w that undo `view` on a test array with no symmetry."""
    probe = np.arange(16).reshape(4, 4)
    return [
        w for w in range(VIEWS) if np.array_equal(view_array(view_array(probe, view), w), probe)
    ]


@pytest.mark.parametrize("view", range(VIEWS))
def test_every_view_has_exactly_one_inverse_for_arrays_and_boxes(view: int) -> None:
    (inverse,) = inverse_views(view)
    expected = (4 - view) % 4 if view < 4 else view  # turns undo by turning back; flips by flipping
    assert inverse == expected


@FAST
@given(masked_boxes(), st.integers(0, VIEWS - 1))
def test_undoing_a_view_gives_back_the_chip(
    chip: tuple[int, np.ndarray, np.ndarray], view: int
) -> None:
    size, boxes, masks = chip
    (inverse,) = inverse_views(view)
    np.testing.assert_array_equal(view_array(view_array(masks, view), inverse), masks)
    back = view_boxes(view_boxes(boxes, size, view), size, inverse)
    np.testing.assert_allclose(back, boxes, atol=size * 2.0**-22)


@FAST
@given(masked_boxes(), st.data())
def test_a_shift_keeps_each_box_around_its_mask(
    chip: tuple[int, np.ndarray, np.ndarray], data: st.DataObject
) -> None:
    """Shifted content: boxes move with it and are clipped to the chip; what is left of each
    mask stays inside its box (a mask shifted off the chip is empty). Shifts are less than a
    chip (training shifts by at most MAX_SHIFT = 12 px; shift_chip breaks at a whole chip)."""
    size, boxes, masks = chip
    dx = data.draw(st.integers(-(size - 1), size - 1))
    dy = data.draw(st.integers(-(size - 1), size - 1))
    image = np.zeros((3, size, size), np.uint8)
    valid = np.ones((size, size), bool)
    _, moved_valid, moved_boxes, moved_masks = shift_chip((image, valid, boxes, masks), dx, dy)
    assert moved_valid.sum() == max(0, size - abs(dx)) * max(0, size - abs(dy))
    assert moved_boxes.min() >= 0 and moved_boxes.max() <= size
    for box, mask in zip(moved_boxes, moved_masks, strict=True):
        if mask.any():
            found, extent = mask_to_box(mask), pixel_extent(box)
            assert (found[:2] >= extent[:2]).all() and (found[2:] <= extent[2:]).all()


# --------------------------------------------------------------------------------------------
# Stretch and its sample.


@st.composite
def stretches(draw: st.DrawFn) -> Stretch:
    lows = [draw(floats(-40000, 70000)) for _ in range(3)]
    highs = [low + draw(floats(1e-3, 70000)) for low in lows]
    return Stretch((1, 2, 3), tuple(lows), tuple(highs))


@FAST
@given(
    stretches(),
    st.sampled_from(["uint8", "uint16", "int8", "int16", "float32"]),
    st.integers(1, 8),
    st.data(),
)
def test_the_stretch_in_slices_is_its_definition_bit_for_bit(
    stretch: Stretch, dtype: str, rows_per_slice: int, data: st.DataObject
) -> None:
    """`Stretch.apply` works slice by slice for speed; it must give exactly `Stretch.scale`
    (the definition) for every value, whatever the slices."""
    pixels = data.draw(arrays(np.dtype(dtype), (3, 7, 9)))
    with mock.patch("geosam.io.stretch.STRETCH_SLICE_VALUES", 3 * 9 * rows_per_slice):
        np.testing.assert_array_equal(stretch.apply(pixels), stretch.scale(pixels))


@FAST
@given(
    arrays(np.uint16, st.integers(1, 400), elements=st.integers(0, 2000)),
    floats(0, 100),
    floats(0, 100),
)
def test_histogram_percentiles_are_numpys(values: np.ndarray, p: float, q: float) -> None:
    """Integer scenes are counted in a histogram; its percentiles are numpy's (linear)."""
    low, high = sorted((p, q))
    found = _histogram_percentiles(np.bincount(values, minlength=2**16), (low, high))
    assert found is not None
    np.testing.assert_allclose(found, np.percentile(values, [low, high]), rtol=0, atol=1e-6)


@FAST
@given(st.integers(1, 3000), st.integers(1, 3000))
def test_stretch_samples_cover_a_small_grid_exactly_once(width: int, height: int) -> None:
    """The stretch is estimated from windows inside the grid; a grid of up to 8 x 8 windows
    is sampled whole, each pixel once (so its percentiles are the scene's own)."""
    windows = sample_windows(width, height)
    assert 1 <= len(windows) <= SAMPLE_WINDOWS_PER_AXIS**2
    for w in windows:
        assert w.col_off >= 0 and w.row_off >= 0 and w.width >= 1 and w.height >= 1
        assert w.col_off + w.width <= width and w.row_off + w.height <= height
    whole = SAMPLE_WINDOWS_PER_AXIS * SAMPLE_WINDOW_SIZE
    if width <= whole and height <= whole:
        counts = np.zeros((height, width), np.int8)
        for w in windows:
            counts[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
        assert (counts == 1).all()
