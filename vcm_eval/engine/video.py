"""``run_video(cfg)``: one pipeline configuration over every sequence of a video dataset (docs/video.md).

``python -m vcm_eval dataset=<video dataset> pipeline=<name>`` lands here (``is_video``): the same command,
config and Hydra launchers (``-m`` sweeps, ``hydra/launcher=slurm``) as an image run. The run folder is
keyed like an image run's, ``<paths.results>/<dataset>/<model>/<pipeline>/<params>-<key>``, the key hashing
the pipeline, dataset, model, eval and tracker groups and the groups the video pipeline reads
(``vvc`` and ``vvc_sequence`` for the anchors, which code whole sequences; the codec's ``reads`` for the
frame-by-frame pipelines), minus ``NOT_IN_KEY`` fields, plus the model's fingerprint, the codec's version,
the device (and CPU identity) and the code revisions of the evaluators and the video code. It holds::

    config.yaml, provenance.json      as an image run's (provenance's ``key``: what the key hashed)
    sequences/<name>/frames.jsonl     one record per frame: bits (frame codecs), times, detections
    sequences/<name>/stream.bin|json  a sequence pipeline's kept stream; bitstreams/ a frame codec's
    sequences/<name>/tracks.txt       the tracker's tracks (MOTChallenge format), when the sequence has tracks
    sequences/<name>/sequence.json    the finished sequence: rate (kbps, bpp), AP, MOTA, times
    video.json                        the run: per-sequence rows, per-class rows (MPEG's length-weighted
                                      average, the pooled values beside), the whole set

Resuming: a sequence with ``sequence.json`` is done; a sequence killed half way keeps its frames' records
and its kept stream (or its frames' bitstreams), so a rerun decodes the stream again and runs the network
only on the frames without a record. A sweep over QPs is one run folder per QP, each resumable on its own.

Sharing one run between jobs (``shard=k/n``, e.g. a SLURM array over sequences for VTM's hours-long
sequences): job k codes only its share of the sequences (``shard_of``: the largest first, each to the
least loaded job), each sequence under its own lock (``sequences/<name>/.lock``), and the job that finds
every sequence finished writes ``video.json``; the others return what is pending. The class values need
all sequences, hence one run folder, not one per sequence; ``shard`` is not in the key.
The image runs' files (``metrics.json``, ``records.jsonl``) are not written, so the image report never
mistakes a video run for an image run; ``python -m vcm_eval.report.video`` reads these folders.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from vcm_eval.data.datasets import build_dataset
from vcm_eval.data.video.base import VideoDataset, VideoSequence
from vcm_eval.data.video.config import VIDEO_DATASET_SCHEMAS
from vcm_eval.determinism import cpu_identity
from vcm_eval.device import resolve_device
from vcm_eval.engine.provenance import package_versions, provenance, resumed_history
from vcm_eval.engine.run import KEY_GROUPS, params_tag
from vcm_eval.engine.store import RecordStore, read_json_object, run_lock
from vcm_eval.errors import ConfigError, VcmEvalError
from vcm_eval.metrics.coco_eval import label_to_category, to_coco_results
from vcm_eval.metrics.tracking import check_tracker, mot_accumulator, mot_scores, mot_text, track, tracked_categories
from vcm_eval.metrics.video import (
    COMPLEXITY,
    COMPLEXITY_PIXELS,
    class_row,
    detection_ap,
    pooled_detection,
    sequence_rates,
)
from vcm_eval.pipelines.base import ImageResult, failed_ids
from vcm_eval.pipelines.video import SequenceCoding, VideoPipeline, build_video_pipeline
from vcm_eval.revisions import revision
from vcm_eval.utils.atomic import atomic_write, remove_stale_temps
from vcm_eval.utils.cli import note_failed_images
from vcm_eval.utils.components import Runtime, key_view
from vcm_eval.vision.complexity import StageComplexity, pooled_kmac_per_pixel
from vcm_eval.vision.registry import build_task_model

VIDEO_GROUPS = (*KEY_GROUPS, "tracker")  # and the groups the video pipeline reads
RESULT = "video.json"
SHARED_WAIT_S = 120.0  # how long a job waits for another job's turn at the run's own files (seconds)
_SAFE = re.compile(r"[^A-Za-z0-9._+=-]")


def is_video(cfg: DictConfig) -> bool:
    """Whether ``cfg.dataset`` is a video dataset kind (decided from the config alone, nothing loaded)."""
    return str(cfg.dataset.get("kind", "")) in VIDEO_DATASET_SCHEMAS


def video_key_parts(cfg: DictConfig, reads: Sequence[str], identity: dict[str, Any],
                    params: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """What a video run's key hashes, by group (kept in provenance.json as ``key``; see the module docstring).

    A run at a test-condition rate point (``vvc_sequence.rate_point``, left out of that group's part) files it in
    the pipeline part in place of the ``pipeline.qp`` it replaces: the pipeline part holds a curve's parameters,
    so runs at other points are other rate points of one curve, not other curves (``report.identity``).
    """
    parts: dict[str, Any] = {g: key_view(cfg[g]) for g in (*VIDEO_GROUPS, *reads)}
    if params and "rate_point" in params:
        parts["pipeline"] = {**{k: v for k, v in parts["pipeline"].items() if k != "qp"},
                             "rate_point": params["rate_point"]}  # fmt: skip
    parts["identity"] = {"evaluators": revision("evaluators"), "video": revision("video"), **identity}
    return parts


def video_run_dir(cfg: DictConfig, parts: dict[str, Any], name: str, params: dict[str, Any]) -> Path:
    """``<results>/<dataset>/<model>/<name>/<params>-<key>``, the key a short hash of ``parts``."""
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]
    tag = params_tag({k: v for k, v in params.items() if not isinstance(v, (dict, list, DictConfig))})
    return Path(cfg.paths.results) / cfg.dataset.name / cfg.model.name / name / f"{tag}-{key}"


def build_video_dataset(cfg: DictConfig) -> VideoDataset:
    """The ``VideoDataset`` of ``cfg.dataset``, built as every dataset is (the synthetic video made on first use)."""
    return build_dataset(cfg.dataset, data_dir=Path(cfg.paths.data), progress=cfg.progress, kind=VideoDataset)


def shard_of(dataset: Sequence[VideoSequence], shard: str) -> list[VideoSequence]:
    """The sequences job ``k`` of ``n`` codes (``shard="k/n"``; ``""``: all): the sequences by cost (frames x
    pixels) from the largest, each to the job with the least cost so far (ties: the lower job), so n jobs take
    about equal time. Deterministic: every job computes the same split from the same dataset.

    Raises:
        ConfigError: ``shard`` is not ``k/n`` with 1 <= k <= n.
    """
    if not shard:
        return list(dataset)
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise ConfigError(f"shard={shard!r} must be k/n with 1 <= k <= n (shard=2/4: the 2nd of 4 jobs sharing the "
                          "run's sequences); leave it empty to code every sequence")  # fmt: skip
    k, n = int(match[1]), int(match[2])
    loads, mine = [0] * n, set()
    for seq in sorted(dataset, key=lambda s: -s.frame_count * s.width * s.height):
        job = loads.index(min(loads))
        loads[job] += seq.frame_count * seq.width * seq.height
        if job == k - 1:
            mine.add(seq.name)
    return [s for s in dataset if s.name in mine]


def sequence_folder(run_dir: Path, seq: VideoSequence) -> Path:
    """``sequences/<name>`` (a name's unsafe characters as ``_``)."""
    return run_dir / "sequences" / _SAFE.sub("_", seq.name)


def finished_video(run_dir: Path, dataset: VideoDataset) -> dict[str, Any] | None:
    """The run's result when ``video.json`` covers exactly these sequences and frame counts, else None."""
    row = read_json_object(run_dir / RESULT)
    if row is None:
        return None
    have = [(r.get("sequence"), r.get("frames")) for r in row.get("sequences", [])]
    return row if have == [(s.name, float(s.frame_count)) for s in dataset] else None


def frame_record(index: int, result: ImageResult, label_map: dict[int, int]) -> dict[str, Any]:
    """One frame's line of ``frames.jsonl`` (``image_id`` = the frame index, the COCO ground truth's image id).
    Detections are boxes only: MPEG's video ground truth has no masks."""
    detections = [{k: v for k, v in d.items() if k != "segmentation"}
                  for d in to_coco_results(index, result.instances, label_map)]  # fmt: skip
    return {"image_id": index, "bits": result.bits, "pixels": result.pixels, "encode_s": result.encode_s,
            "decode_s": result.decode_s, "task_s": result.task_s, "features_s": result.features_s, **result.extra,
            "detections": detections}  # fmt: skip


def failed_frames(result: dict[str, Any]) -> list[str]:
    """``<sequence>/<frame>`` of every frame of a finished run whose stream did not decode."""
    return [f"{row['sequence']}/{k}" for row in result.get("sequences", []) for k in row.get("failed_frames", [])]


def _mean(records: list[dict[str, Any]], key: str) -> float:
    return sum(float(r.get(key, 0.0)) for r in records) / len(records)


def complexity_fields(counted: list[StageComplexity]) -> dict[str, float]:
    """``kmac_per_pixel_<stage>`` of the counted frames (the stages that are networks) and the pixels counted."""
    if not counted:
        return {}
    stages = {f"{COMPLEXITY}{k}": v for k, v in pooled_kmac_per_pixel(counted).items() if v is not None}
    return {**stages, COMPLEXITY_PIXELS: float(sum(c.pixels for c in counted))}


def sequence_result(seq: VideoSequence, records: list[dict[str, Any]], coding: SequenceCoding, folder: Path,
                    tracker: Any, categories: set[int], counted: list[StageComplexity] | None = None,
                    ) -> dict[str, Any]:  # fmt: skip
    """A finished sequence's row: its rate from the bytes, its AP, its MOTA / IDF1 when it has tracks, times, and
    the kMAC per pixel of each stage over the ``counted`` frames."""
    frames = len(records)
    bits = coding.stream_bits if coding.stream_bits is not None else sum(int(r["bits"]) for r in records)
    row: dict[str, Any] = {"sequence": seq.name, "seq_class": seq.seq_class, "width": seq.width,
                           "height": seq.height, "fps": seq.fps,
                           **sequence_rates(bits, frames, seq.fps, seq.width * seq.height)}  # fmt: skip
    detections = [d for r in records for d in r["detections"]]
    row.update(detection_ap(seq.coco(), detections, list(range(frames))))
    truth = seq.mot()
    if truth is not None:
        tracks = track([r["detections"] for r in records], tracker, categories)
        atomic_write(folder / "tracks.txt", mot_text(tracks))
        acc = mot_accumulator(truth, tracks, frames, match_iou=tracker.match_iou)
        row.update(mot_scores([acc], [seq.name])[seq.name])
    failed = failed_ids(records)  # scored without detections
    row["decode_failures"] = len(failed)
    if failed:
        row["failed_frames"] = failed
    if coding.side_bytes:
        row["side_bytes"] = coding.side_bytes
    if any("header_bytes" in r for r in records):
        row["header_bytes"] = sum(int(r.get("header_bytes", 0)) for r in records)
    encode = coding.encode_s / frames if coding.stream_bits is not None else _mean(records, "encode_s")
    row.update({"encode_s": encode, **{k: _mean(records, k) for k in ("decode_s", "task_s", "features_s")}})
    row.update(coding.extra)
    row.update(complexity_fields(counted or []))
    return row


def run_sequence(pipeline: VideoPipeline, seq: VideoSequence, folder: Path, label_map: dict[int, int], *,
                 tracker: Any, categories: set[int], workers: int, progress: bool,
                 complexity_frames: int = 0) -> dict[str, Any]:  # fmt: skip
    """One sequence through the pipeline, resumed where a previous session stopped; returns its row (with the
    complexity of its first ``complexity_frames`` frames, ``eval.complexity_images``; none for 0).

    Raises:
        VcmEvalError: another process is coding this sequence (its lock is held).
    """
    done = finished_sequence(folder, seq)
    if done is not None:
        return done
    with run_lock(folder):
        return _code_sequence(pipeline, seq, folder, label_map, tracker=tracker, categories=categories,
                              workers=workers, progress=progress, complexity_frames=complexity_frames)  # fmt: skip


def finished_sequence(folder: Path, seq: VideoSequence) -> dict[str, Any] | None:
    """The sequence's row when ``sequence.json`` holds all its frames, else None."""
    done = read_json_object(folder / "sequence.json")
    return done if done is not None and done.get("frames") == float(seq.frame_count) else None


def _code_sequence(pipeline: VideoPipeline, seq: VideoSequence, folder: Path, label_map: dict[int, int], *,
                   tracker: Any, categories: set[int], workers: int, progress: bool,
                   complexity_frames: int) -> dict[str, Any]:  # fmt: skip
    done = finished_sequence(folder, seq)  # another job may have finished it while this one waited
    if done is not None:
        return done
    bar = tqdm(total=seq.frame_count, desc=f"{pipeline.name} {params_tag(pipeline.params)} {seq.name}", unit="frame",
               disable=not progress)  # fmt: skip
    with RecordStore(folder / "frames.jsonl") as store:
        remove_stale_temps(folder)
        recorded = {k for k in store.records if k < seq.frame_count}
        bar.update(len(recorded))

        def on_frame(index: int, result: ImageResult) -> None:
            store.append(frame_record(index, result, label_map))
            bar.update()

        coding = pipeline.run_sequence(seq, done=recorded, on_frame=on_frame, folder=folder, workers=workers)
        missing = [k for k in range(seq.frame_count) if k not in store.records]
        if missing:
            raise VcmEvalError(f"{seq.name}: frames {missing[:5]} got no record; rerun to resume the sequence")
        records = [store.records[k] for k in range(seq.frame_count)]
    bar.close()
    counted = pipeline.complexity(seq, folder, min(complexity_frames, seq.frame_count)) if complexity_frames > 0 else []
    row = sequence_result(seq, records, coding, folder, tracker, categories, counted)
    atomic_write(folder / "sequence.json", json.dumps(row, indent=2))
    return row


def _records(folder: Path, frames: int) -> list[dict[str, Any]]:
    with RecordStore(folder / "frames.jsonl") as store:
        return [store.records[k] for k in range(frames)]


def summarize(dataset: VideoDataset, rows: list[dict[str, Any]], run_dir: Path, tracker: Any,
              categories: set[int]) -> dict[str, Any]:  # fmt: skip
    """Per class (``VideoDataset.by_class``) and for the whole set: MPEG's length-weighted average
    (``metrics.video.class_row``) with CompressAI-Vision's pooled AP / MOTA beside it (``*_pooled``)."""
    by_name = {r["sequence"]: r for r in rows}
    records = {s.name: _records(sequence_folder(run_dir, s), s.frame_count) for s in dataset}

    def scope(seqs: list[VideoSequence]) -> dict[str, Any]:
        out: dict[str, Any] = class_row([by_name[s.name] for s in seqs])
        qps = {by_name[s.name].get("qp") for s in seqs}
        if len(qps) == 1 and None not in qps:  # a class coded at one QP (MPEG's tables give one per class)
            out["qp"] = qps.pop()
        pooled = pooled_detection([(s.coco(), [d for r in records[s.name] for d in r["detections"]]) for s in seqs])
        out.update({f"{k}_pooled": v for k, v in pooled.items()})
        truths = [(s, s.mot()) for s in seqs]
        if all(t is not None for _, t in truths):
            accs = [
                mot_accumulator(
                    t,
                    track([r["detections"] for r in records[s.name]], tracker, categories),
                    s.frame_count,
                    match_iou=tracker.match_iou,
                )
                for s, t in truths
                if t is not None
            ]
            overall = mot_scores(accs, [s.name for s in seqs])["OVERALL"]
            out.update({"MOTA_pooled": overall["MOTA"], "IDF1_pooled": overall["IDF1"]})  # fmt: skip
        return out

    classes = {name: {"seq_class": name, **scope(seqs)} for name, seqs in dataset.by_class().items()}
    return {"sequences": rows, "classes": list(classes.values()), "all": {"seq_class": "all", **scope(list(dataset))}}


def run_video(cfg: DictConfig, *, timings: dict[str, float] | None = None) -> dict[str, Any]:
    """One pipeline configuration over every sequence of ``cfg.dataset``; returns the run's result (``video.json``).

    ``timings``, if given, receives the wall seconds of ``setup``, ``sequences`` (coding and networks),
    ``evaluate`` (classes and pooled values) and ``write``.
    """
    if cfg.threads < 1 or cfg.workers < 1:
        raise ConfigError(f"threads={cfg.threads} and workers={cfg.workers} must both be >= 1")
    clock = {"start": time.perf_counter()}
    torch.set_num_threads(cfg.threads)
    check_tracker(cfg.tracker)
    dataset = build_video_dataset(cfg)
    device = resolve_device(cfg.device)
    model = build_task_model(cfg.model, device=str(device))
    runtime = Runtime(threads=cfg.threads, device=str(device), data_dir=Path(cfg.paths.data), progress=cfg.progress)
    pipeline = build_video_pipeline(cfg, model, runtime)  # parameters checked before anything is written
    names = {c.name: c.coco_id for c in dataset.categories}
    label_map = label_to_category(model.class_names, names)
    categories = tracked_categories(list(cfg.tracker.categories or cfg.dataset.get("tracked", [])), names)
    identity: dict[str, Any] = {"model": model.fingerprint, "device": device.type, **pipeline.provenance()}
    if device.type == "cpu":
        identity.update(cpu_identity(cfg.threads))
    pipeline.check(dataset)  # per-sequence settings (a test-condition QP), before anything is written
    parts = video_key_parts(cfg, pipeline.reads, identity, pipeline.params)
    run_dir = video_run_dir(cfg, parts, pipeline.name, pipeline.params)
    finished = finished_video(run_dir, dataset)
    if finished is not None:
        print(f"done already, skipped: {run_dir}")
        return finished
    mine = shard_of(dataset.sequences, str(cfg.shard))  # a bad shard fails before anything is written
    with run_lock(run_dir, wait=SHARED_WAIT_S):  # the jobs sharing the run take turns at its files
        remove_stale_temps(run_dir)
        atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        extra = {"model": model.fingerprint, "device": str(device), **pipeline.provenance(),
                 **pipeline.tool_versions(), "command": sys.argv, "curve_version": pipeline.curve_version(),
                 "key": parts, "video": True,
                 "video_packages": package_versions(("motmetrics", "norfair", "filterpy"))}  # fmt: skip
        extra["history"] = resumed_history(read_json_object(run_dir / "provenance.json"))
        atomic_write(run_dir / "provenance.json", json.dumps(provenance(extra=extra), indent=2))
    clock["setup"] = time.perf_counter()
    for seq in mine:
        run_sequence(pipeline, seq, sequence_folder(run_dir, seq), label_map, tracker=cfg.tracker,
                     categories=categories, workers=cfg.workers, progress=cfg.progress,
                     complexity_frames=int(cfg.eval.complexity_images))  # fmt: skip
    clock["sequences"] = time.perf_counter()
    head = {
        "pipeline": pipeline.name,
        **pipeline.params,
        "rate_params": list(pipeline.rate_params),
        "sweep_params": list(pipeline.sweep_params),
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
    }
    done = {s.name: finished_sequence(sequence_folder(run_dir, s), s) for s in dataset}
    pending = [name for name, row in done.items() if row is None]
    if pending:  # another job's share is still running: that job writes video.json
        return {**head, "shard": str(cfg.shard), "pending": pending, "run_dir": str(run_dir),
                "sequences": [row for row in done.values() if row is not None]}  # fmt: skip
    with run_lock(run_dir, wait=SHARED_WAIT_S):
        finished = finished_video(run_dir, dataset)  # the last two jobs may finish together: one summary
        if finished is not None:
            note_failed_images(run_dir, failed_frames(finished))
            return finished
        rows = [row for row in done.values() if row is not None]
        result = {**head, **summarize(dataset, rows, run_dir, cfg.tracker, categories), "run_dir": str(run_dir)}
        clock["evaluate"] = time.perf_counter()
        atomic_write(run_dir / RESULT, json.dumps(result, indent=2))
        clock["write"] = time.perf_counter()
    note_failed_images(run_dir, failed_frames(result))
    if timings is not None:
        marks = list(clock.items())
        timings.update({name: t - marks[i][1] for i, (name, t) in enumerate(marks[1:])})
    return result
