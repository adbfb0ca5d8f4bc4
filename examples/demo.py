"""The main job on an embedded example, end to end, offline.

Paints a synthetic harbour (examples/harbour.py), then tiles it with its ship footprints.
Outputs go to examples/output/ (replaced on each run).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harbour import make_harbour

from geosam.data.settings import ChipSettings
from geosam.pipelines.tile import tile_scene

OUT = Path(__file__).resolve().parent / "output"


def main() -> None:
    scene, labels = make_harbour(OUT / "data")
    print(f"example scene: {scene}\nexample footprints: {labels}")
    summary = tile_scene(
        scene,
        OUT / "tiles",
        ChipSettings(size=256, overlap=64),
        labels=labels,
        coco=True,
        overwrite=True,
    )
    print(f"tiled: {summary.chips_written} chips, {summary.ships} ship labels -> {OUT / 'tiles'}")


if __name__ == "__main__":
    main()
