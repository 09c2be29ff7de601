"""Schema of the ``eval`` group: which evaluators score a run (recorded with every result)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vcm_eval.utils.choices import Choice


class Evaluator(Choice):
    """``coco``: pycocotools bbox + segm AP; ``cityscapes``: cityscapesscripts instance AP (when the
    dataset has gtFine instanceIds files); ``oic``: the Open Images Challenge metric (when the
    dataset has Open Images ground truth). An evaluator a dataset cannot feed is skipped."""

    coco = "coco"
    cityscapes = "cityscapes"
    oic = "oic"


@dataclass
class EvalConfig:
    """Evaluators and their settings (part of the run key).

    ``primary_metric``: the metric a one-line summary shows. ``complexity_images``: the first N
    images on which each stage's MACs are counted (kMAC per pixel in metrics.json; 0 = not counted).
    """

    evaluators: list[Evaluator] = field(default_factory=lambda: [Evaluator.coco, Evaluator.cityscapes, Evaluator.oic])
    primary_metric: str = "segm_AP"
    complexity_images: int = 1


@dataclass
class TrackerConfig:
    """Tracking of a video run's detections and its MOTA / IDF1 (``vcm_eval.metrics.tracking``; docs/video.md).

    In the run key of video runs (another tracker is another result). The tracker is norfair's (a Kalman
    filter per track, IoU association within a category, as SORT): ``score_threshold`` drops weaker
    detections first (JDE's ``conf_thres`` 0.5 in MPEG's TVD/HiEve evaluation); ``categories``: COCO
    category names tracked (empty = the dataset's ``tracked`` list, else every category; ``dataset=tvd``
    and ``hieve`` track ``[person]``, as JDE tracks persons only); a detection joins a track at IoU >=
    ``min_iou``; a track lives ``max_age`` frames without a detection and is reported after
    ``init_delay`` more detected frames (0 = at once).
    ``match_iou``: MOTA / IDF1 match a track to a ground-truth box at IoU >= this (0.5: MOTChallenge's,
    JDE's). Every ground-truth row counts (JDE's rule for files other than MOT16/17).
    """

    score_threshold: float = 0.5
    categories: list[str] = field(default_factory=list)
    min_iou: float = 0.3
    max_age: int = 5
    init_delay: int = 0
    match_iou: float = 0.5
