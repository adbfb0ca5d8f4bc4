"""1. Tiling throughput and memory: geosam's chip reads against a bare rasterio window loop.

Both read exactly the same windows (geosam's chip grid, 1024 px, overlap 128) of a 3-band
uint16 scene. geosam additionally maps bands, applies the 16-bit stretch (a lookup per pixel),
builds the valid mask and pads edge chips; writing chip GeoTIFFs is timed separately (a full
`tile_scene`). The same comparison on a uint8 scene isolates geosam's overhead without the
stretch.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import rasterio

from bench.common import Outcome, Target, in_child, stopwatch
from bench.scenes import synthetic_scene

SIZE, OVERLAP = 1024, 128


def bare_loop(path: str) -> dict[str, Any]:
    """Read every chip window with plain rasterio and discard the pixels."""
    from geosam.geometry.grid import chip_grid

    with rasterio.open(path) as src:
        chips = chip_grid(src.width, src.height, src.transform, SIZE, OVERLAP)
        with stopwatch() as t:
            for chip in chips:
                src.read(window=chip.read_window)
    return {"seconds": t["seconds"], "chips": len(chips)}


def geosam_read(path: str) -> dict[str, Any]:
    """Every chip as geosam's model pixels: open (stretch estimate included) plus reads."""
    from geosam.data.samples import SceneChips
    from geosam.data.settings import ChipSettings

    settings = ChipSettings(size=SIZE, overlap=OVERLAP)
    with stopwatch() as t, SceneChips(path, settings=settings) as chips:
        for _ in chips.samples():
            pass
    return {"seconds": t["seconds"], "chips": len(chips.chips)}


def geosam_tile(path: str) -> dict[str, Any]:
    """`tile_scene` end to end, chip GeoTIFFs and index included."""
    from geosam.data.settings import ChipSettings
    from geosam.pipelines.tile import tile_scene

    out = tempfile.mkdtemp(prefix="geosam-bench-tile-")
    try:
        with stopwatch() as t:
            summary = tile_scene(path, f"{out}/tiles", ChipSettings(size=SIZE, overlap=OVERLAP))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"seconds": t["seconds"], "chips": summary.chips_written}


def run(quick: bool) -> Outcome:
    big, small = (10000, 5000) if quick else (20000, 5000)
    paths = {n: str(synthetic_scene(n)) for n in (small, big)}
    figures, results = [], {}
    for n, path in [*paths.items(), ("uint8", str(synthetic_scene(big, "uint8")))]:
        in_child("tiling:bare_loop", path=path)  # warm the page cache: both start equal
        # Alternate the two three times and keep each one's fastest run: noise only slows.
        bare_runs, read_runs = [], []
        for _ in range(3):
            bare_runs.append(in_child("tiling:bare_loop", path=path))
            read_runs.append(in_child("tiling:geosam_read", path=path))
        bare = min(bare_runs, key=lambda r: r["seconds"])
        read = min(read_runs, key=lambda r: r["seconds"])
        tile = in_child("tiling:geosam_tile", path=path)
        results[n] = (bare, read, tile)
        label = f"{big}x{big} uint8" if n == "uint8" else f"{n}x{n} uint16"
        figures.append(
            f"{label} ({bare['chips']} chips): bare loop {bare['seconds']:.2f} s "
            f"({bare['peak_rss_mib']:.0f} MiB), geosam reads {read['seconds']:.2f} s "
            f"({read['peak_rss_mib']:.0f} MiB), tile_scene with chip files {tile['seconds']:.2f} s "
            f"({tile['peak_rss_mib']:.0f} MiB; writing {tile['seconds'] - read['seconds']:.2f} s)"
        )
    bare, read, tile = results[big]
    peak_big = max(read["peak_rss_mib"], tile["peak_rss_mib"])
    peak_small = max(results[small][1]["peak_rss_mib"], results[small][2]["peak_rss_mib"])
    return Outcome(
        f"Tiling {big} px vs {small} px, 3-band uint16, chips {SIZE} px overlap {OVERLAP}",
        figures,
        [
            Target(f"geosam reads / bare loop ({big} px)", read["seconds"] / bare["seconds"], 1.25),
            Target(
                f"geosam reads / bare loop ({big} px uint8, no stretch)",
                results["uint8"][1]["seconds"] / results["uint8"][0]["seconds"],
                1.25,
            ),
            Target(f"peak RSS {big} px / {small} px", peak_big / peak_small, 1.2),
            Target(f"peak RSS {big} px", peak_big / 1024, 1.0, " GiB"),
        ],
    )
