"""``run(cfg)``: one pipeline configuration over a dataset, or a suite of them, end to end.

A run's results folder is ``<paths.results>/<dataset>/<model>/<pipeline>/<params>-<key>``, where
``key`` hashes every config value that changes the results: the pipeline, dataset, model and eval
groups and the groups the codec declares it reads (``Codec.reads``), minus the fields their
schemas mark ``NOT_IN_KEY``, plus the model's fingerprint, the codec's version, the device and
the code revisions (``vcm_eval.revisions``). The same configuration always lands in the same
folder, so a rerun resumes it (``records.jsonl``) and a different one never overwrites it. The
folder holds ``config.yaml`` (resolved), ``provenance.json``, ``records.jsonl``, ``metrics.json``
and ``bitstreams/`` (``cache.bitstreams``: each image's bitstream, decoded again on a rerun).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from vcm_eval.data.datasets import EvalDataset, build_dataset
from vcm_eval.determinism import cpu_identity
from vcm_eval.device import resolve_device
from vcm_eval.engine.provenance import provenance, resumed_history
from vcm_eval.engine.store import RecordStore, read_json_object, recorded_ids, run_lock
from vcm_eval.errors import ConfigError
from vcm_eval.metrics.coco_eval import label_to_category, to_coco_results
from vcm_eval.metrics.evaluate import evaluate_records
from vcm_eval.pipelines.base import Pipeline, failed_ids, measure_pipeline
from vcm_eval.pipelines.build import build_pipeline, is_user_codec, pipeline_params, pipeline_reads
from vcm_eval.pipelines.cache import BitstreamStore
from vcm_eval.revisions import revision
from vcm_eval.utils.atomic import atomic_write, remove_stale_temps
from vcm_eval.utils.cli import note_failed_images
from vcm_eval.utils.components import Runtime, key_view
from vcm_eval.vision.complexity import pooled_kmac_per_pixel
from vcm_eval.vision.registry import build_task_model

KEY_GROUPS = ("pipeline", "dataset", "model", "eval")  # and the groups the codec reads


def key_parts(cfg: DictConfig, identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every value that changes a run's results, by group (what ``run_key`` hashes; kept in provenance.json).

    ``identity`` adds what the config alone does not pin down: the task model's fingerprint
    (weights and feature code), the codec's version (encoder build, checkpoint hash), the device
    and the evaluators' code revision, so another network, encoder or code never reuses old
    records. (``dataset.limit`` is in the key: a subset is another measurement.)
    """
    parts: dict[str, Any] = {g: key_view(cfg[g]) for g in (*KEY_GROUPS, *pipeline_reads(cfg))}
    parts["identity"] = {"evaluators": revision("evaluators"), **(identity or {})}
    return parts


def run_key(cfg: DictConfig, identity: dict[str, Any] | None = None) -> str:
    """Short hash of ``key_parts``: the same configuration lands in the same folder, another never does."""
    return hashlib.sha256(json.dumps(key_parts(cfg, identity), sort_keys=True, default=str).encode()).hexdigest()[:8]


_SAFE = re.compile(r"[^A-Za-z0-9._+=-]")
_MAX_VALUE = 24  # longer values (paths, zoo names) become a short hash: folder names stay readable


def params_tag(params: dict[str, Any]) -> str:
    """Readable folder name part: qp32, n4-z1.5 ... ('default' when there is nothing).

    Only safe characters (no path separators, colons or spaces): anything else becomes ``_``, and a
    value longer than 24 characters is shortened to ``h`` + 8 hex digits of its sha256 (the run
    key already tells configurations apart).
    """
    parts = []
    for k, v in params.items():
        text = str(v)
        if len(text) > _MAX_VALUE or _SAFE.search(text):
            text = (
                _SAFE.sub("_", text) if len(text) <= _MAX_VALUE else "h" + hashlib.sha256(text.encode()).hexdigest()[:8]
            )
        parts.append(f"{k}{text}")
    return "-".join(parts) or "default"


