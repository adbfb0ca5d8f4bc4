"""1. Tiling: the whole `geosam tile` command against a rasterio loop that reads and writes.

Two comparisons, each of the same chip windows (geosam's grid, 1024 px chips, overlap 128):

- The command a user runs: `geosam tile` (stretch to 8 bits, DEFLATE chip GeoTIFFs, index,
  metadata) as a whole process, against a plain rasterio loop that reads every window and
  writes it unchanged as an uncompressed GeoTIFF, also a whole process, on a 3-band scene
  tiled 512 px and DEFLATE-compressed, as users' scenes are. Median of three alternating runs.
- Reading alone: geosam's chip reads (band mapping, 16-bit stretch, valid mask, padding)
  against a bare loop reading the same windows, on an uncompressed scene, so that geosam's
  per-chip work is not hidden behind decompression. Fastest of three alternating runs.

Also reported: the stretch estimate's cost on its own, the chip codecs' write times, the
read time per chip at `tiny`'s chip size, which is what `detect` reads, and under each ratio
its floor (`essential_work`): the CPU time of the work a tiler writing each chip with GDAL
must do, over the cores; geosam compresses chip blocks itself, with ISA-L, and the blocks
overlapping chips share once, so it can go under that floor.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import rasterio

from bench.common import Outcome, Target, in_child, measured_process, stopwatch
from bench.scenes import synthetic_scene

SIZE, OVERLAP = 1024, 128
DETECT_SIZE, DETECT_OVERLAP = 256, 32
ROOT = Path(__file__).resolve().parent.parent


def bare_loop(path: str, size: int = SIZE, overlap: int = OVERLAP) -> dict[str, Any]:
    """Read every chip window with plain rasterio and discard the pixels."""
    from geosam.geometry.grid import chip_grid

    with rasterio.open(path) as src:
        chips = chip_grid(src.width, src.height, src.transform, size, overlap)
        with stopwatch() as t:
            for chip in chips:
                src.read(window=chip.read_window)
    return {"seconds": t["seconds"], "chips": len(chips)}


def read_write_loop(path: str, out: str) -> dict[str, Any]:
    """Read every chip window and write it unchanged as an uncompressed GeoTIFF."""
    from geosam.geometry.grid import chip_grid

    folder = Path(out)
    folder.mkdir(parents=True)
    with rasterio.open(path) as src:
        chips = chip_grid(src.width, src.height, src.transform, SIZE, OVERLAP)
        profile = {**src.profile, "compress": None, "tiled": False, "BIGTIFF": "NO"}
        for chip in chips:
            window = chip.read_window
            data = src.read(window=window)
            profile.update(width=window.width, height=window.height)
            profile["transform"] = src.window_transform(window)
            with rasterio.open(folder / f"{chip.chip_id}.tif", "w", **profile) as dst:
                dst.write(data)
    return {"chips": len(chips)}


def geosam_read(
    path: str, size: int = SIZE, overlap: int = OVERLAP, grid_order: bool = False
) -> dict[str, Any]:
    """Every chip as geosam's model pixels: open (stretch estimate included) plus reads.

    In `SceneChips.samples()`'s reading order (what `tile` and training read), or in grid
    order as `detect` reads its batches.
    """
    from geosam.data.samples import SceneChips
    from geosam.data.settings import ChipSettings

    settings = ChipSettings(size=size, overlap=overlap)
    with stopwatch() as t:
        start = time.perf_counter()
        with SceneChips(path, settings=settings) as chips:
            opened = time.perf_counter() - start
            for _ in chips.samples(chips.chips if grid_order else None):
                pass
    return {"seconds": t["seconds"], "open_seconds": opened, "chips": len(chips.chips)}


def tile_in_process(path: str, codec: str) -> dict[str, Any]:
    """`tile_scene` with chip codec `codec`: seconds in all (reading included)."""
    from geosam.data.settings import ChipSettings
    from geosam.pipelines.tile import tile_scene

    out = tempfile.mkdtemp(prefix="geosam-bench-tile-")
    try:
        with stopwatch() as t:
            summary = tile_scene(
                path, f"{out}/tiles", ChipSettings(size=SIZE, overlap=OVERLAP), codec=codec
            )
        size = sum(p.stat().st_size for p in Path(out, "tiles", "chips").iterdir())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"seconds": t["seconds"], "chips": summary.chips_written, "mib": size / 2**20}


def essential_work(path: str, write: bool, sample_every: int = 8) -> dict[str, Any]:
    """CPU seconds of the work a tiler writing each chip with GDAL must do, piece by piece.

    Decoding every chip window (one plain rasterio read each, as the bare loop does), the
    stretch of 16-bit pixels to 8 bits (`Stretch.apply`), and, with `write`, writing each
    chip as a DEFLATE GeoTIFF at the fastest level (every `sample_every`-th chip, scaled to
    all). Divided by the cores, the sum is a floor under the wall time of any implementation
    that does the same work, however well it overlaps. Each figure is the lesser of two passes,
    each on a fresh handle so that the second decodes every block again (the first pass in a
    process pays for fresh pages, and a busy page cache can slow it severalfold).
    """
    from geosam.geometry.grid import chip_grid
    from geosam.io.chip_profile import chip_profile
    from geosam.io.reader import SceneReader

    with SceneReader(path) as reader:
        stretch = reader.stretch
    passes = []
    folder = Path(tempfile.mkdtemp(prefix="geosam-bench-floor-"))
    try:
        for _ in range(2):
            seconds = {"decode": 0.0, "stretch": 0.0, "write": 0.0}
            with rasterio.open(path) as src:  # a fresh handle: no block decoded in pass one
                chips = chip_grid(src.width, src.height, src.transform, SIZE, OVERLAP)
                for k, chip in enumerate(chips):
                    start = time.process_time()
                    pixels = src.read(window=chip.read_window)
                    seconds["decode"] += time.process_time() - start
                    start = time.process_time()
                    image = stretch.apply(pixels) if stretch is not None else pixels
                    seconds["stretch"] += time.process_time() - start
                    if write and k % sample_every == 0:
                        out = folder / f"{k}.tif"
                        start = time.process_time()
                        with rasterio.open(
                            out,
                            "w",
                            **chip_profile(*image.shape, "deflate"),
                            transform=src.window_transform(chip.read_window),
                            crs=src.crs,
                        ) as dst:
                            dst.write(image)
                        seconds["write"] += time.process_time() - start
                        out.unlink()
            passes.append(seconds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    least = {name: min(p[name] for p in passes) for name in passes[0]}
    least["write"] *= len(chips) / math.ceil(len(chips) / sample_every)
    return {**least, "chips": len(chips), "cores": len(os.sched_getaffinity(0))}


def blocks_compressed(path: str) -> dict[str, int]:
    """How many of the chips' blocks `geosam tile` compresses, the others borrowed from
    the neighbour that compressed them (`geosam.io.shared_blocks`), in its reading order."""
    from geosam.io.reader import SceneReader
    from geosam.io.shared_blocks import BlockSharing

    with SceneReader(path) as reader:
        chips = reader.reading_order(reader.chips(SIZE, OVERLAP))
    sharing = BlockSharing(chips, SIZE)
    own = sum(len(plan.own) for plan in map(sharing.plan, chips))
    return {"own": own, "all": len(chips) * sharing.across**2}


def floor_ratio(work: dict[str, Any], baseline_seconds: float) -> float:
    """The least wall time `work` can take on its cores, as a multiple of the baseline's."""
    cpu = work["decode"] + work["stretch"] + work["write"]
    return float(cpu / work["cores"] / baseline_seconds)


