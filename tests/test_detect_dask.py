"""Detection on a Dask cluster gives the layer of the in-process run, even when a worker dies."""

import os
import pickle
import subprocess
import sys

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner
from conftest import one_torch_thread

from geosam.cli.main import cli
from geosam.errors import ClusterError, DaskMissingError
from geosam.io.area_layer import DetectionArea
from geosam.pipelines import detect as detect_module
from geosam.pipelines import detect_scene as detect_scene_module
from geosam.pipelines.detect import DetectSettings, detect
from geosam.pipelines.detect_scene import scene_frame
from geosam.pipelines.finetune import finetune
from geosam.pipelines.finetune_settings import FinetuneSettings
from geosam.pipelines.training_data import TrainingPair

distributed = pytest.importorskip("distributed")

# One chip per task: the harbour's six chips become six tasks shared by two workers.
SETTINGS = DetectSettings(batch_chips=1, device="cpu")


@pytest.fixture(scope="module")
def model(harbour, tmp_path_factory):
    """A model after one quick epoch: its masks are rough, but they are masks."""
    run = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOSAM_HOME", str(tmp_path_factory.mktemp("home")))
        finetune(
            [TrainingPair(*harbour)],
            run / "r",
            settings=FinetuneSettings(epochs=1, train_encoder=False, batch_chips=4),
            overwrite=True,
        )
    return run / "r" / "model.pt"


@pytest.fixture(scope="module")
def prompts(harbour, tmp_path_factory):
    """Three of the harbour's ships as box prompts, so detection is quick and finds ships."""
    frame = gpd.read_file(harbour[1])
    path = tmp_path_factory.mktemp("prompts") / "prompts.gpkg"
    frame.iloc[[0, 6, 13]].to_file(path, layer="harbour", engine="pyogrio")
    return path


