"""Cityscapes instance-level AP with cityscapesscripts (AP and AP50, percent 0..100).

The predictions are written in the official submission format (one ``<stem>_pred.txt`` per image
listing mask PNGs, label ids and confidences) in a temporary folder, and the official
``evaluateImgLists`` scores them against the gtFine instanceIds PNGs, with its default settings
(overlaps 0.5:0.95, minimum region 100 px); confidences are written at full precision (``repr``), so
detections ranked apart stay apart. The script's global state (ground-truth cache file,
``matches.json`` in the working directory, ``sys.exit`` on errors) is kept inside that folder.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from vcm_eval.errors import DataError

if TYPE_CHECKING:
    from vcm_eval.data.base import EvalDataset

_STEM = re.compile(r"^(?P<stem>[^_]+_\d+_\d+)_")


def cityscapes_stem(path: Path) -> str:
    """``<city>_<seq>_<frame>`` of a Cityscapes-named file."""
    m = _STEM.match(path.name)
    if not m:
        raise DataError(
            f"{path.name} is not a Cityscapes file name (<city>_<seq>_<frame>_...); "
            "rename it or drop cityscapes from eval.evaluators"
        )
    return m.group("stem")


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


class CityscapesEvaluator:
    """Official instance-level evaluation of COCO-style results.

    Args:
        gt_dir: gtFine/<split> folder (holding <city>/<stem>_gtFine_instanceIds.png).
        category_to_label: dataset category id -> Cityscapes label id.
    """

    @classmethod
    def from_dataset(cls, dataset: EvalDataset, image_ids: list[int]) -> CityscapesEvaluator | None:
        """cityscapesscripts on the dataset's gtFine folder (None when it has none)."""
        gt = dataset.cityscapes_gt
        return cls(gt, cityscapes_label_ids(dataset)) if gt is not None and gt.is_dir() else None

    def __init__(self, gt_dir: Path, category_to_label: dict[int, int]) -> None:
        if not gt_dir.is_dir():
            raise DataError(
                f"Cityscapes ground truth folder {gt_dir} does not exist; point dataset.root at a Cityscapes root"
            )
        self.gt_dir = gt_dir.resolve()  # the evaluation runs in a temp working directory
        self.category_to_label = category_to_label
        self.reset()

    def reset(self) -> None:
        self._images: list[tuple[str, list[dict[str, Any]]]] = []

    def process(self, inputs: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any]]) -> None:
        """Add the images' COCO result dicts (they must carry RLE ``segmentation``; see ``metrics.evaluator``)."""
        for inp, out in zip(inputs, outputs, strict=True):
            self._images.append((cityscapes_stem(Path(inp["file_name"])), out["detections"]))

    def _gt_file(self, stem: str) -> Path:
        city = stem.split("_")[0]
        path = self.gt_dir / city / f"{stem}_gtFine_instanceIds.png"
        if not path.is_file():
            raise DataError(f"missing Cityscapes ground truth {path}; the gtFine folder must match the images")
        return path

    def evaluate(self) -> dict[str, dict[str, float]]:
        import cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling as cs_eval

        with tempfile.TemporaryDirectory(prefix="vcm_cs_eval_") as tmp:
            tmp_dir = Path(tmp)
            pred_files, gt_files = [], []
            for stem, results in self._images:
                lines = []
                for k, res in enumerate(results):
                    if "segmentation" not in res:
                        continue
                    mask = mask_utils.decode(res["segmentation"])
                    name = f"{stem}_{k}.png"
                    # a C-ordered 1-bit PNG at zlib level 1: what the script reads (convert("L") != 0) at a
                    # fifth of the cost of an 8-bit level-6 PNG of the Fortran-ordered decoded mask
                    Image.fromarray(np.ascontiguousarray(mask, dtype=bool)).save(tmp_dir / name, compress_level=1)
                    # repr round-trips the float exactly: rounded scores tie, and the script ranks tied
                    # detections as one threshold (6 decimals cost the synthetic model 0.004 AP points on
                    # 100 images; tests/test_evaluators_reference.py)
                    score = repr(float(res["score"]))
                    lines.append(f"{name} {self.category_to_label[res['category_id']]} {score}\n")
                pred = tmp_dir / f"{stem}_pred.txt"
                pred.write_text("".join(lines))
                pred_files.append(str(pred))
                gt_files.append(str(self._gt_file(stem)))
            args = copy.copy(cs_eval.args)
            args.gtInstancesFile = str(tmp_dir / "gtInstances.json")
            args.exportFile = str(tmp_dir / "result.json")
            args.predictionPath, args.predictionWalk = str(tmp_dir), None
            args.quiet, args.JSONOutput, args.colorized = True, False, False
            cwd = os.getcwd()
            try:
                os.chdir(tmp_dir)  # the script writes matches.json into the working directory
                with contextlib.redirect_stdout(io.StringIO()) as log:
                    result = cs_eval.evaluateImgLists(pred_files, gt_files, args)
            except SystemExit as exc:  # cityscapesscripts calls sys.exit on bad input
                raise DataError(f"cityscapesscripts evaluation failed: {log.getvalue().strip()[-300:]}") from exc
            finally:
                os.chdir(cwd)
        avg = result["averages"]
        ap, ap50 = float(avg["allAp"]), float(avg["allAp50%"])
        return {"cityscapes": {"AP": 100.0 * np.nan_to_num(ap), "AP50": 100.0 * np.nan_to_num(ap50)}}
