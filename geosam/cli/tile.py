"""`geosam tile SCENE OUT_DIR`: cut a scene into georeferenced chips (and labels)."""

from __future__ import annotations

from pathlib import Path

import click

from geosam.cli.options import chip_options, overwrite_opt
from geosam.cli.progress import ProgressBar, progress_mode
from geosam.data.settings import ChipSettings
from geosam.io.bands import parse_bands
from geosam.io.chip_profile import CODECS, DEFAULT_CODEC
from geosam.io.stretch import load_stretch
from geosam.pipelines.tile import tile_scene


def build_settings(
    size: int,
    overlap: int | None,
    bands: str | None,
    nodata: float | None,
    gsd: float | None,
    stretch_file: str | None,
    percentiles: tuple[float, float],
    per_band_stretch: bool,
    min_visible: float,
) -> ChipSettings:
    """Chip settings from the shared chip options."""
    return ChipSettings(
        size=size,
        overlap=size // 8 if overlap is None else overlap,
        bands=parse_bands(bands) if bands else None,
        nodata=nodata,
        gsd=gsd,
        stretch=load_stretch(stretch_file) if stretch_file else None,
        percentiles=(float(percentiles[0]), float(percentiles[1])),
        per_band_stretch=per_band_stretch,
        min_visible=min_visible,
    )


@click.command()
@click.argument("scene", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    default=None,
    help="Ship footprints (GeoPackage, GeoJSON, Shapefile): adds per-chip box "
    "prompts and masks under labels/ and a 'ships' layer in index.gpkg.",
)
@click.option(
    "--layer",
    default=None,
    help="Footprint layer; default the only one, or the one named after the scene.",
)
@click.option("--coco", is_flag=True, help="Also write COCO annotations.json (chip pixels).")
@click.option(
    "--compress",
    "codec",
    type=click.Choice(list(CODECS)),
    default=DEFAULT_CODEC,
    show_default=True,
    help="Chip file compression, lossless. deflate is read by every GIS; zstd writes about "
    "as fast (QGIS 3.x and GDAL 2.3+ read it); lzw writes 2x slower, for older readers; none "
    "writes raw pixels.",
)
@chip_options
@overwrite_opt
@click.pass_context
def tile(
    ctx: click.Context,
    /,
    scene: Path,
    out_dir: Path,
    labels: Path | None,
    layer: str | None,
    coco: bool,
    codec: str,
    overwrite: bool,
    **chip_args: object,
) -> None:
    """Cut SCENE into SAM-sized chips in OUT_DIR, each with its exact georeference.

    Chips are read window by window, so scenes of any size fit in memory. 16-bit and float
    scenes are stretched to 8 bits once per scene (see metadata.json). OUT_DIR gets
    chips/*.tif, index.gpkg (open it in QGIS over the scene), metadata.json and, with
    --labels, labels/*.npz and a 'ships' layer.

    \b
    Examples:
      geosam tile scene.tif out/
      geosam tile raw_16bit.tif out/ --bands 4,3,2 --labels ships.gpkg --layer harbour
      geosam tile s2.tif out/ --gsd 2.5 --size 1024 --overlap 128 --coco
    """
    settings = build_settings(**chip_args)  # type: ignore[arg-type]
    quiet = ctx.obj.get("quiet", False) if ctx.obj else False
    mode = progress_mode(ctx)
    with ProgressBar(f"tiling {scene.name}", "chip", quiet, mode) as progress:
        summary = tile_scene(
            scene, out_dir, settings, labels, layer, coco, overwrite, progress=progress, codec=codec
        )
    message = f"{summary.chips_written} chips written to {out_dir}"
    if summary.chips_skipped:
        message += f" ({summary.chips_skipped} without valid pixels skipped)"
    if summary.footprints is not None:
        fp = summary.footprints
        message += f"; {summary.ships} ship labels"
        extras = [
            f"{fp[k]} {k.replace('_', ' ')}"
            for k in ("repaired", "empty", "outside_scene", "dropped_slivers")
            if fp[k]
        ]
        if extras:
            message += f" ({', '.join(extras)})"
    if not quiet:
        click.echo(message)
