"""A synthetic harbour scene with ships and their footprints, generated from a seed.

geosam's example must run offline and ship no third-party imagery, so it paints its own:
textured water, a quay, and ships as rotated hulls with a pointed bow, a bright deck and a
shadow, at 0.5 m pixels in UTM 31N. The footprints are the hull outlines, written as a
GeoPackage layer named after the scene, exactly like a user's annotation.

Run ``python examples/harbour.py OUT_DIR`` to write ``harbour.tif`` and ``harbour.gpkg``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.features import rasterize
from shapely import affinity

CRS = "EPSG:32631"
PIXEL = 0.5
ORIGIN = (448000.0, 5412000.0)  # near Le Havre; the picture is invented


def ship_outline(length: float, width: float) -> shapely.Polygon:
    """A hull in metres centred at the origin, bow pointing +x."""
    half_l, half_w = length / 2, width / 2
    bow = half_l - width * 0.9
    return shapely.Polygon(
        [(-half_l, -half_w), (bow, -half_w), (half_l, 0), (bow, half_w), (-half_l, half_w)]
    )


def make_harbour(
    out_dir: str | Path, width: int = 1024, height: int = 768, ships: int = 36, seed: int = 7
) -> tuple[Path, Path]:
    """Write ``harbour.tif`` (3-band uint8) and ``harbour.gpkg`` (layer ``harbour``)."""
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    transform = Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1])

    # Water: dark blue-green with smooth swell and pixel noise.
    yy, xx = np.mgrid[0:height, 0:width]
    swell = 6 * np.sin(xx / 23.0 + yy / 41.0) + 4 * np.sin(yy / 17.0)
    image = np.stack([28 + swell, 58 + swell, 72 + swell]) + rng.normal(
        0, 5, size=(3, height, width)
    )

    # A quay along the top with a pier: concrete grey.
    quay_rows = int(height * 0.12)
    image[:, :quay_rows, :] = 150 + rng.normal(0, 8, size=(3, quay_rows, width))
    pier = slice(int(width * 0.45), int(width * 0.5))
    pier_rows = int(height * 0.55)
    image[:, :pier_rows, pier] = 145 + rng.normal(0, 8, size=(3, pier_rows, pier.stop - pier.start))

    footprints: list[shapely.Polygon] = []
    left, top = ORIGIN
    tries = 0
    while len(footprints) < ships and tries < ships * 50:
        tries += 1
        length = float(rng.uniform(8, 40))
        hull = ship_outline(length, length * rng.uniform(0.22, 0.32))
        hull = affinity.rotate(hull, float(rng.uniform(0, 180)), origin=(0, 0))
        x = left + rng.uniform(0.04, 0.96) * width * PIXEL
        y = top - rng.uniform(0.16, 0.96) * height * PIXEL
        hull = affinity.translate(hull, x, y)
        if any(hull.distance(other) < 3 for other in footprints):
            continue
        pier_box = shapely.box(
            left + pier.start * PIXEL, top - height * 0.55 * PIXEL, left + pier.stop * PIXEL, top
        )
        if hull.intersects(pier_box):
            continue
        footprints.append(hull)

    for hull in footprints:
        shadow = affinity.translate(hull, 1.5, -1.5)
        for geom, colour in (
            (shadow, (12, 22, 28)),
            (hull, tuple(rng.uniform(175, 240) + rng.uniform(-12, 12, 3))),
        ):
            mask = rasterize([(geom, 1)], out_shape=(height, width), transform=transform) > 0
            image[:, mask] = np.asarray(colour)[:, None] + rng.normal(0, 6, size=(3, mask.sum()))
        deck = affinity.scale(hull, 0.55, 0.45)
        mask = rasterize([(deck, 1)], out_shape=(height, width), transform=transform) > 0
        image[:, mask] -= 35

    scene = out / "harbour.tif"
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": CRS,
        "transform": transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "photometric": "RGB",
    }
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(np.clip(image, 0, 255).astype(np.uint8))
    labels = out / "harbour.gpkg"
    frame = gpd.GeoDataFrame(
        {"id": np.arange(1, len(footprints) + 1), "class": "ship"}, geometry=footprints, crs=CRS
    )
    frame.to_file(labels, layer="harbour", engine="pyogrio")
    return scene, labels


if __name__ == "__main__":
    print(*make_harbour(sys.argv[1] if len(sys.argv) > 1 else "examples/output"), sep="\n")
