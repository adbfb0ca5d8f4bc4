"""Spatial hold-out of the real dev scenes: a western part to train on, an eastern part to score.

Each scene of ``../shared/data/ships-dev`` is cut at a column into two GeoTIFFs (windowed reads,
each keeping its exact georeference) and its footprint layer into two layers: a ship belongs to
the part that holds its centroid and is clipped to that part. Training sees only the western
file, so no training chip can overlap a held-out pixel. Outputs are cached in the bench data
folder, never in the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import rasterio
import shapely
from rasterio.windows import Window

from bench.common import data_dir

SHIPS_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "ships-dev"
MARINA = ["dota_P0706_top"]
PORTS = ["s2_busan", "s2_genoa", "s2_gdynia", "s2_casablanca"]
FAMILIES = {"marina": MARINA, "ports": PORTS}


@dataclass(frozen=True)
class HeldOutScene:
    """One dev scene cut in two: (raster, footprints) to train on and to score on."""

    name: str
    family: str
    train_scene: Path
    train_labels: Path
    test_scene: Path
    test_labels: Path


def split_scene(name: str, family: str, held_out: float, folder: Path) -> HeldOutScene:
    """Cut scene `name` so that its eastern `held_out` share of columns is scored only."""
    src_path = SHIPS_DEV / f"{name}.tif"
    ships = gpd.read_file(SHIPS_DEV / "ships.gpkg", layer=name)
    parts = {}
    with rasterio.open(src_path) as src:
        cut = round(src.width * (1 - held_out))
        windows = {
            "train": Window(0, 0, cut, src.height),
            "test": Window(cut, 0, src.width - cut, src.height),
        }
        for part, window in windows.items():
            scene = folder / f"{name}_{part}.tif"
            labels = folder / f"{name}_{part}.gpkg"
            parts[part] = (scene, labels)
            if scene.exists() and labels.exists():
                continue
            profile = src.profile.copy()
            profile.update(
                width=int(window.width),
                height=int(window.height),
                transform=src.window_transform(window),
            )
            tmp = scene.with_suffix(".part.tif")
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(src.read(window=window))
            tmp.rename(scene)
            left, bottom, right, top = rasterio.windows.bounds(window, src.transform)
            area = shapely.box(left, bottom, right, top)
            mine = ships[ships.geometry.centroid.within(area)].copy()
            mine["geometry"] = mine.geometry.intersection(area)
            mine = mine[~mine.geometry.is_empty]
            tmp_labels = labels.with_suffix(".part.gpkg")
            mine.to_file(tmp_labels, layer=name, driver="GPKG")
            tmp_labels.rename(labels)
    (train_scene, train_labels), (test_scene, test_labels) = parts["train"], parts["test"]
    return HeldOutScene(name, family, train_scene, train_labels, test_scene, test_labels)


def held_out_scenes(held_out: float = 0.25) -> list[HeldOutScene] | None:
    """All dev scenes split at the same share, or None when ../shared is absent."""
    if not SHIPS_DEV.exists():
        return None
    folder = data_dir() / f"holdout_{held_out:g}"
    folder.mkdir(parents=True, exist_ok=True)
    return [
        split_scene(name, family, held_out, folder)
        for family, names in FAMILIES.items()
        for name in names
    ]