def run_dir_for(
    cfg: DictConfig, identity: dict[str, Any] | None = None, *, name: str = "", params: dict[str, Any] | None = None
) -> Path:
    """``<results>/<dataset>/<model>/<name>/<params>-<key>``; name and params default to the pipeline config's.

    (A user codec's runs pass the codec's name and keyword arguments: ``pipeline.codec`` is one dict.)
    """
    params = pipeline_params(cfg) if params is None else params
    tag = params_tag({k: v for k, v in params.items() if not isinstance(v, (dict, list, DictConfig))})
    return (
        Path(cfg.paths.results)
        / cfg.dataset.name
        / cfg.model.name
        / (name or cfg.pipeline.name)
        / f"{tag}-{run_key(cfg, identity)}"
    )


def _record(image_id: int, result: Any, label_map: dict[int, int], started: float) -> dict[str, Any]:
    """One image's line of ``records.jsonl``; ``wall_s`` covers loading to the finished record."""
    detections = to_coco_results(image_id, result.instances, label_map)
    return {
        "image_id": image_id,
        "bits": result.bits,
        "pixels": result.pixels,
        "encode_s": result.encode_s,
        "decode_s": result.decode_s,
        "task_s": result.task_s,
        "features_s": result.features_s,
        "wall_s": time.perf_counter() - started,
        **result.extra,
        "detections": detections,
    }


