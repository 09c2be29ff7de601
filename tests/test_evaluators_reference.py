"""The evaluators equal pycocotools and cityscapesscripts run directly, on imperfect predictions.

tests/test_evaluators.py checks the extremes (ground truth scores 100, nothing scores 0). Here the
predictions are wrong in the ways a model is (shifted boxes and masks, wrong classes, missed
objects, extra and duplicate detections, regions under cityscapesscripts' 100-pixel minimum,
scores tied at 6 decimals) and the project's numbers must equal, exactly, what each reference
library gives when the test runs it itself: ``COCOeval`` with ``params.imgIds`` set to the
evaluated subset, and ``evalInstanceLevelSemanticLabeling.evaluateImgLists`` on prediction files
this test writes in the official submission format (8-bit masks, a different layout and naming
than the evaluator's). Each comparison also checks that the case it guards changes the number
(the full image set, rounded scores), so that a test cannot pass either way.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vcm_eval.config import EvalConfig
from vcm_eval.data.base import EvalDataset
from vcm_eval.data.cityscapes import annotations_from_instance_ids, build_coco_json, find_images, instance_categories
from vcm_eval.metrics.cityscapes_eval import CityscapesEvaluator
from vcm_eval.metrics.coco_eval import CocoEvaluator
from vcm_eval.metrics.evaluate import evaluate_records

Result = dict[str, Any]
ScoreFormat = Callable[[float], str]


def full_precision(score: float) -> str:
    return repr(score)


def six_decimals(score: float) -> str:
    return f"{score:.6f}"


def _rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _shift(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    ys, xs = ys + dy, xs + dx
    keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    out[ys[keep], xs[keep]] = 1
    return out


def _extent(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]


def _result(image_id: int, category_id: int, box: list[float], score: float, mask: np.ndarray) -> Result:
    return {"image_id": image_id, "category_id": category_id, "bbox": box, "score": score, "segmentation": _rle(mask)}


def imperfect_predictions(coco: dict[str, Any], seed: int = 0) -> list[Result]:
    """COCO results (RLE masks) of a poor model on every image of ``coco``, deterministic.

    Per ground-truth instance, in turn: exact; shifted box and mask (partial overlap); wrong
    class; missed; left 60 % of the mask only; exact plus a duplicate. Per image, extra
    detections: a 6 x 6 square (36 px, under cityscapesscripts' 100 px minimum) and a larger
    false positive. Half the scores are drawn in [0.3, 1), half are float32 values within 5e-7 of
    1, which 6 decimals round to ``1.000000``: ties that mix true and false positives.
    """
    rng = np.random.default_rng(seed)
    near_one = [float(np.float32(1.0 - 6e-8 * k)) for k in range(1, 9)]  # distinct float32, all "1.000000"

    def score() -> float:
        return float(rng.choice(near_one)) if rng.uniform() < 0.5 else float(np.float32(rng.uniform(0.3, 1.0)))

    n_cat = len(coco["categories"])
    out: list[Result] = []
    for im in coco["images"]:
        h, w = im["height"], im["width"]
        anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        for k, ann in enumerate(anns):
            gt = mask_utils.decode(ann["segmentation"]).astype(np.uint8)
            kind = k % 6
            if kind == 3:  # missed
                continue
            cat, mask, box = ann["category_id"], gt, list(ann["bbox"])
            if kind == 1:  # shifted: overlap between ~0.4 and ~0.9 depending on the size
                dx, dy = max(1, int(0.15 * box[2])), int(rng.integers(-2, 3))
                mask = _shift(gt, dx, dy)
                box = [box[0] + dx + 0.5, box[1] + dy, box[2] * 1.1, box[3] * 0.95]
            elif kind == 2:  # wrong class
                cat = cat % n_cat + 1
            elif kind == 4:  # partial mask, its own box
                xs = np.nonzero(gt.any(axis=0))[0]
                mask = gt.copy()
                mask[:, xs[0] + max(1, int(0.6 * len(xs))) :] = 0
                box = _extent(mask)
            out.append(_result(im["id"], cat, box, score(), mask))
            if kind == 5:  # duplicate of a found object, slightly moved
                dup = _shift(gt, 1, 1)
                out.append(_result(im["id"], cat, _extent(dup), score(), dup))
        y, x = int(rng.integers(0, h - 40)), int(rng.integers(0, w - 40))
        for size in (6, 30):
            extra = np.zeros((h, w), np.uint8)
            extra[y : y + size, x : x + size] = 1
            cat = int(rng.integers(1, n_cat + 1))
            out.append(_result(im["id"], cat, _extent(extra), score(), extra))
            y, x = int(rng.integers(0, h - 40)), int(rng.integers(0, w - 40))
    return out


def cocoeval(coco_json: Path, results: list[Result], image_ids: list[int], task: str) -> tuple[float, float]:
    """(AP, AP50) in percent of pycocotools run directly on ``image_ids``."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_json))
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), task)
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100.0 * float(ev.stats[0]), 100.0 * float(ev.stats[1])


