"""The GPU paths: training and detection under bf16 autocast, and the NCCL collectives.

Skipped where torch sees no CUDA GPU (CI has none); on a GPU machine `pytest tests/test_cuda.py`.
The rest of the suite runs there too, on the GPU wherever a test leaves the device at `auto`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import geopandas as gpd
import pytest
import torch
import torch.distributed as dist

from geosam.pipelines.detect import detect
from geosam.pipelines.detect_scene import DetectSettings
from geosam.pipelines.finetune import finetune
from geosam.pipelines.finetune_settings import FinetuneSettings
from geosam.pipelines.training_data import TrainingPair

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_run(harbour, tmp_path_factory):
    """A tiny model trained on the GPU, encoder included, as `geosam finetune` defaults do."""
    root = tmp_path_factory.mktemp("gpu")
    settings = FinetuneSettings(steps=200, val_every=50, device="cuda")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOSAM_HOME", str(root / "home"))
        finetune([TrainingPair(*harbour)], root / "run", settings=settings)
    return root / "run"


@needs_cuda
def test_training_on_the_gpu_learns(gpu_run):
    rows = (gpu_run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [float(r.split(",")[header.index("train_loss")]) for r in rows[1:]]
    assert len(losses) == 4 and losses[-1] < 0.7 * losses[0]


@needs_cuda
def test_a_gpu_model_outlines_the_same_ships_on_the_cpu(harbour, gpu_run, tmp_path):
    """bf16 on the GPU and float32 on the CPU draw each prompted ship nearly alike."""
    scene, labels = harbour
    layers = {}
    for device in ("cuda", "cpu"):
        out = tmp_path / f"{device}.gpkg"
        detect([scene], gpu_run / "model.pt", out, DetectSettings(device=device), prompts=labels)
        layers[device] = gpd.read_file(out, layer=scene.stem)
    gpu, cpu = layers["cuda"], layers["cpu"]
    assert len(gpu) == len(cpu) == len(gpd.read_file(labels))
    overlap = [
        a.intersection(b).area / a.union(b).area
        for a, b in zip(gpu.geometry, cpu.geometry, strict=True)
    ]
    print(f"GPU vs CPU outline IoU: mean {sum(overlap) / len(overlap):.3f}, min {min(overlap):.3f}")
    assert sum(overlap) / len(overlap) > 0.9


NCCL_CHECK = """
import torch, torch.distributed as dist
from geosam.pipelines.distributed import (
    all_reduce_sum, barrier, broadcast_from_main, gather_objects, sum_gradients)

device = torch.device("cuda", 0)
torch.cuda.set_device(device)
dist.init_process_group("nccl", device_id=device)
a = torch.nn.Parameter(torch.ones(3, device=device))
b = torch.nn.Parameter(torch.ones(2, 2, device=device))
a.grad = torch.full_like(a, 2.0)  # b was not reached: it must keep no gradient
loss = sum_gradients([a, b], torch.tensor(1.5, device=device, dtype=torch.bfloat16))
assert loss == 1.5 and torch.equal(a.grad, torch.full_like(a, 2.0)) and b.grad is None
counts = torch.arange(4, device=device)
all_reduce_sum([counts])
broadcast_from_main([a.detach()])
barrier()
assert counts.tolist() == [0, 1, 2, 3] and gather_objects({"rank": 0}) == [{"rank": 0}]
dist.destroy_process_group()
print("nccl ok")
"""


@needs_cuda
@pytest.mark.skipif(not dist.is_nccl_available(), reason="torch built without NCCL")
def test_the_collectives_run_on_nccl():
    """One rank on the GPU: NCCL takes the tensors the collectives hand it (device, dtypes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    env.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NCCL_CHECK)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "nccl ok" in done.stdout, done.stdout + done.stderr
