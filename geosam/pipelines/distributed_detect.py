"""Detection on a Dask cluster: batches of chips are tasks, stitching stays in this process.

`geosam detect --workers N` starts a local cluster of N worker processes (one thread each) and
closes it at the end; `geosam detect --scheduler tcp://host:8786` sends the work to a running
cluster (``dask scheduler`` and ``dask worker tcp://host:8786`` on each machine). Without
either, detection runs in process and Dask is not imported at all; it is an optional extra:
``pip install "geosam-ships[dask]"``.

A task is one batch of chips of one scene (`BatchTask`): the scene path, the chip settings
this process resolved for it (bands and stretch, so every worker sees the same pixels), the
chips' grid positions, the model path and the detection settings; never pixels. The worker
runs `geosam.pipelines.detect_scene.detect_chips`, the same function as the in-process path,
and sends back the detections (`geosam.geometry.detections.Detection`). Each worker process
loads the model once and keeps the scenes it reads open for the next batch.

Workers open files themselves, so they must see the scene, the model file, the prompt layer
and the base SAM checkpoint under the same paths as this process: one machine, or a shared
filesystem mounted at the same place everywhere (paths are sent as absolute paths). They
need geosam installed, in the same version.

Failures use Dask's own machinery: the scheduler recomputes the tasks of a worker that died
(a task that kills several workers is given up as `KilledWorker`), and a task that raised is
retried `RETRIES` times. Results are kept by (scene, batch index), so a batch computed twice
is counted once, and a scene's detections are concatenated in batch order before stitching:
the stitcher sees exactly what it sees in process, and the layers are identical.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from geosam.data.samples import SceneChips
from geosam.data.settings import ChipSettings
from geosam.errors import ClusterError, DaskMissingError
from geosam.geometry.detections import Detection
from geosam.geometry.grid import Chip
from geosam.io.area_layer import DetectionArea
from geosam.io.prompt_layer import PromptLayer
from geosam.model.device import pick_device
from geosam.model.predict import ChipPredictor, load_detector
from geosam.pipelines.detect_scene import (
    DetectSettings,
    chip_batches,
    chips_to_detect,
    detect_chips,
    open_area,
    open_prompts,
)

if TYPE_CHECKING:
    from distributed import Client, Future

log = logging.getLogger(__name__)

RETRIES = 2
"""Extra attempts for a task that raised (a worker that died is handled by the scheduler)."""
CONNECT_TIMEOUT = "30s"
OPEN_SCENES = 2
"""Scenes each worker thread keeps open between tasks."""
INSTALL_HINT = 'pip install "geosam-ships[dask]"'


@dataclass(frozen=True)
class BatchTask:
    """One Dask task: a batch of chips of one scene and everything a worker needs for it.

    Attributes:
        scene: absolute path of the scene, as the workers see it.
        batch: index of the batch in the scene's chip grid order.
        chips: the batch's chips (grid positions and transforms).
        chip_settings: chip settings with the bands and stretch resolved for this scene.
        model: absolute path of the model.pt.
        checkpoint: absolute path of the base SAM checkpoint, or None for the recorded one.
        settings: detection settings (the device is resolved by each worker).
        prompts: absolute path of a prompt layer, or None.
        prompts_layer: layer of `prompts`.
    """

    scene: str
    batch: int
    chips: tuple[Chip, ...]
    chip_settings: ChipSettings
    model: str
    checkpoint: str | None
    settings: DetectSettings
    prompts: str | None
    prompts_layer: str | None


def check_cluster_options(scheduler: str | None, workers: int | None) -> None:
    """Refuse both or neither of `scheduler` and `workers`, and a missing Dask install."""
    if scheduler is not None and workers is not None:
        raise ClusterError(
            "--scheduler and --workers exclude each other: use --scheduler ADDRESS for a "
            "running Dask cluster or --workers N to start one on this machine"
        )
    if scheduler is None and workers is None:
        raise ClusterError("give a Dask scheduler address or a number of local workers")
    if workers is not None and workers < 1:
        raise ClusterError(f"--workers {workers}: give 1 or more worker processes")
    _distributed()


@contextmanager
def connect(scheduler: str | None, workers: int | None) -> Iterator[Client]:
    """A Dask client of the scheduler at `scheduler`, or of a new local cluster.

    Args:
        scheduler: address of a running scheduler, e.g. ``tcp://10.0.0.5:8786``.
        workers: start a `LocalCluster` of this many worker processes, one thread each,
            closed when the block ends.
    """
    check_cluster_options(scheduler, workers)
    distributed = _distributed()
    with ExitStack() as stack:
        if workers is not None:
            # The workers' own log (failed tasks, restarted workers) shows at INFO (-v); the
            # error that stops the run reaches this process anyway.
            quiet = logging.WARNING if log.isEnabledFor(logging.INFO) else logging.CRITICAL
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=quiet,
                )
            )
            client = stack.enter_context(distributed.Client(cluster))
        else:
            try:
                client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, ValueError) as exc:
                raise ClusterError(
                    f"--scheduler {scheduler}: no Dask scheduler answers ({exc}); start one "
                    f"with `dask scheduler` and workers with `dask worker {scheduler}`"
                ) from exc
            stack.enter_context(client)
        count = len(client.scheduler_info().get("workers", {}))
        log.info("Dask: %d workers, dashboard %s", count, client.dashboard_link)
        if count == 0:
            log.warning("Dask: no worker yet; tasks wait until one connects to the scheduler")
        yield client


def detect_on_cluster(
    client: Client,
    scenes: Sequence[str | os.PathLike[str]],
    chip_settings: ChipSettings,
    settings: Sequence[DetectSettings],
    model_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    prompts: str | os.PathLike[str] | None = None,
    prompts_layer: str | None = None,
    progress: Sequence[Callable[[int, int], None]] | None = None,
    within: str | os.PathLike[str] | None = None,
    within_layer: str | None = None,
) -> Iterator[tuple[int, ChipSettings, list[Detection], DetectionArea | None]]:
    """Detections of every scene, computed by the cluster's workers, one scene at a time.

    Every batch of every scene is submitted first (each scene is opened here once to resolve
    its bands and stretch and cut its chip grid), then results are collected as they finish.

    Args:
        client: a client from `connect`.
        scenes: scene paths, as seen by the workers (see the module docstring).
        chip_settings: chip settings from the model, with any overrides.
        settings: detection settings, resolved per scene (`DetectSettings.for_model`).
        model_path: the model.pt.
        checkpoint: base SAM checkpoint, or None for the path recorded in the model.
        prompts: prompt layer path, or None.
        prompts_layer: layer of `prompts`.
        progress: per scene, `progress(done, total)` with the chips done so far.
        within: detection area (polygons), or None: only chips near it are sent. It is read
            once per scene and yielded with the scene's detections, so that the caller drops
            the ships outside it (`scene_frame`) without reading a large layer again.
        within_layer: layer of `within`.

    Yields:
        (scene index, the chip settings the workers used, the scene's detections in batch
        order, ready for `geosam.geometry.stitch.stitch`, and the scene's detection area or
        None), each scene once all its batches are back, in the order scenes finish.
    """
    distributed = _distributed()
    run = uuid.uuid4().hex[:8]
    pending = distributed.as_completed()
    where: dict[Future[list[Detection]], tuple[int, int, int]] = {}  # (scene, batch, chips)
    resolved: list[ChipSettings] = []
    areas: list[DetectionArea | None] = []
    counts: list[int] = []
    totals: list[int] = []
    for index, scene in enumerate(scenes):
        # Resolve bands and stretch once here, so every worker reads the same pixels.
        with SceneChips(scene, settings=chip_settings) as chips:
            resolved.append(chips.settings)
            areas.append(open_area(chips, within, within_layer))
            grid = chips_to_detect(chips, areas[index])
        batches = chip_batches(grid, settings[index].batch_chips)
        counts.append(len(batches))
        totals.append(len(grid))
        for number, batch in enumerate(batches):
            task = BatchTask(
                scene=_absolute(scene),
                batch=number,
                chips=tuple(batch),
                chip_settings=resolved[index],
                model=_absolute(model_path),
                checkpoint=_absolute(checkpoint) if checkpoint is not None else None,
                settings=settings[index],
                prompts=_absolute(prompts) if prompts is not None else None,
                prompts_layer=prompts_layer,
            )
            future = client.submit(
                detect_batch,
                task,
                key=f"geosam-detect-{run}-{index}-{number}",
                retries=RETRIES,
                pure=False,
            )
            where[future] = (index, number, len(batch))
            pending.add(future)
    log.info("Dask: %d tasks for %d scenes", len(where), len(scenes))

    results: list[dict[int, list[Detection]]] = [{} for _ in scenes]
    done = [0] * len(scenes)
    for index in range(len(scenes)):
        if counts[index] == 0:
            yield index, resolved[index], [], areas[index]
    for future in pending:
        index, number, size = where.pop(future)
        try:
            detections = future.result()
        except distributed.KilledWorker as exc:
            raise ClusterError(
                f"{scenes[index]}: every worker that ran chip batch {number} died; check the "
                "workers' memory and logs (with --workers: geosam -v detect ...)"
            ) from exc
        future.release()
        if number in results[index]:  # a batch is counted once, however often it ran
            continue
        results[index][number] = detections
        done[index] += size
        if progress is not None:
            progress[index](done[index], totals[index])
        if len(results[index]) == counts[index]:
            ordered = [d for b in range(counts[index]) for d in results[index][b]]
            results[index] = {}
            yield index, resolved[index], ordered, areas[index]


def detect_batch(task: BatchTask) -> list[Detection]:
    """Run on a worker: the detections of one batch, in chip order (see `detect_chips`)."""
    predictor = _worker_predictor(task.model, task.checkpoint, task.settings.device)
    chips, prompts = _worker_scene(task)
    samples = [chips.sample(chip) for chip in task.chips]
    return detect_chips(samples, chips.reader.grid, predictor, task.settings, prompts)


# Worker-process state: the model, loaded on a worker's first task and kept for the next ones
# with the same model, and (per worker thread) the last scenes opened.
_MODEL_LOCK = threading.Lock()
_PREDICTOR: dict[tuple[str, str | None, str], ChipPredictor] = {}
_THREAD = threading.local()


def _worker_predictor(model: str, checkpoint: str | None, device: str) -> ChipPredictor:
    key = (model, checkpoint, device)
    with _MODEL_LOCK:
        if key not in _PREDICTOR:
            _PREDICTOR.clear()  # one model per worker at a time
            torch_device = pick_device(device)
            net, _ = load_detector(model, torch_device, checkpoint)
            _PREDICTOR[key] = ChipPredictor(net, torch_device)
            log.info("worker %d: loaded %s on %s", os.getpid(), model, torch_device)
        return _PREDICTOR[key]


def _worker_scene(task: BatchTask) -> tuple[SceneChips, PromptLayer | None]:
    # A rasterio dataset must not be shared between threads: each thread keeps its own.
    if not hasattr(_THREAD, "scenes"):
        _THREAD.scenes = OrderedDict()
    scenes: OrderedDict[tuple[object, ...], tuple[SceneChips, PromptLayer | None]]
    scenes = _THREAD.scenes
    key = (task.scene, task.chip_settings, task.prompts, task.prompts_layer)
    if key in scenes:
        scenes.move_to_end(key)
        return scenes[key]
    chips = SceneChips(task.scene, settings=task.chip_settings)
    try:
        entry = chips, open_prompts(chips, task.prompts, task.prompts_layer)
    except Exception:
        chips.close()
        raise
    scenes[key] = entry
    while len(scenes) > OPEN_SCENES:
        old, _ = scenes.popitem(last=False)[1]
        old.close()
    return entry


def _absolute(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.fspath(path))


def _distributed() -> ModuleType:
    try:
        import distributed
    except ImportError as exc:
        raise DaskMissingError(
            f"detection on a Dask cluster (--scheduler, --workers) needs Dask: {INSTALL_HINT}"
        ) from exc
    return distributed
