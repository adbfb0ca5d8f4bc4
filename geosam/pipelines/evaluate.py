"""Score predicted ship polygons against reference footprints: TP/FP/FN, precision, recall, F.

Scenes are paired by layer name (see `evaluate`). Within a scene, predictions and references
are matched one to one by IoU (intersection over union of the polygons, in the reference CRS):

1. candidate pairs are the (prediction, reference) pairs whose polygons intersect, found with a
   shapely STRtree (never all pairs);
2. candidates are taken greedily by descending IoU (ties: lower prediction row, then lower
   reference row first); a pair whose prediction and reference are both still free is a match;
3. only pairs with IoU >= the threshold take part, so every match is a true positive (TP);
   predictions left unmatched are false positives (FP), references left unmatched false
   negatives (FN).

This is the greedy rule of the usual detection benchmarks (PASCAL VOC, COCO, which sort by
score where polygons have none, so by IoU here). At thresholds above 0.5 it equals the optimal
assignment whenever predictions do not overlap each other, since a polygon can then have at
most one partner with IoU > 0.5.

Ratios with a zero denominator (a scene without predictions, without references, or both) are
1.0 when the scene has no errors at all (FP = FN = 0: nothing to find and nothing claimed)
and 0.0 otherwise. So a scene without ships and without predictions is perfect; an empty
prediction on a scene with ships has precision 0 and recall 0. An F-score is 0 when
precision + recall = 0. The mean IoU averages the matched pairs and is None without any.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from numpy.typing import NDArray
from pyproj import CRS

from geosam.errors import InputNotFoundError, LabelsError
from geosam.geometry.polygons import POLYGONAL, polygonal_parts
from geosam.io.footprints import read_footprints

log = logging.getLogger(__name__)

DEFAULT_IOU = 0.5


@dataclass(frozen=True)
class SceneScores:
    """Counts and scores of one scene, named after its PRED layer; ``"all"`` sums the scenes."""

    scene: str
    tp: int
    fp: int
    fn: int
    mean_iou: float | None = None

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 1.0 or 0.0 without predictions (see the module docstring)."""
        return self._ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 1.0 or 0.0 without references (see the module docstring)."""
        return self._ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        return self.f_beta(1.0)

    @property
    def f2(self) -> float:
        """F-score with beta = 2: recall weighs four times as much as precision."""
        return self.f_beta(2.0)

    def f_beta(self, beta: float) -> float:
        """(1 + b²) P R / (b² P + R); 0.0 when P + R = 0."""
        p, r, b2 = self.precision, self.recall, beta * beta
        return 0.0 if p + r == 0 else (1 + b2) * p * r / (b2 * p + r)

    def _ratio(self, num: int, den: int) -> float:
        if den:
            return num / den
        return 1.0 if self.fp == 0 and self.fn == 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Counts and scores as plain JSON types."""
        return {
            **asdict(self),
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "f2": self.f2,
        }


@dataclass
class EvaluationReport:
    """Scores per scene, in the order of PRED's layers, and over all scenes.

    ``overall`` sums TP, FP and FN over the scenes; its mean IoU averages all matched pairs.
    ``unscored_layers`` are predicted layers without a reference layer of the same name.
    """

    scenes: list[SceneScores]
    overall: SceneScores
    iou_threshold: float = DEFAULT_IOU
    pred: str = ""
    truth: str = ""
    unscored_layers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types."""
        return {
            "pred": self.pred,
            "truth": self.truth,
            "iou_threshold": self.iou_threshold,
            "scenes": [s.to_dict() for s in self.scenes],
            "overall": self.overall.to_dict(),
            "unscored_layers": list(self.unscored_layers),
        }


def match(
    pred: NDArray[np.object_], truth: NDArray[np.object_], iou_threshold: float = DEFAULT_IOU
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Match predictions to references one to one, greedily by descending IoU.

    Args:
        pred: (N,) valid polygons, same CRS as `truth`.
        truth: (M,) valid polygons.
        iou_threshold: least IoU of a match, in (0, 1].

    Returns:
        (K, 2) int rows ``(pred index, truth index)`` of the matches, best IoU first, and
        their (K,) IoUs.
    """
    none = (np.empty((0, 2), dtype=np.intp), np.empty(0, dtype=np.float64))
    if len(pred) == 0 or len(truth) == 0:
        return none
    tree = shapely.STRtree(truth)
    p_idx, t_idx = tree.query(pred, predicate="intersects")
    if len(p_idx) == 0:
        return none
    inter = shapely.area(shapely.intersection(pred[p_idx], truth[t_idx]))
    union = shapely.area(pred)[p_idx] + shapely.area(truth)[t_idx] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    keep = iou >= iou_threshold
    p_idx, t_idx, iou = p_idx[keep], t_idx[keep], iou[keep]
    order = np.lexsort((t_idx, p_idx, -iou))
    used_p: set[int] = set()
    used_t: set[int] = set()
    pairs: list[tuple[int, int]] = []
    ious: list[float] = []
    for k in order:
        i, j = int(p_idx[k]), int(t_idx[k])
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        pairs.append((i, j))
        ious.append(float(iou[k]))
    return np.asarray(pairs, dtype=np.intp).reshape(-1, 2), np.asarray(ious, dtype=np.float64)