def run_detect(scene, model, out, prompts, **cluster):
    """The layer `detect` writes, and the chip detections it stitched (pickled, to compare)."""
    stitched = []

    def spy(detections, grid, settings, area=None):
        stitched.extend(pickle.dumps(d) for d in detections)
        return scene_frame(detections, grid, settings, area)

    # Dask workers run torch on one thread; the in-process run must too, or float sums in
    # another order change scores in the 7th digit.
    with one_torch_thread(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(detect_module, "scene_frame", spy)  # the cluster path stitches here
        mp.setattr(detect_scene_module, "scene_frame", spy)  # and the in-process path here
        detect([scene], model, out, SETTINGS, prompts=prompts, **cluster)
    return gpd.read_file(out, layer="harbour"), stitched


@pytest.fixture(scope="module")
def expected(harbour, model, prompts, tmp_path_factory):
    """What the in-process run writes and stitches."""
    out = tmp_path_factory.mktemp("in_process") / "ships.gpkg"
    return run_detect(harbour[0], model, out, prompts)


def assert_same(got, expected):
    (frame, stitched), (want, want_stitched) = got, expected
    # Every chip batch back exactly once and in order: the stitcher saw the same list.
    assert len(want_stitched) > 1 and stitched == want_stitched
    assert len(want) > 0 and list(frame.columns) == list(want.columns)
    assert frame.crs == want.crs
    wkb = shapely.to_wkb(frame.geometry.values).tolist()
    assert wkb == shapely.to_wkb(want.geometry.values).tolist()
    pd.testing.assert_frame_equal(
        pd.DataFrame(frame.drop(columns="geometry")),
        pd.DataFrame(want.drop(columns="geometry")),
    )


def test_two_local_workers_write_the_in_process_layer(harbour, model, prompts, expected, tmp_path):
    seen = []
    got = run_detect(
        harbour[0],
        model,
        tmp_path / "ships.gpkg",
        prompts,
        progress=lambda scene, done, total: seen.append((scene, done, total)),
        workers=2,
    )
    assert_same(got, expected)
    assert seen == [("harbour", done, 6) for done in range(1, 7)]


def test_with_an_area_the_workers_write_the_in_process_layer(
    harbour, model, prompts, tmp_path, monkeypatch
):
    """--within on a cluster: the same chips are sent and the same ships kept as in process,
    and the area file is read once per scene (a country's water layer is not cheap)."""
    reads: dict[str, int] = {"count": 0}
    read_area = DetectionArea.__init__

    def counted(self, *args, **kwargs):
        reads["count"] += 1
        read_area(self, *args, **kwargs)

    monkeypatch.setattr(DetectionArea, "__init__", counted)
    first = gpd.read_file(prompts).iloc[[0]]
    area = tmp_path / "area.gpkg"
    first.set_geometry(first.geometry.buffer(20.0)).to_file(area)
    totals: dict[str, list[int]] = {"here": [], "there": []}
    runs, area_reads = {}, {}
    for name, cluster in (("here", {}), ("there", {"workers": 2})):
        before = reads["count"]
        runs[name] = run_detect(
            harbour[0],
            model,
            tmp_path / f"{name}.gpkg",
            prompts,
            within=area,
            progress=lambda scene, done, total, name=name: totals[name].append(total),
            **cluster,
        )
        area_reads[name] = reads["count"] - before
    want, got = runs["here"], runs["there"]
    assert_same(got, want)
    assert area_reads == {"here": 1, "there": 1}
    assert len(want[0]) == 1 and set(totals["here"]) == set(
        totals["there"]
    )  # one ship, from the same chips


def test_a_worker_dying_mid_run_loses_and_duplicates_nothing(
    harbour, model, prompts, expected, tmp_path
):
    marker = tmp_path / "killed"

    class DieOnSecondTask(distributed.WorkerPlugin):
        """Kill the worker process as it starts its second detection task, once per cluster."""

        def __init__(self, marker):
            self.marker = str(marker)
            self.started = 0

        def transition(self, key, start, finish, **kwargs):
            if finish != "executing" or not str(key).startswith("geosam-detect"):
                return
            self.started += 1
            if self.started == 2 and not os.path.exists(self.marker):
                open(self.marker, "w").close()
                os._exit(1)

    out = tmp_path / "ships.gpkg"
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.register_plugin(DieOnSecondTask(marker))
        got = run_detect(harbour[0], model, out, prompts, scheduler=cluster.scheduler_address)
    assert marker.exists(), "no worker was killed"
    assert_same(got, expected)


def test_without_dask_installed_the_error_names_the_extra(harbour, model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(DaskMissingError, match=r'pip install "geosam-ships\[dask\]"'):
        detect([harbour[0]], model, tmp_path / "a.gpkg", workers=2)
    args = ["detect", str(harbour[0]), "--model", str(model), "-o", str(tmp_path / "b.gpkg")]
    result = CliRunner().invoke(cli, [*args, "--scheduler", "tcp://127.0.0.1:8786"])
    assert result.exit_code == 1 and "geosam-ships[dask]" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "a.gpkg").exists() and not (tmp_path / "b.gpkg").exists()


def test_scheduler_and_workers_exclude_each_other(harbour, model, tmp_path):
    with pytest.raises(ClusterError, match="exclude each other"):
        detect([harbour[0]], model, tmp_path / "a.gpkg", scheduler="tcp://x:8786", workers=2)
    args = ["detect", str(harbour[0]), "--model", str(model), "-o", str(tmp_path / "b.gpkg")]
    result = CliRunner().invoke(cli, [*args, "--workers", "2", "--scheduler", "tcp://x:8786"])
    assert result.exit_code == 2 and "--scheduler" in result.output
    assert not (tmp_path / "a.gpkg").exists() and not (tmp_path / "b.gpkg").exists()


def test_in_process_detection_does_not_import_dask():
    code = (
        "import sys, geosam.cli.main, geosam.pipelines.detect; "
        "assert not {'dask', 'distributed'} & set(sys.modules), 'dask imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_with_two_local_workers(harbour, model, prompts, tmp_path):
    out = tmp_path / "ships.gpkg"
    args = ["detect", str(harbour[0]), "--model", str(model), "-o", str(out)]
    result = CliRunner().invoke(cli, [*args, "--prompts", str(prompts), "--workers", "2"])
    assert result.exit_code == 0, result.output
    frame = gpd.read_file(out, layer="harbour")
    assert f"harbour: {len(frame)} ships" in result.output and len(frame) > 0
    assert {"id", "score", "area_m2", "length_m", "scene", "model"} <= set(frame.columns)
