"""Prompts from any vector layer (another detector's boxes, AIS positions) in the scene CRS."""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import geopandas as gpd
import numpy as np
import shapely
from numpy.typing import NDArray

from geosam.errors import LabelsError
from geosam.geometry.grid import Chip
from geosam.geometry.pixels import geometry_to_pixels, pixel_box
from geosam.io.footprints import existing_layer

log = logging.getLogger(__name__)

PROMPTS_FIX = "check the prompts path"


class ChipPrompts(NamedTuple):
    """The prompts on one chip, in chip pixels, and the layer row each one comes from.

    Attributes:
        boxes: (K, 4) float32 XYXY, from the layer's polygons.
        points: (M, 2) float32 (x, y), from the layer's points.
        box_rows: (K,) int64 row of each box in the prompt layer (0-based, file order).
        point_rows: (M,) int64 row of each point in the prompt layer.
    """

    boxes: NDArray[np.float32]
    points: NDArray[np.float32]
    box_rows: NDArray[np.int64]
    point_rows: NDArray[np.int64]


class PromptLayer:
    """Box prompts (from polygons) and point prompts (from points), looked up per chip.

    Args:
        path: vector file.
        scene_crs: CRS to reproject to.
        layer: layer name (default: the only one, or one named after the scene).
        prefer_layer: the scene name.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        scene_crs: object,
        layer: str | None = None,
        prefer_layer: str | None = None,
    ) -> None:
        p, name = existing_layer(path, layer, prefer_layer, PROMPTS_FIX, "--prompts-layer")
        frame = gpd.read_file(p, layer=name, engine="pyogrio")
        if frame.crs is None:
            raise LabelsError(f"{p}: layer {name!r} has no CRS; set the CRS the prompts are in")
        frame = frame.reset_index(drop=True)  # the index is the row in the layer
        frame = frame[~(frame.geometry.isna() | frame.geometry.is_empty)].to_crs(scene_crs)
        kinds = set(frame.geom_type)
        if not kinds <= {"Polygon", "MultiPolygon", "Point"}:
            raise LabelsError(
                f"{p}: prompts must be polygons (boxes) or points, found {', '.join(sorted(kinds))}"
            )
        self.geometries = np.asarray(frame.geometry.values, dtype=object)
        self.rows = np.asarray(frame.index, dtype=np.int64)
        self.is_point = shapely.get_type_id(self.geometries) == 0
        self.tree = shapely.STRtree(self.geometries)
        log.info("%s: %d prompts from layer %r", p.name, len(frame), name)

    def for_chip(self, chip: Chip) -> ChipPrompts:
        """Boxes (K, 4) XYXY and points (M, 2) (x, y), chip pixels, of prompts on `chip`.

        Each comes with its row in the prompt layer: one prompt promises one ship, and the row
        names it across the chips that see it.
        """
        hits = np.sort(self.tree.query(shapely.box(*chip.bounds), predicate="intersects"))
        box_hits, point_hits = hits[~self.is_point[hits]], hits[self.is_point[hits]]
        boxes = [pixel_box(g, chip.transform, chip.size) for g in self.geometries[box_hits]]
        points = [
            shapely.get_coordinates(geometry_to_pixels(g, chip.transform))[0]
            for g in self.geometries[point_hits]
        ]
        return ChipPrompts(
            np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            np.asarray(points, dtype=np.float32).reshape(-1, 2),
            self.rows[box_hits],
            self.rows[point_hits],
        )
