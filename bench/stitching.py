"""3. Stitching scale: chip masks of 1k, 10k and 100k ships to de-duplicated scene polygons.

Ships are rotated rectangles (12-40 px long) on a jittered lattice, one per 63 x 63 px, so
100k ships fill a 20000 px square scene like the peer's benchmark. Every chip (1024 px,
overlap 128) that sees a ship gets its mask, cut to the chip, exactly as `detect` hands chip
masks on; ships in an overlap are seen whole two to four times and must come out once. Timed:
chip masks to detections on the scene grid (`crops_to_detections`, per chip) plus `stitch`
(de-duplication, merging cut pieces, one polygon per ship). Making the synthetic masks is not
timed; peak memory includes them.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from bench.common import Outcome, Target, in_child, stopwatch

SPACING, SIZE, OVERLAP = 63, 1024, 128


def ship_masks(n: int, seed: int = 0) -> tuple[int, np.ndarray, list[np.ndarray]]:
    """Scene side, (n, 2) top-left (row, col) of each ship's box, and each ship's box mask."""
    rng = np.random.default_rng(seed)
    per_side = int(np.ceil(np.sqrt(n)))
    side = per_side * SPACING
    cells = np.stack(np.divmod(np.arange(n), per_side), axis=1) * SPACING + SPACING // 2
    centres = cells + rng.uniform(-8, 8, (n, 2))
    length, width = rng.uniform(12, 40, n), rng.uniform(4, 10, n)
    angle = rng.uniform(0, np.pi, n)
    origins, masks = np.zeros((n, 2), dtype=int), []
    for k in range(n):
        half = int(np.ceil(length[k] / 2)) + 1
        r0, c0 = (np.floor(centres[k]) - half).astype(int)
        rr, cc = np.mgrid[r0 : r0 + 2 * half + 1, c0 : c0 + 2 * half + 1] + 0.5
        dy, dx = rr - centres[k, 0], cc - centres[k, 1]
        along = dx * np.cos(angle[k]) + dy * np.sin(angle[k])
        across = -dx * np.sin(angle[k]) + dy * np.cos(angle[k])
        masks.append((np.abs(along) <= length[k] / 2) & (np.abs(across) <= width[k] / 2))
        origins[k] = (r0, c0)
    return side, origins, masks


def stitch_ships(n: int) -> dict[str, Any]:
    """Polygons and stitching for `n` ships; seconds split by step, ships out."""
    from affine import Affine

    from geosam.geometry.detections import crops_to_detections
    from geosam.geometry.grid import chip_grid
    from geosam.geometry.masks import MaskCrop
    from geosam.geometry.stitch import stitch

    side, origins, masks = ship_masks(n)
    transform = Affine(0.5, 0, 500_000.0, 0, -0.5, 6_000_000.0)
    chips = chip_grid(side, side, transform, SIZE, OVERLAP)
    heights = np.array([m.shape[0] for m in masks])
    widths = np.array([m.shape[1] for m in masks])
    scores = np.random.default_rng(1).uniform(0.3, 1.0, n)
    detections, detection_seconds = [], 0.0
    for chip in chips:
        r0, c0 = chip.row_off, chip.col_off
        inside = np.flatnonzero(
            (origins[:, 0] < r0 + SIZE)
            & (origins[:, 0] + heights > r0)
            & (origins[:, 1] < c0 + SIZE)
            & (origins[:, 1] + widths > c0)
        )
        crops, kept = [], []
        for k in inside.tolist():
            row, col = origins[k, 0] - r0, origins[k, 1] - c0
            top, left = max(0, -row), max(0, -col)
            bottom = min(heights[k], SIZE - row)
            right = min(widths[k], SIZE - col)
            piece = masks[k][top:bottom, left:right]
            rows, cols = np.nonzero(piece)
            if rows.size == 0:
                continue
            tight = piece[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
            crops.append(MaskCrop(row + top + rows.min(), col + left + cols.min(), tight))
            kept.append(k)
        with stopwatch() as t:
            detections += crops_to_detections(crops, scores[kept], chip, side, side)
        detection_seconds += t["seconds"]
    with stopwatch() as t:
        geoms, _ = stitch(detections, transform)
    return {
        "ships": n,
        "chips": len(chips),
        "side": side,
        "detections": len(detections),
        "polygons_out": len(geoms),
        "detection_seconds": detection_seconds,
        "stitch_seconds": t["seconds"],
        "seconds": detection_seconds + t["seconds"],
    }


def run(quick: bool) -> Outcome:
    counts = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    results = [in_child("stitching:stitch_ships", n=n) for n in counts]
    figures = [
        f"{r['ships']} ships on {r['side']} px ({r['chips']} chips, {r['detections']} chip "
        f"masks): {r['detection_seconds']:.2f} s chip masks to detections + "
        f"{r['stitch_seconds']:.2f} s stitching and polygons = {r['seconds']:.2f} s, "
        f"{r['polygons_out']} ships out, "
        f"peak {r['peak_rss_mib']:.0f} MiB"
        for r in results
    ]
    targets = [
        Target(
            f"time {b['ships']} / {a['ships']} ships (10x ships)", b["seconds"] / a["seconds"], 15
        )
        for a, b in itertools.pairwise(results)
    ]
    # Exactly one ship out per ship in: a lost ship counts as much as a split or extra one.
    targets += [
        Target(f"|ships out - ships in| ({r['ships']})", abs(r["polygons_out"] - r["ships"]), 0, "")
        for r in results
    ]
    last = results[-1]
    if last["ships"] == 100_000:
        targets += [
            Target("100k ships to polygons + stitched", last["seconds"], 9, " s"),
            Target("100k ships peak RSS", last["peak_rss_mib"] / 1024, 0.9, " GiB"),
        ]
    return Outcome("Stitching: chip masks to one polygon per ship", figures, targets)
