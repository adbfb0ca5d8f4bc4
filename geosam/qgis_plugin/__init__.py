"""The QGIS plugin of geosam (`geosam_provider/`, run by QGIS) and how to install it.

`geosam_provider/` is QGIS code: it imports qgis, never geosam or torch, and is shipped as
package data. `install` copies it into a QGIS profile or a zip for the plugin manager.
"""
