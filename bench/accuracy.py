"""Accuracy on real ships: does the model geosam trains segment and find them?

The real dev scenes (`../shared/data/ships-dev`) are cut into a western part to train on and
an eastern part held out (`bench.holdout`). `tiny` is fine-tuned on all western parts through
`geosam.pipelines.finetune` with its defaults (only the step count differs under --quick), and
scored on the held-out parts per family (the DOTA marina, the Sentinel-2 ports) and overall:

- box-prompt and one-point-prompt mask IoU of every held-out ship, next to the filled box and
  the untrained model (`geosam.pipelines.prompt_scores`; prompts are read as `detect
  --prompts` reads them: a box bounds its ship, a point takes the prompter's box around it);
- prompt-free detection through `geosam.pipelines.detect.detect` (stitching included), scored
  with `geosam.pipelines.evaluate` at IoU >= 0.5 and >= 0.3, and COCO mask AP;
- a second short run with the same seed must give the same figures.

The full run trains the default 1500 steps within a 28-minute budget (`BUDGET_MINUTES`): on a
machine too slow for all of them, `finetune --minutes` fits fewer steps, and the run says so.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Outcome, Target, data_dir, in_child
from bench.holdout import FAMILIES, held_out_scenes

FULL_STEPS = None  # the finetune default
QUICK_STEPS = 150
BUDGET_MINUTES = 28.0
"""Time budget of the full run's rounds (`--minutes`): the training target is 30 minutes on two
cores, and the default 1500 steps took 13 minutes on one such machine but 30 on another."""
QUICK_MARGIN = 0.05
"""Box IoU a 150-step model must gain over the untrained model and the filled box (marina)."""
TWIN_STEPS = 12
CURVE = Path(__file__).resolve().parent / "accuracy_curve.png"


def train(
    run: str, steps: int | None, seed: int, lr: float | None = None, device: str = "auto"
) -> dict[str, Any]:
    """Fine-tune `tiny` on the western parts of all dev scenes (in a child process)."""
    import torch

    from geosam.pipelines.finetune import finetune
    from geosam.pipelines.finetune_settings import FinetuneSettings
    from geosam.pipelines.training_data import TrainingPair

    torch.set_num_threads(os.cpu_count() or 1)
    scenes = held_out_scenes() or []
    pairs = [TrainingPair(s.train_scene, s.train_labels, s.name) for s in scenes]
    settings = FinetuneSettings(
        seed=seed, minutes=BUDGET_MINUTES if steps is None else None, device=device
    )
    if steps is not None:
        settings = replace(settings, steps=steps, val_every=min(settings.val_every, steps))
    if lr is not None:
        settings = replace(settings, lr=lr)
    start = time.perf_counter()
    metrics = finetune(pairs, data_dir() / "accuracy" / run, settings=settings, overwrite=True)
    return {"seconds": time.perf_counter() - start, "metrics": metrics}


def score(run: str) -> dict[str, Any]:
    """Prompt and detection scores of a trained run on every held-out part (in a child)."""
    import torch

    from geosam.data.scale import pixel_metres
    from geosam.data.settings import ChipSettings
    from geosam.model.predict import ChipPredictor, load_detector
    from geosam.pipelines.detect import detect
    from geosam.pipelines.detect_scene import DetectSettings
    from geosam.pipelines.prompt_scores import score_prompts

    torch.set_num_threads(os.cpu_count() or 1)
    folder = data_dir() / "accuracy" / run
    model_path = folder / "model.pt"
    device = torch.device("cpu")
    model, meta = load_detector(model_path, device)
    predictor = ChipPredictor(model, device)
    recorded = ChipSettings.from_dict(meta["chip_settings"])
    out: dict[str, Any] = {"scenes": {}, "detect_seconds": 0.0}
    for scene in held_out_scenes() or []:
        # Each held-out part is stretched on its own, as `detect` does on a new scene.
        settings = replace(recorded, stretch=None)
        cut = DetectSettings().for_model(meta, pixel_metres(scene.test_scene)).mask_cut
        prompts = score_prompts(
            predictor, settings, scene.test_scene, scene.test_labels, scene.name, cut or 0.0
        )
        ships = folder / f"ships_{scene.name}.gpkg"
        start = time.perf_counter()
        detect(
            [scene.test_scene], model_path, ships, overwrite=True, chip_overrides={"stretch": None}
        )
        out["detect_seconds"] += time.perf_counter() - start
        out["scenes"][scene.name] = {
            "family": scene.family,
            "box": prompts.box.tolist(),
            "point": prompts.point.tolist(),
            "filled": prompts.filled_box.tolist(),
            "ships": str(ships),
            "layer": scene.test_scene.stem,
            "truth": str(scene.test_labels),
        }
    return out


def detection_scores(scenes: list[dict[str, Any]]) -> dict[str, float]:
    """TP/FP/FN, P/R/F1 at IoU 0.5 and 0.3, and COCO AP of detections of several scenes."""
    import geopandas as gpd

    from geosam.pipelines.average_precision import ScoredScene, coco_ap
    from geosam.pipelines.evaluate import overall_scores, score_scene

    scored, by_iou = [], {0.5: [], 0.3: []}
    for s in scenes:
        truth = gpd.read_file(s["truth"])
        pred = gpd.read_file(s["ships"], layer=s["layer"]).to_crs(truth.crs)
        p = np.asarray(pred.geometry.values, dtype=object)
        t = np.asarray(truth.geometry.values, dtype=object)
        scored.append(ScoredScene(p, pred["score"].to_numpy(np.float64), t))
        for iou, results in by_iou.items():
            results.append(score_scene(Path(s["ships"]).stem, p, t, iou))
    ap50, ap = coco_ap(scored)
    out = {"ap50": ap50, "ap": ap}
    for iou, results in by_iou.items():
        total = overall_scores(results)
        tag = f"{iou:g}"
        out |= {
            f"tp@{tag}": total.tp,
            f"fp@{tag}": total.fp,
            f"fn@{tag}": total.fn,
            f"precision@{tag}": total.precision,
            f"recall@{tag}": total.recall,
            f"f1@{tag}": total.f1,
        }
    return out


def family_report(
    name: str, trained: dict[str, Any], untrained: dict[str, Any], names: list[str]
) -> tuple[list[str], dict[str, float]]:
    """Printed lines and key figures of one family (or all scenes)."""

    def mean(result: dict[str, Any], key: str) -> float:
        values = [v for n in names for v in result["scenes"][n][key]]
        return float(np.mean(values)) if values else 0.0

    ships = sum(len(trained["scenes"][n]["box"]) for n in names)
    figures = {
        "box": mean(trained, "box"),
        "point": mean(trained, "point"),
        "filled": mean(trained, "filled"),
        "untrained_box": mean(untrained, "box"),
        **detection_scores([trained["scenes"][n] for n in names]),
    }
    lines = [
        f"{name} ({ships} held-out ships): box-prompt IoU {figures['box']:.3f} (filled box "
        f"{figures['filled']:.3f}, untrained {figures['untrained_box']:.3f}), one-point IoU "
        f"{figures['point']:.3f}",
    ]
    for tag in ("0.5", "0.3"):
        lines.append(
            f"  prompt-free @IoU {tag}: TP {figures[f'tp@{tag}']} FP {figures[f'fp@{tag}']} "
            f"FN {figures[f'fn@{tag}']}, precision {figures[f'precision@{tag}']:.2f} recall "
            f"{figures[f'recall@{tag}']:.2f} F1 {figures[f'f1@{tag}']:.2f}"
        )
    lines.append(f"  mask AP50 {figures['ap50']:.3f}, AP[.50:.95] {figures['ap']:.3f}")
    return lines, figures


def draw_curve(run: str, path: Path) -> None:
    """Validation IoU, detection F1 and the filled box against the training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(data_dir() / "accuracy" / run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.plot(steps, [float(r["val_iou"]) for r in rows], marker="o", label="box-prompt mask IoU")
    ax.plot(steps, [float(r["val_f1"]) for r in rows], marker="s", label="prompt-free F1@0.5")
    ax.plot(steps, [float(r["box_iou"]) for r in rows], linestyle="--", label="filled box IoU")
    ax.set_xlabel("training step")
    ax.set_ylim(0, 1)
    ax.set_title("tiny on the dev scenes' training parts: validation")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _without_times(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "seconds"}


def run(quick: bool) -> Outcome:
    """Train, score, compare with the targets of the accuracy issue."""
    from geosam.pipelines.validation import thresholds_text

    title = "accuracy on real ships (tiny, held-out eastern parts of the dev scenes)"
    if held_out_scenes() is None:
        return Outcome(title, ["skipped: ../shared/data/ships-dev not found"], [])
    steps = QUICK_STEPS if quick else FULL_STEPS
    main = in_child("accuracy:train", run="main", steps=steps, seed=0)
    untrained_run = in_child("accuracy:train", run="untrained", steps=1, seed=0, lr=0.0)
    trained = in_child("accuracy:score", run="main")
    untrained = in_child("accuracy:score", run="untrained")
    # On the CPU also where a GPU trains the main run: bit-for-bit equal runs are the CPU's
    # promise; on a GPU one seed gives runs equal to float rounding (bench/RESULTS.md, 7).
    twins = [
        in_child("accuracy:train", run=f"twin{k}", steps=TWIN_STEPS, seed=3, device="cpu")
        for k in (1, 2)
    ]
    same = _without_times(twins[0]["metrics"]) == _without_times(twins[1]["metrics"])
    metrics = main["metrics"]
    figures = [
        f"training: {main['seconds'] / 60:.1f} min; best validation at step "
        f"{int(metrics.get('step', 0))}: validation IoU {metrics.get('val_iou', 0):.3f}, F1 "
        f"{metrics.get('val_f1', 0):.3f} (at {thresholds_text(metrics)})",
        f"detection on the held-out parts: {trained['detect_seconds']:.1f} s in all",
        f"(untrained reference built in {untrained_run['seconds']:.0f} s)",
    ]
    results = {}
    for family, names in [*FAMILIES.items(), ("all", [n for v in FAMILIES.values() for n in v])]:
        lines, results[family] = family_report(family, trained, untrained, names)
        figures += lines
    if not quick:
        draw_curve("main", CURVE)
        figures.append(f"training curve: {CURVE}")
    marina, ports = results["marina"], results["ports"]
    if quick:
        # Box prompts' masks are kept inside their boxes, so an untrained model's whole-chip
        # masks score about as the filled box does: learning shows as beating both.
        baseline = max(marina["untrained_box"], marina["filled"])
        targets = [
            Target(
                "marina box IoU minus the better of untrained and filled box",
                marina["box"] - baseline,
                QUICK_MARGIN,
                "",
                at_least=True,
            ),
        ]
    else:
        targets = [
            Target("training minutes", main["seconds"] / 60, 30, " min"),
            Target("marina box-prompt IoU", marina["box"], 0.65, "", at_least=True),
            Target("marina prompt-free F1@0.5", marina["f1@0.5"], 0.5, "", at_least=True),
            Target(
                "ports box IoU minus filled box",
                ports["box"] - ports["filled"],
                1e-9,
                "",
                at_least=True,
            ),
            Target("ports prompt-free F1@0.3", ports["f1@0.3"], 0.4, "", at_least=True),
        ]
    targets.append(
        Target("same seed, same figures (twin runs)", float(same), 1.0, "", at_least=True)
    )
    return Outcome(title, figures, targets)
