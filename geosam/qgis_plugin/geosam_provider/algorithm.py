"""What the four geosam algorithms share: inputs as files, running geosam, styled outputs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterDefinition,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication

from . import command
from .settings import configured_command

VECTOR_FORMATS = ["gpkg", "geojson", "shp", "fgb"]
"""Vector formats geosam reads directly; other layers are exported to a GeoPackage first."""


class DefaultStyle(QgsProcessingLayerPostProcessorInterface):
    """Apply the style saved in the layer's GeoPackage when Processing loads it.

    Processing loads output layers without their default style; geosam writes one per layer.
    """

    def postProcessLayer(
        self, layer: Any, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        """Load the layer's default style (from its GeoPackage's layer_styles table)."""
        if isinstance(layer, QgsVectorLayer):
            layer.loadDefaultStyle()
            layer.triggerRepaint()


_POST_PROCESSORS: list[DefaultStyle] = []
"""Processing keeps only a pointer to a post-processor: hold them here until unload."""


class GeosamAlgorithm(QgsProcessingAlgorithm):
    """A Processing algorithm that runs one `geosam` command in a subprocess."""

    NAME = ""
    DISPLAY = ""
    HELP = ""

    def name(self) -> str:
        """Algorithm id within the provider (geosam:NAME)."""
        return self.NAME

    def displayName(self) -> str:
        """Name in the toolbox."""
        return self.tr(self.DISPLAY)

    def shortHelpString(self) -> str:
        """Help shown beside the dialog."""
        return self.tr(self.HELP)

    def createInstance(self) -> GeosamAlgorithm:
        """A fresh copy (Processing runs each execution on its own instance)."""
        return type(self)()

    def tr(self, text: str) -> str:
        """Translatable text."""
        return QCoreApplication.translate("geosam", text)

    # -- parameters ------------------------------------------------------------------------

    def advanced(self, parameter: QgsProcessingParameterDefinition) -> None:
        """Add `parameter` under "Advanced parameters"."""
        parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(parameter)

    def raster_file(self, parameters: dict[str, Any], name: str, context: Any) -> str:
        """The file behind raster parameter `name` (a project layer or a path)."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(f"{name}: no raster layer given")
        source = layer.source().split("|")[0]
        if layer.providerType() != "gdal" or not os.path.isfile(source):
            raise QgsProcessingException(
                f"{layer.name()}: geosam reads raster files; this layer is not a local file "
                "(save it as a GeoTIFF first)"
            )
        return source

    def vector_file(
        self, parameters: dict[str, Any], name: str, context: Any, feedback: Any
    ) -> tuple[str, str]:
        """(path, layer name) of vector parameter `name`, checked to have a CRS.

        A layer that is not a file geosam reads (memory layers, databases, selections) is
        exported to a GeoPackage first.
        """
        source = self.parameterAsSource(parameters, name, context)
        if source is None:
            raise QgsProcessingException(f"{name}: no vector layer given")
        if not source.sourceCrs().isValid():
            raise QgsProcessingException(
                f"{source.sourceName() or name}: layer has no CRS; set it (Layer > Set CRS) "
                "to the CRS the features were drawn in"
            )
        path, layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, name, context, VECTOR_FORMATS, "gpkg", feedback
        )
        return path, layer or ""

    def optional_number(
        self, parameters: dict[str, Any], name: str, context: Any, integer: bool = False
    ) -> str | None:
        """Optional number parameter `name` as CLI text, None when left empty."""
        if parameters.get(name) in (None, ""):
            return None
        if integer:
            return str(self.parameterAsInt(parameters, name, context))
        return number(self.parameterAsDouble(parameters, name, context))

    # -- running ---------------------------------------------------------------------------

    def geosam(self, args: list[str], feedback: Any) -> list[str]:
        """Run `geosam ARGS`; its one-line error becomes this algorithm's error."""
        try:
            found = command.find_command(configured_command())
            return command.run(found, args, feedback)
        except command.GeosamCommandError as exc:
            raise QgsProcessingException(str(exc)) from None
        except command.GeosamCancelled:
            raise QgsProcessingException(self.tr("cancelled")) from None

    def load_styled(self, context: QgsProcessingContext, uri: str, name: str, output: str) -> None:
        """Add vector layer `uri` to the project when the algorithm ends, with its style."""
        details = QgsProcessingContext.LayerDetails(name, context.project(), output)
        self.style_on_load(details)
        context.addLayerToLoadOnCompletion(uri, details)

    def style_on_load(self, details: QgsProcessingContext.LayerDetails) -> None:
        """Have Processing apply the GeoPackage's default style to the loaded layer."""
        post = DefaultStyle()
        _POST_PROCESSORS.append(post)
        details.setPostProcessor(post)


def created_folder(path: str) -> bool:
    """Whether running into folder `path` will create it (it is missing or empty)."""
    folder = Path(path)
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def remove_created(path: str) -> None:
    """Remove folder `path`, which this run created, after a failure or cancel."""
    shutil.rmtree(path, ignore_errors=True)


def number(value: float) -> str:
    """A number as geosam's CLI reads it (no trailing .0 noise for integers)."""
    return repr(float(value)) if not float(value).is_integer() else str(int(value))
