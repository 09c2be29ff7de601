"""pycocotools and cityscapesscripts on the synthetic ground truth: GT scores 100, errors less."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vcm_eval.metrics.cityscapes_eval import CityscapesEvaluator
from vcm_eval.metrics.coco_eval import CocoEvaluator


def _gt_as_results(root: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    coco = json.loads((root / "annotations" / "instances_val.json").read_text())
    res = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
            "segmentation": a["segmentation"],
        }
        for a in coco["annotations"]
    ]
    return coco, res


def _cityscapes(root: Path, coco: dict[str, Any], results: list[dict[str, Any]]) -> float:
    ev = CityscapesEvaluator(root / "gtFine" / "val", {c["id"]: c["cityscapes_id"] for c in coco["categories"]})
    for im in coco["images"]:
        ev.process(
            [{"image_id": im["id"], "file_name": root / im["file_name"]}],
            [{"detections": [r for r in results if r["image_id"] == im["id"]]}],
        )
    return ev.evaluate()["cityscapes"]["AP"]


def test_ground_truth_scores_100(synth_root: Path) -> None:
    coco, res = _gt_as_results(synth_root)
    ev = CocoEvaluator(synth_root / "annotations" / "instances_val.json", [im["id"] for im in coco["images"]])
    ev.process([{}], [{"detections": res}])
    out = ev.evaluate()
    assert out["bbox"]["AP"] == pytest.approx(100.0) and out["segm"]["AP"] == pytest.approx(100.0)
    assert _cityscapes(synth_root, coco, res) == pytest.approx(100.0)


def test_shifted_boxes_and_dropped_masks_score_less(synth_root: Path) -> None:
    coco, res = _gt_as_results(synth_root)
    shifted = [dict(r, bbox=[r["bbox"][0] + max(2.0, 0.3 * r["bbox"][2])] + r["bbox"][1:]) for r in res]
    ev = CocoEvaluator(synth_root / "annotations" / "instances_val.json", [im["id"] for im in coco["images"]])
    ev.process([{}], [{"detections": shifted}])
    out = ev.evaluate()
    assert out["bbox"]["AP"] < 90.0
    assert out["segm"]["AP"] == pytest.approx(100.0)  # masks untouched
    half = res[: len(res) // 2]
    assert _cityscapes(synth_root, coco, half) < 90.0


def test_no_detections_scores_zero(synth_root: Path) -> None:
    coco, _ = _gt_as_results(synth_root)
    ev = CocoEvaluator(synth_root / "annotations" / "instances_val.json", [im["id"] for im in coco["images"]])
    assert ev.evaluate()["bbox"]["AP"] == 0.0