def cityscapesscripts_ap(
    gt_files: dict[str, Path],
    results: dict[str, list[Result]],
    cat_to_label: dict[int, int],
    work: Path,
    fmt: ScoreFormat,
) -> tuple[float, float]:
    """(AP, AP50) in percent of cityscapesscripts' ``evaluateImgLists`` with its own default args.

    ``gt_files`` and ``results`` are keyed by the Cityscapes stem. Predictions are written as
    the official format asks: ``<stem>_pred.txt`` per image with relative mask paths (here 8-bit
    0/255 PNGs under ``masks/``), the label id and the confidence written by ``fmt``.
    """
    import cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling as cs_eval

    pred_root = (work / "pred").resolve()
    (pred_root / "masks").mkdir(parents=True)
    pred_files, gts = [], []
    for stem, dets in results.items():
        lines = []
        for k, det in enumerate(dets):
            name = f"masks/{stem}_{k:03d}.png"
            Image.fromarray(mask_utils.decode(det["segmentation"]) * np.uint8(255)).save(pred_root / name)
            lines.append(f"{name} {cat_to_label[det['category_id']]} {fmt(det['score'])}\n")
        (pred_root / f"{stem}_pred.txt").write_text("".join(lines))
        pred_files.append(str(pred_root / f"{stem}_pred.txt"))
        gts.append(str(gt_files[stem]))
    args = copy.copy(cs_eval.args)
    args.gtInstancesFile = str(work / "gtInstances.json")  # the default caches beside the module
    args.exportFile = str(work / "result.json")
    args.predictionPath = str(pred_root)
    args.quiet = True
    cwd = os.getcwd()
    os.chdir(work)  # it writes matches.json into the working directory
    try:
        averages = cs_eval.evaluateImgLists(pred_files, gts, args)["averages"]
    finally:
        os.chdir(cwd)
    return 100.0 * float(averages["allAp"]), 100.0 * float(averages["allAp50%"])


def _records(results: list[Result], coco: dict[str, Any], image_ids: list[int]) -> list[dict[str, Any]]:
    """What a run of an uncoded pipeline appends to records.jsonl, through a JSON round trip."""
    sizes = {im["id"]: im["height"] * im["width"] for im in coco["images"]}
    recs = [
        {
            "image_id": i,
            "bits": 0,
            "pixels": sizes[i],
            "encode_s": 0.0,
            "decode_s": 0.0,
            "task_s": 0.0,
            "detections": [r for r in results if r["image_id"] == i],
        }
        for i in image_ids
    ]
    return json.loads(json.dumps(recs))


def _synth(root: Path) -> tuple[Path, dict[str, Any]]:
    coco_json = root / "annotations" / "instances_val.json"
    return coco_json, json.loads(coco_json.read_text())


def test_limit_subset_equals_cocoeval_on_that_subset(synth_root: Path) -> None:
    """``dataset.limit=4``: evaluate_records (the run's path) = COCOeval with imgIds = the first 4 images."""
    coco_json, coco = _synth(synth_root)
    dataset = EvalDataset(name="synthetic", image_root=synth_root, coco_json=coco_json, cityscapes_gt=None, limit=4)
    subset = sorted(im["id"] for im in coco["images"])[:4]
    results = [r for r in imperfect_predictions(coco) if r["image_id"] in subset]
    got = evaluate_records(dataset, _records(results, coco, dataset.image_ids), EvalConfig(evaluators=["coco"]))
    for task in ("bbox", "segm"):
        ap, ap50 = cocoeval(coco_json, results, subset, task)
        assert (got[f"{task}_AP"], got[f"{task}_AP50"]) == (ap, ap50)
        assert 5.0 < ap < 95.0  # imperfect, not an extreme
        # the images left out hold ground truth: scoring them too would give another number
        assert cocoeval(coco_json, results, [im["id"] for im in coco["images"]], task)[0] != ap