def score_scene(
    scene: str,
    pred: NDArray[np.object_],
    truth: NDArray[np.object_],
    iou_threshold: float = DEFAULT_IOU,
) -> SceneScores:
    """Scores of one scene from (N,) predicted and (M,) reference polygons in one CRS."""
    _, ious = match(pred, truth, iou_threshold)
    tp = len(ious)
    return SceneScores(
        scene=scene,
        tp=tp,
        fp=len(pred) - tp,
        fn=len(truth) - tp,
        mean_iou=float(ious.mean()) if tp else None,
    )


def overall_scores(scenes: list[SceneScores]) -> SceneScores:
    """TP, FP, FN summed over `scenes`; mean IoU over all their matched pairs."""
    tp = sum(s.tp for s in scenes)
    iou_sum = sum(s.tp * s.mean_iou for s in scenes if s.mean_iou is not None)
    return SceneScores(
        scene="all",
        tp=tp,
        fp=sum(s.fp for s in scenes),
        fn=sum(s.fn for s in scenes),
        mean_iou=iou_sum / tp if tp else None,
    )


def evaluate(
    pred: str | os.PathLike[str],
    truth: str | os.PathLike[str],
    iou_threshold: float = DEFAULT_IOU,
    pred_layer: str | None = None,
    truth_layer: str | None = None,
) -> EvaluationReport:
    """Score the ship polygons in `pred` against the reference footprints in `truth`.

    Scenes are paired by layer name: each polygon layer of `pred` with a same-named layer in
    `truth` is one scene (``geosam detect`` writes one layer per scene, named after it);
    predicted layers without one are logged and listed in ``unscored_layers``. Files with a
    single polygon layer each are paired whatever the names. With `pred_layer` and/or
    `truth_layer` exactly one pair is scored (the missing name defaults to the same name, else
    the file's only layer). Predictions are reprojected to the reference CRS.

    Args:
        pred: predicted ships, any OGR vector file; a layer may be empty (no ships found).
        truth: reference footprints, any OGR vector file.
        iou_threshold: least IoU of a true positive, in (0, 1].
        pred_layer: score only this layer of `pred`.
        truth_layer: score against only this layer of `truth`.

    Returns:
        Per-scene and overall scores.
    """
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    pred_path, truth_path = Path(pred), Path(truth)
    pred_layers = _polygon_layers(pred_path, "predictions")
    truth_layers = _polygon_layers(truth_path, "reference")
    pairs, unscored = _pair_layers(
        pred_path, pred_layers, truth_path, truth_layers, pred_layer, truth_layer
    )
    for name in unscored:
        log.warning("%s: layer %r has no reference layer of that name; not scored", pred, name)
    unpredicted = sorted(set(truth_layers) - {t for _, t in pairs})
    if unpredicted:
        log.info("%s: reference layers without predictions: %s", truth, ", ".join(unpredicted))
    scenes = []
    for p_name, t_name in pairs:
        truth_frame = _read_reference(truth_path, t_name)
        pred_frame = _read_polygons(pred_path, p_name)
        if len(pred_frame) and not CRS.from_user_input(pred_frame.crs).equals(truth_frame.crs):
            log.info(
                "%s: reprojecting layer %r from %s to the reference CRS %s",
                pred_path.name,
                p_name,
                CRS.from_user_input(pred_frame.crs).to_string(),
                CRS.from_user_input(truth_frame.crs).to_string(),
            )
            pred_frame = pred_frame.to_crs(truth_frame.crs)
        scores = score_scene(
            p_name,
            np.asarray(pred_frame.geometry.values, dtype=object),
            np.asarray(truth_frame.geometry.values, dtype=object),
            iou_threshold,
        )
        log.info("%s: TP %d, FP %d, FN %d", p_name, scores.tp, scores.fp, scores.fn)
        scenes.append(scores)
    return EvaluationReport(
        scenes=scenes,
        overall=overall_scores(scenes),
        iou_threshold=iou_threshold,
        pred=str(pred_path),
        truth=str(truth_path),
        unscored_layers=unscored,
    )


