"""`geosam tile`: write a scene's chips, labels and chip index to a folder.

Layout of OUT_DIR:
    chips/<chip_id>.tif    3-band uint8 GeoTIFF, the chip's exact transform, the scene CRS
    labels/<chip_id>.npz   boxes, masks and ship ids (only with footprints)
    index.gpkg             layer ``chips`` (footprints of the chips) and ``ships`` (clipped
                           footprints with their chip_id, only with footprints)
    annotations.json       COCO instances (only with ``coco=True``)
    metadata.json          scene, grid, chip settings (bands, stretch), geosam version
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import geopandas as gpd
import shapely

from geosam import __version__
from geosam.data.samples import ChipSample, SceneChips
from geosam.data.settings import ChipSettings
from geosam.errors import GridError, LabelsError, OutputExistsError, SceneError
from geosam.io.atomic import atomic_write_text, refuse_existing
from geosam.io.background import BackgroundWrites
from geosam.io.chip_profile import CODECS, DEFAULT_CODEC, blocks_by_geosam, chip_profile
from geosam.io.chipfile import write_chip
from geosam.io.coco import CocoWriter
from geosam.io.labelfile import LabelArrays, write_labels
from geosam.io.layer_styles import CHIP_OUTLINES, LABELLED_OUTLINES
from geosam.io.shared_blocks import BlockSharing
from geosam.io.staging import staged_output
from geosam.io.vectors import write_layers

log = logging.getLogger(__name__)

OWNED = ("chips", "labels", "index.gpkg", "metadata.json", "annotations.json")


@dataclass
class TileSummary:
    """What `tile_scene` wrote."""

    out_dir: Path
    chips_written: int = 0
    chips_skipped: int = 0
    ships: int = 0
    footprints: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def tile_scene(
    scene: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: ChipSettings | None = None,
    labels: str | os.PathLike[str] | None = None,
    layer: str | None = None,
    coco: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    codec: str = DEFAULT_CODEC,
) -> TileSummary:
    """Cut `scene` into chip GeoTIFFs (and per-chip labels from `labels`) under `out_dir`.

    Args:
        scene: raster path.
        out_dir: output folder; refused if not empty unless `overwrite`. Files are written
            into a staging folder beside it and moved in when all are written
            (`geosam.io.staging`): the folder is complete or untouched.
        settings: chip size, overlap, bands, nodata, gsd, stretch.
        labels: ship footprints (any OGR vector source).
        layer: footprint layer name.
        coco: also write COCO ``annotations.json``.
        overwrite: replace geosam's outputs in a non-empty `out_dir`.
        progress: called as ``progress(done, total)`` after each grid chip.
        codec: chip compression, a name of `geosam.io.chip_profile.CODECS`.
    """
    if codec not in CODECS:
        raise GridError(f"unknown chip compression {codec!r}; choose one of {', '.join(CODECS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: is a file, not a folder; choose another output folder")
    if out.exists():
        refuse_existing(out, overwrite)
    with SceneChips(scene, labels, layer, settings) as chips:
        _refuse_labels_off_scene(chips)
        with staged_output(out, OWNED, "metadata.json") as stage:
            summary = _write_tiles(chips, stage, coco, codec, progress)
    summary.out_dir = out
    log.info(
        "%s: wrote %d chips (%d skipped without valid pixels) to %s",
        Path(scene).name,
        summary.chips_written,
        summary.chips_skipped,
        out,
    )
    return summary


def _write_tiles(
    chips: SceneChips,
    stage: Path,
    coco: bool,
    codec: str,
    progress: Callable[[int, int], None] | None,
) -> TileSummary:
    """Write every chip, its labels, the index, COCO and the metadata (last) into `stage`."""
    (stage / "chips").mkdir()
    if chips.labeler is not None:
        (stage / "labels").mkdir()
    summary = TileSummary(stage)
    coco_writer = CocoWriter() if coco and chips.labeler is not None else None
    chip_rows: list[dict[str, Any]] = []
    ship_rows: list[dict[str, Any]] = []
    crs = chips.reader.grid.crs
    sharing = _block_sharing(chips, codec)
    with BackgroundWrites() as writes:  # compression overlaps the next reads
        for done, sample in enumerate(chips.samples(), start=1):  # panels on wide scenes
            chip = sample.chip
            if sample.valid.any():
                path = stage / "chips" / f"{chip.chip_id}.tif"
                blocks = sharing.plan(chip) if sharing else None
                writes.submit(write_chip, path, sample.image, chip.transform, crs, codec, blocks)
                n_ships = _write_labels(stage, sample, coco_writer, ship_rows, writes)
                summary.ships += n_ships
                chip_rows.append(_chip_row(sample, n_ships))
                summary.chips_written += 1
            else:
                summary.chips_skipped += 1
                if sharing:
                    sharing.skip(chip)
            if progress is not None:
                progress(done, len(chips.chips))

    chip_rows.sort(key=lambda row: (row["row_off"], row["col_off"]))  # the index in grid order
    ship_rows.sort(key=lambda row: row["chip_id"])  # stable: ships keep their order in a chip
    if summary.chips_written == 0:
        raise SceneError(
            f"{chips.reader.path}: has no valid pixel (all nodata or NaN); check the scene, "
            "or give its real nodata value with --nodata"
        )
    layers = {
        "chips": gpd.GeoDataFrame(chip_rows, geometry="geometry", crs=crs)
        if chip_rows
        else _empty_chips(crs)
    }
    if chips.labeler is not None:
        layers["ships"] = (
            gpd.GeoDataFrame(ship_rows, geometry="geometry", crs=crs)
            if ship_rows
            else gpd.GeoDataFrame(
                {"ship_id": [], "chip_id": [], "visible": []}, geometry=[], crs=crs
            )
        )
    write_layers(
        stage / "index.gpkg",
        layers,
        {"chips": CHIP_OUTLINES, "ships": LABELLED_OUTLINES},
        f"Chip index written by geosam {__version__}",
    )
    if coco_writer is not None:
        coco_writer.write(stage / "annotations.json")
    report = chips.footprint_report
    if report is not None and chips.labeler is not None:
        report.dropped_slivers = chips.labeler.dropped_slivers
        summary.footprints = asdict(report)
    summary.metadata = _metadata(chips, summary, codec)
    atomic_write_text(stage / "metadata.json", json.dumps(summary.metadata, indent=2))
    return summary


def _block_sharing(chips: SceneChips, codec: str) -> BlockSharing | None:
    """Chips that compress each block they share with a neighbour once (None: each its own).

    Only where geosam compresses the blocks (DEFLATE chips, tiled), and only where the same
    place holds the same pixels in every chip: windows of the scene itself, not of a
    resampled view, whose pixels at one place can differ between windows.
    """
    if not chips.chips or chips.reader.grid.gsd is not None:
        return None
    size = chips.chips[0].size
    if not blocks_by_geosam(chip_profile(3, size, size, codec)):
        return None
    return BlockSharing(chips.chips, size)


def _refuse_labels_off_scene(chips: SceneChips) -> None:
    """Refuse footprints of which none lands on the scene: the labels are not of this scene."""
    labeler, report = chips.labeler, chips.footprint_report
    if labeler is None or report is None or labeler.outside_scene < len(labeler.geometries):
        return
    raise LabelsError(
        f"{report.source}: none of its {len(labeler.geometries)} footprints lies on the scene "
        f"{chips.scene_name}; check that they belong to this scene and that their CRS is right"
    )


def _write_labels(
    out: Path,
    sample: ChipSample,
    coco: CocoWriter | None,
    ship_rows: list[dict[str, Any]],
    writes: BackgroundWrites,
) -> int:
    labels = sample.labels
    if labels is None:
        return 0
    chip = sample.chip
    writes.submit(
        write_labels,
        out / "labels" / f"{chip.chip_id}.npz",
        LabelArrays(labels.ship_ids, labels.boxes, labels.masks, labels.visible),
    )
    for ship_id, geom, visible in zip(
        labels.ship_ids, labels.footprints, labels.visible, strict=True
    ):
        ship_rows.append(
            {
                "ship_id": int(ship_id),
                "chip_id": chip.chip_id,
                "visible": round(float(visible), 4),
                "geometry": geom,
            }
        )
    if coco is not None:
        coco.add_chip(
            f"chips/{chip.chip_id}.tif",
            chip.size,
            chip.transform,
            labels.ship_ids,
            labels.footprints,
            labels.masks,
        )
    return len(labels)


def _chip_row(sample: ChipSample, n_ships: int) -> dict[str, Any]:
    chip = sample.chip
    pad_bottom, pad_right = chip.padding
    return {
        "chip_id": chip.chip_id,
        "row_off": chip.row_off,
        "col_off": chip.col_off,
        "size": chip.size,
        "pad_bottom": pad_bottom,
        "pad_right": pad_right,
        "valid_fraction": round(sample.valid_fraction, 6),
        "ship_count": n_ships,
        "geometry": shapely.box(*chip.bounds),
    }


def _empty_chips(crs: Any) -> gpd.GeoDataFrame:
    columns = [
        "chip_id",
        "row_off",
        "col_off",
        "size",
        "pad_bottom",
        "pad_right",
        "valid_fraction",
        "ship_count",
    ]
    return gpd.GeoDataFrame({c: [] for c in columns}, geometry=[], crs=crs)


def _metadata(chips: SceneChips, summary: TileSummary, codec: str) -> dict[str, Any]:
    grid = chips.reader.grid
    return {
        "geosam_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scene": str(Path(chips.reader.path).resolve()),
        "scene_name": chips.scene_name,
        "crs": grid.crs.to_wkt(),
        "grid": {
            "width": grid.width,
            "height": grid.height,
            "transform": list(grid.transform)[:6],
            "gsd": grid.gsd,
        },
        "settings": chips.settings.to_dict(),
        "stretch": chips.settings.stretch.to_dict() if chips.settings.stretch else None,
        "chip_compression": codec,
        "chips_written": summary.chips_written,
        "chips_skipped": summary.chips_skipped,
        "ships": summary.ships,
        "footprints": summary.footprints,
    }
