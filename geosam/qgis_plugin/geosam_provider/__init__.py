"""geosam Processing provider for QGIS: tile, fine-tune, detect ships and evaluate.

The algorithms run the `geosam` command of the user's own Python environment; this plugin
imports neither geosam nor torch.
"""

from __future__ import annotations

from typing import Any


def classFactory(iface: Any) -> Any:
    """QGIS entry point."""
    from .plugin import GeosamProviderPlugin

    return GeosamProviderPlugin(iface)
