"""The QGIS plugin: its defaults equal the CLI's, and it works in the real QGIS client.

The plugin runs in QGIS's own Python (Debian's python3-qgis: /usr/bin/python3), which has no
torch; its algorithms run this environment's `geosam` in a subprocess. The QGIS tests start
that Python once on a small real scene (s2_casablanca) and run every algorithm through
`processing.run` / `runAndLoadResults`, plus `qgis_process`; they skip with a reason when
QGIS or ../shared is absent.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import geopandas as gpd
import pytest
import rasterio
from click.testing import CliRunner
from conftest import SHIPS_DEV, shared_path

from geosam import __version__
from geosam.cli.main import cli
from geosam.qgis_plugin.install import RECORD_FILE, plugin_source

PLUGIN = plugin_source()
LAYER = "s2_casablanca"
ALGORITHMS = {
    "geosam:tile_scene": ("Tile scene", "tile", "tile_scene.py"),
    "geosam:finetune": ("Fine-tune on footprints", "finetune", "finetune.py"),
    "geosam:detect_ships": ("Detect ships", "detect", "detect_ships.py"),
    "geosam:evaluate": ("Evaluate", "evaluate", "evaluate.py"),
}
"""Algorithm id -> (toolbox name, geosam command, plugin module)."""
DETECT_OPTIONS = {
    "MIN_SCORE": ("--min-score", "0"),
    "PROMPTER_THRESHOLD": ("--prompter-threshold", "0.1"),
}
"""Detection options of the tests: a briefly trained model finds a few ships with them (on
the scene, about 7 at 0.1 in 9 s; at 0.05 every chip holds up to 200 proposals: 70 s)."""


def _plugin_module(name: str) -> ModuleType:
    """A plugin module that imports no qgis (defaults), loaded from its file."""
    spec = importlib.util.spec_from_file_location(f"geosam_provider_{name}", PLUGIN / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _command(name: str) -> click.Command:
    with click.Context(cli) as ctx:
        command = cli.get_command(ctx, name)
    assert command is not None
    return command


def _params(command: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in command.params if p.name}


# -- without QGIS ----------------------------------------------------------------------------


def test_plugin_defaults_equal_the_cli_defaults() -> None:
    defaults = _plugin_module("defaults")
    for command_name, values in defaults.CLI_DEFAULTS.items():
        params = _params(_command(command_name))
        for name, value in values.items():
            assert params[name].default == value, f"{command_name} --{name}"
    for command_name, choices in defaults.CLI_CHOICES.items():
        params = _params(_command(command_name))
        for name, values in choices.items():
            choice = params[name].type
            assert isinstance(choice, click.Choice)
            assert list(choice.choices) == values, f"{command_name} --{name}"


def test_every_flag_the_plugin_passes_is_an_option_of_its_command() -> None:
    for _, command_name, module in ALGORITHMS.values():
        source = (PLUGIN / module).read_text(encoding="utf-8")
        flags = set(re.findall(r'"(--[a-z][a-z-]*|-o)"', source))
        assert flags, module
        known = {o for p in _command(command_name).params for o in (*p.opts, *p.secondary_opts)}
        assert flags <= known, f"{module}: {sorted(flags - known)}"


def test_plugin_version_is_geosam_version() -> None:
    defaults = _plugin_module("defaults")
    metadata = (PLUGIN / "metadata.txt").read_text(encoding="utf-8")
    fields = dict(re.findall(r"^(\w+)=(.*)$", metadata, flags=re.MULTILINE))
    assert fields["version"] == defaults.PLUGIN_VERSION == __version__
    assert fields["qgisMinimumVersion"] == "3.22"
    assert fields["author"] == "geosam developers"
    assert fields["hasProcessingProvider"] == "yes"
    assert all(fields.get(k) for k in ("name", "description", "about", "icon"))
    assert (PLUGIN / fields["icon"]).is_file()
    version = tuple(int(p) for p in __version__.split(".")[:3])
    assert tuple(int(p) for p in defaults.MIN_GEOSAM_VERSION.split(".")) <= version


def test_plugin_imports_neither_geosam_nor_torch() -> None:
    for path in PLUGIN.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+(geosam|torch)\b", text, re.MULTILINE), path


def test_qgis_install_copies_the_plugin_into_the_profile(tmp_path: Path) -> None:
    env = {"QGIS_CUSTOM_CONFIG_PATH": str(tmp_path / "config")}
    result = CliRunner().invoke(cli, ["qgis", "install", "--profile", "work"], env=env)
    assert result.exit_code == 0, result.output
    target = tmp_path / "config" / "profiles" / "work" / "python" / "plugins" / "geosam_provider"
    assert str(target) in result.stdout
    assert (target / "metadata.txt").is_file() and (target / "__init__.py").is_file()
    assert not list(target.rglob("__pycache__"))
    record = json.loads((target / RECORD_FILE).read_text(encoding="utf-8"))
    assert Path(record["command"][0]).name.startswith(("geosam", "python"))
    again = CliRunner().invoke(cli, ["qgis", "install", "--profile", "work"], env=env)
    assert again.exit_code == 0, again.output  # an update replaces the copy


def test_qgis_package_writes_a_zip_for_the_plugin_manager(tmp_path: Path) -> None:
    out = tmp_path / "dist" / "geosam_provider.zip"
    result = CliRunner().invoke(cli, ["qgis", "package", str(out)])
    assert result.exit_code == 0, result.output
    names = zipfile.ZipFile(out).namelist()
    assert "geosam_provider/metadata.txt" in names and "geosam_provider/__init__.py" in names
    assert all(n.startswith("geosam_provider/") and "__pycache__" not in n for n in names)
    assert f"geosam_provider/{RECORD_FILE}" not in names


# -- in QGIS ---------------------------------------------------------------------------------


def _qgis_python() -> str | None:
    """A Python that can `import qgis.core` (Debian's python3-qgis), or None."""
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and os.path.exists(candidate):
            probe = subprocess.run(
                [candidate, "-c", "import qgis.core"], capture_output=True, timeout=60
            )
            if probe.returncode == 0:
                return candidate
    return None


def _qgis_env(tmp: Path) -> dict[str, str]:
    """Headless QGIS with its settings in `tmp` and torch on one thread in geosam.

    QGIS records a raster's statistics beside it (GDAL's .aux.xml) when it draws it; off, so
    that the scenario leaves ../shared as it found it.
    """
    home = tmp / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    return {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "QGIS_CUSTOM_CONFIG_PATH": str(tmp / "qgis-config"),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(home),
        "OMP_NUM_THREADS": "1",
        "GDAL_PAM_ENABLED": "NO",
        "PATH": "/usr/bin:/bin",  # geosam is found through GEOSAM_COMMAND or the record
    }


SCENARIO = textwrap.dedent(
    r"""
    import hashlib, json, os, sys, time
    from pathlib import Path
    from qgis.core import (
        QgsApplication, QgsCoordinateReferenceSystem, QgsFeature, QgsGeometry,
        QgsProcessingException, QgsProcessingFeedback, QgsProcessingParameterDefinition,
        QgsProject, QgsRasterLayer, QgsVectorLayer,
    )

    plugins, work, scene, ships, layer, nocrs, geosam = sys.argv[1:8]
    work = Path(work)
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append(os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
    import processing
    from processing.core.Processing import Processing
    Processing.initialize()
    sys.path.insert(0, plugins)
    import geosam_provider
    plugin = geosam_provider.classFactory(None)
    plugin.initProcessing()
    os.environ["GEOSAM_COMMAND"] = geosam
    facts = {}
    provider = QgsApplication.processingRegistry().providerById("geosam")
    advanced = QgsProcessingParameterDefinition.FlagAdvanced
    facts["algorithms"] = {
        a.id(): {
            "name": a.displayName(),
            "help": a.shortHelpString(),
            "parameters": [p.name() for p in a.parameterDefinitions()],
            "advanced": [p.name() for p in a.parameterDefinitions() if p.flags() & advanced],
            "outputs": [o.name() for o in a.outputDefinitions()],
        }
        for a in provider.algorithms()
    }

    class Feedback(QgsProcessingFeedback):
        def __init__(self, cancel_on=None):
            super().__init__()
            self.log, self.texts, self.percents, self.cancel_on = [], [], [], cancel_on

        def pushInfo(self, text):
            self.log.append(text)

        def pushCommandInfo(self, text):
            self.log.append("COMMAND " + text)

        def reportError(self, text, fatalError=False):
            self.log.append("ERROR " + text)

        def setProgress(self, percent):
            self.percents.append(percent)

        def setProgressText(self, text):
            self.texts.append(text)
            if self.cancel_on and self.cancel_on in text:
                self.cancel()

    def color(layer):
        symbol = layer.renderer().symbol() if hasattr(layer.renderer(), "symbol") else None
        return symbol.color().name(0x1) if symbol else None  # #AARRGGBB

    def styles(uri):
        plain = QgsVectorLayer.LayerOptions()
        plain.loadDefaultStyle = False
        return {
            "default": color(QgsVectorLayer(uri, "x", "ogr")),
            "plain": color(QgsVectorLayer(uri, "x", "ogr", plain)),
        }

    def project_layers():
        found = {}
        for l in QgsProject.instance().mapLayers().values():
            vector = isinstance(l, QgsVectorLayer)
            found[l.name()] = {
                "source": l.source(), "valid": l.isValid(), "crs": l.crs().authid(),
                "kind": "vector" if vector else "raster",
                "count": l.featureCount() if vector else None,
                "color": color(l) if vector else None,
            }
        QgsProject.instance().removeAllMapLayers()
        return found

    def run(algorithm, parameters, load=False, cancel_on=None):
        feedback = Feedback(cancel_on)
        start = time.time()
        results, error = None, None
        try:
            runner = processing.runAndLoadResults if load else processing.run
            results = runner(algorithm, parameters, feedback=feedback)
        except QgsProcessingException as exc:
            error = str(exc)
        if results is not None:
            results = {
                k: ([[str(v) for v in f.attributes()] for f in r.getFeatures()]
                    if isinstance(r, QgsVectorLayer) else r)
                for k, r in results.items()
            }
        return {
            "results": results, "error": error, "log": feedback.log, "texts": feedback.texts,
            "percents": feedback.percents, "seconds": time.time() - start,
        }

    def leftovers(stem):
        return sorted(p.name for p in work.iterdir() if stem in p.name)

    labels = f"{ships}|layername={layer}"
    facts["tile"] = run("geosam:tile_scene", {
        "SCENE": scene, "LABELS": labels, "SIZE": 256, "OVERLAP": 64,  # chips share blocks
        "OUTPUT": str(work / "chips")}, load=True)
    facts["tile"]["project"] = project_layers()
    facts["tile"]["styles"] = {
        n: styles(f"{work / 'chips' / 'index.gpkg'}|layername={n}") for n in ("chips", "ships")}
    # The chip files themselves, as QGIS's own raster provider reads them (its GDAL, not ours).
    facts["chip_files"] = {}
    for path in sorted((work / "chips" / "chips").glob("*.tif")):
        raster = QgsRasterLayer(str(path), path.stem)
        box = raster.extent()
        provider = raster.dataProvider()
        digests = []
        for band in range(1, raster.bandCount() + 1):
            block = provider.block(band, box, raster.width(), raster.height())
            digests.append(hashlib.sha256(bytes(block.data())).hexdigest())  # data() borrows
        facts["chip_files"][path.name] = {
            "valid": raster.isValid(), "crs": raster.crs().authid(),
            "size": [raster.width(), raster.height(), raster.bandCount()],
            "extent": [box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()],
            "sha256": digests,
        }

    # Batch mode: the batch dialog runs one instance of the algorithm row after row through
    # processing.gui.AlgorithmExecutor.execute, each row with its own parameters.
    from processing.gui.AlgorithmExecutor import execute
    from qgis.core import QgsProcessingContext
    batch = QgsApplication.processingRegistry().createAlgorithmById("geosam:tile_scene")
    facts["batch"] = []
    for row, size in enumerate((256, 128)):
        folder = work / f"batch{row}"
        ok, _ = execute(batch, {"SCENE": scene, "SIZE": size, "OUTPUT": str(folder)},
                        QgsProcessingContext(), Feedback())
        facts["batch"].append({"ok": ok, "chips": len(list(folder.glob("chips/*.tif")))})

    facts["finetune"] = run("geosam:finetune", {
        "SCENE": scene, "SHIPS": labels, "STEPS": 4, "VAL_EVERY": 2, "BATCH": 2, "MINUTES": 60,
        "OUTPUT": str(work / "run")})
    if facts["finetune"]["results"]:  # QGIS removes its temporary folder on exit
        facts["finetune"]["report"] = Path(facts["finetune"]["results"]["REPORT"]).read_text()

    model = str(work / "run" / "model.pt")
    detect = {"SCENE": scene, "MODEL": model, "MIN_SCORE": 0, "PROMPTER_THRESHOLD": 0.1}
    facts["detect"] = run("geosam:detect_ships", {
        **detect, "OUTPUT": str(work / "ships.gpkg"), "MASK_RASTER": str(work / "mask.tif"),
        "PREVIEW": str(work / "preview.png")}, load=True)
    facts["detect"]["project"] = project_layers()
    facts["detect"]["styles"] = styles(f"{work / 'ships.gpkg'}|layername={layer}")
    facts["detect"]["count"] = QgsVectorLayer(
        f"{work / 'ships.gpkg'}|layername={layer}", "x", "ogr").featureCount()
    facts["within"] = run("geosam:detect_ships", {
        **detect, "WITHIN": labels, "OUTPUT": str(work / "within.gpkg")})
    # Box prompts give one mask per reference ship whatever the model learned in 4 steps;
    # a cut no logit passes empties them all, one every logit passes keeps them.
    prompted = {**detect, "PROMPTS": labels}
    facts["cut"] = run("geosam:detect_ships", {
        **prompted, "MASK_CUT": 1000, "OUTPUT": str(work / "cut.gpkg")})
    facts["uncut"] = run("geosam:detect_ships", {
        **prompted, "MASK_CUT": -1000, "OUTPUT": str(work / "uncut.gpkg")})

    facts["evaluate"] = run("geosam:evaluate", {
        "PRED": str(work / "ships.gpkg"), "TRUTH": labels, "OUTPUT": "TEMPORARY_OUTPUT",
        "JSON": str(work / "scores.json")})

    # The graphical modeler: detect -> evaluate, chained by their declared outputs.
    from qgis.core import (
        QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource as Source, QgsProcessingModelOutput,
        QgsProcessingModelParameter, QgsProcessingParameterFile,
        QgsProcessingParameterRasterLayer, QgsProcessingParameterVectorLayer,
    )
    model_alg = QgsProcessingModelAlgorithm("detect and score", "geosam tests")
    for parameter in (
        QgsProcessingParameterRasterLayer("scene", "Scene"),
        QgsProcessingParameterFile("model", "Model"),
        QgsProcessingParameterVectorLayer("truth", "Reference"),
    ):
        model_alg.addModelParameter(parameter, QgsProcessingModelParameter(parameter.name()))
    child = QgsProcessingModelChildAlgorithm("geosam:detect_ships")
    child.setChildId("detect")
    for name, source in (
        ("SCENE", Source.fromModelParameter("scene")),
        ("MODEL", Source.fromModelParameter("model")),
        ("MIN_SCORE", Source.fromStaticValue(0)),
        ("PROMPTER_THRESHOLD", Source.fromStaticValue(0.1)),
    ):
        child.addParameterSources(name, [source])
    model_alg.addChildAlgorithm(child)
    child = QgsProcessingModelChildAlgorithm("geosam:evaluate")
    child.setChildId("evaluate")
    child.addParameterSources("PRED", [Source.fromChildOutput("detect", "OUTPUT")])
    child.addParameterSources("TRUTH", [Source.fromModelParameter("truth")])
    output = QgsProcessingModelOutput("scores")
    output.setChildId("evaluate")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"scores": output})
    model_alg.addChildAlgorithm(child)
    facts["model"] = run(model_alg, {
        "scene": scene, "model": model, "truth": labels,
        "evaluate:scores": "TEMPORARY_OUTPUT"})

    cancel = {}
    cancel["tile"] = run("geosam:tile_scene", {
        "SCENE": scene, "SIZE": 16, "OVERLAP": 0, "OUTPUT": str(work / "cancel_tile")},
        cancel_on="tiling")
    cancel["tile"]["left"] = leftovers("cancel_tile")
    cancel["finetune"] = run("geosam:finetune", {
        "SCENE": scene, "SHIPS": labels, "STEPS": 200, "VAL_EVERY": 100, "BATCH": 2,
        "OUTPUT": str(work / "cancel_run")}, cancel_on="step 1/")
    cancel["finetune"]["left"] = leftovers("cancel_run")
    cancel["detect"] = run("geosam:detect_ships", {
        **detect, "OUTPUT": str(work / "cancel_ships.gpkg"),
        "MASK_RASTER": str(work / "cancel_mask.tif")}, cancel_on="detecting")
    cancel["detect"]["left"] = leftovers("cancel_")
    facts["cancel"] = cancel

    errors = {}
    memory = QgsVectorLayer("Polygon", "drawn ships", "memory")
    memory.setCrs(QgsCoordinateReferenceSystem())
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromWkt("POLYGON((0 0, 10 0, 10 10, 0 0))"))
    memory.dataProvider().addFeatures([feature])
    errors["memory layer without CRS"] = run("geosam:finetune", {
        "SCENE": scene, "SHIPS": memory, "OUTPUT": str(work / "bad_run")})
    errors["file layer without CRS"] = run("geosam:tile_scene", {
        "SCENE": scene, "LABELS": nocrs, "OUTPUT": str(work / "bad_chips")})
    errors["missing model"] = run("geosam:detect_ships", {
        "SCENE": scene, "MODEL": str(work / "missing" / "model.pt"),
        "OUTPUT": str(work / "bad_ships.gpkg")})
    os.environ["GEOSAM_COMMAND"] = str(work / "no" / "geosam")
    errors["geosam missing"] = run("geosam:tile_scene", {
        "SCENE": scene, "OUTPUT": str(work / "bad_chips")})
    old = work / "old_geosam"
    old.write_text("#!/bin/sh\necho 'geosam, version 0.0.9'\n")
    old.chmod(0o755)
    os.environ["GEOSAM_COMMAND"] = str(old)
    errors["geosam too old"] = run("geosam:tile_scene", {
        "SCENE": scene, "OUTPUT": str(work / "bad_chips")})
    for e in errors.values():
        e["left"] = leftovers("bad_")
    facts["errors"] = errors
    (work / "facts.json").write_text(json.dumps(facts, indent=1, default=str))
    print("scenario done")
    """
)


@pytest.fixture(scope="module")
def qgis_python() -> str:
    python = _qgis_python()
    if python is None:
        pytest.skip("QGIS Python bindings not installed (Debian packages qgis, python3-qgis)")
    return python


@pytest.fixture(scope="module")
def data() -> dict[str, Path]:
    return {
        "scene": shared_path(SHIPS_DEV / f"{LAYER}.tif"),
        "ships": shared_path(SHIPS_DEV / "ships.gpkg"),
    }


@pytest.fixture(scope="module")
def scenario(
    qgis_python: str, data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Run every algorithm once in QGIS (outputs, cancels, bad inputs); what happened."""
    tmp = tmp_path_factory.mktemp("qgis")
    work = tmp / "work"
    work.mkdir()
    nocrs = work / "nocrs.gpkg"
    frame = gpd.read_file(data["ships"], layer=LAYER, engine="pyogrio")
    with pytest.warns(UserWarning, match="crs"):
        frame.set_crs(None, allow_override=True).to_file(nocrs, layer=LAYER, engine="pyogrio")
    beside_inputs = _files_beside(data["scene"])
    script = tmp / "scenario.py"
    script.write_text(SCENARIO, encoding="utf-8")
    argv = [str(PLUGIN.parent), str(work), str(data["scene"]), str(data["ships"]), LAYER]
    argv += [str(nocrs), str(Path(sys.executable).with_name("geosam"))]
    done = subprocess.run(
        [qgis_python, str(script), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env=_qgis_env(tmp),
    )
    assert done.returncode == 0 and "scenario done" in done.stdout, done.stderr[-4000:]
    facts: dict[str, Any] = json.loads((work / "facts.json").read_text(encoding="utf-8"))
    facts["work"] = work
    facts["tmp"] = tmp
    facts["new_beside_inputs"] = sorted(_files_beside(data["scene"]) - beside_inputs)
    return facts


def _files_beside(scene: Path) -> set[str]:
    return {p.name for p in scene.parent.iterdir()}


def test_qgis_writes_nothing_beside_the_input_scene(scenario: dict[str, Any]) -> None:
    """The scenario opens ../shared's scene in QGIS and runs geosam on it: nothing may be left
    beside it (a statistics .aux.xml of QGIS's had been, in ../shared)."""
    assert scenario["new_beside_inputs"] == []


def test_provider_registers_four_algorithms_with_help(scenario: dict[str, Any]) -> None:
    algorithms = scenario["algorithms"]
    assert set(algorithms) == set(ALGORITHMS)
    for algorithm_id, (name, _, _) in ALGORITHMS.items():
        algorithm = algorithms[algorithm_id]
        assert algorithm["name"] == name
        assert len(algorithm["help"]) > 200, algorithm_id
        assert algorithm["outputs"], algorithm_id
    assert {"MODEL", "CURVES", "VAL_IOU", "VAL_F1"} <= set(algorithms["geosam:finetune"]["outputs"])
    assert {"CHIPS", "SHIPS"} <= set(algorithms["geosam:tile_scene"]["outputs"])
    for algorithm_id in ("geosam:tile_scene", "geosam:finetune", "geosam:detect_ships"):
        advanced = algorithms[algorithm_id]["advanced"]
        assert "BANDS" in advanced and "SCENE" not in advanced, algorithm_id


def test_tile_scene_loads_its_index_layers_styled(scenario: dict[str, Any]) -> None:
    tile = scenario["tile"]
    assert tile["error"] is None, tile["log"]
    assert tile["results"]["CHIP_COUNT"] == 6
    assert (scenario["work"] / "chips" / "metadata.json").is_file()
    assert tile["percents"][-1] == 100 and any("6/6 chips" in t for t in tile["texts"])
    project = tile["project"]
    assert set(project) == {"chips", "ships"}
    for name, layer in project.items():
        assert layer["valid"] and layer["crs"] == "EPSG:3857" and layer["count"] > 0, name
        styles = tile["styles"][name]
        assert layer["color"] == styles["default"] != styles["plain"], (name, styles)


def test_qgis_reads_every_chip_file_pixel_for_pixel(scenario: dict[str, Any]) -> None:
    """The chips' layout (small DEFLATE tiles with a predictor, a block shared with the
    neighbouring chip appended after GDAL's own) is one QGIS 3.22 decodes."""
    seen = scenario["chip_files"]
    chips = sorted((scenario["work"] / "chips" / "chips").glob("*.tif"))
    assert len(chips) == len(seen) == 6
    for path in chips:
        got = seen[path.name]
        with rasterio.open(path) as src:
            pixels = src.read()
            bounds, crs = list(src.bounds), src.crs.to_string()
        assert got["valid"] and got["crs"] == crs == "EPSG:3857", path.name
        assert got["size"] == [pixels.shape[2], pixels.shape[1], pixels.shape[0]]
        assert got["extent"] == pytest.approx(bounds, abs=1e-6)
        assert got["sha256"] == [hashlib.sha256(band.tobytes()).hexdigest() for band in pixels]


def test_batch_mode_runs_one_instance_row_after_row(scenario: dict[str, Any]) -> None:
    rows = scenario["batch"]
    assert [row["ok"] for row in rows] == [True, True]
    assert 0 < rows[0]["chips"] < rows[1]["chips"]  # 256 px chips, then 128 px chips


def test_finetune_reports_the_best_validation_and_the_curves(scenario: dict[str, Any]) -> None:
    finetune = scenario["finetune"]
    assert finetune["error"] is None, finetune["log"]
    results = finetune["results"]
    for key in ("MODEL", "CURVES", "METRICS"):
        assert Path(results[key]).is_file(), key
    assert results["BEST_STEP"] in (2.0, 4.0)
    assert 0 <= results["VAL_IOU"] <= 1 and 0 < results["BOX_IOU"] <= 1
    assert any("curves.png" in line for line in finetune["log"])
    assert any(line.startswith("Validation IoU") for line in finetune["log"])
    assert sum(line.startswith("round ") for line in finetune["log"]) == 2  # each validation
    assert results["REPORT"].endswith(".html") and "curves.png" in finetune["report"]
    assert finetune["percents"][-1] == 100
    # The time budget reaches the command (60 minutes: it does not bind on four steps).
    assert any(line.startswith("COMMAND ") and "--minutes 60" in line for line in finetune["log"])


def test_detect_ships_loads_a_styled_layer_mask_and_preview(scenario: dict[str, Any]) -> None:
    detect = scenario["detect"]
    assert detect["error"] is None, detect["log"]
    work = scenario["work"]
    assert detect["results"]["OUTPUT"] == str(work / "ships.gpkg")
    assert (work / "preview.png").stat().st_size > 0
    project = detect["project"]
    vectors = [v for v in project.values() if v["kind"] == "vector"]
    rasters = [v for v in project.values() if v["kind"] == "raster"]
    assert len(vectors) == 1 and len(rasters) == 1, project
    ships, mask = vectors[0], rasters[0]
    assert ships["valid"] and ships["crs"] == "EPSG:3857"
    assert ships["source"].endswith("ships.gpkg") and ships["count"] == detect["count"]
    assert ships["color"] == detect["styles"]["default"] != detect["styles"]["plain"]
    assert mask["valid"] and mask["crs"] == "EPSG:3857" and mask["source"].endswith("mask.tif")
    assert any("detecting" in t for t in detect["texts"])


def test_detect_ships_within_an_area_keeps_only_ships_in_it(
    scenario: dict[str, Any], data: dict[str, Path]
) -> None:
    within = scenario["within"]
    assert within["error"] is None, within["log"]
    command = next(line for line in within["log"] if line.startswith("COMMAND "))
    assert " --within " in command and LAYER in command  # the layer went to geosam
    ships = gpd.read_file(scenario["work"] / "within.gpkg", layer=LAYER)
    area = gpd.read_file(data["ships"], layer=LAYER).to_crs(ships.crs).union_all()
    assert len(ships) <= scenario["detect"]["count"]
    assert ships.geometry.representative_point().intersects(area).all()


def test_detect_ships_passes_the_mask_cut_to_geosam(scenario: dict[str, Any]) -> None:
    cut = scenario["cut"]
    assert cut["error"] is None, cut["log"]
    command = next(line for line in cut["log"] if line.startswith("COMMAND "))
    assert " --mask-cut 1000" in command
    # No logit passes 1000: every mask is empty, so no ship; at -1000 every prompt is a ship.
    assert scenario["uncut"]["error"] is None, scenario["uncut"]["log"]
    assert len(gpd.read_file(scenario["work"] / "uncut.gpkg", layer=LAYER)) == 15
    assert len(gpd.read_file(scenario["work"] / "cut.gpkg", layer=LAYER)) == 0


def test_evaluate_gives_a_score_table_and_json(scenario: dict[str, Any]) -> None:
    evaluate = scenario["evaluate"]
    assert evaluate["error"] is None, evaluate["log"]
    rows = evaluate["results"]["OUTPUT"]
    assert [row[0] for row in rows] == [LAYER, "all"]
    scores = json.loads((scenario["work"] / "scores.json").read_text(encoding="utf-8"))
    overall = scores["overall"]
    assert rows[-1][1:4] == [str(overall["tp"]), str(overall["fp"]), str(overall["fn"])]
    assert int(rows[-1][1]) + int(rows[-1][3]) == 15  # the 15 reference ships: TP + FN
    assert evaluate["results"]["F1"] == overall["f1"]


def test_algorithms_chain_in_the_graphical_modeler(scenario: dict[str, Any]) -> None:
    model = scenario["model"]
    assert model["error"] is None, model["log"]
    rows = model["results"]["evaluate:scores"]
    assert [row[0] for row in rows] == [LAYER, "all"]
    assert rows == scenario["evaluate"]["results"]["OUTPUT"]  # same as run one by one


@pytest.mark.parametrize("algorithm", ["tile", "finetune", "detect"])
def test_cancel_stops_geosam_and_leaves_nothing(scenario: dict[str, Any], algorithm: str) -> None:
    cancel = scenario["cancel"][algorithm]
    assert cancel["error"] == "cancelled", cancel["log"]
    assert cancel["texts"], "cancelled before geosam reported progress"
    assert cancel["left"] == [], cancel["left"]
    assert cancel["seconds"] < 60


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("memory layer without CRS", "drawn ships: layer has no CRS; set it"),
        ("file layer without CRS", "has no CRS; set it"),
        ("missing model", "model.pt: no such model file"),
        ("geosam missing", "geosam command not found: install it"),
        ("geosam too old", "geosam too old"),
    ],
)
def test_bad_inputs_give_the_algorithm_a_one_line_error(
    scenario: dict[str, Any], case: str, message: str
) -> None:
    error = scenario["errors"][case]
    assert error["results"] is None
    assert error["error"] is not None and message in error["error"], error["error"]
    assert "\n" not in error["error"] and "Traceback" not in error["error"]
    assert error["left"] == [], error["left"]


def _qgis_process(env: dict[str, str]) -> str | None:
    """qgis_process, or Debian's qgis_process.bin when the wrapper passes a flag it refuses."""
    for candidate in (shutil.which("qgis_process", path=env["PATH"]), "/usr/bin/qgis_process.bin"):
        if candidate and os.path.exists(candidate):
            probe = subprocess.run(
                [candidate, "--version"], capture_output=True, text=True, env=env, timeout=120
            )
            if probe.returncode == 0:
                return candidate
    return None


def test_qgis_process_detect_writes_what_geosam_detect_writes(
    scenario: dict[str, Any], data: dict[str, Path]
) -> None:
    tmp, work = scenario["tmp"], scenario["work"]
    env = _qgis_env(tmp)
    qgis_process = _qgis_process(env)
    if qgis_process is None:
        pytest.skip("qgis_process not installed or not runnable")
    installed = CliRunner().invoke(cli, ["qgis", "install"], env=env)
    assert installed.exit_code == 0, installed.output
    enable = [qgis_process, "plugins", "enable", "geosam_provider"]
    done = subprocess.run(enable, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    model = work / "run" / "model.pt"
    options = [f"{k}={v}" for k, (_, v) in DETECT_OPTIONS.items()]
    run = [qgis_process, "run", "geosam:detect_ships", "--"]
    run += [f"SCENE={data['scene']}", f"MODEL={model}", *options, f"OUTPUT={work / 'qp.gpkg'}"]
    done = subprocess.run(run, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    cli_run = [sys.executable, "-m", "geosam", "detect", str(data["scene"]), "--model", str(model)]
    cli_run += [a for flag, value in DETECT_OPTIONS.values() for a in (flag, value)]
    cli_run += ["-o", str(work / "cli.gpkg")]
    done = subprocess.run(cli_run, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    from_qgis = gpd.read_file(work / "qp.gpkg", layer=LAYER, engine="pyogrio")
    from_cli = gpd.read_file(work / "cli.gpkg", layer=LAYER, engine="pyogrio")
    assert list(from_qgis.columns) == list(from_cli.columns)
    assert from_qgis.crs == from_cli.crs
    assert len(from_qgis) == len(from_cli)
    attributes = [c for c in from_cli.columns if c != "geometry"]
    assert from_qgis[attributes].equals(from_cli[attributes])
    assert list(from_qgis.geometry.to_wkb()) == list(from_cli.geometry.to_wkb())
