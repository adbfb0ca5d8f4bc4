"""Fine-tuning under torchrun: two CPU processes (Gloo) train like one process on the same batches.

The harbour scene gives 6 chips that both train and validate (too few for a separate
validation set). With --batch 5 each epoch has a batch of 5 chips (3 on rank 0, 2 on rank 1:
the loss terms must be rescaled by unequal shares) and a batch of 1 chip (rank 1 has none).
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from geosam.errors import DeviceError
from geosam.model.device import pick_device
from geosam.pipelines.distributed import Ranks, launched
from geosam.pipelines.finetune import finetune, resume_finetune
from geosam.pipelines.finetune_settings import FinetuneSettings
from geosam.pipelines.training_data import TrainingPair

# lr 3e-4 (not the default): ATOL below is calibrated at this step size.
SETTINGS = FinetuneSettings(epochs=3, batch_chips=5, lr=3e-4, train_encoder=False, device="cpu")
CLI_SETTINGS = [
    *("--epochs", "3", "--batch", "5", "--lr", "3e-4", "--freeze-encoder", "--device", "cpu")
]
RUN_FILES = {"model.pt", "last.pt", "metrics.csv", "curves.png", "finetune.log"}
# Two ranks add up the gradients of a batch in another order than one process, so weights
# agree to float32 rounding, not bit for bit: the decoder and the prompter's heads to ~3e-7
# after the 6 steps here. The prompter's two convolutions that feed a GroupNorm are the
# exception: GroupNorm cancels most of their gradient, so some elements' gradients are
# rounding noise, and AdamW, which divides by the gradient's own size, turns that noise into a
# step of up to about lr (seen: 7e-5, and 3.2e-4 once the size head learned from every cell
# near a centre). Normalising each rank's loss by its own counts instead of the batch's (the
# classic mistake) moves weights everywhere by ~2e-3, far past both bounds.
ATOL = 1e-5
NOISY = re.compile(r"prompter\.trunk\.[04]\.weight")
"""Convolutions right before a GroupNorm: bounded by two AdamW steps, not by ATOL."""
NOISY_ATOL = 2 * SETTINGS.lr

needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch built without Gloo"
)

STOP_AFTER = """
import json, sys
from pathlib import Path
from geosam.pipelines.finetune import finetune
from geosam.pipelines.finetune_settings import FinetuneSettings
from geosam.pipelines.training_data import TrainingPair

scene, labels, out, settings, stop = sys.argv[1:]


def report(event):
    if event.metrics and event.epoch == int(stop):
        raise KeyboardInterrupt  # on every rank, as Ctrl-C under torchrun


try:
    finetune([TrainingPair(Path(scene), Path(labels))], out,
             settings=FinetuneSettings(**json.loads(settings)), report=report)
except KeyboardInterrupt:
    sys.exit(0)
