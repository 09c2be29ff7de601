"""The Open Images Challenge metric (AP at IoU 0.5) as TensorFlow's object_detection computes it.

MPEG's image test condition (OpenImages V6, 5,000 images) scores detectors with this metric. The
reference is TensorFlow models' ``research/object_detection``: ``utils/object_detection_evaluation.py``
(``OpenImagesChallengeEvaluator`` and its ``OpenImagesDetectionChallengeEvaluator`` /
``OpenImagesInstanceSegmentationChallengeEvaluator``, ``ObjectDetectionEvaluation``),
``utils/per_image_evaluation.py`` (``PerImageEvaluation``), ``utils/metrics.py``, ``utils/np_box_ops.py``,
``utils/np_mask_ops.py`` and ``metrics/oid_challenge_evaluation_utils.py`` (how the challenge tool feeds
the evaluator). This module is written from those rules in numpy (pycocotools for RLE masks), not copied;
``tests/test_oid_metric.py`` replays the reference's own test cases.

Rules, with the reference file each comes from:

1. Scored classes per image (object_detection_evaluation.py, ``OpenImagesChallengeEvaluator``): the
   image's verified image-level labels, positive or negative, plus the classes of its boxes. Detections of
   any other class are dropped before matching (neither true nor false positives); an image without
   ground truth has no verified label, so all its detections are dropped. A verified class without a box
   (negative label) turns each of its detections into a false positive (per_image_evaluation.py: no
   ground truth box, every detection false).
2. Detections with ``x0 >= x1`` or ``y0 >= y1`` are removed (per_image_evaluation.py,
   ``_remove_invalid_boxes``), then each class's detections are sorted by descending score
   (``np.argsort(scores)[::-1]``: the reference's NMS at IoU 1.0 only sorts).
3. Stage "IoU" (``_compute_tp_fp_for_single_class``, ``compute_match_iou``), greedy in score order: a
   detection takes its highest-IoU non-group-of box (the first on ties); at IoU >= 0.5 it is a true
   positive when that box is still free, else it stays a false positive (no fall-back to its second-best
   box). A difficult box (Pascal; Open Images has none) makes the detection ignored.
4. Stage "ioa" (``compute_match_ioa``), for the detections not yet true positives: a detection takes the
   group-of box with the highest ioa = intersection / area of the *detection* (not IoU); at ioa >= 0.5 it
   leaves the list. Each group-of box with at least one such detection becomes one entry scored with the
   highest of their scores and weighted ``group_of_weight``, appended after the remaining detections; a
   group whose best score is 0, or a weight of 0, gives no entry (the matched detections are ignored).
5. Masks (per_image_evaluation.py, mask mode): a ground-truth mask without any pixel means "no mask".
   Stages run in the order: mask IoU with non-group-of masks, mask ioa with group-of masks, box IoU and
   box ioa with the boxes that have no mask. Detections matched in the box stages are ignored (boxes
   without masks are ignore regions) and the box stages' group-of entries are dropped. Mask IoU and ioa
   are float32 as in np_mask_ops.py: ``i / max(union, 1e-7)`` and ``i / (area + 1e-7)``.
6. The box of a mask detection is the box enclosing its mask (oid_challenge_evaluation_utils.py,
   ``build_predictions_dictionary``), so a detection with an empty mask is removed by rule 2. Boxes are
   divided by the image's width and height before any overlap, as the challenge CSVs hold them.
7. Ground-truth count per class (object_detection_evaluation.py, ``_update_ground_truth_statistics``):
   non-group-of boxes + ``group_of_weight`` x group-of boxes, over the processed images; for masks, boxes
   without a mask do not count (the reference marks them difficult).
8. ``group_of_weight``: 1.0 for boxes and masks by default, as the challenge tool
   (metrics/oid_challenge_evaluation.py) and CompressAI-Vision (MPEG's pipeline) build
   ``OpenImagesChallengeEvaluator(evaluate_masks=True)``. The class
   ``OpenImagesInstanceSegmentationChallengeEvaluator`` uses 0.0 for masks; the two differ only where a
   group-of box has a mask, and the constructor takes either (its test reproduces both).
9. Precision and recall per class (metrics.py, ``compute_precision_recall``): all images' entries sorted
   by descending score (``np.argsort(scores)[::-1]``); an entry is a false positive when its weight is
   <= 0; precision = cumTP / (cumTP + cumFP), recall = cumTP / num_gt, cumTP summing the weights.
10. AP (metrics.py, ``compute_average_precision``, VOCdevkit): recall padded with 0 in front and 1 at the
    end, precision with 0 at both ends; precision made non-increasing from the right (running maximum);
    AP = sum of (recall step) x precision over the points where recall changes. All points, no 11-point
    sampling. A class with ground truth but no scored entry has AP 0.
11. mAP (object_detection_evaluation.py, ``ObjectDetectionEvaluation.evaluate``): classes without ground
    truth have AP NaN and are left out (``np.nanmean``). When no class has ground truth the reference
    returns NaN with a warning; here it is a ``DataError``.
12. Label hierarchy: when ``truth.ancestors`` is given, each detection also counts for every ancestor of
    its class (each once), same box and score: the expansion that dataset_tools/
    oid_hierarchical_labels_expansion.py (``expand_boxes_from_csv``) applies to the annotations, applied to
    the detections so that a parent class is scored from its children's detections. CompressAI-Vision does
    not expand detections; a truth with ``ancestors=None`` matches it.

Not reproduced: the reference's cap of 10,000 detections per class and image (``nms_max_output_boxes``,
never reached by these models), CorLoc and recall bounds. Equal scores sort as numpy's argsort orders them
in processing order (records sorted by image id); the reference sees its CSV's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from vcm_eval.data.base import EvalDataset
from vcm_eval.data.oid import OidImageTruth, OidTruthSet
from vcm_eval.errors import ConfigError, DataError

_TASKS = {"bbox": "oic", "segm": "oic_segm"}
_DEFAULT_GROUP_OF_WEIGHT = {"bbox": 1.0, "segm": 1.0}  # MPEG's: the challenge tool, as CompressAI-Vision runs it
_EPS32 = np.float32(1e-7)  # np_mask_ops.EPSILON, taken in float32 as the reference's arithmetic does


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Pairwise IoU [N, M] of boxes [N, 4] and [M, 4] (x0, y0, x1, y1; float64, as np_box_ops.iou)."""
    inter = _box_intersection(boxes1, boxes2)
    union = _box_area(boxes1)[:, None] + _box_area(boxes2)[None, :] - inter
    return inter / union


