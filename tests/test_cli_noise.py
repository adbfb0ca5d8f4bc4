"""The console shows geosam's own words: library warnings and log records only from -vv on.

Run in a subprocess: pytest records warnings itself, so in-process they would never reach the
console and the test could not fail.
"""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import logging, sys, warnings
from geosam.cli.main import cli
from geosam.pipelines import tile

real = tile.write_chip

def noisy(*args):
    warnings.warn("invalid value encountered in area", RuntimeWarning)
    logging.getLogger("rasterio._env").warning("CPLE_AppDefined in library noise")
    real(*args)

tile.write_chip = noisy
cli(sys.argv[1:])
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(("verbosity", "shown"), [([], False), (["-vv"], True)])
def test_library_noise_only_from_vv(make_scene, tmp_path: Path, verbosity, shown) -> None:
    result = run(
        *(verbosity or ["-q"]), "tile", str(make_scene()), str(tmp_path / "out"), "--size", "64"
    )
    assert result.returncode == 0, result.stderr
    for noise in ("RuntimeWarning", "invalid value encountered", "CPLE_AppDefined"):
        assert (noise in result.stderr) is shown, result.stderr


def test_default_console_keeps_geosam_warnings(make_scene, make_layer, tmp_path: Path) -> None:
    from conftest import pixel_polygon

    layer = make_layer([pixel_polygon(10, 10, 30, 16), pixel_polygon(9000, 9000, 9010, 9004)])
    result = run("tile", str(make_scene()), str(tmp_path / "out"), "--labels", str(layer))
    assert result.returncode == 0, result.stderr
    assert "1 of 2 footprints lie outside the scene" in result.stderr
    assert "RuntimeWarning" not in result.stderr and "CPLE" not in result.stderr
