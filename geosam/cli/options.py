"""Click options shared by several commands, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from geosam.data.labels import DEFAULT_MIN_VISIBLE
from geosam.geometry.grid import DEFAULT_CHIP_SIZE

F = TypeVar("F", bound=Callable[..., Any])

overwrite_opt = click.option(
    "--overwrite", is_flag=True, help="Replace existing outputs (refused by default)."
)

device_opt = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto uses a CUDA GPU when there is one (with bf16 autocast), else the CPU.",
)

seed_opt = click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for reproducible results."
)

per_band_stretch_opt = click.option(
    "--per-band-stretch",
    is_flag=True,
    help="Stretch each band between its own percentiles (for false-colour composites whose "
    "bands differ in range). By default the three bands share one low and one high value, "
    "so colours keep their balance as in an 8-bit product.",
)


def chip_options(func: F) -> F:
    """Options that decide what a chip looks like (size, overlap, bands, stretch, ...)."""
    options = [
        click.option(
            "--size",
            type=click.IntRange(min=16),
            default=DEFAULT_CHIP_SIZE,
            show_default=True,
            help="Chip edge in pixels (SAM's input is 1024).",
        ),
        click.option(
            "--overlap",
            type=click.IntRange(min=0),
            default=None,
            help="Pixels shared by neighbouring chips [default: an eighth of --size, 128 for "
            "1024]; keep it above the longest ship in pixels so every ship is whole in some chip.",
        ),
        click.option(
            "--bands",
            metavar="B[,G,B]",
            default=None,
            help="1-based bands for red, green, blue (e.g. 4,3,2); one band is "
            "repeated. Default: by colour interpretation, else 1,2,3.",
        ),
        click.option(
            "--nodata",
            type=float,
            default=None,
            help="Nodata value (default: the scene's). Nodata pixels become 0.",
        ),
        click.option(
            "--gsd",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            metavar="METRES",
            help="Resample on read to this ground sample distance in metres (any CRS: "
            "Web Mercator and lon/lat scenes too), e.g. 2.5 for 10 m Sentinel-2 so small "
            "ships span more pixels.",
        ),
        click.option(
            "--stretch",
            "stretch_file",
            type=click.Path(dir_okay=False),
            default=None,
            help="Reuse the stretch recorded in a metadata.json, so two runs see identical pixels.",
        ),
        click.option(
            "--percentiles",
            nargs=2,
            type=float,
            default=(2.0, 98.0),
            show_default=True,
            metavar="LOW HIGH",
            help="Percentiles of the per-scene stretch for 16-bit and float data.",
        ),
        per_band_stretch_opt,
        click.option(
            "--min-visible",
            type=click.FloatRange(0, 1),
            default=DEFAULT_MIN_VISIBLE,
            show_default=True,
            help="Drop a ship cut by a chip edge when less than this share of its "
            "area is on the chip.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func
