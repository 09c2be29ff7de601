"""Turn a run's records into metrics: the configured evaluators and the rate summary, in one place."""

from __future__ import annotations

from typing import Any

from vcm_eval.data.base import EvalDataset
from vcm_eval.metrics.config import EvalConfig
from vcm_eval.metrics.evaluator import build_evaluator
from vcm_eval.metrics.rate import rate_summary


def evaluate_records(dataset: EvalDataset, records: list[dict[str, Any]], cfg: EvalConfig) -> dict[str, float]:
    """Flat metrics of one run: bbox_AP, bbox_AP50, segm_AP, segm_AP50, cityscapes_AP, ..., bpp."""
    records = sorted(records, key=lambda r: r["image_id"])
    image_ids = [r["image_id"] for r in records]
    results: dict[str, dict[str, float]] = {}
    for name in cfg.evaluators:
        evaluator = build_evaluator(name, dataset, image_ids)
        if evaluator is None:  # this dataset cannot be scored that way (e.g. no Cityscapes ground truth)
            continue
        for r in records:
            evaluator.process(
                [{"image_id": r["image_id"], "file_name": dataset.path_of(r["image_id"])}],
                [{"detections": r["detections"]}],
            )
        results.update(evaluator.evaluate())
    flat = {f"{task}_{metric}": value for task, metrics in results.items() for metric, value in metrics.items()}
    flat.update(rate_summary(records))
    flat["images"] = float(len(records))
    return flat
