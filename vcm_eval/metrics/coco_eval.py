"""COCO AP with pycocotools (bbox and segm: AP@[.5:.95] and AP50, in percent 0..100).

Follows the evaluator contract of ``vcm_eval.metrics.evaluator``: ``reset`` / ``process(inputs,
outputs)`` / ``evaluate() -> {task: {metric: value}}``. Model labels are mapped to dataset
categories by name.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vcm_eval.data.base import EvalDataset
from vcm_eval.errors import DataError
from vcm_eval.vision.base import Instances


def label_to_category(class_names: tuple[str, ...], categories: dict[str, int]) -> dict[int, int]:
    """Model label k (1..K) -> dataset category id, by class name; names the mismatch if any."""
    missing = [n for n in class_names if n not in categories]
    if missing:
        raise DataError(
            f"model classes {missing} are not categories of the dataset ({sorted(categories)}); "
            "use a model trained on this dataset's classes"
        )
    return {k + 1: categories[name] for k, name in enumerate(class_names)}


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE (ascii counts) of a bool mask [H, W], identical to
    ``mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))``, at a fraction of its cost.

    RLE runs go down the columns; columns left and right of the mask's pixels are whole runs of
    zeros, so only the band of columns holding pixels is copied to column-major order and scanned
    (pycocotools' encode copies and scans all H x W: 0.6 s per 100 full-size Cityscapes masks,
    against 0.13 s here). pycocotools still writes the compressed counts string.
    """
    h, w = mask.shape
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        counts = [h * w]
    else:
        x0, x1 = int(cols[0]), int(cols[-1]) + 1
        band = np.asfortranarray(mask[:, x0:x1]).reshape(-1, order="F").view(np.uint8)
        edges = np.concatenate(([0], np.flatnonzero(np.diff(band)) + 1, [band.size]))
        counts = ([0] if band[0] else []) + np.diff(edges).tolist()  # runs alternate, zeros first
        counts[0] += x0 * h
        trail = (w - x1) * h
        if trail:
            if len(counts) % 2:  # the last run is zeros
                counts[-1] += trail
            else:
                counts.append(trail)
    rle = mask_utils.frPyObjects({"counts": counts, "size": [h, w]}, h, w)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def to_coco_results(image_id: int, instances: Instances, label_map: dict[int, int]) -> list[dict[str, Any]]:
    """Detections -> COCO result dicts (xywh boxes, RLE masks with ascii counts)."""
    out = []
    for i in range(len(instances)):
        x0, y0, x1, y1 = (float(v) for v in instances.boxes[i])
        res: dict[str, Any] = {
            "image_id": image_id,
            "category_id": label_map[int(instances.labels[i])],
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "score": float(instances.scores[i]),
        }
        if instances.masks is not None:
            res["segmentation"] = mask_to_rle(instances.masks[i])
        out.append(res)
    return out


class CocoEvaluator:
    """pycocotools bbox (+ segm when results carry masks) evaluation of one split.

    Args:
        coco_json: ground-truth instances json.
        image_ids: the images evaluated (a subset of the json, e.g. with dataset.limit).
    """

    def __init__(self, coco_json: Path, image_ids: list[int]) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self.gt = COCO(str(coco_json))
        self.image_ids = list(image_ids)
        self.reset()

    @classmethod
    def from_dataset(cls, dataset: EvalDataset, image_ids: list[int]) -> CocoEvaluator | None:
        """pycocotools on the dataset's COCO json (None when it holds no annotations to score)."""
        return cls(dataset.coco_json, image_ids) if dataset.has_coco_annotations else None

    def reset(self) -> None:
        self._results: list[dict[str, Any]] = []

    def process(self, inputs: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any]]) -> None:
        """Add the images' COCO result dicts (``outputs[k]["detections"]``; see ``metrics.evaluator``)."""
        for out in outputs:
            self._results.extend(out["detections"])

    def evaluate(self) -> dict[str, dict[str, float]]:
        tasks = ["bbox"] + (["segm"] if any("segmentation" in r for r in self._results) or not self._results else [])
        out: dict[str, dict[str, float]] = {}
        for task in tasks:
            if not self._results:
                out[task] = {"AP": 0.0, "AP50": 0.0}
                continue
            with contextlib.redirect_stdout(io.StringIO()):
                dt = self.gt.loadRes(self._results)
                ev = COCOeval(self.gt, dt, task)
                ev.params.imgIds = self.image_ids
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            out[task] = {"AP": 100.0 * max(0.0, float(ev.stats[0])), "AP50": 100.0 * max(0.0, float(ev.stats[1]))}
        return out