def test_any_subset_equals_cocoeval_on_that_subset(synth_root: Path) -> None:
    """Image ids not a prefix and not sorted, detections also outside them: only the subset is scored."""
    coco_json, coco = _synth(synth_root)
    subset = [5, 1, 3]
    results = imperfect_predictions(coco, seed=1)
    ev = CocoEvaluator(coco_json, subset)
    ev.process([{}], [{"detections": copy.deepcopy(results)}])
    got = ev.evaluate()
    for task in ("bbox", "segm"):
        ap, ap50 = cocoeval(coco_json, results, subset, task)
        assert (got[task]["AP"], got[task]["AP50"]) == (ap, ap50)
        assert cocoeval(coco_json, results, [im["id"] for im in coco["images"]], task)[0] != ap


def test_cityscapes_equals_cityscapesscripts(synth_root: Path, tmp_path: Path) -> None:
    """evaluate_records' cityscapes AP/AP50 = cityscapesscripts on files this test writes."""
    coco_json, coco = _synth(synth_root)
    gt_dir = synth_root / "gtFine" / "val"
    dataset = EvalDataset(name="synthetic", image_root=synth_root, coco_json=coco_json, cityscapes_gt=gt_dir)
    results = imperfect_predictions(coco)
    got = evaluate_records(dataset, _records(results, coco, dataset.image_ids), EvalConfig(evaluators=["cityscapes"]))

    stems = {im["id"]: Path(im["file_name"]).name.removesuffix("_leftImg8bit.png") for im in coco["images"]}
    gt_files = {s: gt_dir / s.split("_")[0] / f"{s}_gtFine_instanceIds.png" for s in stems.values()}
    per_image = {stems[i]: [r for r in results if r["image_id"] == i] for i in sorted(stems)}
    cat_to_label = {c["id"]: c["cityscapes_id"] for c in coco["categories"]}
    (tmp_path / "full").mkdir()
    (tmp_path / "six").mkdir()
    ap, ap50 = cityscapesscripts_ap(gt_files, per_image, cat_to_label, tmp_path / "full", full_precision)
    assert (got["cityscapes_AP"], got["cityscapes_AP50"]) == (ap, ap50)
    assert 5.0 < ap < 95.0
    # the data exercise what the test guards: some ground truth is under the 100 px minimum, and
    # scores rounded to 6 decimals tie true with false positives and change the AP
    assert min(a["area"] for a in coco["annotations"]) < 100
    assert cityscapesscripts_ap(gt_files, per_image, cat_to_label, tmp_path / "six", six_decimals)[0] != ap


TIE_STEM = "tiecity_000000_000019"


