"""Per-sequence results of a video run and MPEG's class-wise aggregation (docs/video.md).

A sequence's **rate** comes from real bytes: ``bits`` (the sequence's stream, or its frames' bytes summed),
``kbps`` = bits / (frames / fps) / 1000 (MPEG's video unit: 1 kbit = 1000 bits, at the sequence's frame
rate) and ``bpp`` = bits / (frames x the original frame's pixels). Its **detection accuracy** is COCO AP
and AP50 (pycocotools' ``COCOeval``, bbox) on the sequence's own ground truth (``VideoSequence.coco()``,
image id = frame index), in percent.

**Classes** (SFU's AB / C / D, HiEve's 1080p / 720p): MPEG's FCM Excel template gives a class the
*length-weighted average* of its sequences' values, the length being the sequence's duration in seconds
(``num_of_coded_frame / fps``, the ``length`` column of CompressAI-Vision's ``gen_mpeg_cttc_csv.py``).
``class_row`` computes exactly that for every metric, so a class's kbps is its sequences' bits over
their total duration. CompressAI-Vision's CTTC script computes the class's *accuracy* differently, by
pooling the class's detections into one COCO evaluation (``compute_overall_mAP``, image ids offset per
sequence) or its tracks into one MOTA (``compute_overall_mota``); ``pooled_detection`` reproduces that
and the run records it beside the template's value (``bbox_AP_pooled``, ``MOTA_pooled``), but the
reported class value is the template's: it is what the template MPEG's results go into computes, it
weighs each sequence by its duration whatever its object count (a crowded sequence does not dominate),
and it needs only the per-sequence numbers a contribution reports.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

SUMMED = ("bits", "frames", "seconds")  # what a class's rates add up from
# the accuracy columns a class averages (length-weighted); counts of tracking events add up
METRICS = ("bbox_AP", "bbox_AP50", "MOTA", "IDF1")
COUNTS = ("IDSW", "FP", "FN", "GT")
COMPLEXITY = "kmac_per_pixel_"  # the prefix of each stage's kMAC per pixel (``vcm_eval.vision.complexity``)
COMPLEXITY_PIXELS = "complexity_pixels"  # the pixels a sequence's complexity was counted over


def kbps(bits: float, frames: int, fps: float) -> float:
    """kbit/s at the sequence's frame rate (1 kbit = 1000 bits)."""
    return bits / (frames / fps) / 1000.0


def _coco(truth: Mapping[str, Any]) -> COCO:
    gt = COCO()
    gt.dataset = dict(truth)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def detection_ap(truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]],
                 image_ids: Sequence[int]) -> dict[str, float]:  # fmt: skip
    """``bbox_AP`` and ``bbox_AP50`` (percent) of COCO results ``detections`` on the COCO ground truth ``truth``,
    over ``image_ids`` (pycocotools, bbox); NaN when those images hold no ground-truth box (nothing to score),
    0 when there are boxes and no detection."""
    ids = set(image_ids)
    if not any(a["image_id"] in ids for a in truth.get("annotations", [])):
        return {"bbox_AP": math.nan, "bbox_AP50": math.nan}
    dets = [{k: v for k, v in d.items() if k != "segmentation"} for d in detections if d["image_id"] in ids]
    if not dets:
        return {"bbox_AP": 0.0, "bbox_AP50": 0.0}
    gt = _coco(truth)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.imgIds = sorted(ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"bbox_AP": 100.0 * max(0.0, float(ev.stats[0])), "bbox_AP50": 100.0 * max(0.0, float(ev.stats[1]))}


def pooled_detection(sequences: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]]) -> dict[str, float]:
    """CompressAI-Vision's class-wise mAP: the sequences' ground truths and detections pooled into one COCO
    evaluation, image ids offset per sequence (``compute_overall_mAP``), categories from the first.

    Args:
        sequences: per sequence, (its COCO ground truth, its detections).
    """
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    dets: list[dict[str, Any]] = []
    offset = 0
    for truth, detections in sequences:
        ids = {int(im["id"]): offset + k for k, im in enumerate(truth["images"])}
        images += [{**im, "id": ids[int(im["id"])]} for im in truth["images"]]
        anns += [{**a, "id": len(anns) + i + 1, "image_id": ids[int(a["image_id"])]}
                 for i, a in enumerate(truth["annotations"])]  # fmt: skip
        dets += [{**d, "image_id": ids[int(d["image_id"])]} for d in detections if int(d["image_id"]) in ids]
        offset += len(ids)
    categories = sequences[0][0]["categories"] if sequences else []
    pooled = {"images": images, "annotations": anns, "categories": categories}
    return detection_ap(pooled, dets, [im["id"] for im in images])


def sequence_rates(bits: int, frames: int, fps: float, pixels: int) -> dict[str, float]:
    """The rate of a sequence from its bits: ``bits``, ``kbps``, ``bpp`` and what classes add up from."""
    return {"bits": float(bits), "frames": float(frames), "seconds": frames / fps, "pixels": float(pixels),
            "kbps": kbps(bits, frames, fps), "bpp": bits / (frames * pixels)}  # fmt: skip


def length_weighted(values: Sequence[float], seconds: Sequence[float]) -> float:
    """sum(seconds_i x value_i) / sum(seconds_i) over the values that are numbers (NaN: a sequence with nothing
    to score leaves the average, with its weight); NaN when none is."""
    pairs = [(v, s) for v, s in zip(values, seconds, strict=True) if not math.isnan(v)]
    total = sum(s for _, s in pairs)
    return sum(v * s for v, s in pairs) / total if total > 0 else math.nan


def class_row(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """One class from its sequences' result rows (``sequence_rates`` + metrics): the FCM template's rule.

    Rates from sums (kbps = the sum of bits / the sum of seconds / 1000, which is the seconds-weighted average
    of the sequences' kbps; bpp = the sum of bits / the sum of frames x pixels); each of ``metrics`` the
    seconds-weighted average of the sequences' values (``length_weighted``); tracking event counts summed.
    ``sequences`` counts the sequences. Each stage's kMAC per pixel is pooled as CompressAI-Vision pools it, all
    MACs over all pixels counted (``pooled_complexity``).
    """
    seconds = [float(r["seconds"]) for r in rows]
    out: dict[str, float] = {k: sum(float(r[k]) for r in rows) for k in SUMMED}
    out["sequences"] = float(len(rows))
    out["kbps"] = out["bits"] / out["seconds"] / 1000.0
    out["bpp"] = out["bits"] / sum(float(r["frames"]) * float(r["pixels"]) for r in rows)
    for key in metrics:
        if any(key in r for r in rows):
            out[key] = length_weighted([float(r.get(key, math.nan)) for r in rows], seconds)
    for key in COUNTS:
        if all(key in r for r in rows):
            out[key] = sum(float(r[key]) for r in rows)
    out.update(pooled_complexity(rows))
    return out


def pooled_complexity(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Each stage's kMAC per pixel of several sequences: their MACs over their pixels counted (each row's
    ``kmac_per_pixel_<stage>`` weighted by its ``complexity_pixels``); a stage only where every row has it."""
    if not rows or not all(COMPLEXITY_PIXELS in r for r in rows):
        return {}
    pixels = sum(float(r[COMPLEXITY_PIXELS]) for r in rows)
    stages = [k for k in rows[0] if k.startswith(COMPLEXITY) and all(k in r for r in rows)]
    out = {k: sum(float(r[k]) * float(r[COMPLEXITY_PIXELS]) for r in rows) / pixels for k in stages}
    return {COMPLEXITY_PIXELS: pixels, **out} if out else {}
