"""The Open Images Challenge metric against TensorFlow object_detection's own test cases, then the evaluator contract.

Each reference case names its source: TensorFlow models' research/object_detection/utils/metrics_test.py,
per_image_evaluation_test.py and object_detection_evaluation_test.py; their inputs are repeated here as
given (boxes in their (y0, x0, y1, x1) order, which the metric's symmetric formulas accept unchanged).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from vcm_eval.data.oid import OidImageTruth, OidLabelMap, OidTruthSet
from vcm_eval.errors import ConfigError, DataError
from vcm_eval.metrics.oid_challenge import (
    OidChallengeEvaluator,
    average_precision,
    match_class,
    match_image,
    precision_recall,
)


def _rle(mask: list[list[int]] | np.ndarray) -> dict[str, Any]:
    """A COCO RLE with ascii counts, as the project's detections carry masks."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _f(*values: float) -> np.ndarray:
    return np.array(values, dtype=float)


# --- metrics_test.py -------------------------------------------------------------------------------------------


def test_precision_recall_bool_and_float_labels() -> None:
    # metrics_test.py: MetricsTest.test_compute_precision_recall
    scores = _f(0.4, 0.3, 0.6, 0.2, 0.7, 0.1)
    cum_tp = _f(0, 1, 1, 2, 2, 3)
    for labels in (np.array([0, 1, 1, 0, 0, 1], dtype=bool), _f(0, 1, 1, 0, 0, 1)):
        pr = precision_recall(scores, labels, 10)
        assert pr is not None
        np.testing.assert_array_equal(pr[0], cum_tp / _f(1, 2, 3, 4, 5, 6))
        np.testing.assert_array_equal(pr[1], cum_tp / 10)


def test_precision_recall_weighted_labels() -> None:
    # metrics_test.py: MetricsTest.test_compute_precision_recall_float
    pr = precision_recall(_f(0.4, 0.3, 0.6, 0.2, 0.7, 0.1), _f(0, 1, 1, 0.5, 0, 1), 10)
    assert pr is not None
    np.testing.assert_array_equal(pr[0], _f(0, 1 / 2, 1 / 3, 2 / 4, 2.5 / 4.5, 3.5 / 5.5))
    np.testing.assert_allclose(pr[0], _f(0.0, 0.5, 0.33333333, 0.5, 0.55555556, 0.63636364), atol=5e-9)
    np.testing.assert_array_equal(pr[1], _f(0, 1, 1, 2, 2.5, 3.5) / 10)


def test_average_precision_interpolates_all_points() -> None:
    # metrics_test.py: MetricsTest.test_compute_average_precision
    precision = _f(0.8, 0.76, 0.9, 0.65, 0.7, 0.5, 0.55, 0)
    recall = _f(0.3, 0.3, 0.4, 0.4, 0.45, 0.45, 0.5, 0.5)
    processed_precision = _f(0.9, 0.9, 0.9, 0.7, 0.7, 0.55, 0.55, 0)
    recall_interval = _f(0.3, 0, 0.1, 0, 0.05, 0, 0.05, 0)
    expected = float(np.sum(recall_interval * processed_precision))  # 0.4225
    assert average_precision(precision, recall) == pytest.approx(expected, rel=1e-12, abs=0)
    assert average_precision(_f(), _f()) == 0.0  # metrics.py: no entry, AP 0


def test_no_ground_truth_gives_no_precision_recall() -> None:
    # metrics_test.py: MetricsTest.test_compute_precision_recall_and_ap_no_groundtruth
    assert precision_recall(_f(0.4, 0.3, 0.6, 0.2, 0.7, 0.1), np.zeros(6, dtype=bool), 0) is None


# --- per_image_evaluation_test.py -------------------------------------------------------------------------------

DIFFICULT_DETS = _f(0, 0, 1, 1, 0, 0, 2, 2, 0, 0, 3, 3).reshape(3, 4)
DIFFICULT_SCORES = _f(0.6, 0.8, 0.5)
DETS_MASKS = [
    _rle([[0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]),
    _rle([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]),
    _rle([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 0, 0]]),
]
DIFFICULT_GT = _f(0, 0, 1, 1, 0, 0, 10, 10).reshape(2, 4)
DIFFICULT_GT_MASKS = [
    _rle([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]),
    _rle([[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1]]),
]


