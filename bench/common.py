"""What every benchmark shares: a child process per measurement, targets, the data folder.

Each measurement runs in a fresh Python process so that its peak resident memory (RSS) is its
own and not the high-water mark of an earlier measurement.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 2**20


def data_dir() -> Path:
    """Where generated inputs are cached between runs (never inside the repository)."""
    root = Path(os.environ.get("GEOSAM_BENCH_DIR", Path.home() / ".cache" / "geosam-bench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB.

    Linux's VmHWM belongs to the process image, whereas getrusage's ru_maxrss survives exec and
    would report the parent's peak for a child that stayed smaller.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """`with stopwatch() as t: ...` then `t["seconds"]`."""
    result: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield result
    finally:
        result["seconds"] = time.perf_counter() - start


def in_child(function: str, **kwargs: Any) -> dict[str, Any]:
    """Run `bench.<module>:<function>(**kwargs)` in a fresh process; its dict plus peak RSS."""
    cmd = [sys.executable, "-m", "bench.child", function, json.dumps(kwargs)]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"benchmark step {function} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measured_process(cmd: list[str], cwd: Path | None = None) -> dict[str, float]:
    """Wall and CPU seconds and peak RSS (MiB) of one whole process, start-up included.

    `os.wait4` gives the resource usage of that child alone, where RUSAGE_CHILDREN would give
    the largest of all children so far. The child starts as a copy of this process, so its
    peak counts this process's memory until it runs the command: heavy benchmark steps run
    in children (`in_child`), never here (a 400 MiB parent reads as a 413 MiB `/bin/true`).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    errors = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(errors.decode(errors="replace"))
        raise RuntimeError(f"{cmd[:4]} failed (exit {proc.returncode})")
    return {
        "seconds": seconds,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


@dataclass(frozen=True)
class Target:
    """One target of the issue: `value` must be <= `limit` (or >= with at_least)."""

    name: str
    value: float
    limit: float
    unit: str = "x"
    at_least: bool = False

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def line(self) -> str:
        sign = ">=" if self.at_least else "<="
        verdict = "PASS" if self.passed else "FAIL"
        measured = f"{self.value:.3g}{self.unit}"
        return f"  {verdict}  {self.name}: {measured} (target {sign} {self.limit:g}{self.unit})"


@dataclass
class Outcome:
    """A benchmark's printed figures and its targets."""

    title: str
    figures: list[str]
    targets: list[Target]

    def print(self) -> None:
        print(f"\n== {self.title}")
        for figure in self.figures:
            print(f"  {figure}")
        for target in self.targets:
            print(target.line())


Benchmark = Callable[[bool], Outcome]


def record(figures: list[str], line: str) -> None:
    """Add a figure, and show it on stderr at once: a run cut off by a time limit keeps it."""
    figures.append(line)
    print(f"  ... {line}", file=sys.stderr, flush=True)


def random_checkpoint(model_type: str) -> str | None:
    """A checkpoint file of random `model_type` weights (None for `tiny`, which needs none).

    No official weights exist offline; speed does not depend on the weights' values.
    """
    if model_type == "tiny":
        return None
    path = data_dir() / f"{model_type}_random.pth"
    if not path.exists():
        import torch

        from geosam.model.registry import build_sam, get_spec

        torch.manual_seed(0)
        tmp = path.with_suffix(".part")
        torch.save(build_sam(get_spec(model_type)).state_dict(), tmp)
        tmp.rename(path)
    return str(path)


def machine() -> str:
    """One line describing where the figures were measured."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {gpu}; Python "
        f"{platform.python_version()}, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
