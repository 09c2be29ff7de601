"""Turn a run's records into metrics: accuracy evaluators and the rate summary, in one place."""

from __future__ import annotations

from typing import Any

from vcm_eval.config import EvalConfig
from vcm_eval.data.datasets import EvalDataset
from vcm_eval.errors import ConfigError, DataError
from vcm_eval.metrics.cityscapes_eval import CityscapesEvaluator
from vcm_eval.metrics.coco_eval import CocoEvaluator
from vcm_eval.metrics.rate import rate_summary

EVALUATORS = ("coco", "cityscapes")


def cityscapes_label_ids(dataset: EvalDataset) -> dict[int, int]:
    """Dataset category id -> Cityscapes label id (from the json, else by Cityscapes name)."""
    from cityscapesscripts.helpers.labels import name2label

    out = {}
    for cat in dataset.categories:
        if cat.cityscapes_id is not None:
            out[cat.coco_id] = int(cat.cityscapes_id)
        elif cat.name in name2label:
            out[cat.coco_id] = name2label[cat.name].id
        else:
            raise DataError(f"category {cat.name!r} has no Cityscapes label; drop cityscapes from eval.evaluators")
    return out


def evaluate_records(dataset: EvalDataset, records: list[dict[str, Any]], cfg: EvalConfig) -> dict[str, float]:
    """Flat metrics of one run: bbox_AP, bbox_AP50, segm_AP, segm_AP50, cityscapes_AP, ..., bpp."""
    unknown = [e for e in cfg.evaluators if e not in EVALUATORS]
    if unknown:
        raise ConfigError(f"eval.evaluators has unknown {unknown}; valid: {list(EVALUATORS)}")
    records = sorted(records, key=lambda r: r["image_id"])
    results: dict[str, dict[str, float]] = {}
    if "coco" in cfg.evaluators:
        coco = CocoEvaluator(dataset.coco_json, [r["image_id"] for r in records])
        for r in records:
            coco.process(r["detections"])
        results.update(coco.evaluate())
    gt = dataset.cityscapes_gt
    if "cityscapes" in cfg.evaluators and gt is not None and gt.is_dir():
        cs = CityscapesEvaluator(gt, cityscapes_label_ids(dataset))
        for r in records:
            cs.process(dataset.path_of(r["image_id"]), r["detections"])
        results.update(cs.evaluate())
    flat = {f"{task}_{metric}": value for task, metrics in results.items() for metric, value in metrics.items()}
    flat.update(rate_summary(records))
    flat["images"] = float(len(records))
    return flat