def box_ioa(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Pairwise [N, M]: the fraction of each box [N, 4] inside each region [M, 4] (intersection / box area).

    The Challenge matches a detection to a group-of box by this, not by IoU: any detection lying inside a
    group is a hit however small it is (np_box_ops.ioa(groups, detections), transposed).
    """
    return _box_intersection(boxes, regions) / _box_area(boxes)[:, None]


def _box_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.maximum(0.0, np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]))
    h = np.maximum(0.0, np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]))
    return w * h


def _rle(mask: Mapping[str, Any]) -> dict[str, Any]:
    """A COCO RLE that pycocotools' C functions take (uncompressed ``counts`` lists are compressed)."""
    h, w = (int(v) for v in mask["size"])
    if isinstance(mask["counts"], list):
        return dict(mask_utils.frPyObjects(dict(mask), h, w))
    return {"size": [h, w], "counts": mask["counts"]}


def _has_pixels(mask: Mapping[str, Any] | None) -> bool:
    """Whether a ground-truth mask exists: the reference takes a mask without pixels for "no mask"."""
    return mask is not None and bool(mask) and int(mask_utils.area([_rle(mask)])[0]) > 0


def mask_overlaps(
    masks: Sequence[Mapping[str, Any]], regions: Sequence[Mapping[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """Mask IoU and ioa [N, M] (float32) of N RLE masks against M RLE masks, as np_mask_ops computes them.

    The integer pixel intersections come from pycocotools on the RLEs (no mask is decoded); IoU and ioa are
    then formed in float32 like the reference, so ties and threshold decisions match it.

    Returns:
        iou: ``i / max(union, 1e-7)``; ioa: ``i / (area of masks[n] + 1e-7)`` (fraction of mask n in region m).
    """
    n, m = len(masks), len(regions)
    if n == 0 or m == 0:
        return np.zeros((n, m), np.float32), np.zeros((n, m), np.float32)
    a, b = [_rle(x) for x in masks], [_rle(x) for x in regions]
    sizes = {tuple(r["size"]) for r in a + b}
    if len(sizes) > 1:
        raise DataError(f"masks of one image have different sizes {sorted(sizes)}; give every mask at the image's size")
    area_a = mask_utils.area(a).astype(np.int64)
    area_b = mask_utils.area(b).astype(np.int64)
    inside = np.asarray(mask_utils.iou(a, b, [1] * m), dtype=np.float64).reshape(n, m)  # i / area_a (crowd rule)
    inter = np.rint(inside * area_a[:, None]).astype(np.float32)
    fa, fb = area_a.astype(np.float32), area_b.astype(np.float32)
    iou = inter / np.maximum(fa[:, None] + fb[None, :] - inter, _EPS32)
    ioa = inter / (fa[:, None] + _EPS32)
    return iou, ioa


def match_class(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_group_of: np.ndarray,
    *,
    group_of_weight: float,
    gt_difficult: np.ndarray | None = None,
    det_masks: Sequence[Mapping[str, Any]] | None = None,
    gt_masks: Sequence[Mapping[str, Any] | None] | None = None,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """One image, one class: the scored entries of its detections (rules 2-5 of the module docstring).

    Args:
        det_boxes: [N, 4] detection boxes (x0, y0, x1, y1); any corner order used for both sets gives the
            same result, so the reference's (y0, x0, y1, x1) arrays can be passed as they are.
        det_scores: [N] scores.
        gt_boxes: [M, 4] ground-truth boxes, same convention.
        gt_group_of: [M] bool, the ``IsGroupOf`` flags.
        group_of_weight: weight of a group-of box (as TP entry and in the ground-truth count).
        gt_difficult: [M] bool Pascal ``difficult`` flags (None: none, as in Open Images).
        det_masks, gt_masks: RLE masks (both or neither; a ``gt_masks`` entry None or without pixels means
            the box has no mask): matches masks first, boxes without masks become ignore regions.
        iou_threshold: minimum IoU (and ioa for group-of boxes) of a match.

    Returns:
        (scores, weights): float64 arrays of the entries to rank, detections first (descending score)
        then one entry per hit group-of box; weight 1.0 true positive, 0.0 false positive,
        ``group_of_weight`` a group-of hit. Ignored detections are absent.
    """
    if (det_masks is None) != (gt_masks is None):
        raise DataError("match_class got masks on one side only; pass det_masks and gt_masks together")
    boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    keep = np.flatnonzero((boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3]))
    if keep.size == 0:
        return np.zeros(0), np.zeros(0)
    order = keep[np.argsort(scores[keep])[::-1]]
    boxes, scores = boxes[order], scores[order]
    masks = None if det_masks is None else [det_masks[k] for k in order]
    n = scores.size
    gts = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if gts.shape[0] == 0:
        return scores, np.zeros(n)
    group = np.asarray(gt_group_of, dtype=bool).reshape(-1)
    difficult = np.zeros(len(gts), bool) if gt_difficult is None else np.asarray(gt_difficult, dtype=bool).reshape(-1)
    if gt_masks is None:
        has_mask = np.zeros(len(gts), bool)
    else:
        has_mask = np.array([_has_pixels(g) for g in gt_masks], dtype=bool)
    if not len(group) == len(difficult) == len(has_mask) == len(gts):
        raise DataError(f"{len(gts)} ground-truth boxes but {len(group)} group-of flags / {len(has_mask)} masks")

    tp = np.zeros(n, bool)
    hit_difficult = np.zeros(n, bool)
    hit_group = np.zeros(n, bool)
    hit_box = np.zeros(n, bool)

    def stage_iou(iou: np.ndarray, col_difficult: np.ndarray, is_box: bool) -> None:
        best = np.argmax(iou, axis=1)
        taken = np.zeros(iou.shape[1], bool)
        for i in range(n):
            g = best[i]
            if tp[i] or hit_difficult[i] or hit_group[i] or not iou[i, g] >= iou_threshold:
                continue
            if col_difficult[g]:
                hit_difficult[i] = True
            elif not taken[g]:
                tp[i] = taken[g] = True
                hit_box[i] = is_box

    def stage_ioa(ioa: np.ndarray, is_box: bool) -> tuple[np.ndarray, np.ndarray]:
        best = np.argmax(ioa, axis=1)
        group_scores = np.zeros(ioa.shape[1])
        for i in range(n):
            g = best[i]
            if tp[i] or hit_difficult[i] or hit_group[i] or not ioa[i, g] >= iou_threshold:
                continue
            hit_group[i] = True
            hit_box[i] = is_box
            group_scores[g] = max(group_scores[g], scores[i])
        weights = np.full(ioa.shape[1], float(group_of_weight))
        sel = (group_scores > 0) & (weights > 0)
        return group_scores[sel], weights[sel]

    group_entries = (np.zeros(0), np.zeros(0))
    if masks is not None and gt_masks is not None:
        plain, groups = has_mask & ~group, has_mask & group
        if plain.any():
            stage_iou(mask_overlaps(masks, [gt_masks[k] for k in np.flatnonzero(plain)])[0], difficult[plain], False)
        if groups.any():
            group_entries = stage_ioa(mask_overlaps(masks, [gt_masks[k] for k in np.flatnonzero(groups)])[1], False)
    plain, groups = ~has_mask & ~group, ~has_mask & group
    if plain.any():
        stage_iou(box_iou(boxes, gts[plain]), difficult[plain], True)
    if groups.any():
        box_group_entries = stage_ioa(box_ioa(boxes, gts[groups]), True)
        if masks is None:
            group_entries = box_group_entries
    valid = ~hit_difficult & ~hit_group
    if masks is not None:
        valid &= ~hit_box  # box-only annotations are ignore regions for masks
    return (
        np.concatenate([scores[valid], group_entries[0]]),
        np.concatenate([tp[valid].astype(np.float64), group_entries[1]]),
    )


def match_image(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_classes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    gt_group_of: np.ndarray,
    *,
    group_of_weight: float,
    gt_difficult: np.ndarray | None = None,
    det_masks: Sequence[Mapping[str, Any]] | None = None,
    gt_masks: Sequence[Mapping[str, Any] | None] | None = None,
    iou_threshold: float = 0.5,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """One image, all classes: ``match_class`` per class that has detections (arguments as there).

    Returns:
        class -> (scores, weights); classes whose detections were all removed map to empty arrays.
    """
    det_classes = np.asarray(det_classes).reshape(-1)
    gt_classes = np.asarray(gt_classes).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    group = np.asarray(gt_group_of, dtype=bool).reshape(-1)
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for c in np.unique(det_classes).tolist():
        d = np.flatnonzero(det_classes == c)
        g = np.flatnonzero(gt_classes == c)
        out[int(c)] = match_class(
            np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)[d],
            np.asarray(det_scores, dtype=np.float64).reshape(-1)[d],
            gt_boxes[g],
            group[g],
            group_of_weight=group_of_weight,
            gt_difficult=None if gt_difficult is None else np.asarray(gt_difficult, dtype=bool)[g],
            det_masks=None if det_masks is None else [det_masks[k] for k in d],
            gt_masks=None if gt_masks is None else [gt_masks[k] for k in g],
            iou_threshold=iou_threshold,
        )
    return out


def precision_recall(scores: np.ndarray, weights: np.ndarray, num_gt: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Precision and recall after each entry in descending score order (rule 9); None when ``num_gt`` is 0.

    Args:
        scores: [K] entry scores.
        weights: [K] true-positive weights (0 false positive, 1 true positive, w group-of hit).
        num_gt: the class's weighted ground-truth count.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if scores.size != weights.size:
        raise DataError(f"precision_recall got {scores.size} scores but {weights.size} weights; pass one per entry")
    if num_gt < np.sum(weights):
        raise DataError(f"{np.sum(weights)} true positives exceed the {num_gt} ground-truth objects; count them again")
    if num_gt == 0:
        return None
    ranked = weights[np.argsort(scores)[::-1]]
    cum_tp = np.cumsum(ranked)
    cum_fp = np.cumsum((ranked <= 0).astype(np.float64))
    return cum_tp / (cum_tp + cum_fp), cum_tp / num_gt


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the interpolated precision-recall curve, VOCdevkit style (rule 10), in 0..1."""
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    if precision.size != recall.size:
        raise DataError(f"average_precision got {precision.size} precisions but {recall.size} recalls")
    if precision.size == 0:
        return 0.0
    if np.any(np.diff(recall) < 0):
        raise DataError("average_precision needs a non-decreasing recall; pass the output of precision_recall")
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))


class OidChallengeEvaluator:
    """Open Images Challenge AP50 of boxes (``task="bbox"``) or instance masks (``task="segm"``).

    Follows the evaluator contract of ``vcm_eval.metrics.evaluator``. ``evaluate()`` returns
    ``{"oic": {"AP50": mAP}}`` or ``{"oic_segm": {"AP50": mAP}}`` in percent (0..100) and fills
    ``per_class_ap`` (MID -> AP in percent, classes with ground truth only) for reports.

    Args:
        truth: the dataset's Open Images ground truth (images, label map, category -> MID, hierarchy).
        task: ``bbox`` (boxes) or ``segm`` (RLE masks in the detections' ``segmentation``).
        group_of_weight: weight of a group-of box; None takes the reference evaluator's for the task
            (1.0 for boxes and masks, as MPEG runs the challenge tool; see rule 8 of the module docstring).
    """

    def __init__(self, *, truth: OidTruthSet, task: str, group_of_weight: float | None = None) -> None:
        if task not in _TASKS:
            raise ConfigError(f"OidChallengeEvaluator task {task!r} is unknown; valid: {sorted(_TASKS)}")
        weight = _DEFAULT_GROUP_OF_WEIGHT[task] if group_of_weight is None else float(group_of_weight)
        if not weight >= 0.0:
            raise ConfigError(f"group_of_weight {group_of_weight} must be >= 0 (1.0 counts a hit group-of box fully)")
        self.truth = truth
        self.task = task
        self.group_of_weight = weight
        self._class_of: dict[str, int] = {}
        for k, mid in enumerate(truth.label_map.mids):
            self._class_of.setdefault(mid, k + 1)  # as OidLabelMap.id_of: the first id of a repeated MID
        self._expanded: dict[str, list[int]] = {}
        self.reset()

    def reset(self) -> None:
        """Forget every processed image."""
        n = len(self.truth.label_map.mids) + 1
        self._scores: list[list[np.ndarray]] = [[] for _ in range(n)]
        self._weights: list[list[np.ndarray]] = [[] for _ in range(n)]
        self._num_gt = np.zeros(n)
        self._seen: set[int] = set()
        self.per_class_ap: dict[str, float] = {}

    def process(self, inputs: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any]]) -> None:
        """Match the images' detections (``outputs[k]["detections"]``, COCO result dicts) to their truth."""
        if len(inputs) != len(outputs):
            raise DataError(f"process got {len(inputs)} inputs but {len(outputs)} outputs; pass one output per image")
        for inp, out in zip(inputs, outputs):
            if "image_id" not in inp or "detections" not in out:
                raise DataError("each input needs 'image_id' and each output 'detections' (see metrics.evaluator)")
            image_id = int(inp["image_id"])
            if image_id in self._seen:
                raise DataError(f"image {image_id} was processed twice; call reset() before scoring a run again")
            self._seen.add(image_id)
            image = self.truth.images.get(image_id)
            if image is not None:  # an image without truth has no verified label: nothing is scored
                self._add_image(image_id, image, out["detections"])

    def _classes_of(self, mid: str) -> list[int]:
        """Class ids a detection of ``mid`` counts for: its own and its ancestors' (rule 12)."""
        if mid not in self._expanded:
            mids = [mid] + list((self.truth.ancestors or {}).get(mid, ()))
            ids = [self._class_of[m] for m in dict.fromkeys(mids) if m in self._class_of]
            self._expanded[mid] = ids
        return self._expanded[mid]

    def _add_image(self, image_id: int, image: OidImageTruth, detections: Sequence[Mapping[str, Any]]) -> None:
        if image.width <= 0 or image.height <= 0:
            raise DataError(f"image {image_id} has size {image.width}x{image.height}; the truth needs its real size")
        scale = np.array([image.width, image.height, image.width, image.height], dtype=np.float64)
        n = len(image.labels)
        gt_boxes = np.asarray(image.boxes, dtype=np.float64).reshape(-1, 4)
        group_of = np.asarray(image.group_of, dtype=bool).reshape(-1)
        if not gt_boxes.shape[0] == group_of.size == n or (image.masks is not None and len(image.masks) != n):
            raise DataError(
                f"image {image_id}: {n} labels, {gt_boxes.shape[0]} boxes, {group_of.size} group-of flags"
                f"{'' if image.masks is None else f', {len(image.masks)} masks'}; give one of each per box"
            )
        gt_classes = np.array([self._class_of.get(m, 0) for m in image.labels], dtype=np.int64)
        keep = np.flatnonzero(gt_classes > 0)
        gt_classes, gt_boxes, group_of = gt_classes[keep], gt_boxes[keep] / scale, group_of[keep]
        segm = self.task == "segm"
        gt_masks: list[Mapping[str, Any] | None] | None = None
        without_mask = np.zeros(keep.size, bool)
        if segm:
            gt_masks = [None] * keep.size if image.masks is None else [image.masks[k] or None for k in keep]
            for j, mask in enumerate(gt_masks):
                if mask is not None:
                    self._check_mask_size(image_id, image, mask)
                without_mask[j] = not _has_pixels(mask)
        counted = ~without_mask
        np.add.at(self._num_gt, gt_classes[counted & ~group_of], 1.0)
        np.add.at(self._num_gt, gt_classes[counted & group_of], self.group_of_weight)

        scored = {self._class_of[m] for m in image.verified if m in self._class_of} | set(gt_classes.tolist())
        boxes: list[np.ndarray] = []
        scores: list[float] = []
        classes: list[int] = []
        masks: list[Mapping[str, Any]] = []
        for det in detections:
            mid = self.truth.category_to_mid.get(int(det["category_id"]))
            ids = [] if mid is None else [c for c in self._classes_of(mid) if c in scored]
            if not ids:
                continue
            if segm:
                if "segmentation" not in det:
                    raise DataError(
                        f"image {image_id}: a detection has no 'segmentation'; task='segm' needs masks "
                        "(use a model with masks, or task='bbox')"
                    )
                self._check_mask_size(image_id, image, det["segmentation"])
                x, y, w, h = (float(v) for v in mask_utils.toBbox(_rle(det["segmentation"])))
            else:
                x, y, w, h = (float(v) for v in det["bbox"])
            box = np.array([x, y, x + w, y + h]) / scale
            for c in ids:
                boxes.append(box)
                scores.append(float(det["score"]))
                classes.append(c)
                if segm:
                    masks.append(det["segmentation"])
        if not classes:
            return
        matched = match_image(
            np.array(boxes).reshape(-1, 4),
            np.array(scores),
            np.array(classes),
            gt_boxes,
            gt_classes,
            group_of,
            group_of_weight=self.group_of_weight,
            det_masks=masks if segm else None,
            gt_masks=gt_masks,
        )
        for c, (s, w8) in matched.items():
            if s.size:
                self._scores[c].append(s)
                self._weights[c].append(w8)

    @staticmethod
    def _check_mask_size(image_id: int, image: OidImageTruth, mask: Mapping[str, Any]) -> None:
        if [int(v) for v in mask["size"]] != [image.height, image.width]:
            raise DataError(
                f"image {image_id}: a mask of size {list(mask['size'])} on an image of "
                f"{[image.height, image.width]} (height, width); masks must be at the original size"
            )

    def evaluate(self) -> dict[str, dict[str, float]]:
        """mAP at IoU 0.5 over the classes with ground truth, in percent; fills ``per_class_ap``.

        Raises:
            DataError: no processed image has ground truth of an evaluated class (the reference returns NaN).
        """
        aps = np.full(self._num_gt.size, np.nan)
        for c in np.flatnonzero(self._num_gt > 0).tolist():
            s = np.concatenate(self._scores[c]) if self._scores[c] else np.zeros(0)
            w = np.concatenate(self._weights[c]) if self._weights[c] else np.zeros(0)
            pr = precision_recall(s, w, float(self._num_gt[c]))
            aps[c] = average_precision(*pr) if pr is not None else np.nan
        if np.isnan(aps).all():
            raise DataError(
                f"none of the {len(self._seen)} processed images has ground truth of an evaluated class, so the "
                "Open Images Challenge mAP is undefined; check that the run's images are in the OID ground truth"
            )
        mids = self.truth.label_map.mids
        self.per_class_ap = {mids[c - 1]: 100.0 * float(aps[c]) for c in np.flatnonzero(~np.isnan(aps)).tolist()}
        return {_TASKS[self.task]: {"AP50": 100.0 * float(np.nanmean(aps[1:]))}}  # aps[0]: no class 0


class OidChallengeTasks:
    """``eval.evaluators=[oic]``: the Challenge metric of boxes, and of masks when both sides have them.

    Boxes are always scored (``oic_AP50``); masks (``oic_segm_AP50``) when the ground truth has
    masks and the detections carry them (a Faster R-CNN run gives boxes only).
    """

    def __init__(self, *, truth: OidTruthSet) -> None:
        self.truth = truth
        self.bbox = OidChallengeEvaluator(truth=truth, task="bbox")
        self.has_masks = any(image.masks is not None for image in truth.images.values())
        self.segm = OidChallengeEvaluator(truth=truth, task="segm") if self.has_masks else None
        self.reset()

    @classmethod
    def from_dataset(cls, dataset: EvalDataset, image_ids: list[int]) -> OidChallengeTasks | None:
        """The metric over the dataset's Open Images truth (None for a dataset without one)."""
        return cls(truth=dataset.oid) if dataset.oid is not None else None

    def reset(self) -> None:
        self.bbox.reset()
        if self.segm is not None:
            self.segm.reset()
        self._segm_seen = False

    def process(self, inputs: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any]]) -> None:
        self.bbox.process(inputs, outputs)
        if self.segm is not None and any("segmentation" in d for out in outputs for d in out["detections"]):
            self._segm_seen = True
        if self.segm is not None:
            masked = [{**out, "detections": [d for d in out["detections"] if "segmentation" in d]} for out in outputs]
            self.segm.process(inputs, masked)

    def evaluate(self) -> dict[str, dict[str, float]]:
        out = self.bbox.evaluate()
        if self.segm is not None and self._segm_seen:
            out.update(self.segm.evaluate())
        return out
