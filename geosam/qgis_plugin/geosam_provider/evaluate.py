"""geosam:evaluate — `geosam evaluate PRED TRUTH --json FILE`: scores as a table and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .algorithm import GeosamAlgorithm, number
from .defaults import CLI_DEFAULTS

DEFAULTS = CLI_DEFAULTS["evaluate"]
COLUMNS = (
    ("scene", QVariant.String),
    ("tp", QVariant.Int),
    ("fp", QVariant.Int),
    ("fn", QVariant.Int),
    ("precision", QVariant.Double),
    ("recall", QVariant.Double),
    ("f1", QVariant.Double),
    ("f2", QVariant.Double),
    ("mean_iou", QVariant.Double),
)
"""Fields of the score table, as in `geosam evaluate --json`."""


class Evaluate(GeosamAlgorithm):
    """Score predicted ship polygons against reference footprints."""

    NAME = "evaluate"
    DISPLAY = "Evaluate"
    HELP = (
        "Scores the predicted ships (e.g. the output of 'Detect ships') against reference "
        "footprints. Predictions are matched one to one to references, greedily by "
        "descending IoU; a match with IoU at least the threshold is a true positive (TP), "
        "unmatched predictions are false positives (FP), unmatched references false "
        "negatives (FN). The score table has one row per scene and a last row 'all': TP, FP, "
        "FN, precision, recall, F1, F2 and the mean IoU of the matches; the same scores go to "
        "the JSON file.\n\nRuns `geosam evaluate` of your geosam environment."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        """Parameters of `geosam evaluate`."""
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "PRED", self.tr("Predicted ships"), [QgsProcessing.TypeVectorPolygon]
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "TRUTH", self.tr("Reference footprints"), [QgsProcessing.TypeVectorPolygon]
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "IOU",
                self.tr("Least IoU of a found ship"),
                QgsProcessingParameterNumber.Double,
                defaultValue=DEFAULTS["iou_threshold"],
                minValue=0.0001,
                maxValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink("OUTPUT", self.tr("Scores"), QgsProcessing.TypeVector)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "JSON", self.tr("Scores (JSON)"), "JSON files (*.json)"
            )
        )
        for name, label in (
            ("F1", "F1 (all scenes)"),
            ("PRECISION", "Precision (all scenes)"),
            ("RECALL", "Recall (all scenes)"),
        ):
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(label)))

    def processAlgorithm(
        self, parameters: dict[str, Any], context: Any, feedback: Any
    ) -> dict[str, Any]:
        """Run `geosam evaluate --json`, then fill the score table from the JSON."""
        pred, pred_layer = self.vector_file(parameters, "PRED", context, feedback)
        truth, truth_layer = self.vector_file(parameters, "TRUTH", context, feedback)
        json_path = self.parameterAsFileOutput(parameters, "JSON", context)
        args = ["evaluate", pred, truth, "--json", json_path, "--overwrite"]
        args += ["--iou", number(self.parameterAsDouble(parameters, "IOU", context))]
        if pred_layer:
            args += ["--pred-layer", pred_layer]
        if truth_layer:
            args += ["--truth-layer", truth_layer]
        self.geosam(args, feedback)
        try:
            report = json.loads(Path(json_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise QgsProcessingException(f"{json_path}: no scores written ({exc})") from None
        fields = QgsFields()
        for name, kind in COLUMNS:
            fields.append(QgsField(name, kind))
        sink, dest = self.parameterAsSink(
            parameters,
            "OUTPUT",
            context,
            fields,
            QgsWkbTypes.NoGeometry,
            QgsCoordinateReferenceSystem(),
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, "OUTPUT"))
        for row in [*report["scenes"], report["overall"]]:
            feature = QgsFeature(fields)
            feature.setAttributes([row.get(name) for name, _ in COLUMNS])
            sink.addFeature(feature, QgsFeatureSink.FastInsert)
        overall = report["overall"]
        return {
            "OUTPUT": dest,
            "JSON": json_path,
            "F1": overall["f1"],
            "PRECISION": overall["precision"],
            "RECALL": overall["recall"],
        }
