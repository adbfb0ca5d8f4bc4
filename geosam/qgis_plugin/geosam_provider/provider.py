"""The "geosam" Processing provider: tile, fine-tune, detect and evaluate."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .defaults import PLUGIN_VERSION
from .detect_ships import DetectShips
from .evaluate import Evaluate
from .finetune import Finetune
from .settings import add_settings, remove_settings
from .tile_scene import TileScene

ICON = Path(__file__).with_name("icon.svg")


class GeosamProvider(QgsProcessingProvider):
    """Runs the `geosam` command of the user's environment (QGIS's Python has no torch)."""

    def id(self) -> str:
        """Prefix of the algorithm ids (geosam:detect_ships)."""
        return "geosam"

    def name(self) -> str:
        """Name in the toolbox."""
        return "geosam"

    def longName(self) -> str:
        """Name with version."""
        return f"geosam {PLUGIN_VERSION} (ships with Segment Anything)"

    def icon(self) -> QIcon:
        """Toolbox icon."""
        return QIcon(str(ICON))

    def load(self) -> bool:
        """Register the setting, then the algorithms."""
        add_settings(self.name())
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        """Remove the setting's entry."""
        remove_settings()

    def loadAlgorithms(self) -> None:
        """The four algorithms."""
        for algorithm in (TileScene(), Finetune(), DetectShips(), Evaluate()):
            self.addAlgorithm(algorithm)

    def supportedOutputVectorLayerExtensions(self) -> list[str]:
        """What `geosam detect -o` writes."""
        return ["gpkg", "geojson", "fgb"]

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:
        """Ship layers are GeoPackages (styled for QGIS)."""
        return "gpkg"

    def supportedOutputRasterLayerExtensions(self) -> list[str]:
        """What `geosam detect --mask-raster` writes."""
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:
        """Mask rasters are GeoTIFFs."""
        return "tif"
