"""The QGIS plugin: registers the geosam Processing provider, nothing else."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication

from .provider import GeosamProvider


class GeosamProviderPlugin:
    """Adds the "geosam" provider to the Processing toolbox (and to qgis_process)."""

    def __init__(self, iface: Any = None) -> None:
        self.iface = iface
        self.provider: GeosamProvider | None = None

    def initProcessing(self) -> None:
        """Register the provider (called by QGIS and by qgis_process)."""
        if self.provider is None:
            self.provider = GeosamProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        """QGIS desktop entry point."""
        self.initProcessing()

    def unload(self) -> None:
        """Remove the provider."""
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
