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
