"""`geosam evaluate PRED TRUTH`: score predicted ship polygons against reference footprints."""

from __future__ import annotations

import json
from pathlib import Path

import click

from geosam.cli.options import overwrite_opt
from geosam.io.atomic import atomic_write_text, refuse_existing
from geosam.pipelines.evaluate import DEFAULT_IOU, EvaluationReport, SceneScores, evaluate

COLUMNS = ("TP", "FP", "FN", "precision", "recall", "F1", "F2", "mean IoU")


def format_table(report: EvaluationReport) -> str:
    """One aligned row per scene and a last row "all"; scores with three decimals."""
    rows = [*report.scenes, report.overall]
    width = max(len("scene"), *(len(s.scene) for s in rows))
    lines = [f"{'scene':<{width}}  " + "  ".join(f"{c:>{_width(c)}}" for c in COLUMNS)]
    lines += [f"{s.scene:<{width}}  " + "  ".join(_cells(s)) for s in rows]
    return "\n".join(lines)


def _width(column: str) -> int:
    return max(len(column), 5 if column not in ("TP", "FP", "FN") else 4)


def _cells(s: SceneScores) -> list[str]:
    iou = "-" if s.mean_iou is None else f"{s.mean_iou:.3f}"
    values = [str(s.tp), str(s.fp), str(s.fn)]
    values += [f"{v:.3f}" for v in (s.precision, s.recall, s.f1, s.f2)] + [iou]
    return [f"{v:>{_width(c)}}" for c, v in zip(COLUMNS, values, strict=True)]


@click.command()
@click.argument("pred", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("truth", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--iou",
    "iou_threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=DEFAULT_IOU,
    show_default=True,
    help="Least IoU of a predicted and a reference polygon to count as a found ship.",
)
@click.option("--pred-layer", default=None, help="Score only this layer of PRED.")
@click.option(
    "--truth-layer",
    default=None,
    help="Score against this layer of TRUTH (default: the one named like the PRED layer).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the scores to this JSON file.",
)
@overwrite_opt
def evaluate_cmd(
    pred: Path,
    truth: Path,
    iou_threshold: float,
    pred_layer: str | None,
    truth_layer: str | None,
    json_path: Path | None,
    overwrite: bool,
) -> None:
    """Score the ships in PRED against the reference footprints in TRUTH.

    PRED and TRUTH are vector files (GeoPackage, GeoJSON, Shapefile). Each PRED layer with a
    same-named TRUTH layer is one scene (`geosam detect` names layers after scenes); a file
    with one layer on each side is paired whatever the names. Predictions are matched one to
    one to references, greedily by descending IoU; a match with IoU >= --iou is a true
    positive (TP), unmatched predictions are false positives (FP), unmatched references false
    negatives (FN). Prints TP, FP, FN, precision, recall, F1, F2 and the mean IoU of matches
    per scene and for all scenes together (summed counts).

    \b
    Examples:
      geosam evaluate ships_pred.gpkg ships.gpkg
      geosam evaluate ships_pred.gpkg ships.gpkg --iou 0.3 --json scores.json
      geosam evaluate busan.geojson ships.gpkg --truth-layer s2_busan
    """
    if json_path is not None:
        refuse_existing(json_path, overwrite)
    report = evaluate(pred, truth, iou_threshold, pred_layer, truth_layer)
    click.echo(format_table(report))
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
