"""One evaluator contract (as detectron2's ``DatasetEvaluator``) and the name -> evaluator table.

Every evaluator takes the same two lists per call, whatever it measures:

* ``inputs``: one dict per image with ``image_id`` and ``file_name`` (the image's path);
* ``outputs``: one dict per image with ``detections`` (COCO result dicts: box, score, category,
  RLE ``segmentation`` when the model has masks).

``evaluate()`` returns ``{task: {metric: value}}`` (``{"bbox": {"AP": ...}}``). ``EVALUATORS``
maps each ``eval.evaluators`` name to a factory that builds the evaluator for a dataset, or
returns ``None`` when the dataset cannot be scored that way (no Cityscapes ground truth): adding
an evaluator is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from vcm_eval.data.base import EvalDataset


class DatasetEvaluator(Protocol):
    def reset(self) -> None: ...

    def process(self, inputs: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any]]) -> None: ...

    def evaluate(self) -> dict[str, dict[str, float]]: ...


def _coco(dataset: EvalDataset, image_ids: list[int]) -> DatasetEvaluator:
    from vcm_eval.metrics.coco_eval import CocoEvaluator

    return CocoEvaluator(dataset.coco_json, image_ids)


def _cityscapes(dataset: EvalDataset, image_ids: list[int]) -> DatasetEvaluator | None:
    from vcm_eval.metrics.cityscapes_eval import CityscapesEvaluator, cityscapes_label_ids

    gt = dataset.cityscapes_gt
    if gt is None or not gt.is_dir():
        return None
    return CityscapesEvaluator(gt, cityscapes_label_ids(dataset))


EVALUATORS: dict[str, Callable[[EvalDataset, list[int]], DatasetEvaluator | None]] = {"coco": _coco, "cityscapes": _cityscapes}
