"""`geosam --progress json`: one JSON object per stderr line, and SIGTERM handled like Ctrl-C.

Programs that run geosam (the QGIS plugin) read progress from these lines and stop geosam
with SIGTERM; both are a contract, tested here without QGIS.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from conftest import write_raster

from geosam.cli.main import cli
from geosam.cli.progress import ProgressBar
from geosam.cli.training_progress import training_progress
from geosam.pipelines.finetune_settings import EpochEvent


def _events(stderr: str) -> list[dict[str, object]]:
    """Every stderr line parsed as JSON (fails on any other line)."""
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def test_progress_bar_json_prints_one_object_per_whole_percent(capsys) -> None:
    with ProgressBar("tiling scene.tif", "chip", mode="json") as progress:
        for done in range(1, 401):
            progress(done, 400)
    captured = capsys.readouterr()
    assert captured.out == ""
    events = _events(captured.err)
    assert len(events) == 101  # 400 reports: one line per whole percent, 0 to 100
    assert events[0] == {"progress": 0.0025, "message": "tiling scene.tif: 1/400 chips"}
    assert events[-1] == {"progress": 1.0, "message": "tiling scene.tif: 400/400 chips"}


def test_progress_bar_json_is_silent_when_quiet(capsys) -> None:
    with ProgressBar("tiling", "chip", quiet=True, mode="json") as progress:
        progress(1, 2)
    assert capsys.readouterr().err == ""


def test_tile_reports_json_progress_and_its_summary(make_scene, tmp_path: Path) -> None:
    scene = make_scene(width=300, height=200)
    out = tmp_path / "chips"
    result = CliRunner().invoke(
        cli, ["--progress", "json", "tile", str(scene), str(out), "--size", "64"]
    )
    assert result.exit_code == 0, result.output
    events = _events(result.stderr)
    fractions = [float(e["progress"]) for e in events]  # type: ignore[arg-type]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(0 < f <= 1 for f in fractions)
    assert all(str(e["message"]).startswith("tiling scene.tif: ") for e in events)
    assert "chips written to" in result.stdout


def test_finetune_reports_steps_and_validation_metrics(capsys) -> None:
    report = training_progress(False, "json")
    report(EpochEvent(epoch=1, epochs=2, step=1, steps=2, loss=0.5))
    report(EpochEvent(epoch=1, epochs=2, step=2, steps=2, loss=0.4))
    report(
        EpochEvent(
            epoch=1, epochs=2, step=2, steps=2, loss=0.4, metrics={"val_iou": 0.6, "val_f1": 0.5}
        )
    )
    report(EpochEvent(epoch=2, epochs=2, step=2, steps=2, loss=0.3))
    events = _events(capsys.readouterr().err)
    assert [e["progress"] for e in events] == [0.25, 0.5, 0.5, 1.0]
    assert events[0]["message"] == "round 1/2, step 1/2: loss 0.500"
    assert "metrics" not in events[0]
    assert events[2]["metrics"] == {"val_iou": 0.6, "val_f1": 0.5}
    assert "validation IoU 0.600, F1 0.500" in str(events[2]["message"])


def test_finetune_bar_shows_no_rate_before_its_second_step(capsys) -> None:
    """The first step's time (encoder warm-up, first reads) is unknown to the bar, which
    starts at it: counting it as done in no time showed thousands of steps per second."""
    report = training_progress(False)
    report(EpochEvent(epoch=1, epochs=2, step=1, steps=100, loss=0.5))
    first = capsys.readouterr().err.strip().split("\r")[-1]
    assert "1/100" in first and "?step/s" in first, first


def test_errors_stay_one_line_in_json_mode(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--progress", "json", "tile", str(tmp_path / "missing.tif"), str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr


def test_unknown_progress_mode_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["--progress", "xml", "weights", "list"])
    assert result.exit_code == 2
    assert "'xml' is not one of 'bar', 'json'" in result.stderr


def test_sigterm_stops_tile_like_ctrl_c_and_leaves_nothing(tmp_path: Path) -> None:
    """What the QGIS plugin's Cancel does: SIGTERM mid-run, then no output and no staging."""
    rng = np.random.default_rng(0)
    scene = write_raster(
        tmp_path / "big.tif", rng.integers(1, 255, (3, 1500, 1500), dtype=np.uint8)
    )
    out = tmp_path / "chips"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "geosam", "--progress", "json"]
    command += ["tile", str(scene), str(out), "--size", "32", "--overlap", "0"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    first = process.stderr.readline()  # the first chip is written: the run is under way
    assert json.loads(first)["progress"] < 0.5, first
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130, rest
    assert "Interrupted" in rest and "Traceback" not in rest
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]  # no staging folder left
