"""Pictures of the QGIS plugin for the README: the "Detect ships" dialog and its result.

Run with QGIS's own Python (Debian: python3-qgis), under a virtual display if there is one:

    xvfb-run -a /usr/bin/python3 scripts/qgis_screenshots.py            # or, without xvfb:
    QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/qgis_screenshots.py

It runs the plugin's own algorithms (so `geosam` must be found: GEOSAM_COMMAND, PATH or
`geosam qgis install`): fine-tunes the small model on s2_casablanca of ../shared (unless
--model is given), detects ships on the scene, renders the styled ship layer over the scene
into docs/qgis_detect.png and the algorithm dialog into docs/qgis_dialog.png. Both pictures
are stored with a 256-colour palette to stay small.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPS_DEV = ROOT.parent / "shared" / "data" / "ships-dev"


def main() -> None:
    """Parse the options, start QGIS, write both pictures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scene", type=Path, default=SHIPS_DEV / "s2_casablanca.tif")
    parser.add_argument("--ships", type=Path, default=SHIPS_DEV / "ships.gpkg")
    parser.add_argument("--model", type=Path, default=None, help="model.pt; else train one")
    parser.add_argument("--steps", type=int, default=400, help="training steps without --model")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--work", type=Path, default=None, help="folder for the run and ships")
    args = parser.parse_args()
    if "DISPLAY" not in os.environ:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    from qgis.core import QgsApplication

    app = QgsApplication([], True)
    app.initQgis()
    sys.path.append(os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
    from processing.core.Processing import Processing

    Processing.initialize()
    sys.path.insert(0, str(ROOT / "geosam" / "qgis_plugin"))
    import geosam_provider

    plugin = geosam_provider.classFactory(None)
    plugin.initProcessing()
    work = args.work or Path(tempfile.mkdtemp(prefix="geosam-screens-"))
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model or train(args.scene, args.ships, args.steps, work)
    ships = detect(args.scene, model, work)
    render_map(args.scene, ships, args.out / "qgis_detect.png")
    render_dialog(args.scene, model, args.out / "qgis_dialog.png")
    for name in ("qgis_detect.png", "qgis_dialog.png"):
        path = args.out / name
        print(f"{path}: {path.stat().st_size // 1024} KB")
    plugin.unload()


def train(scene: Path, ships: Path, steps: int, work: Path) -> Path:
    """Fine-tune the small model with the plugin's algorithm; its model.pt."""
    import processing

    layer = f"{ships}|layername={scene.stem}"
    run = work / "run"
    results = processing.run(
        "geosam:finetune",
        {"SCENE": str(scene), "SHIPS": layer, "STEPS": steps, "OUTPUT": str(run)},
    )
    print(f"validation IoU {results['VAL_IOU']:.3f}, F1 {results['VAL_F1']:.2f}")
    return Path(results["MODEL"])


def detect(scene: Path, model: Path, work: Path) -> str:
    """Detect ships with the plugin's algorithm; the ship layer's URI."""
    import processing

    output = work / "ships.gpkg"
    processing.run(
        "geosam:detect_ships", {"SCENE": str(scene), "MODEL": str(model), "OUTPUT": str(output)}
    )
    return f"{output}|layername={scene.stem}"


def render_map(scene: Path, ships_uri: str, out: Path) -> None:
    """The styled ship layer over the scene, 1.5 screen pixels per scene pixel."""
    from qgis.core import (
        QgsMapRendererParallelJob,
        QgsMapSettings,
        QgsRasterLayer,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    raster = QgsRasterLayer(str(scene), scene.stem)
    ships = QgsVectorLayer(ships_uri, "ships", "ogr")  # loads the GeoPackage's default style
    if not (raster.isValid() and ships.isValid()):
        raise SystemExit(f"cannot load {scene} or {ships_uri}")
    settings = QgsMapSettings()
    settings.setLayers([ships, raster])
    settings.setDestinationCrs(raster.crs())
    settings.setExtent(raster.extent())
    settings.setOutputSize(QSize(int(raster.width() * 1.5), int(raster.height() * 1.5)))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    save_small(job.renderedImage(), out)
    print(f"{ships.featureCount()} ships drawn")


def render_dialog(scene: Path, model: Path, out: Path) -> None:
    """The Processing dialog of "Detect ships", filled in, as QGIS shows it."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

    layer = QgsRasterLayer(str(scene), scene.stem)
    QgsProject.instance().addMapLayer(layer)
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("geosam:detect_ships")
    dialog = AlgorithmDialog(algorithm)
    dialog.mainWidget().setParameters({"SCENE": layer, "MODEL": str(model)})
    dialog.resize(980, 620)
    dialog.show()
    for _ in range(20):
        QgsApplication.processEvents()
    save_small(dialog.grab().toImage(), out, dither=False)
    dialog.close()


def save_small(image: object, out: Path, dither: bool = True) -> None:
    """Save a QImage as a PNG with a 256-colour palette (a quarter of the size of RGB).

    Photographs are dithered; flat user interface colours are not (dithering them only adds
    noise and bytes).
    """
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QImage

    assert isinstance(image, QImage)
    flags = Qt.DiffuseDither if dither else Qt.ThresholdDither | Qt.AvoidDither
    small = image.convertToFormat(QImage.Format_Indexed8, flags)
    if not small.save(str(out), "PNG"):
        raise SystemExit(f"cannot write {out}")


if __name__ == "__main__":
    main()
