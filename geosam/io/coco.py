"""COCO instance annotations for chips, so chips open in common labelling and training tools.

Images are chips (``chips/<chip_id>.tif``); boxes are ``[x, y, width, height]`` and polygons
flat ``[x0, y0, x1, y1, ...]`` lists, both in chip pixels; category 1 is "ship".
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray

from geosam.geometry.pixels import geometry_to_pixels
from geosam.io.atomic import atomic_write_text


class CocoWriter:
    """Collects chips and their ships, then writes one ``annotations.json``."""

    def __init__(self) -> None:
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add_chip(
        self,
        file_name: str,
        size: int,
        transform: Affine,
        ship_ids: NDArray[np.int64],
        footprints: NDArray[np.object_],
        masks: NDArray[np.bool_],
    ) -> None:
        """Add one chip image and its ships (footprints in scene CRS, clipped to the chip)."""
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for ship_id, geom, mask in zip(ship_ids, footprints, masks, strict=True):
            pixel_geom = geometry_to_pixels(geom, transform)
            x0, y0, x1, y1 = shapely.bounds(pixel_geom)
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [round(float(v), 3) for v in (x0, y0, x1 - x0, y1 - y0)],
                    "area": int(mask.sum()),
                    "segmentation": _polygons(pixel_geom),
                    "iscrowd": 0,
                    "ship_id": int(ship_id),
                }
            )

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the collection as COCO JSON, atomically."""
        doc = {
            "info": {"description": "geosam chips"},
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": 1, "name": "ship", "supercategory": "vessel"}],
        }
        atomic_write_text(path, json.dumps(doc))


def _polygons(geom: shapely.Geometry) -> list[list[float]]:
    parts = geom.geoms if geom.geom_type == "MultiPolygon" else [geom]
    rings = []
    for part in parts:
        coords = np.asarray(part.exterior.coords)[:-1]
        if len(coords) >= 3:
            rings.append([round(float(v), 3) for v in coords.ravel()])
    return rings
