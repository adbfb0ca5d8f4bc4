"""geosam:tile_scene — `geosam tile SCENE OUT_DIR`: chips, labels and their index layers."""

from __future__ import annotations

import os
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsVectorLayer,
)

from .algorithm import GeosamAlgorithm, created_folder, number, remove_created
from .defaults import CLI_CHOICES, CLI_DEFAULTS

DEFAULTS = CLI_DEFAULTS["tile"]
CODECS = CLI_CHOICES["tile"]["codec"]


class TileScene(GeosamAlgorithm):
    """Cut a scene into SAM-sized chips with their georeference (and labels)."""

    NAME = "tile_scene"
    DISPLAY = "Tile scene"
    HELP = (
        "Cuts the scene into SAM-sized chips (GeoTIFFs with their exact georeference) in the "
        "output folder, with index.gpkg, metadata.json and, with footprints, per-chip box "
        "prompts and masks under labels/. The index layers 'chips' (one square per chip) and "
        "'ships' (the footprints each chip trains on) are added to the project, styled.\n\n"
        "Runs `geosam tile` of your geosam environment. Chip size and overlap: SAM's input is "
        "1024 px; keep the overlap above the longest ship in pixels so every ship is whole in "
        "some chip (default: an eighth of the chip). 16-bit and float scenes are stretched to "
        "8 bits by per-scene percentiles."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        """Parameters of `geosam tile`, the rarely changed ones under Advanced."""
        self.addParameter(QgsProcessingParameterRasterLayer("SCENE", self.tr("Scene")))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "LABELS",
                self.tr("Ship footprints (optional: adds labels and the 'ships' layer)"),
                [QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "SIZE", self.tr("Chip size (px)"), defaultValue=DEFAULTS["size"], minValue=16
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "OVERLAP",
                self.tr("Overlap (px; empty: an eighth of the chip size)"),
                optional=True,
                minValue=0,
            )
        )
        self.advanced(
            QgsProcessingParameterString(
                "BANDS", self.tr("Bands for R,G,B (e.g. 4,3,2)"), optional=True
            )
        )
        self.advanced(
            QgsProcessingParameterNumber(
                "NODATA",
                self.tr("Nodata value (empty: the scene's)"),
                QgsProcessingParameterNumber.Double,
                optional=True,
            )
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
        low, high = DEFAULTS["percentiles"]  # type: ignore[misc]
        for name, label, value in (("LOW", "Stretch low", low), ("HIGH", "Stretch high", high)):
            self.advanced(
                QgsProcessingParameterNumber(
                    f"PERCENTILE_{name}",
                    self.tr(f"{label} percentile (16-bit and float scenes)"),
                    QgsProcessingParameterNumber.Double,
                    defaultValue=value,
                    minValue=0.0,
                    maxValue=100.0,
                )
            )
        self.advanced(
            QgsProcessingParameterNumber(
                "MIN_VISIBLE",
                self.tr("Drop a cut ship with less than this share on the chip"),
                QgsProcessingParameterNumber.Double,
                defaultValue=DEFAULTS["min_visible"],
                minValue=0.0,
                maxValue=1.0,
            )
        )
        self.advanced(
            QgsProcessingParameterBoolean(
                "PER_BAND_STRETCH",
                self.tr("Stretch each band on its own (false-colour composites)"),
                False,
            )
        )
        self.advanced(QgsProcessingParameterBoolean("COCO", self.tr("Also write COCO"), False))
        self.advanced(
            QgsProcessingParameterEnum(
                "COMPRESS",
                self.tr("Chip compression"),
                options=CODECS,
                defaultValue=CODECS.index(str(DEFAULTS["codec"])),
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "OVERWRITE", self.tr("Replace the outputs of an earlier run in the folder"), False
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", self.tr("Chip folder")))
        self.addOutput(QgsProcessingOutputVectorLayer("CHIPS", self.tr("Chips")))
        self.addOutput(QgsProcessingOutputVectorLayer("SHIPS", self.tr("Ship labels")))
        self.addOutput(QgsProcessingOutputFile("METADATA", self.tr("metadata.json")))
        self.addOutput(QgsProcessingOutputNumber("CHIP_COUNT", self.tr("Chips written")))

    def processAlgorithm(
        self, parameters: dict[str, Any], context: Any, feedback: Any
    ) -> dict[str, Any]:
        """Run `geosam tile`, then add the index layers to the project."""
        scene = self.raster_file(parameters, "SCENE", context)
        out = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        args = ["tile", scene, out]
        if self.parameterAsSource(parameters, "LABELS", context) is not None:
            labels, layer = self.vector_file(parameters, "LABELS", context, feedback)
            args += ["--labels", labels] + (["--layer", layer] if layer else [])
        args += ["--size", str(self.parameterAsInt(parameters, "SIZE", context))]
        overlap = self.optional_number(parameters, "OVERLAP", context, integer=True)
        if overlap is not None:
            args += ["--overlap", overlap]
        bands = self.parameterAsString(parameters, "BANDS", context).strip()
        if bands:
            args += ["--bands", bands]
        for name, flag in (("NODATA", "--nodata"), ("GSD", "--gsd")):
            value = self.optional_number(parameters, name, context)
            if value is not None:
                args += [flag, value]
        args += [
            "--percentiles",
            number(self.parameterAsDouble(parameters, "PERCENTILE_LOW", context)),
            number(self.parameterAsDouble(parameters, "PERCENTILE_HIGH", context)),
            "--min-visible",
            number(self.parameterAsDouble(parameters, "MIN_VISIBLE", context)),
            "--compress",
            CODECS[self.parameterAsEnum(parameters, "COMPRESS", context)],
        ]
        if self.parameterAsBool(parameters, "PER_BAND_STRETCH", context):
            args.append("--per-band-stretch")
        if self.parameterAsBool(parameters, "COCO", context):
            args.append("--coco")
        if self.parameterAsBool(parameters, "OVERWRITE", context):
            args.append("--overwrite")
        created = created_folder(out)
        try:
            lines = self.geosam(args, feedback)
        except QgsProcessingException:
            if created:
                remove_created(out)
            raise
        index = os.path.join(out, "index.gpkg")
        results: dict[str, Any] = {
            "OUTPUT": out,
            "METADATA": os.path.join(out, "metadata.json"),
            "CHIP_COUNT": _chip_count(lines),
        }
        for key, layer in (("CHIPS", "chips"), ("SHIPS", "ships")):
            uri = f"{index}|layername={layer}"
            if QgsVectorLayer(uri, layer, "ogr").isValid():
                results[key] = uri
                self.load_styled(context, uri, layer, key)
        return results


def _chip_count(lines: list[str]) -> int:
    """Chips written, from geosam tile's summary "N chips written to ..."."""
    for line in lines:
        head = line.split(" chips written", 1)
        if len(head) == 2 and head[0].strip().isdigit():
            return int(head[0])
    return 0
