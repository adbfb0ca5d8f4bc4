"""Per-chip ship labels: XYXY box prompts and instance masks, from scene-CRS footprints.

Footprints are looked up per chip through a shapely STRtree, clipped to the part of the chip
that lies inside the scene, and kept when at least `min_visible` of the ship's area is
visible (default 0.25: a sliver of a ship cut by the chip edge is a misleading prompt, and with
an overlap larger than the ship it is whole in the neighbouring chip anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from numpy.typing import NDArray
from rasterio.features import rasterize
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geosam.geometry.grid import Chip
from geosam.geometry.pixels import pixel_box
from geosam.geometry.polygons import polygonal_parts

DEFAULT_MIN_VISIBLE = 0.25


@dataclass(frozen=True)
class ChipLabels:
    """Ships on one chip, all arrays in the same order.

    Attributes:
        ship_ids: (N,) int64, the footprint ids.
        boxes: (N, 4) float32, XYXY in chip pixels, clipped to the chip.
        masks: (N, size, size) bool, instance masks rasterized with the chip transform.
        visible: (N,) float32, share of each ship's area that lies on the chip.
        footprints: (N,) shapely geometries, clipped, in the scene CRS.
    """

    ship_ids: NDArray[np.int64]
    boxes: NDArray[np.float32]
    masks: NDArray[np.bool_]
    visible: NDArray[np.float32]
    footprints: NDArray[np.object_]

    def __len__(self) -> int:
        return len(self.ship_ids)

    @classmethod
    def empty(cls, size: int) -> ChipLabels:
        """No ships on a chip of `size` px."""
        return cls(
            np.zeros(0, np.int64),
            np.zeros((0, 4), np.float32),
            np.zeros((0, size, size), bool),
            np.zeros(0, np.float32),
            np.empty(0, object),
        )


class ChipLabeler:
    """Answers "which ships, boxes and masks on this chip?" through a spatial index.

    Args:
        footprints: polygons in the scene CRS with a ``ship_id`` column.
        scene_bounds: (left, bottom, right, top) of the scene grid, to clip padded chips.
        min_visible: drop a clipped ship whose visible share of its area is below this.
    """

    def __init__(
        self,
        footprints: gpd.GeoDataFrame,
        scene_bounds: tuple[float, float, float, float],
        min_visible: float = DEFAULT_MIN_VISIBLE,
    ) -> None:
        self.geometries = np.asarray(footprints.geometry.values, dtype=object)
        self.ship_ids = np.asarray(footprints["ship_id"], dtype=np.int64)
        self.areas = shapely.area(self.geometries)
        self.tree = shapely.STRtree(self.geometries)
        self.scene_box = shapely.box(*scene_bounds)
        self.min_visible = min_visible
        inside = self.tree.query(self.scene_box, predicate="intersects")
        self.outside_scene = len(self.geometries) - len(inside)
        self.dropped_slivers = 0

    def labels(self, chip: Chip) -> ChipLabels:
        """Boxes and masks of the ships on `chip`."""
        area = shapely.intersection(shapely.box(*chip.bounds), self.scene_box)
        hits = self.tree.query(area, predicate="intersects")
        if hits.size == 0:
            return ChipLabels.empty(chip.size)
        hits = np.sort(hits)
        clipped = polygonal_parts(shapely.intersection(self.geometries[hits], area))
        visible = shapely.area(clipped) / np.maximum(self.areas[hits], 1e-12)
        on_chip = ~shapely.is_empty(clipped)  # a ship that only touches the chip is not on it
        keep = (visible >= self.min_visible) & on_chip
        self.dropped_slivers += int((on_chip & ~keep).sum())
        hits, clipped, visible = hits[keep], clipped[keep], visible[keep]
        if hits.size == 0:
            return ChipLabels.empty(chip.size)
        boxes = np.stack([pixel_box(g, chip.transform, chip.size) for g in clipped])
        masks = np.stack([self._mask(g, box, chip) for g, box in zip(clipped, boxes, strict=True)])
        return ChipLabels(
            ship_ids=self.ship_ids[hits],
            boxes=boxes,
            masks=masks,
            visible=visible.astype(np.float32),
            footprints=clipped,
        )

    @staticmethod
    def _mask(geom: shapely.Geometry, box: NDArray[np.float32], chip: Chip) -> NDArray[np.bool_]:
        """Rasterize one ship inside its own small window, pasted into a chip-sized mask."""
        mask = np.zeros((chip.size, chip.size), dtype=bool)
        col0, row0 = int(np.floor(box[0])), int(np.floor(box[1]))
        col1, row1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
        if col1 <= col0 or row1 <= row0:
            return mask
        window = Window(col0, row0, col1 - col0, row1 - row0)
        small = rasterize(
            [(geom, 1)],
            out_shape=(row1 - row0, col1 - col0),
            transform=window_transform(window, chip.transform),
            fill=0,
            dtype="uint8",
        )
        mask[row0:row1, col0:col1] = small.astype(bool)
        return mask