def tile_command(path: Path, out: Path) -> list[str]:
    """`geosam tile` as a user runs it, with the benchmark's chip grid."""
    grid = ["--size", str(SIZE), "--overlap", str(OVERLAP)]
    return [sys.executable, "-m", "geosam", "-q", "tile", str(path), str(out), *grid]


def whole_commands(path: Path, runs: int = 3) -> dict[str, dict[str, float]]:
    """Median wall time, peak RSS and CPU time of `geosam tile` (DEFLATE chips, the default,
    and ZSTD) and of the read-and-write loop, run alternately."""
    work = Path(tempfile.mkdtemp(prefix="geosam-bench-cmd-"))
    commands = {
        "loop": lambda out: [
            sys.executable,
            "-m",
            "bench.child",
            "tiling:read_write_loop",
            f'{{"path": "{path}", "out": "{out}"}}',
        ],
        "geosam": lambda out: [*tile_command(path, out)],
        "geosam_zstd": lambda out: [*tile_command(path, out), "--compress", "zstd"],
    }
    timings: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    try:
        measured_process(commands["loop"](work / "warm"), ROOT)  # the page cache starts equal
        shutil.rmtree(work / "warm")
        for k in range(runs):
            for name, command in commands.items():
                out = work / f"{name}{k}"
                timings[name].append(measured_process(command(out), ROOT))
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        name: {
            "seconds": statistics.median(r["seconds"] for r in rows),
            "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in rows),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in rows),
        }
        for name, rows in timings.items()
    }