def _polygon_layers(path: Path, role: str) -> list[str]:
    """Names of the layers of `path` that have geometries (non-spatial tables left out)."""
    if not path.exists():
        raise InputNotFoundError(f"{path}: no such file; check the {role} path")
    try:
        listed = pyogrio.list_layers(path)
    except pyogrio.errors.DataSourceError as exc:
        raise LabelsError(
            f"{path}: not a vector file OGR can read; give a GeoPackage, GeoJSON or Shapefile"
        ) from exc
    layers = [str(name) for name, geom_type in listed if geom_type is not None]
    if not layers:
        raise LabelsError(f"{path}: has no layer with geometries")
    return layers


def _pair_layers(
    pred_path: Path,
    pred_layers: list[str],
    truth_path: Path,
    truth_layers: list[str],
    pred_layer: str | None,
    truth_layer: str | None,
) -> tuple[list[tuple[str, str]], list[str]]:
    """(pred layer, truth layer) pairs to score, and predicted layers left unscored."""
    if pred_layer is not None or truth_layer is not None:
        p = _one_layer(pred_path, pred_layers, pred_layer, truth_layer, "--pred-layer")
        t = _one_layer(truth_path, truth_layers, truth_layer, p, "--truth-layer")
        return [(p, t)], []
    if len(pred_layers) == 1 and len(truth_layers) == 1:
        return [(pred_layers[0], truth_layers[0])], []
    pairs = [(name, name) for name in pred_layers if name in truth_layers]
    if not pairs:
        raise LabelsError(
            f"{pred_path}: no layer has a same-named layer in {truth_path} "
            f"(predicted: {', '.join(pred_layers)}; reference: {', '.join(truth_layers)}); "
            "pair one with --pred-layer and --truth-layer"
        )
    return pairs, [name for name in pred_layers if name not in truth_layers]


def _one_layer(
    path: Path, layers: list[str], layer: str | None, prefer: str | None, option: str
) -> str:
    """`layer`, else the layer named `prefer`, else the only one."""
    if layer is not None:
        if layer not in layers:
            raise LabelsError(f"{path}: no layer {layer!r}; available layers: {', '.join(layers)}")
        return layer
    if prefer in layers:
        return str(prefer)
    if len(layers) == 1:
        return layers[0]
    raise LabelsError(
        f"{path}: has {len(layers)} layers; choose one with {option} ({', '.join(layers)})"
    )


def _read_reference(path: Path, layer: str) -> gpd.GeoDataFrame:
    """Reference footprints of `layer` in their own CRS; an empty layer is a scene without ships."""
    info = pyogrio.read_info(path, layer=layer)
    if info["features"] == 0:
        return _read_polygons(path, layer)
    frame, _ = read_footprints(path, info["crs"], layer=layer)
    return frame


def _read_polygons(path: Path, layer: str) -> gpd.GeoDataFrame:
    """Polygons of `layer` (one row per ship), valid, empty rows dropped; the layer may be empty.

    Unlike `read_footprints`, an empty layer is fine: the detector found no ship there.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        frame = gpd.read_file(path, layer=layer, engine="pyogrio")
    if frame.crs is None:
        raise LabelsError(
            f"{path}: layer {layer!r} has no CRS; set it (QGIS: Layer > Set CRS, or "
            "geopandas set_crs) to the CRS the polygons are in"
        )
    geoms = frame.geometry[~(frame.geometry.isna() | frame.geometry.is_empty)]
    kinds = set(geoms.geom_type) - POLYGONAL - {"GeometryCollection"}
    if kinds:
        raise LabelsError(
            f"{path}: layer {layer!r} holds {', '.join(sorted(kinds))} geometries; "
            "ships must be polygons"
        )
    values = np.asarray(geoms.values, dtype=object)
    invalid = ~shapely.is_valid(values)
    if invalid.any():
        values[invalid] = shapely.make_valid(values[invalid])
        log.warning("%s: repaired %d invalid polygons in layer %r", path.name, invalid.sum(), layer)
    values = polygonal_parts(values)
    return gpd.GeoDataFrame(geometry=list(values[~shapely.is_empty(values)]), crs=frame.crs)