def process_dataset(
    pipeline: Pipeline,
    dataset: EvalDataset,
    store: RecordStore,
    label_map: dict[int, int],
    *,
    workers: int,
    progress: bool,
    bitstreams: BitstreamStore | None = None,
) -> None:
    """Run every image not yet in ``store`` through ``pipeline``, ``workers`` images at a time.

    Images in flight at once overlap the codec's external process with the network's threads;
    records are appended as images finish (their order does not matter). With ``bitstreams``,
    each bitstream is stored before its record and a stored one is decoded, not re-encoded.
    """
    todo = [e for e in dataset.images if int(e["id"]) not in store]
    bar = tqdm(
        total=len(dataset),
        initial=len(dataset) - len(todo),
        desc=f"{pipeline.name} {params_tag(pipeline.params)}",
        unit="img",
        disable=not progress,
    )

    def one(entry: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        sample = dataset.load(entry)
        return _record(sample.image_id, pipeline.process(sample, bitstreams=bitstreams), label_map, started)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: set[Future[dict[str, Any]]] = set()
        queue = iter(todo)
        for entry in queue:
            pending.add(pool.submit(one, entry))
            if len(pending) >= max(1, workers):
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    store.append(fut.result())
                    bar.update()
        for fut in pending:
            store.append(fut.result())
            bar.update()
    bar.close()


def run_single(cfg: DictConfig, *, timings: dict[str, float] | None = None) -> dict[str, Any]:
    """One pipeline configuration over the dataset; returns its summary row.

    ``timings``, if given, receives the wall seconds of each phase (``setup``: dataset, model and
    pipeline; ``images``: the per-image loop; ``evaluate``; ``write``): benchmarks read it.
    """
    if cfg.threads < 1 or cfg.workers < 1:
        raise ConfigError(f"threads={cfg.threads} and workers={cfg.workers} must both be >= 1")
    if cfg.get("shard"):
        raise ConfigError(f"shard={cfg.shard} splits a video run's sequences between jobs; an image run has none: "
                          "leave shard empty (a sweep's runs are separate jobs already)")  # fmt: skip
    clock = {"start": time.perf_counter()}
    torch.set_num_threads(cfg.threads)
    dataset = build_dataset(cfg.dataset, data_dir=Path(cfg.paths.data), progress=cfg.progress)
    device = resolve_device(cfg.device)
    model = build_task_model(cfg.model, device=str(device))
    runtime = Runtime(threads=cfg.threads, device=str(device), data_dir=Path(cfg.paths.data), progress=cfg.progress)
    pipeline = build_pipeline(cfg, model, runtime)  # validates parameters before anything is written
    folder: dict[str, Any] = {"name": pipeline.name, "params": pipeline.params} if is_user_codec(cfg) else {}
    identity = {"model": model.fingerprint, "device": device.type, **pipeline.provenance()}
    if device.type == "cpu":
        identity.update(cpu_identity(cfg.threads))  # the CPU kernels' instruction set and threads move features
    run_dir = run_dir_for(cfg, identity, **folder)
    done = finished_row(run_dir, dataset.image_ids)
    if done is not None:  # a rerun of a sweep skips what is done
        print(f"done already, skipped: {run_dir}")
        note_failed_images(run_dir, list(done.get("failed_images", [])))
        return done
    label_map = label_to_category(model.class_names, {c.name: c.coco_id for c in dataset.categories})
    with run_lock(run_dir), RecordStore(run_dir / "records.jsonl") as store:
        remove_stale_temps(run_dir)  # temp files of a killed atomic_write (we hold the lock)
        atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        extra = {"model": model.fingerprint, "device": str(device), **pipeline.provenance(),
                 **(pipeline.codec.tool_versions() if pipeline.codec else {}), "command": sys.argv,
                 "curve_version": pipeline.codec.curve_version() if pipeline.codec else "",
                 "records_at_start": len(store.records), "key": key_parts(cfg, identity)}  # fmt: skip
        extra["history"] = resumed_history(read_json_object(run_dir / "provenance.json"))
        atomic_write(run_dir / "provenance.json", json.dumps(provenance(extra=extra), indent=2))
        bitstreams = BitstreamStore(run_dir / "bitstreams") if cfg.cache.bitstreams else None
        clock["setup"] = time.perf_counter()
        process_dataset(
            pipeline, dataset, store, label_map, workers=cfg.workers, progress=cfg.progress, bitstreams=bitstreams
        )
        clock["images"] = time.perf_counter()
        wanted = set(dataset.image_ids)
        records = [r for i, r in store.records.items() if i in wanted]
        # A failed image (decode_error) is a record without detections: scored, never left out.
        metrics: dict[str, Any] = dict(evaluate_records(dataset, records, cfg.eval))
        failed = failed_ids(records)
        metrics.update({"decode_failures": len(failed), **({"failed_images": failed} if failed else {})})
        metrics.update(run_complexity(pipeline, dataset, cfg.eval.complexity_images, bitstreams))
        knobs = (
            {"rate_params": list(pipeline.codec.rate_params), "sweep_params": list(pipeline.codec.sweep_params)}
            if pipeline.codec
            else {}
        )
        row = {"pipeline": pipeline.name, **pipeline.params, **metrics, **knobs, "run_dir": str(run_dir)}
        clock["evaluate"] = time.perf_counter()
        atomic_write(run_dir / "metrics.json", json.dumps(row, indent=2))
        clock["write"] = time.perf_counter()
    note_failed_images(run_dir, failed)
    if timings is not None:
        marks = list(clock.items())
        timings.update({name: t - marks[i][1] for i, (name, t) in enumerate(marks[1:])})
    return row


def run_complexity(
    pipeline: Pipeline, dataset: EvalDataset, images: int, bitstreams: BitstreamStore | None
) -> dict[str, float]:
    """kMAC per pixel of each stage over the first ``images`` images (``kmac_per_pixel_<stage>``; none for 0).

    A stage that is not a network (VVC, the quantizers) is left out rather than written as 0.
    """
    if images <= 0:
        return {}
    counted = [
        measure_pipeline(pipeline, dataset.load(entry), bitstreams=bitstreams) for entry in dataset.images[:images]
    ]
    return {
        f"kmac_per_pixel_{stage}": value for stage, value in pooled_kmac_per_pixel(counted).items() if value is not None
    }


def finished_row(run_dir: Path, image_ids: list[int]) -> dict[str, Any] | None:
    """The run's metrics row when it is complete for exactly these images, else ``None``.

    Complete = ``metrics.json`` evaluated on as many images as asked and a record for each of
    them (``dataset.limit`` keeps the first N ids, so the count pins the set down).
    """
    row = read_json_object(run_dir / "metrics.json")
    if row is None or row.get("images") != float(len(image_ids)):
        return None
    return row if set(image_ids) <= recorded_ids(run_dir / "records.jsonl") else None