def fastest_reads(
    path: str, grid_order: bool = False, **grid: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Bare loop and geosam reads of the same windows, three alternating runs, fastest each."""
    in_child("tiling:bare_loop", path=path, **grid)  # warm the page cache: both start equal
    bare_runs, read_runs = [], []
    for _ in range(3):
        bare_runs.append(in_child("tiling:bare_loop", path=path, **grid))
        read_runs.append(in_child("tiling:geosam_read", path=path, grid_order=grid_order, **grid))
    return min(bare_runs, key=lambda r: r["seconds"]), min(read_runs, key=lambda r: r["seconds"])


def run(quick: bool) -> Outcome:
    big, small = (10000, 5000) if quick else (20000, 5000)
    figures: list[str] = []
    commands = {}
    for size, dtype in ((small, "uint16"), (big, "uint16"), (big, "uint8")):
        scene = synthetic_scene(size, dtype, compress="deflate")
        got = commands[size, dtype] = whole_commands(scene)
        loop, tile, zstd = got["loop"], got["geosam"], got["geosam_zstd"]
        figures.append(
            f"{size}x{size} {dtype} DEFLATE scene: read-and-write loop {loop['seconds']:.1f} s "
            f"({loop['peak_rss_mib']:.0f} MiB); geosam tile {tile['seconds']:.1f} s "
            f"({tile['peak_rss_mib']:.0f} MiB, {tile['seconds'] / loop['seconds']:.2f}x, "
            f"{tile['cpu_seconds']:.1f} s of CPU); with --compress zstd {zstd['seconds']:.1f} s "
            f"({zstd['seconds'] / loop['seconds']:.2f}x)"
        )
        if size == big:
            work = in_child("tiling:essential_work", path=str(scene), write=True)
            blocks = in_child("tiling:blocks_compressed", path=str(scene))
            figures.append(
                f"  floor for a tiler writing every DEFLATE chip with GDAL there: "
                f"{floor_ratio(work, loop['seconds']):.2f}x the loop on {work['cores']} cores "
                f"(CPU: decoding {work['decode']:.1f} s, stretch {work['stretch']:.1f} s, "
                f"chip files {work['write']:.1f} s); geosam compresses {blocks['own']} of "
                f"the chips' {blocks['all']} blocks ({blocks['own'] / blocks['all']:.0%}), "
                f"borrowing the others from a neighbour"
            )
    reads = {}
    for dtype in ("uint16", "uint8"):
        path = str(synthetic_scene(big, dtype))
        bare, read = reads[dtype] = fastest_reads(path)
        work = in_child("tiling:essential_work", path=path, write=False)
        figures.append(
            f"reading {big}x{big} {dtype} uncompressed ({bare['chips']} chips): bare loop "
            f"{bare['seconds']:.2f} s, geosam {read['seconds']:.2f} s "
            f"({read['seconds'] / bare['seconds']:.2f}x; opening with the stretch estimate "
            f"{read['open_seconds']:.2f} s); floor with the stretch "
            f"{floor_ratio(work, bare['seconds']):.2f}x on {work['cores']} cores (CPU: reads "
            f"{work['decode']:.2f} s, stretch {work['stretch']:.2f} s)"
        )
    path = str(synthetic_scene(big, "uint16"))
    bare, read = fastest_reads(path, grid_order=True, size=DETECT_SIZE, overlap=DETECT_OVERLAP)
    figures.append(
        f"detect-sized chips ({DETECT_SIZE} px, {read['chips']} chips): geosam reads "
        f"{1000 * read['seconds'] / read['chips']:.2f} ms per chip, bare loop "
        f"{1000 * bare['seconds'] / bare['chips']:.2f} ms"
    )
    deflate = str(synthetic_scene(big, "uint16", compress="deflate"))
    for codec in ("deflate", "zstd", "lzw", "none"):
        got = in_child("tiling:tile_in_process", path=deflate, codec=codec)
        figures.append(
            f"tile_scene with {codec} chips: {got['seconds']:.1f} s, {got['mib']:.0f} MiB"
        )

    big16, small16 = commands[big, "uint16"]["geosam"], commands[small, "uint16"]["geosam"]
    return Outcome(
        f"Tiling {big} px (and {small} px), 3-band scenes, chips {SIZE} px overlap {OVERLAP}",
        figures,
        [
            Target(
                f"geosam tile / read-and-write loop ({big} px uint16)",
                big16["seconds"] / commands[big, "uint16"]["loop"]["seconds"],
                1.0,
            ),
            Target(
                f"geosam tile / read-and-write loop ({big} px uint8)",
                commands[big, "uint8"]["geosam"]["seconds"]
                / commands[big, "uint8"]["loop"]["seconds"],
                1.0,
            ),
            Target(
                f"geosam reads / bare loop ({big} px uint16)",
                reads["uint16"][1]["seconds"] / reads["uint16"][0]["seconds"],
                1.15,
            ),
            Target(
                f"peak RSS of geosam tile, {big} px / {small} px",
                big16["peak_rss_mib"] / small16["peak_rss_mib"],
                1.2,
            ),
            Target(f"peak RSS of geosam tile, {big} px", big16["peak_rss_mib"] / 1024, 1.0, " GiB"),
        ],
    )
