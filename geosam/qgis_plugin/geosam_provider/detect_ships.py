"""geosam:detect_ships — `geosam detect SCENE --model MODEL -o OUTPUT`: styled ship polygons."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from .algorithm import GeosamAlgorithm
from .defaults import CLI_CHOICES, CLI_DEFAULTS

DEFAULTS = CLI_DEFAULTS["detect"]
DEVICES = CLI_CHOICES["detect"]["device"]


class DetectShips(GeosamAlgorithm):
    """Find ships on a scene with a fine-tuned model; one styled polygon per ship."""

    NAME = "detect_ships"
    DISPLAY = "Detect ships"
    HELP = (
        "Finds ships on the scene with a model.pt written by 'Fine-tune on footprints' "
        "(or `geosam finetune`) and writes one polygon per ship, with the attributes id, "
        "score, area_m2, length_m, width_m, heading_deg, lon, lat, scene and model. A "
        "GeoPackage output carries its style and is loaded styled.\n\n"
        "Chip size, bands and stretch come from the model. Minimum score: keep ships scoring "
        "at least this (default: the threshold with the best F1 on the validation chips, "
        "stored in the model); lower it to find more ships. Optional: a mask raster "
        "(GeoTIFF) and a preview picture of the ships over the scene. Under Advanced, a "
        "polygon layer (water, a harbour outline) restricts the search to it: only ships "
        "whose outline's centre lies in it are kept, and chips away from it are not read.\n\n"
        "Runs `geosam detect` of your geosam environment; in batch mode give one scene per "
        "row."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        """Parameters of `geosam detect`, the rarely changed ones under Advanced."""
        self.addParameter(QgsProcessingParameterRasterLayer("SCENE", self.tr("Scene")))
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL", self.tr("Model (model.pt of a fine-tuning run)"), extension="pt"
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_SCORE",
                self.tr("Minimum score (empty: the model's best-F1 threshold)"),
                QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.advanced(
            QgsProcessingParameterNumber(
                "PROMPTER_THRESHOLD",
                self.tr("Minimum centre score of a proposed ship (empty: the model's)"),
                QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.advanced(
            QgsProcessingParameterNumber(
                "MASK_CUT",
                self.tr("Mask cut: logit a ship pixel must pass (empty: the model's per sensor)"),
                QgsProcessingParameterNumber.Double,
                optional=True,
            )
        )
        self.advanced(
            QgsProcessingParameterFeatureSource(
                "PROMPTS",
                self.tr("Prompts: boxes or points, one ship each, instead of the prompter"),
                [QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeVectorPoint],
                optional=True,
            )
        )
        self.advanced(
            QgsProcessingParameterFeatureSource(
                "WITHIN",
                self.tr("Look for ships only inside these polygons (water, a harbour outline)"),
                [QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.advanced(
            QgsProcessingParameterNumber(
                "POINT_GRID",
                self.tr("Prompt with an N x N point grid per chip instead"),
                optional=True,
                minValue=1,
            )
        )
        self.advanced(
            QgsProcessingParameterNumber(
                "SIMPLIFY",
                self.tr("Simplify polygons (tolerance, scene CRS units)"),
                QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
            )
        )
        self.advanced(
            QgsProcessingParameterNumber(
                "OVERLAP",
                self.tr("Chip overlap (px; empty: the model's)"),
                optional=True,
                minValue=0,
            )
        )
        self.advanced(
            QgsProcessingParameterString(
                "BANDS", self.tr("Bands for R,G,B (empty: the model's)"), optional=True
            )
        )
        self.advanced(
            QgsProcessingParameterFile(
                "CHECKPOINT",
                self.tr("Base SAM checkpoint, if not where training found it"),
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
        self.addParameter(QgsProcessingParameterVectorDestination("OUTPUT", self.tr("Ships")))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "MASK_RASTER", self.tr("Ship mask raster"), optional=True, createByDefault=False
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "PREVIEW",
                self.tr("Preview picture"),
                "PNG files (*.png)",
                optional=True,
                createByDefault=False,
            )
        )

    def processAlgorithm(
        self, parameters: dict[str, Any], context: Any, feedback: Any
    ) -> dict[str, Any]:
        """Run `geosam detect`; the ship layer loads styled from its GeoPackage."""
        scene = self.raster_file(parameters, "SCENE", context)
        model = self.parameterAsFile(parameters, "MODEL", context)
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        args = ["detect", scene, "--model", model, "-o", output, "--overwrite"]
        for name, flag, integer in (
            ("MIN_SCORE", "--min-score", False),
            ("PROMPTER_THRESHOLD", "--prompter-threshold", False),
            ("MASK_CUT", "--mask-cut", False),
            ("POINT_GRID", "--point-grid", True),
            ("SIMPLIFY", "--simplify", False),
            ("OVERLAP", "--overlap", True),
        ):
            value = self.optional_number(parameters, name, context, integer)
            if value is not None:
                args += [flag, value]
        if self.parameterAsSource(parameters, "PROMPTS", context) is not None:
            prompts, layer = self.vector_file(parameters, "PROMPTS", context, feedback)
            args += ["--prompts", prompts] + (["--prompts-layer", layer] if layer else [])
        if self.parameterAsSource(parameters, "WITHIN", context) is not None:
            area, layer = self.vector_file(parameters, "WITHIN", context, feedback)
            args += ["--within", area] + (["--within-layer", layer] if layer else [])
        bands = self.parameterAsString(parameters, "BANDS", context).strip()
        if bands:
            args += ["--bands", bands]
        checkpoint = self.parameterAsFile(parameters, "CHECKPOINT", context)
        if checkpoint:
            args += ["--checkpoint", checkpoint]
        args += ["--device", DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)]]
        results: dict[str, Any] = {"OUTPUT": output}
        mask = self.parameterAsOutputLayer(parameters, "MASK_RASTER", context)
        if mask:
            args += ["--mask-raster", mask]
            results["MASK_RASTER"] = mask
        preview = self.parameterAsFileOutput(parameters, "PREVIEW", context)
        if preview:
            args += ["--preview", preview]
            results["PREVIEW"] = preview
        self.geosam(args, feedback)
        if context.willLoadLayerOnCompletion(output):
            # A GeoPackage loads its first layer: the scene's (layer_styles is a table).
            self.style_on_load(context.layerToLoadOnCompletionDetails(output))
        return results
