"""geosam:finetune — `geosam finetune SCENE SHIPS --out RUN`: a model from ship footprints."""

from __future__ import annotations

import csv
import html
import os
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
)

from .algorithm import GeosamAlgorithm, created_folder, number, remove_created
from .defaults import CLI_CHOICES, CLI_DEFAULTS, ENCODER_CHOICES

DEFAULTS = CLI_DEFAULTS["finetune"]
MODEL_TYPES = CLI_CHOICES["finetune"]["model_type"]
DEVICES = CLI_CHOICES["finetune"]["device"]
SCORES = (
    ("BEST_STEP", "step", "Step of the best model"),
    ("VAL_IOU", "val_iou", "Validation IoU (box prompts)"),
    ("BOX_IOU", "box_iou", "Validation IoU of the filled box (baseline)"),
    ("VAL_F1", "val_f1", "Prompt-free validation F1"),
    ("SCORE_THRESHOLD", "score_threshold", "Detection threshold of that F1"),
)
"""(output name, metrics.csv column, description) of the best validation figures."""


class Finetune(GeosamAlgorithm):
    """Fine-tune SAM's mask decoder and a ship prompter on a scene and its footprints."""

    NAME = "finetune"
    DISPLAY = "Fine-tune on footprints"
    HELP = (
        "Teaches Segment Anything to find ships from one annotated scene: the footprint layer "
        "holds one polygon per ship, drawn on (part of) the scene. The eastmost chips are held "
        "out for validation; every 'Validate every' steps the model is scored (box-prompt IoU "
        "and prompt-free F1) and the best one is kept as model.pt in the run folder, with "
        "metrics.csv, curves.png (shown in the log and the results viewer) and the run's "
        "log.\n\n"
        "Model type tiny trains from scratch and needs no download (the default 1500 steps "
        "take ~25 min on 2 CPU cores); vit_b/vit_l/vit_h start from the official SAM weights "
        "(`geosam weights download vit_b`) and want a GPU. Runs `geosam finetune` of your "
        "geosam environment. Cancel stops it and removes a run folder it created."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        """Parameters of `geosam finetune`, the rarely changed ones under Advanced."""
        self.addParameter(QgsProcessingParameterRasterLayer("SCENE", self.tr("Scene")))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "SHIPS", self.tr("Ship footprints"), [QgsProcessing.TypeVectorPolygon]
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "MODEL_TYPE",
                self.tr("Model type"),
                options=MODEL_TYPES,
                defaultValue=MODEL_TYPES.index(str(DEFAULTS["model_type"])),
            )
        )
        for name, label, key in (
            ("STEPS", "Training steps", "steps"),
            ("VAL_EVERY", "Validate every (steps)", "val_every"),
            ("BATCH", "Chips per step", "batch_chips"),
        ):
            self.addParameter(
                QgsProcessingParameterNumber(
                    name, self.tr(label), defaultValue=DEFAULTS[key], minValue=1
                )
            )
        minutes = QgsProcessingParameterNumber(
            "MINUTES",
            self.tr("Time budget in minutes (the run is shortened to fit; empty: none)"),
            QgsProcessingParameterNumber.Double,
            optional=True,
            minValue=0.1,
        )
        self.addParameter(minutes)
        self.advanced(
            QgsProcessingParameterNumber(
                "EPOCHS",
                self.tr("Instead of steps: passes over the training chips"),
                optional=True,
                minValue=1,
            )
        )
        self.advanced(self._double("LR", "Peak learning rate", DEFAULTS["lr"]))
        self.advanced(
            QgsProcessingParameterNumber(
                "PATIENCE",
                self.tr("Stop after this many validations without a better score"),
                defaultValue=DEFAULTS["patience"],
                minValue=1,
            )
        )
        self.advanced(
            QgsProcessingParameterBoolean(
                "AUGMENT", self.tr("Train on flipped and rotated views"), True
            )
        )
        self.advanced(
            QgsProcessingParameterNumber(
                "PASTE_SHIPS",
                self.tr("Paste up to this many ships of the scene onto matching water per view"),
                defaultValue=DEFAULTS["paste_ships"],
                minValue=0,
                maxValue=10,
            )
        )
        self.advanced(
            self._double(
                "VAL_FRACTION", "Share of ships held out", DEFAULTS["val_fraction"], 0.0, 0.9
            )
        )
        self.advanced(
            QgsProcessingParameterEnum(
                "ENCODER", self.tr("Image encoder"), options=ENCODER_CHOICES, defaultValue=0
            )
        )
        self.advanced(
            self._double(
                "BOX_JITTER", "Box jitter (share of side)", DEFAULTS["box_jitter"], 0.0, 0.5
            )
        )
        self.advanced(
            QgsProcessingParameterNumber(
                "OVERLAP",
                self.tr("Chip overlap (px; empty: an eighth of the chip)"),
                optional=True,
                minValue=0,
            )
        )
        self.advanced(
            QgsProcessingParameterString("BANDS", self.tr("Bands for R,G,B"), optional=True)
        )
        self.advanced(
            QgsProcessingParameterNumber(
                "GSD",
                self.tr("Resample to this ground sample distance (m)"),
                QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
            )
        )
        self.advanced(
            QgsProcessingParameterBoolean(
                "PER_BAND_STRETCH",
                self.tr("Stretch each band on its own (false-colour composites)"),
                False,
            )
        )
        self.advanced(
            QgsProcessingParameterFile(
                "CHECKPOINT",
                self.tr("Official SAM checkpoint (empty: the cache)"),
                extension="pth",
                optional=True,
            )
        )
        self.advanced(
            QgsProcessingParameterEnum(
                "DEVICE",
                self.tr("Device"),
                options=DEVICES,
                defaultValue=DEVICES.index(str(DEFAULTS["device"])),
            )
        )
        self.advanced(
            QgsProcessingParameterBoolean("CACHE", self.tr("Keep image embeddings on disk"), True)
        )
        self.advanced(
            QgsProcessingParameterNumber("SEED", self.tr("Seed"), defaultValue=DEFAULTS["seed"])
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "OVERWRITE", self.tr("Replace an earlier run in the folder"), False
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", self.tr("Run folder")))
        self.addOutput(QgsProcessingOutputFile("MODEL", self.tr("Model (model.pt)")))
        self.addOutput(QgsProcessingOutputFile("CURVES", self.tr("Training curves (PNG)")))
        self.addOutput(QgsProcessingOutputFile("METRICS", self.tr("Metrics per validation (CSV)")))
        self.addOutput(QgsProcessingOutputHtml("REPORT", self.tr("Fine-tuning report")))
        for name, _, label in SCORES:
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(label)))

    def _double(
        self,
        name: str,
        label: str,
        default: object,
        low: float | None = None,
        high: float | None = None,
    ) -> QgsProcessingParameterNumber:
        parameter = QgsProcessingParameterNumber(
            name, self.tr(label), QgsProcessingParameterNumber.Double, defaultValue=default
        )
        if low is not None:
            parameter.setMinimum(low)
        if high is not None:
            parameter.setMaximum(high)
        return parameter

    def processAlgorithm(
        self, parameters: dict[str, Any], context: Any, feedback: Any
    ) -> dict[str, Any]:
        """Run `geosam finetune`; report the best validation figures and the curves."""
        scene = self.raster_file(parameters, "SCENE", context)
        ships, layer = self.vector_file(parameters, "SHIPS", context, feedback)
        run = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        args = ["finetune", scene, ships, "--out", run] + (["--layer", layer] if layer else [])
        args += [
            "--model-type",
            MODEL_TYPES[self.parameterAsEnum(parameters, "MODEL_TYPE", context)],
            "--val-every",
            str(self.parameterAsInt(parameters, "VAL_EVERY", context)),
            "--batch",
            str(self.parameterAsInt(parameters, "BATCH", context)),
            "--lr",
            number(self.parameterAsDouble(parameters, "LR", context)),
            "--patience",
            str(self.parameterAsInt(parameters, "PATIENCE", context)),
            "--val-fraction",
            number(self.parameterAsDouble(parameters, "VAL_FRACTION", context)),
            "--box-jitter",
            number(self.parameterAsDouble(parameters, "BOX_JITTER", context)),
            "--device",
            DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
            "--seed",
            str(self.parameterAsInt(parameters, "SEED", context)),
        ]
        epochs = self.optional_number(parameters, "EPOCHS", context, integer=True)
        if epochs is not None:
            args += ["--epochs", epochs]
        else:
            args += ["--steps", str(self.parameterAsInt(parameters, "STEPS", context))]
        minutes = self.optional_number(parameters, "MINUTES", context)
        if minutes is not None:  # only when given: an older geosam has no such option
            args += ["--minutes", minutes]
        overlap = self.optional_number(parameters, "OVERLAP", context, integer=True)
        if overlap is not None:
            args += ["--overlap", overlap]
        gsd = self.optional_number(parameters, "GSD", context)
        if gsd is not None:
            args += ["--gsd", gsd]
        bands = self.parameterAsString(parameters, "BANDS", context).strip()
        if bands:
            args += ["--bands", bands]
        if self.parameterAsBool(parameters, "PER_BAND_STRETCH", context):
            args.append("--per-band-stretch")
        checkpoint = self.parameterAsFile(parameters, "CHECKPOINT", context)
        if checkpoint:
            args += ["--checkpoint", checkpoint]
        encoder = self.parameterAsEnum(parameters, "ENCODER", context)
        args += [[], ["--train-encoder"], ["--freeze-encoder"]][encoder]
        if not self.parameterAsBool(parameters, "AUGMENT", context):
            args.append("--no-augment")
        paste = self.parameterAsInt(parameters, "PASTE_SHIPS", context)
        if paste:  # only when asked: an older geosam has no such option
            args += ["--paste-ships", str(paste)]
        if not self.parameterAsBool(parameters, "CACHE", context):
            args.append("--no-cache")
        if self.parameterAsBool(parameters, "OVERWRITE", context):
            args.append("--overwrite")
        created = created_folder(run)
        try:
            self.geosam(args, feedback)
        except QgsProcessingException:
            if created:  # a run folder this algorithm made; QGIS offers no --resume
                remove_created(run)
            raise
        return self._results(Path(run), feedback)

    def _results(self, run: Path, feedback: Any) -> dict[str, Any]:
        best = best_metrics(run / "metrics.csv")
        results: dict[str, Any] = {
            "OUTPUT": str(run),
            "MODEL": str(run / "model.pt"),
            "CURVES": str(run / "curves.png"),
            "METRICS": str(run / "metrics.csv"),
        }
        lines = []
        for name, column, label in SCORES:
            if column in best:
                results[name] = best[column]
                lines.append(f"{label}: {best[column]:.4g}")
        for line in lines:
            feedback.pushInfo(line)
        feedback.pushInfo(f"training curves: {run / 'curves.png'}")
        report = QgsProcessingUtils.generateTempFilename("finetune_report.html")
        Path(report).write_text(_report_html(run, lines), encoding="utf-8")
        results["REPORT"] = report
        return results


def best_metrics(path: Path) -> dict[str, float]:
    """The metrics.csv row of the best validation (highest val_score, else val_iou)."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = [{k: _float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    if not rows:
        return {}
    key = "val_score" if "val_score" in rows[0] else "val_iou"
    return max(rows, key=lambda row: row.get(key, 0.0))


def _float(text: str | None) -> float:
    try:
        return float(text or "nan")
    except ValueError:
        return float("nan")


def _report_html(run: Path, lines: list[str]) -> str:
    """A small page: the best figures and the training curves."""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    image = (run / "curves.png").as_uri() if (run / "curves.png").exists() else ""
    picture = f'<p><img src="{image}" width="640"></p>' if image else ""
    return (
        f"<html><body><h3>geosam fine-tuning: {html.escape(os.fspath(run))}</h3>"
        f"<ul>{items}</ul>{picture}</body></html>"
    )