@pytest.mark.parametrize(("true_first", "expected"), [(True, 100.0), (False, 25.0)])
def test_near_tied_scores_keep_their_order(tmp_path: Path, true_first: bool, expected: float) -> None:
    """A true and a false positive 1e-7 apart (both ``1.000000`` at 6 decimals) keep their ranking.

    One car (20 x 20 px) on road; a detection equal to it and one on empty road. Ranked true
    first, cityscapesscripts' AP is 100; false first, 25; tied (rounded), 75 either way.
    """
    gt_dir = tmp_path / "gtFine" / "val" / "tiecity"
    gt_dir.mkdir(parents=True)
    ids = np.full((64, 64), 7, np.uint16)  # road: not void, so a detection there is a false positive
    ids[10:30, 10:30] = 26000
    gt_png = gt_dir / f"{TIE_STEM}_gtFine_instanceIds.png"
    Image.fromarray(ids).save(gt_png)
    empty_road = np.zeros((64, 64), np.uint8)
    empty_road[40:60, 40:60] = 1
    hi, lo = float(np.float32(0.9999996)), float(np.float32(0.9999995))
    assert hi > lo and six_decimals(hi) == six_decimals(lo)
    dets = [
        {"image_id": 0, "category_id": 1, "score": hi if true_first else lo, "segmentation": _rle(ids == 26000)},
        {"image_id": 0, "category_id": 1, "score": lo if true_first else hi, "segmentation": _rle(empty_road)},
    ]
    ev = CityscapesEvaluator(tmp_path / "gtFine" / "val", {1: 26})
    ev.process([{"image_id": 0, "file_name": tmp_path / f"{TIE_STEM}_leftImg8bit.png"}], [{"detections": dets}])
    got = ev.evaluate()["cityscapes"]
    (tmp_path / "full").mkdir()
    (tmp_path / "six").mkdir()
    ref = cityscapesscripts_ap({TIE_STEM: gt_png}, {TIE_STEM: dets}, {1: 26}, tmp_path / "full", full_precision)
    assert (got["AP"], got["AP50"]) == ref == (expected, expected)
    tied = cityscapesscripts_ap({TIE_STEM: gt_png}, {TIE_STEM: dets}, {1: 26}, tmp_path / "six", six_decimals)
    assert tied == (75.0, 75.0)


def test_cityscapes_boxes_are_pixel_extents(tmp_path: Path) -> None:
    """gtFine instanceIds -> COCO json on a hand-made image: boxes, kept/dropped regions, crowd.

    Boxes are the masks' pixel extents (COCO, vcm_eval's training targets, detectron2's polygon
    loader); detectron2's instanceIds loader would give the car [3, 2, 6, 3] and drop the person.
    """
    ids = np.full((16, 24), 7, np.int32)  # road (stuff): no annotation
    ids[0, 0] = 0  # unlabeled (void): no annotation
    ids[2:6, 3:10] = 26001  # car: columns 3..9, rows 2..5
    ids[1:9, 12] = 24000  # person one pixel wide
    ids[10:14, 2] = 28002  # bus, L-shaped: column 2 rows 10..13 ...
    ids[13, 2:9] = 28002  # ... and row 13 columns 2..8
    ids[10:13, 15:21] = 26  # car group without instance ids: a crowd region
    ids[14:16, 20:24] = 29000  # caravan: has instances but is not evaluated
    cats = instance_categories()
    label_to_cat = {c["cityscapes_id"]: c["id"] for c in cats}
    name = {c["id"]: c["name"] for c in cats}
    anns = annotations_from_instance_ids(ids, image_id=7, first_ann_id=11, label_to_cat=label_to_cat)
    got = [(a["id"], a["image_id"], name[a["category_id"]], a["bbox"], a["area"], a["iscrowd"]) for a in anns]
    assert got == [
        (11, 7, "car", [15.0, 10.0, 6.0, 3.0], 18.0, 1),
        (12, 7, "person", [12.0, 1.0, 1.0, 8.0], 8.0, 0),
        (13, 7, "car", [3.0, 2.0, 7.0, 4.0], 28.0, 0),
        (14, 7, "bus", [2.0, 10.0, 7.0, 4.0], 10.0, 0),
    ]
    for a in anns:
        value = {11: 26, 12: 24000, 13: 26001, 14: 28002}[a["id"]]
        np.testing.assert_array_equal(mask_utils.decode(a["segmentation"]), (ids == value).astype(np.uint8))


def test_cityscapes_json_boxes_equal_the_synthetic_json(synth_root: Path) -> None:
    """The Cityscapes converter, run on the synthetic gtFine tree, boxes every instance as the COCO json does."""
    _, coco = _synth(synth_root)
    built = build_coco_json(synth_root, find_images(synth_root, "val"), progress=False)
    assert [im["file_name"] for im in built["images"]] == [im["file_name"] for im in coco["images"]]

    def boxes(d: dict[str, Any]) -> list[tuple[int, tuple[float, ...], float]]:
        return sorted((a["image_id"], tuple(a["bbox"]), a["area"]) for a in d["annotations"])

    assert len(built["annotations"]) == len(coco["annotations"]) > 0
    assert boxes(built) == boxes(coco)