@pytest.mark.parametrize(
    ("difficult", "masks", "scores", "labels"),
    [
        ([False, True], False, (0.8, 0.6, 0.5), (0, 1, 0)),  # test_match_to_gt_box_0
        ([False, True], True, (0.8, 0.6, 0.5), (1, 0, 0)),  # test_mask_match_to_gt_mask_0
        ([True, False], False, (0.8, 0.5), (0, 0)),  # test_match_to_gt_box_1
        ([True, False], True, (0.6, 0.5), (0, 0)),  # test_mask_match_to_gt_mask_1
    ],
)
def test_difficult_boxes(
    difficult: list[bool], masks: bool, scores: tuple[float, ...], labels: tuple[int, ...]
) -> None:
    # per_image_evaluation_test.py: SingleClassTpFpWithDifficultBoxesTest
    s, w = match_class(
        DIFFICULT_DETS,
        DIFFICULT_SCORES,
        DIFFICULT_GT,
        np.zeros(2, bool),
        group_of_weight=0.0,
        gt_difficult=np.array(difficult),
        det_masks=DETS_MASKS if masks else None,
        gt_masks=DIFFICULT_GT_MASKS if masks else None,
    )
    np.testing.assert_array_equal(s, _f(*scores))
    np.testing.assert_array_equal(w, _f(*labels))


