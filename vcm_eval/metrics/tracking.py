"""Tracking on a video run's detections, scored with MOTA and IDF1 (py-motmetrics), as MPEG's TVD / HiEve conditions.

MPEG's FCM tracking conditions run JDE (a joint detector and tracker) and score MOTA with py-motmetrics
(CompressAI-Vision's JDE evaluator, after JDE's ``utils/evaluation.py``). vcm_eval's task network is a
detector, so its detections are associated into tracks by a separate tracker, **norfair** (Tryolabs,
``norfair.Tracker``): a constant-velocity Kalman filter per track on the box corners, detections matched
to tracks of the same category by IoU (``distance_function="iou"``), as SORT. Why norfair: of the
maintained SORT / ByteTrack-style packages it is the one that installs with this project's pins (numpy<2,
torch as pinned, no OpenCV): supervision 0.31 moved its ByteTrack out to ``trackers``, which needs
numpy>=2, as does boxmot; ``bytetracker`` (unmaintained since 2023) fails to build its ``lap``
dependency. norfair is pure Python on numpy, scipy and filterpy, deterministic, and released in 2025.

Per frame, the detections of the tracked categories scoring at least ``score_threshold`` go to the
tracker; a track is reported in a frame when a detection updated it there (as SORT and JDE report:
the Kalman state after the update), so a track coasting on its prediction adds no false positive.

Scoring (``mot_accumulator``, JDE's ``Evaluator.eval_frame``): per frame, the IoU distance of every
ground-truth box to every reported box (``motmetrics.distances.iou_matrix``, ``max_iou = 1 - match_iou``:
pairs below ``match_iou`` IoU cannot match), every ground-truth row counting (JDE's rule for files other
than MOT16/17), class-agnostic as JDE's single-class evaluation. MOTA = 1 - (FN + FP + IDSW) / GT and
IDF1 are motmetrics' own (``mm.metrics.create().compute``), in percent here (MPEG's CSV: x 100).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import motmetrics as mm
import numpy as np
from norfair import Detection, Tracker

from vcm_eval.data.video.base import MotTruth
from vcm_eval.errors import ConfigError

TRACK_COLUMNS = ("frame", "id", "x", "y", "w", "h", "score", "category")
METRICS = ("mota", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects")
NAMES = {"mota": "MOTA", "idf1": "IDF1", "num_switches": "IDSW", "num_false_positives": "FP", "num_misses": "FN",
         "num_objects": "GT"}  # fmt: skip


def check_tracker(settings: Any) -> None:
    """The tracker settings make sense (before a run writes anything).

    Raises:
        ConfigError: naming the setting and its range.
    """
    if not 0 <= settings.score_threshold <= 1:
        raise ConfigError(f"tracker.score_threshold={settings.score_threshold} must be in 0..1")
    if not 0 < settings.min_iou <= 1 or not 0 < settings.match_iou <= 1:
        raise ConfigError(f"tracker.min_iou={settings.min_iou} and tracker.match_iou={settings.match_iou} must be "
                          "in (0, 1]")  # fmt: skip
    if settings.max_age < 1 or not 0 <= settings.init_delay < settings.max_age:
        raise ConfigError(f"tracker.max_age={settings.max_age} must be >= 1 and tracker.init_delay="
                          f"{settings.init_delay} in 0..max_age-1 (norfair's rule)")  # fmt: skip


def tracked_categories(names: Sequence[str], categories: Mapping[str, int]) -> set[int]:
    """COCO ids of the tracked category names (empty names: every category).

    Raises:
        ConfigError: a name that is no category of the dataset (the valid ones listed).
    """
    unknown = sorted(set(names) - set(categories))
    if unknown:
        raise ConfigError(f"tracker.categories={unknown} are not categories of the dataset; valid: "
                          f"{sorted(categories)}")  # fmt: skip
    return {categories[n] for n in names} if names else set(categories.values())


def track(frames: Sequence[Sequence[Mapping[str, Any]]], settings: Any, categories: set[int]) -> np.ndarray:
    """Tracks from per-frame COCO detections (``bbox`` x, y, w, h; ``score``; ``category_id``).

    Args:
        frames: frame k's detections at position k.
        settings: ``TrackerConfig`` (``score_threshold``, ``min_iou``, ``max_age``, ``init_delay``).
        categories: COCO ids tracked.

    Returns:
        float64 [N, 8] rows ``TRACK_COLUMNS``: frame from 1 (MOT's numbering), track id from 1, box in
        pixels, the detection's score, its category.
    """
    tracker = Tracker(distance_function="iou", distance_threshold=1.0 - float(settings.min_iou),
                      hit_counter_max=int(settings.max_age), initialization_delay=int(settings.init_delay))  # fmt: skip
    rows: list[list[float]] = []
    for k, dets in enumerate(frames):
        given = []
        for d in dets:
            if d["score"] < settings.score_threshold or d["category_id"] not in categories:
                continue
            x, y, w, h = (float(v) for v in d["bbox"])
            points = np.array([[x, y], [x + w, y + h]], dtype=np.float64)
            given.append(Detection(points, scores=np.full(2, float(d["score"])), label=int(d["category_id"]),
                                   data=(float(d["score"]), float(d["category_id"]))))  # fmt: skip
        updated = {id(d) for d in given}
        for obj in tracker.update(detections=given):
            if obj.id is None or id(obj.last_detection) not in updated:
                continue  # initializing, or coasting on its prediction in this frame
            (x0, y0), (x1, y1) = obj.estimate
            score, category = obj.last_detection.data
            rows.append([k + 1, obj.id, x0, y0, x1 - x0, y1 - y0, score, category])
    return np.array(sorted(rows), dtype=np.float64).reshape(-1, len(TRACK_COLUMNS))


def mot_accumulator(truth: MotTruth, tracks: np.ndarray, frames: int, *, match_iou: float = 0.5) -> mm.MOTAccumulator:
    """motmetrics' event log of ``tracks`` against ``truth`` over frames 1..``frames`` (module docstring)."""
    acc = mm.MOTAccumulator(auto_id=False)
    for f in range(1, frames + 1):
        gt, hyp = truth.at(f), tracks[tracks[:, 0] == f]
        dist = mm.distances.iou_matrix(gt[:, 2:6], hyp[:, 2:6], max_iou=1.0 - match_iou)
        acc.update(gt[:, 1].astype(int).tolist(), hyp[:, 1].astype(int).tolist(), dist, frameid=f)
    return acc


def mot_scores(accumulators: Sequence[mm.MOTAccumulator], names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per name, and ``OVERALL`` (the events of all pooled, as motmetrics' ``generate_overall``), the scores
    ``NAMES`` (MOTA and IDF1 in percent, the counts as counts)."""
    logging.disable(logging.INFO)  # motmetrics times its steps on the root logger (Hydra prints INFO)
    try:
        table = mm.metrics.create().compute_many(list(accumulators), metrics=list(METRICS), names=list(names),
                                                 generate_overall=True)  # fmt: skip
    finally:
        logging.disable(logging.NOTSET)
    out: dict[str, dict[str, float]] = {}
    for name, row in table.iterrows():
        out[str(name)] = {NAMES[m]: float(row[m]) * (100.0 if m in ("mota", "idf1") else 1.0) for m in METRICS}
    return out


def mot_text(tracks: np.ndarray) -> str:
    """Tracks in MOTChallenge's result format: ``frame,id,x,y,w,h,score,-1,-1,-1`` per line."""
    return "".join(f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},{r[6]:.4f},-1,-1,-1\n"
                   for r in tracks)  # fmt: skip