"""


def torchrun(args, home, cwd):
    """`torchrun --standalone --nproc-per-node 2 ARGS` on the CPU, one thread per process."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", GEOSAM_HOME=str(home), CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    started = time.perf_counter()
    result = subprocess.run(
        [*command, "--nproc-per-node", "2", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(f"torchrun {' '.join(args[:3])}...: {time.perf_counter() - started:.1f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def weights(run_dir):
    return torch.load(run_dir / "last.pt", weights_only=False)["trainer"]["model"]


def max_difference(a, b, noisy=False):
    """The largest weight difference, over the GroupNorm-fed convolutions or the rest."""
    assert a.keys() == b.keys()
    keys = [k for k in a if bool(NOISY.fullmatch(k)) == noisy]
    assert keys
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in keys)


def assert_trained_alike(a, b):
    assert max_difference(a, b) <= ATOL
    assert max_difference(a, b, noisy=True) <= NOISY_ATOL


def rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return [
            {k: float(v) for k, v in row.items() if k not in ("seconds", "encoder_calls")}
            for row in csv.DictReader(fh)
        ]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        from harbour import make_harbour
    finally:
        sys.path.pop(0)
    return make_harbour(tmp_path_factory.mktemp("harbour"), width=640, height=384, ships=16)


@pytest.fixture(scope="module")
def one_rank(scene, tmp_path_factory):
    """The reference: a plain single-process run with the same settings."""
    root = tmp_path_factory.mktemp("one")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOSAM_HOME", str(root / "home"))
        finetune([TrainingPair(*scene)], root / "run", settings=SETTINGS)
    return root / "run"


@pytest.fixture(scope="module")
def two_ranks(scene, tmp_path_factory):
    """`torchrun -m geosam finetune` with two processes, and its console output."""
    root = tmp_path_factory.mktemp("two")
    args = ["-m", "geosam", "finetune", str(scene[0]), str(scene[1]), "--out", "run"]
    result = torchrun([*args, *CLI_SETTINGS], root / "home", root)
    return root, result


@needs_gloo
def test_two_processes_train_like_one(one_rank, two_ranks):
    root, result = two_ranks
    run = root / "run"
    two_w, one_w = weights(run), weights(one_rank)
    print(
        f"max |w(2 ranks) - w(1 rank)| = {max_difference(two_w, one_w):.3g}, before a "
        f"GroupNorm {max_difference(two_w, one_w, noisy=True):.3g}"
    )
    assert_trained_alike(two_w, one_w)
    two, one = rows(run), rows(one_rank)
    assert len(two) == len(one) == 3
    for a, b in zip(two, one, strict=True):
        assert a.keys() == b.keys()
        assert all(a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6) for k in a), (a, b)
    # Only rank 0 wrote, once, and nothing half-written is left.
    assert set(os.listdir(run)) == RUN_FILES
    log = (run / "finetune.log").read_text()
    assert re.findall(r"finetune: epoch (\d+):", log) == ["1", "2", "3"]
    assert result.stdout.count("best at step") == 1
    # The embeddings of the 6 chips' 8 views were computed once, shared by both ranks
    # through the cache folder.
    assert "image embeddings of 6 chips in 8 views: 48 encoded" in log
    assert len(list((root / "home" / "embeddings").rglob("*.npy"))) == 48


@needs_gloo
def test_resume_under_two_processes(scene, two_ranks, tmp_path):
    root, _ = two_ranks
    script = tmp_path / "stop_after.py"
    script.write_text(STOP_AFTER)
    run = tmp_path / "run"
    settings = json.dumps(asdict(SETTINGS))
    torchrun([str(script), *map(str, scene), str(run), settings, "2"], root / "home", tmp_path)
    assert len(rows(run)) == 2
    elsewhere = tmp_path / "one-rank"
    shutil.copytree(run, elsewhere)
    torchrun(["-m", "geosam", "finetune", "--resume", str(run)], root / "home", tmp_path)
    uninterrupted, resumed = weights(root / "run"), weights(run)
    assert uninterrupted.keys() == resumed.keys()
    assert all(torch.equal(v, resumed[k]) for k, v in uninterrupted.items())
    assert rows(run) == rows(root / "run")
    log = (run / "finetune.log").read_text()  # both parts found every embedding cached
    assert log.count("image embeddings of 6 chips in 8 views: 0 encoded") == 2
    # Any number of ranks may continue a run: one process finishes it the same way.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOSAM_HOME", str(root / "home"))
        resume_finetune(elsewhere)
    assert_trained_alike(weights(elsewhere), uninterrupted)


@needs_gloo
def test_a_time_budget_stops_every_rank_together(scene, two_ranks, tmp_path):
    """Each rank times itself; all follow rank 0's decision, so none waits for another."""
    root, _ = two_ranks
    args = ["-m", "geosam", "finetune", str(scene[0]), str(scene[1]), "--out", "run"]
    torchrun([*args, *CLI_SETTINGS, "--minutes", "0.0001"], root / "home", tmp_path)
    run = tmp_path / "run"
    assert len(rows(run)) == 1  # a round takes longer than 6 ms: the budget ends the run there
    assert "stopped at the time budget" in (run / "finetune.log").read_text()
    assert set(os.listdir(run)) == RUN_FILES


def test_ranks_come_from_torchrun_environment(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launched() == Ranks(0, 0, 1) and not launched().distributed
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ranks = launched()
    assert ranks == Ranks(3, 1, 4) and ranks.distributed and not ranks.main
    assert ranks.share(list(range(10))) == [3, 7]
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(DeviceError, match="RANK=4"):
        launched()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_each_rank_picks_its_own_device_without_gpu():
    assert pick_device("auto", local_rank=1) == torch.device("cpu")
    assert pick_device("cpu", local_rank=1) == torch.device("cpu")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        pick_device("cuda", local_rank=1)