GROUP_DETS = _f(0, 0, 1, 1, 0, 0, 2, 1, 0, 0, 3, 1).reshape(3, 4)
GROUP_SCORES = _f(0.8, 0.6, 0.5)
GROUP_GT = _f(0, 0, 1, 1, 0, 0, 5, 5, 10, 10, 20, 20).reshape(3, 4)
GROUP_GT_MASKS = [
    _rle([[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]),
    _rle([[0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 1, 0]]),
    _rle([[0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]]),
]


@pytest.mark.parametrize(
    ("weight", "group_of", "masks", "scores", "labels"),
    [
        # SingleClassTpFpWithGroupOfBoxesTest (group_of_weight 0: detections in a group are ignored)
        (0.0, [False, True, True], False, (0.8,), (1,)),  # test_match_to_non_group_of_and_group_of_box
        (0.0, [False, True, True], True, (0.6,), (1,)),  # test_mask_match_to_non_group_of_and_group_of_box
        (0.0, [True, False, True], False, (0.5,), (0,)),  # test_match_two_to_group_of_box
        (0.0, [True, False, True], True, (0.8,), (1,)),  # test_mask_match_two_to_group_of_box
        # SingleClassTpFpWithGroupOfBoxesTestWeighted (group_of_weight 0.5: one entry per hit group)
        (0.5, [False, True, True], False, (0.8, 0.6), (1, 0.5)),  # test_match_to_non_group_of_and_group_of_box
        (0.5, [False, True, True], True, (0.6, 0.8, 0.5), (1, 0.5, 0.5)),  # test_mask_match_to_non_group_of_...
        (0.5, [True, False, True], False, (0.5, 0.8), (0, 0.5)),  # test_match_two_to_group_of_box
        (0.5, [True, False, True], True, (0.8, 0.6, 0.5), (1, 0.5, 0.5)),  # test_mask_match_two_to_group_of_box
    ],
)
def test_group_of_boxes(
    weight: float, group_of: list[bool], masks: bool, scores: tuple[float, ...], labels: tuple[float, ...]
) -> None:
    # per_image_evaluation_test.py: SingleClassTpFpWithGroupOfBoxesTest and ...TestWeighted
    s, w = match_class(
        GROUP_DETS,
        GROUP_SCORES,
        GROUP_GT,
        np.array(group_of),
        group_of_weight=weight,
        det_masks=DETS_MASKS if masks else None,
        gt_masks=GROUP_GT_MASKS if masks else None,
    )
    np.testing.assert_array_equal(s, _f(*scores))
    np.testing.assert_array_equal(w, _f(*labels))


@pytest.mark.parametrize(
    ("gt", "gt_mask", "threshold", "labels"),
    [
        ([[100, 100, 105, 105]], None, 0.5, (0, 0, 0)),  # test_no_true_positives
        ([[100, 100, 105, 105]], [[[1, 1, 1, 1]] * 3], 0.5, (0, 0, 0)),  # test_mask_no_true_positives
        ([[0, 0, 1, 1]], None, 0.5, (0, 1, 0)),  # test_one_true_positives_with_large_iou_threshold
        ([[0, 0, 1, 1]], [[[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]], 0.5, (1, 0, 0)),  # test_mask_one_true_...
        ([[0, 0, 1, 1]], None, 0.1, (1, 0, 0)),  # test_one_true_positives_with_very_small_iou_threshold
        ([[0, 0, 1, 1], [0, 0, 3.5, 3.5]], None, 0.5, (0, 1, 1)),  # test_two_true_positives_with_large_iou_threshold
    ],
)
def test_no_difficult_boxes(
    gt: list[list[float]], gt_mask: list[Any] | None, threshold: float, labels: tuple[int, ...]
) -> None:
    # per_image_evaluation_test.py: SingleClassTpFpNoDifficultBoxesTest
    s, w = match_class(
        DIFFICULT_DETS,
        DIFFICULT_SCORES,
        np.array(gt, dtype=float),
        np.zeros(len(gt), bool),
        group_of_weight=0.0,
        det_masks=DETS_MASKS if gt_mask else None,
        gt_masks=[_rle(m) for m in gt_mask] if gt_mask else None,
        iou_threshold=threshold,
    )
    np.testing.assert_array_equal(s, _f(0.8, 0.6, 0.5))
    np.testing.assert_array_equal(w, _f(*labels))


MASK_A = [[0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
MASK_B = [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
ZERO = [[0] * 4] * 3


@pytest.mark.parametrize(
    ("gt", "dets", "scores", "labels"),
    [
        ([[0, 0, 2, 3], [0, 0, 2, 2]], [MASK_A, MASK_B], (0.6,), (1,)),  # test_mask_tp_and_ignore
        ([[0, 0, 2, 3], [2, 2, 4, 4]], [MASK_A, MASK_B], (0.8, 0.6), (0, 1)),  # test_mask_one_tp_one_fp
        ([[0, 0, 2, 3], [0, 0, 2, 3]], [MASK_A, MASK_A], (0.8,), (1,)),  # test_two_mask_one_gt_one_ignore
        ([[0, 0, 2, 3], [2, 3, 4, 6]], [MASK_A, MASK_A], (0.8, 0.6), (1, 0)),  # test_two_mask_one_gt_one_fp
    ],
)
def test_boxes_without_masks(
    gt: list[list[float]], dets: list[Any], scores: tuple[float, ...], labels: tuple[int, ...]
) -> None:
    # per_image_evaluation_test.py: SingleClassTpFpEmptyMaskAndBoxesTest (the second box has an empty mask)
    det_boxes = np.array([[0, 0, 2, 3], [0, 0, 2, 2]] if dets[1] is MASK_B else [[0, 0, 2, 3]] * 2, dtype=float)
    s, w = match_class(
        det_boxes,
        _f(0.6, 0.8),
        np.array(gt, dtype=float),
        np.zeros(2, bool),
        group_of_weight=0.0,
        det_masks=[_rle(m) for m in dets],
        gt_masks=[_rle(MASK_A), _rle(ZERO)],
    )
    np.testing.assert_array_equal(s, _f(*scores))
    np.testing.assert_array_equal(w, _f(*labels))


def test_taken_box_leaves_a_false_positive_and_ties_sort_as_the_reference() -> None:
    # per_image_evaluation.py, compute_match_iou: a detection whose best box is taken stays a false positive even
    # when a free box overlaps it at IoU 0.875 (no fall-back to the second best)
    s, w = match_class(
        _f(0, 0, 10, 10, 0, 0, 10, 10.5).reshape(2, 4),
        _f(0.9, 0.8),
        _f(0, 0, 10, 10, 0, 0, 10, 12).reshape(2, 4),
        np.zeros(2, bool),
        group_of_weight=1.0,
    )
    np.testing.assert_array_equal(w, _f(1, 0))
    # np_box_list_ops.sort_by_field: np.argsort(scores)[::-1], so of two equal scores the later detection is first
    s, w = match_class(
        _f(0, 0, 10, 10, 50, 50, 60, 60).reshape(2, 4),
        _f(0.5, 0.5),
        _f(0, 0, 10, 10).reshape(1, 4),
        np.zeros(1, bool),
        group_of_weight=1.0,
    )
    np.testing.assert_array_equal(w, _f(0, 1))
    pr = precision_recall(s, w, 1)  # metrics.py ranks with the same argsort: the true positive comes first again
    assert pr is not None and average_precision(*pr) == 1.0


def test_multi_class_drops_invalid_boxes() -> None:
    # per_image_evaluation_test.py: MultiClassesTpFpTest.test_tp_fp
    out = match_image(
        _f(0, 0, 1, 1, 10, 10, 5, 5, 0, 0, 2, 2, 5, 10, 10, 5, 10, 5, 5, 10, 0, 0, 3, 3).reshape(6, 4),
        _f(0.8, 0.1, 0.8, 0.9, 0.7, 0.8),
        np.array([0, 1, 1, 2, 0, 2]),
        _f(0, 0, 1, 1, 0, 0, 3.5, 3.5).reshape(2, 4),
        np.array([0, 2]),
        np.zeros(2, bool),
        group_of_weight=0.0,
    )
    assert sorted(out) == [0, 1, 2]
    for c, label in ((0, 1.0), (1, 0.0), (2, 1.0)):
        np.testing.assert_array_equal(out[c][0], _f(0.8))
        np.testing.assert_array_equal(out[c][1], _f(label))


# --- object_detection_evaluation_test.py: OpenImagesChallengeEvaluatorTest, through the evaluator ---------------

CAT, DOG, ELEPHANT = "/m/cat", "/m/dog", "/m/elephant"


def _xyxy(yx: list[list[float]]) -> np.ndarray:
    """The reference's (y0, x0, y1, x1) boxes as the truth's (x0, y0, x1, y1)."""
    return np.array(yx, dtype=float).reshape(-1, 4)[:, [1, 0, 3, 2]]


def _image(
    boxes: list[list[float]],
    labels: list[str],
    group_of: list[bool],
    verified: dict[str, bool],
    size: tuple[int, int] = (1000, 1000),
    masks: list[dict[str, Any]] | None = None,
) -> OidImageTruth:
    return OidImageTruth(
        boxes=_xyxy(boxes),
        labels=labels,
        group_of=np.array(group_of, dtype=bool),
        verified=verified,
        height=size[0],
        width=size[1],
        masks=masks,
    )


def _dets(
    image_id: int, boxes: list[list[float]], classes: list[int], scores: list[float], masks: list[Any] | None = None
) -> list[dict[str, Any]]:
    out = []
    for k, (y0, x0, y1, x1) in enumerate(boxes):
        d: dict[str, Any] = {
            "image_id": image_id,
            "category_id": classes[k],
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "score": scores[k],
        }
        if masks is not None:
            d["segmentation"] = _rle(masks[k])
        out.append(d)
    return out


def _run(ev: OidChallengeEvaluator, dets: dict[int, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    for image_id, d in dets.items():
        ev.process([{"image_id": image_id, "file_name": f"{image_id}.jpg"}], [{"detections": d}])
    return ev.evaluate()


def _detection_case(ancestors: dict[str, tuple[str, ...]] | None = None) -> tuple[OidTruthSet, dict[int, Any]]:
    """object_detection_evaluation_test.py: test_returns_correct_detection_metric_values (cat 1, dog 2, elephant 3)."""
    truth = OidTruthSet(
        label_map=OidLabelMap(mids=(CAT, DOG, ELEPHANT), names=("cat", "dog", "elephant")),
        images={
            1: _image(
                [[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 3, 3]],
                [CAT, ELEPHANT, CAT],
                [False, False, True],
                {CAT: True, DOG: False, ELEPHANT: True},
            ),
            2: _image(
                [[10, 10, 11, 11], [500, 500, 510, 510], [10, 10, 12, 12]],
                [CAT, CAT, ELEPHANT],
                [False, False, True],
                {},
            ),
            3: _image([[0, 0, 1, 1]], [DOG], [False], {}),
        },
        category_to_mid={1: CAT, 2: DOG, 3: ELEPHANT},
        ancestors=ancestors,
    )
    dets = {
        1: _dets(1, [[10, 10, 11, 11], [100, 100, 120, 120]], [2, 2], [0.7, 0.8]),
        2: _dets(
            2,
            [[10, 10, 11, 11], [100, 100, 120, 120], [100, 100, 220, 220], [10, 10, 11, 11]],
            [1, 1, 2, 3],
            [0.7, 0.8, 0.5, 0.9],
        ),
        3: _dets(3, [[0, 0, 1, 1]], [2], [0.5]),
    }
    return truth, dets


def test_challenge_detection_values() -> None:
    # object_detection_evaluation_test.py: OpenImagesChallengeEvaluatorTest.test_returns_correct_detection_metric_values
    # (group_of_weight=0.5): dog 0.3333333333, elephant 0.333333333333, cat 0.142857142857, mAP 0.269841269
    truth, dets = _detection_case()
    ev = OidChallengeEvaluator(truth=truth, task="bbox", group_of_weight=0.5)
    out = _run(ev, dets)
    assert set(out) == {"oic"} and set(out["oic"]) == {"AP50"}
    assert ev.per_class_ap == {
        DOG: pytest.approx(100 / 3, abs=1e-12),
        ELEPHANT: pytest.approx(100 / 3, abs=1e-12),
        CAT: pytest.approx(100 * 0.5 / 3.5, abs=1e-12),
    }
    assert out["oic"]["AP50"] == pytest.approx(100 * (1 / 3 + 1 / 3 + 1 / 7) / 3, abs=1e-12)
    assert out["oic"]["AP50"] == pytest.approx(26.9841269, abs=1e-6)  # the reference's published 0.269841269


def test_open_images_v2_values() -> None:
    # object_detection_evaluation_test.py: OpenImagesV2EvaluationTest.test_returns_correct_metric_values
    # (OpenImagesDetectionEvaluator: group_of_weight 0, no image-level labels, so each image scores the classes of
    # its boxes): dog 0.0, elephant 0.0, cat 0.16666666, mAP 0.05555555
    truth = OidTruthSet(
        label_map=OidLabelMap(mids=(CAT, DOG, ELEPHANT), names=("cat", "dog", "elephant")),
        images={
            1: _image([[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 3, 3]], [CAT, ELEPHANT, CAT], [False] * 3, {}),
            2: _image(
                [[10, 10, 11, 11], [500, 500, 510, 510], [10, 10, 12, 12]],
                [CAT, CAT, ELEPHANT],
                [False, True, False],
                {},
            ),
            3: _image([[0, 0, 1, 1]], [DOG], [False], {}),
        },
        category_to_mid={1: CAT, 2: DOG, 3: ELEPHANT},
    )
    dets = {2: _dets(2, [[10, 10, 11, 11], [100, 100, 120, 120], [100, 100, 220, 220]], [1, 1, 3], [0.7, 0.8, 0.9])}
    ev = OidChallengeEvaluator(truth=truth, task="bbox", group_of_weight=0.0)
    out = _run(ev, {**dets, 1: [], 3: []})
    assert ev.per_class_ap == {CAT: pytest.approx(100 / 6, abs=1e-12), DOG: 0.0, ELEPHANT: 0.0}
    assert out["oic"]["AP50"] == pytest.approx(5.555555, abs=1e-5)  # the reference's published 0.05555555


def _segm_case() -> tuple[OidTruthSet, dict[int, Any]]:
    """object_detection_evaluation_test.py: test_returns_correct_instance_segm_metric_values (cat 1, dog 2)."""
    one = [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    truth = OidTruthSet(
        label_map=OidLabelMap(mids=(CAT, DOG), names=("cat", "dog")),
        images={
            1: _image(
                [[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 3, 3]],
                [CAT, DOG, CAT],
                [False, False, True],
                {CAT: True, DOG: True, ELEPHANT: True},
                size=(3, 4),
                masks=[_rle(one), _rle(ZERO), _rle(ZERO)],
            ),
            3: _image([[0, 0, 1, 1]], [DOG], [False], {}, size=(3, 4), masks=[_rle(one)]),
        },
        category_to_mid={1: CAT, 2: DOG},
    )
    dets = {
        1: _dets(
            1,
            [[0, 0, 2, 2], [2, 2, 3, 3]],
            [2, 1],
            [0.7, 0.8],
            masks=[[[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], ZERO],
        ),
        3: _dets(3, [[0, 0, 1, 1]], [2], [0.5], masks=[one]),
    }
    return truth, dets


@pytest.mark.parametrize("weight", [None, 1.0, 0.0])
def test_challenge_instance_segmentation_values(weight: float | None) -> None:
    # object_detection_evaluation_test.py: OpenImagesChallengeEvaluatorTest.test_returns_correct_instance_segm_metric_
    # values: dog 1.0, cat 0, mAP 0.5 (the test's evaluator has group_of_weight 1.0, our default; 0.0, that of
    # OpenImagesInstanceSegmentationChallengeEvaluator, agrees because its group-of box has no mask)
    truth, dets = _segm_case()
    ev = OidChallengeEvaluator(truth=truth, task="segm", group_of_weight=weight)
    assert _run(ev, dets) == {"oic_segm": {"AP50": 50.0}}
    assert ev.per_class_ap == {CAT: 0.0, DOG: 100.0}


# --- the evaluator contract -------------------------------------------------------------------------------------


def test_default_group_of_weights_and_reset() -> None:
    truth, dets = _detection_case()
    ev = OidChallengeEvaluator(truth=truth, task="bbox")
    assert ev.group_of_weight == 1.0 and OidChallengeEvaluator(truth=truth, task="segm").group_of_weight == 1.0  # MPEG
    # weight 1: cat num_gt 4 (FP 0.8, TP 0.7: AP 0.5 x 1/4), elephant num_gt 2 (hit group 0.9: AP 1/2), dog 1/3
    first = _run(ev, dets)["oic"]["AP50"]
    assert first == pytest.approx(100 * (0.125 + 0.5 + 1 / 3) / 3, abs=1e-12)
    with pytest.raises(DataError, match="processed twice"):
        ev.process([{"image_id": 1}], [{"detections": []}])
    ev.reset()
    assert ev.per_class_ap == {}
    assert _run(ev, dets)["oic"]["AP50"] == first


def test_verified_negative_is_false_positive_unverified_is_ignored() -> None:
    label_map = OidLabelMap(mids=(CAT, DOG), names=("cat", "dog"))
    dets = {1: _dets(1, [[0, 0, 10, 10]], [2], [0.5]), 2: _dets(2, [[0, 0, 10, 10]], [2], [0.9])}

    def dog_ap(verified_on_2: dict[str, bool]) -> float:
        images = {
            1: _image([[0, 0, 10, 10]], [DOG], [False], {DOG: True}),
            2: _image([[50, 50, 60, 60]], [CAT], [False], verified_on_2),
        }
        ev = OidChallengeEvaluator(truth=OidTruthSet(label_map, images, {1: CAT, 2: DOG}), task="bbox")
        _run(ev, dets)
        return ev.per_class_ap[DOG]

    assert dog_ap({DOG: False}) == 50.0  # FP at 0.9 ranks above the TP at 0.5
    assert dog_ap({}) == 100.0  # dog not verified on image 2: its detection is not scored


def test_hierarchy_expands_detections_and_unmapped_ones_are_dropped() -> None:
    animal = "/m/animal"
    label_map = OidLabelMap(mids=(CAT, animal), names=("cat", "animal"))
    images = {1: _image([[0, 0, 10, 10], [0, 0, 10, 10]], [CAT, animal], [False, False], {CAT: True, animal: True})}
    dets = {1: _dets(1, [[0, 0, 10, 10], [0, 0, 10, 10]], [1, 7], [0.9, 0.8])}  # category 7 maps to no MID
    cases: list[tuple[dict[str, tuple[str, ...]] | None, float]] = [({CAT: (animal,)}, 100.0), (None, 0.0)]
    for ancestors, animal_ap in cases:
        ev = OidChallengeEvaluator(truth=OidTruthSet(label_map, images, {1: CAT}, ancestors), task="bbox")
        _run(ev, dets)
        assert ev.per_class_ap == {CAT: 100.0, animal: animal_ap}


def test_images_without_truth_score_nothing_and_no_ground_truth_is_an_error() -> None:
    truth, dets = _detection_case()
    ev = OidChallengeEvaluator(truth=truth, task="bbox", group_of_weight=0.5)
    ev.process([{"image_id": 99}], [{"detections": _dets(99, [[0, 0, 1, 1]], [2], [1.0])}])  # not in the truth
    assert _run(ev, dets)["oic"]["AP50"] == pytest.approx(100 * (1 / 3 + 1 / 3 + 1 / 7) / 3, abs=1e-12)
    ev = OidChallengeEvaluator(truth=truth, task="bbox")
    ev.process([{"image_id": 99}], [{"detections": _dets(99, [[0, 0, 1, 1]], [2], [1.0])}])
    with pytest.raises(DataError, match="none of the 1 processed images has ground truth"):
        ev.evaluate()


def test_bad_task_and_missing_masks_are_errors() -> None:
    truth, _ = _segm_case()
    with pytest.raises(ConfigError, match="'keypoints' is unknown; valid: \\['bbox', 'segm'\\]"):
        OidChallengeEvaluator(truth=truth, task="keypoints")
    ev = OidChallengeEvaluator(truth=truth, task="segm")
    with pytest.raises(DataError, match="no 'segmentation'"):
        ev.process([{"image_id": 3}], [{"detections": _dets(3, [[0, 0, 1, 1]], [2], [0.5])}])
    wrong_size = _dets(1, [[0, 0, 1, 1]], [2], [0.5], masks=[np.ones((4, 4))])
    with pytest.raises(DataError, match="masks must be at the original size"):
        ev.process([{"image_id": 1}], [{"detections": wrong_size}])
