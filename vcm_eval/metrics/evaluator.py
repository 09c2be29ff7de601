"""One evaluator contract (as detectron2's ``DatasetEvaluator``) and the evaluators ``eval.evaluators`` names.

Every evaluator takes the same two lists per call, whatever it measures:

* ``inputs``: one dict per image with ``image_id`` and ``file_name`` (the image's path);
* ``outputs``: one dict per image with ``detections`` (COCO result dicts: box, score, category,
  RLE ``segmentation`` when the model has masks).

``evaluate()`` returns ``{task: {metric: value}}`` (``{"bbox": {"AP": ...}}``). Each evaluator
class builds itself for a dataset with ``from_dataset(dataset, image_ids)``, or returns ``None``
when the dataset cannot be scored that way (no Cityscapes ground truth, no Open Images truth).
``EVALUATORS`` names the class of each ``eval.evaluators`` choice (``metrics.config.Evaluator``):
adding an evaluator is its class, one choice and one line here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from vcm_eval.metrics.config import Evaluator
from vcm_eval.utils.components import locate

if TYPE_CHECKING:
    from vcm_eval.data.base import EvalDataset


class DatasetEvaluator(Protocol):
    def reset(self) -> None: ...

    def process(self, inputs: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any]]) -> None: ...

    def evaluate(self) -> dict[str, dict[str, float]]: ...


EVALUATORS: dict[Evaluator, str] = {
    Evaluator.coco: "vcm_eval.metrics.coco_eval.CocoEvaluator",
    Evaluator.cityscapes: "vcm_eval.metrics.cityscapes_eval.CityscapesEvaluator",
    Evaluator.oic: "vcm_eval.metrics.oid_challenge.OidChallengeTasks",
}


def build_evaluator(name: Evaluator | str, dataset: EvalDataset, image_ids: list[int]) -> DatasetEvaluator | None:
    """The evaluator ``name`` for this dataset, or None when the dataset cannot be scored that way."""
    from vcm_eval.utils.choices import choice

    kind = choice(Evaluator, name, "eval.evaluators")
    evaluator: DatasetEvaluator | None = locate(EVALUATORS[kind], "eval.evaluators").from_dataset(dataset, image_ids)
    return evaluator
