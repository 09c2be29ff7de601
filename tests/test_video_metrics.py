"""Video metrics without a network: class-wise aggregation against a hand computation, MOTA / IDF1 against
motmetrics run directly, pooled AP against pycocotools on the concatenated ground truth, BD-rate over kbps,
the CTTC CSV of a video curve, and the feature anchor's video container (round trip, rate, refusals)."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from types import SimpleNamespace

import motmetrics as mm
import numpy as np
import pandas as pd
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vcm_eval.codecs.feature_anchor.sequence import FeatureSequenceCodec
from vcm_eval.codecs.vvc.sequence import VvcSequenceCodec
from vcm_eval.data.video.base import MotTruth
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.metrics.tracking import mot_accumulator, mot_scores, track, tracked_categories
from vcm_eval.metrics.video import class_row, detection_ap, length_weighted, pooled_detection, sequence_rates
from vcm_eval.report.video import video_bd_frame, write_video_cttc
from vcm_eval.vision.base import FeatureSet


def test_class_values_are_the_duration_weighted_average_of_the_sequences() -> None:
    # sequence a: 60 frames at 30 fps = 2 s, 300 kbit; b: 30 frames at 60 fps = 0.5 s, 100 kbit
    a = {**sequence_rates(300_000, 60, 30.0, 416 * 240), "bbox_AP": 60.0, "MOTA": 50.0}
    b = {**sequence_rates(100_000, 30, 60.0, 832 * 480), "bbox_AP": 30.0, "MOTA": math.nan}
    assert (a["kbps"], b["kbps"]) == (150.0, 200.0)
    row = class_row([a, b])
    assert row["seconds"] == 2.5 and row["sequences"] == 2.0
    assert row["kbps"] == pytest.approx(400_000 / 2.5 / 1000)  # = (2 x 150 + 0.5 x 200) / 2.5 = 160
    assert row["kbps"] == pytest.approx((2 * 150 + 0.5 * 200) / 2.5)
    assert row["bpp"] == pytest.approx(400_000 / (60 * 416 * 240 + 30 * 832 * 480))
    assert row["bbox_AP"] == pytest.approx((2 * 60 + 0.5 * 30) / 2.5)  # 54: seconds, not frames (frames give 50)
    assert row["MOTA"] == 50.0  # b has no tracks: it leaves the average with its weight
    assert math.isnan(length_weighted([math.nan], [1.0]))
    assert "kmac_per_pixel_nn_part_1" not in row  # no sequence counted its complexity


def test_class_complexity_is_all_macs_over_all_pixels() -> None:
    """A class's kMAC per pixel as CompressAI-Vision pools it: MACs summed, pixels summed (not the sequences'
    mean); a stage only one sequence has (a network in one run, not in the other) is left out."""
    a = {**sequence_rates(1000, 10, 30.0, 416 * 240), "kmac_per_pixel_nn_part_1": 60.0, "complexity_pixels": 99840.0}
    b = {**sequence_rates(1000, 10, 30.0, 832 * 480), "kmac_per_pixel_nn_part_1": 50.0,
         "kmac_per_pixel_encoder": 9.0, "complexity_pixels": 399360.0}  # fmt: skip
    row = class_row([a, b])
    macs = 60.0 * 99840 + 50.0 * 399360
    assert row["kmac_per_pixel_nn_part_1"] == pytest.approx(macs / (99840 + 399360))  # 52, not the mean 55
    assert row["complexity_pixels"] == 99840 + 399360 and "kmac_per_pixel_encoder" not in row


def _gt(boxes: dict[int, list[tuple[int, float, float]]]) -> MotTruth:
    rows = [[f, i, x, y, 20.0, 40.0, 1, 1, 1.0] for f, objs in boxes.items() for i, x, y in objs]
    return MotTruth(np.array(rows, dtype=np.float64))


def test_mota_and_idf1_equal_motmetrics_run_directly() -> None:
    # two ground-truth objects over 5 frames; the tracks miss one box, add a false one and switch an identity
    truth = _gt({f: [(1, 10.0 + 5 * f, 10.0), (2, 100.0, 50.0 + 2 * f)] for f in range(1, 6)})
    tracks = []
    for f in range(1, 6):
        if f != 3:
            tracks.append([f, 7, 10.0 + 5 * f + 1, 10.0, 20.0, 40.0, 0.9, 1])
        tracks.append([f, 8 if f < 4 else 9, 100.0, 50.0 + 2 * f, 20.0, 40.0, 0.9, 1])
    tracks.append([2, 5, 200.0, 200.0, 20.0, 40.0, 0.8, 1])  # a false positive
    hyp = np.array(tracks, dtype=np.float64)
    ours = mot_scores([mot_accumulator(truth, hyp, 5, match_iou=0.5)], ["s"])["s"]

    acc = mm.MOTAccumulator(auto_id=True)
    for f in range(1, 6):
        g, h = truth.rows[truth.rows[:, 0] == f], hyp[hyp[:, 0] == f]
        acc.update(g[:, 1].astype(int), h[:, 1].astype(int), mm.distances.iou_matrix(g[:, 2:6], h[:, 2:6], max_iou=0.5))
    direct = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"], name="s")
    assert ours["MOTA"] == pytest.approx(100 * direct["mota"]["s"])
    assert ours["IDF1"] == pytest.approx(100 * direct["idf1"]["s"])
    assert ours["IDSW"] == direct["num_switches"]["s"] == 1
    # by hand: 10 boxes, 1 miss, 1 false positive, 1 switch -> MOTA = 1 - 3 / 10
    assert (ours["GT"], ours["FN"], ours["FP"], ours["MOTA"]) == (10, 1, 1, pytest.approx(70.0))


def test_tracker_keeps_identities_through_a_missed_detection() -> None:
    settings = SimpleNamespace(score_threshold=0.5, min_iou=0.3, max_age=5, init_delay=0)
    frames = [[{"bbox": [10 + 3 * k, 20, 30, 60], "score": 0.9, "category_id": 1},
               {"bbox": [150, 40, 40, 30], "score": 0.8, "category_id": 3},
               {"bbox": [300, 40, 40, 30], "score": 0.3, "category_id": 3}] for k in range(6)]  # fmt: skip
    frames[3] = frames[3][1:]  # the person is not detected in frame 4
    rows = track(frames, settings, {1, 3})
    assert set(rows[:, 0].astype(int)) == set(range(1, 7))
    people, cars = rows[rows[:, 7] == 1], rows[rows[:, 7] == 3]
    assert len(set(people[:, 1])) == 1 and len(set(cars[:, 1])) == 1 and len(people) == 5 and len(cars) == 6
    assert 4 not in set(people[:, 0].astype(int))  # a coasting track is not reported
    assert not (rows[:, 2] > 250).any()  # the detection under score_threshold is never tracked
    assert len(track(frames, settings, {3})[:, 7]) == 6  # categories: cars only
    refused = r"tracker.categories=\['truck'\] are not categories.*valid: \['car', 'person'\]"
    with pytest.raises(ConfigError, match=refused):
        tracked_categories(["truck"], {"person": 1, "car": 3})


def _coco(images: int, boxes: list[tuple[int, list[float]]]) -> dict:
    return {"images": [{"id": i, "height": 100, "width": 200} for i in range(images)],
            "annotations": [{"id": k + 1, "image_id": i, "category_id": 1, "bbox": b, "area": b[2] * b[3],
                             "iscrowd": 0} for k, (i, b) in enumerate(boxes)],
            "categories": [{"id": 1, "name": "person"}]}  # fmt: skip


def test_pooled_ap_is_pycocotools_on_the_concatenated_sequences() -> None:
    a = _coco(2, [(0, [10, 10, 30, 30]), (1, [12, 10, 30, 30])])
    b = _coco(3, [(0, [50, 50, 20, 40]), (2, [60, 50, 20, 40]), (2, [120, 10, 30, 30])])
    da = [
        {"image_id": 0, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [30, 12, 30, 30], "score": 0.8},
    ]
    db = [{"image_id": 0, "category_id": 1, "bbox": [50, 52, 20, 40], "score": 0.7},
          {"image_id": 2, "category_id": 1, "bbox": [121, 10, 30, 30], "score": 0.95},
          {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.6}]  # fmt: skip
    joined = _coco(5, [(0, [10, 10, 30, 30]), (1, [12, 10, 30, 30]), (2, [50, 50, 20, 40]), (4, [60, 50, 20, 40]),
                       (4, [120, 10, 30, 30])])  # fmt: skip
    dets = da + [{**d, "image_id": d["image_id"] + 2} for d in db]
    gt = COCO()
    gt.dataset = joined
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    pooled = pooled_detection([(a, da), (b, db)])
    assert pooled["bbox_AP"] == pytest.approx(100 * ev.stats[0])
    assert pooled["bbox_AP50"] == pytest.approx(100 * ev.stats[1])
    alone = [detection_ap(a, da, [0, 1])["bbox_AP"], detection_ap(b, db, [0, 1, 2])["bbox_AP"]]
    assert pooled["bbox_AP"] not in alone
    assert math.isnan(detection_ap(_coco(2, []), da, [0, 1])["bbox_AP"])  # nothing to score


def _video_rows(curve: str, pipeline: str, qps: list[int], kbps: dict[str, list[float]], ap: list[float]) -> list[dict]:
    rows = []
    for k, qp in enumerate(qps):
        for scope, rates in kbps.items():
            kind = "class" if scope in ("A", "B") else "sequence"
            rows.append({"dataset": "d", "model": "m", "setup": "s", "pipeline": pipeline, "curve": curve,
                         "rate_param": "qp", "rate_value": qp, "kind": kind, "scope": scope, "kbps": rates[k],
                         "bbox_AP": ap[k]})  # fmt: skip
    return rows


def test_bd_rate_over_kbps_per_sequence_and_class() -> None:
    rates = {"s1": [400.0, 200.0, 100.0, 50.0], "A": [300.0, 150.0, 80.0, 40.0]}
    frame = pd.DataFrame(
        _video_rows("image_anchor", "image_anchor", [22, 27, 32, 37], rates, [70, 60, 45, 30])
        + _video_rows(
            "fusion_codec",
            "fusion_codec",
            [1, 2, 3, 4],
            {k: [0.8 * r for r in v] for k, v in rates.items()},
            [70, 60, 45, 30],
        )
    )
    bd = video_bd_frame(frame, anchor="image_anchor", metrics=["bbox_AP"])
    assert sorted(bd["scope"]) == ["A", "s1"] and set(bd["curve"]) == {"fusion_codec"}
    assert bd["bd_rate"].tolist() == pytest.approx([-20.0, -20.0])


def test_cttc_csv_of_a_video_curve_in_kbps(tmp_path: Path) -> None:
    rates = {"s1": [400.0, 200.0, 100.0, 50.0], "s2": [410.0, 210.0, 110.0, 55.0], "A": [405.0, 205.0, 105.0, 52.5]}
    frame = pd.DataFrame(_video_rows("image_anchor", "image_anchor", [22, 27, 32, 37], rates, [70, 60, 45.5, 30]))
    (path,) = write_video_cttc(frame, tmp_path, metric="bbox_AP", mode="fcm")
    lines = path.read_text().splitlines()
    assert lines[0] == ",Dataset,qp,bitrate (kbps),end_accuracy"
    assert lines[1:5] == ["0,s1,22,400.0,70.0", "1,s1,27,200.0,60.0", "2,s1,32,100.0,45.5", "3,s1,37,50.0,30.0"]
    assert lines[9:] == ["8,CLASS-A,0,405.0,70.0", "9,CLASS-A,1,205.0,60.0", "10,CLASS-A,2,105.0,45.5",
                         "11,CLASS-A,3,52.5,30.0"]  # fmt: skip  # gen_mpeg_cttc_csv.py: class rows' qp = 0..n-1
    with pytest.raises(ConfigError, match=r"4 expected"):
        write_video_cttc(frame[frame["rate_value"] != 37], tmp_path, metric="bbox_AP", mode="fcm")


def test_cttc_class_rows_carry_mpegs_names_and_the_pooled_accuracy(tmp_path: Path) -> None:
    """As gen_mpeg_cttc_csv.py: TVD's class row is ``TVD``, HiEve's ``HIEVE-1080P``; its end_accuracy is the
    class's pooled MOTA (compute_overall_mota), not the length-weighted mean of the sequences'."""
    rates = {"TVD-01": [400.0, 200.0, 100.0, 50.0], "A": [405.0, 205.0, 105.0, 52.5]}
    rows = _video_rows("image_anchor", "image_anchor", [22, 27, 32, 37], rates, [70, 60, 45.5, 30])
    for r in rows:
        r.update(MOTA=r.pop("bbox_AP"), cttc_class="{}" if r["scope"] == "A" else "CLASS-{}")
        if r["kind"] == "class":
            r.update(scope="tvd", MOTA_pooled=r["MOTA"] - 1.0)
    (path,) = write_video_cttc(pd.DataFrame(rows), tmp_path, metric="MOTA", mode="fcm")
    lines = path.read_text().splitlines()
    assert lines[1] == "0,TVD-01,22,400.0,70.0"
    assert lines[5:] == ["4,TVD,0,405.0,69.0", "5,TVD,1,205.0,59.0", "6,TVD,2,105.0,44.5", "7,TVD,3,52.5,29.0"]
    for r in rows:
        r["cttc_class"] = "HIEVE-{}"
        if r["kind"] == "class":
            r["scope"] = "1080p"
    (path,) = write_video_cttc(pd.DataFrame(rows), tmp_path, metric="MOTA", mode="fcm")
    assert path.read_text().splitlines()[5].startswith("4,HIEVE-1080P,0,")


def _features(k: int) -> FeatureSet:
    """A small pyramid (16 channels; input 64x128) whose values move from frame to frame."""
    g = torch.Generator().manual_seed(k)
    levels = {f"p{i}": torch.randn(16, 64 // 2**i, 128 // 2**i, generator=g) * (1 + 0.1 * k) for i in range(2, 6)}
    return FeatureSet(levels=levels, image_size=(64, 128), input_size=(64, 128))


@pytest.fixture(scope="module")
def feature_codec() -> FeatureSequenceCodec:
    return FeatureSequenceCodec(vvc=VvcSequenceCodec(preset="faster"), qp=22, minmax="level")


def test_feature_video_container_round_trip_and_rate(feature_codec: FeatureSequenceCodec) -> None:
    frames = [_features(k) for k in range(3)]
    coded = feature_codec.encode(iter(frames), fps=25, intra_period=2)
    # 4x4 channel grids: P2 (16x32 each) on the first shelf, P3, P4, P5 beside each other below it
    assert coded.frames == 3 and (coded.frame_height, coded.frame_width) == (96, 128)
    # tag, N, the 4 sizes, flags, L, per level index, C, H, W; 3 frames x 4 levels x (lo, hi) float32; blob length
    fields = [3, 64, 128, 64, 128, 1 | 2, 4] + [v for i in range(4) for v in (i, 16, 16 >> i, 32 >> i)]
    header = 1 + sum(len(_varint(v)) for v in fields)
    assert coded.side_bytes == header + 3 * 4 * 8 + len(_varint(coded.stream_bytes))
    assert len(coded.data) == coded.side_bytes + coded.stream_bytes
    decoded = list(feature_codec.decode(coded.data))
    assert len(decoded) == 3
    for original, got in zip(frames, decoded, strict=True):
        assert got.shapes() == original.shapes() and (got.image_size, got.input_size) == ((64, 128), (64, 128))
        for name in original:
            x, y = original[name].numpy(), got[name].numpy()
            assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.95  # QP 22 over 10-bit codes of Gaussian noise
    with pytest.raises(CodecError, match="truncated"):
        list(feature_codec.decode(coded.data[:40]))
    with pytest.raises(CodecError, match="unexpected trailing bytes"):
        list(feature_codec.decode(coded.data + b"\x00"))
    with pytest.raises(CodecError, match="written by codec 'feature_vvc'"):
        list(feature_codec.decode(bytes([0x21]) + coded.data[1:]))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def test_feature_video_refuses_a_frame_of_another_size(feature_codec: FeatureSequenceCodec) -> None:
    small = FeatureSet(levels={f"p{i}": torch.zeros(16, 32 // 2**i, 64 // 2**i) for i in range(2, 6)},
                       image_size=(32, 64), input_size=(32, 64))  # fmt: skip
    with pytest.raises(CodecError, match="frame 1 has levels .* one sequence has one frame size"):
        feature_codec.encode(iter([_features(0), small]), fps=25, intra_period=2)


def test_the_video_report_loads_without_torch() -> None:
    import subprocess
    import sys

    code = "import sys, vcm_eval.report.video; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing vcm_eval.report.video loads {out}"
