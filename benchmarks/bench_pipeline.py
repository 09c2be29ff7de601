"""Per-image time and peak memory of one pipeline, framework against its limit.

    python -m benchmarks.bench_pipeline pipeline=quant [--case synthetic,2048x1024] [--images 4]
        [--workers 1] [--warm] [any Hydra override, e.g. model.weights=null pipeline.z=1.0]

The *limit* is what the codec and the network cost on their own: the ``bare`` pass calls them
directly on images already in memory (features, encode, decode, rest of the network; for image
codecs the whole network on the decoded image), with no dataset, records, evaluation or files.
The *framework* pass is ``vcm_eval.engine.run.run_single`` on the same config and images, from a fresh
results folder and an empty feature cache (the first point of a sweep); ``--warm`` adds a pass
with the cache filled (every later point of a sweep).

Reported per image (``results/benchmarks/pipeline_<pipeline>.csv``): features, encode, decode,
network (rest) seconds, the framework's own wall time per image (``wall_s``: loading, coding,
network, record building) and overhead = wall - stages, and the peak RSS of the process tree
(this process + FFmpeg children, sampled every 20 ms) while that image ran. Per configuration
(``.json``): the ratio of the framework's wall time to the limit (target <= 1.10), split into
the per-image loop and the one-off setup (dataset, model, pipeline) and evaluation, in wall
and in CPU seconds (process + children: robust when other jobs share the machine).

Cases: ``synthetic`` = the default 512 x 256 synthetic images at the model's 256/512 test size;
``2048x1024`` = synthetic images drawn at Cityscapes size with ``model.min_size=1024
model.max_size=2048`` so the network sees them at full resolution.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "synthetic": [],
    "2048x1024": ["dataset.height=1024", "dataset.width=2048", "model.min_size=1024", "model.max_size=2048"],
}


class PeakMemory:
    """Peak RSS (MB) of this process plus all its children, sampled every ``period`` s.

    ``mark()`` starts a new window and returns the peak of the last one; ``peak`` is the
    maximum since construction. Children are found with psutil on every sample, so a short
    FFmpeg run is caught if it lives longer than a few sampling periods (its exact peak is also
    in ``getrusage(RUSAGE_CHILDREN).ru_maxrss``, reported separately).
    """

    def __init__(self, period: float = 0.02) -> None:
        self.me, self.period = psutil.Process(), period
        self.peak = self.window = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> float:
        total = self.me.memory_info().rss
        for child in self.me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # ended between listing and reading
                pass
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._sample()
            self.peak, self.window = max(self.peak, rss), max(self.window, rss)
            time.sleep(self.period)

    def mark(self) -> float:
        last, self.window = self.window, self._sample()
        return last

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def cpu_s() -> float:
    """CPU seconds of this process and its waited-for children (user + system)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Stage:
    """``with Stage(times, "encode"):`` adds the block's wall seconds to ``times``."""

    def __init__(self, times: dict[str, float], name: str) -> None:
        self.times, self.name = times, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.times[self.name] = self.times.get(self.name, 0.0) + time.perf_counter() - self.t0


def bare_pass(cfg: Any, mem: PeakMemory) -> tuple[list[dict[str, Any]], float]:
    """The limit, measured in a worker thread like ``run_single``'s images (see ``_bare_pass``).

    The thread matters: torch's OpenMP intra-op parallelism started from the main thread with 2
    threads cost 2.6x the CPU of the same network called from a pool thread on a 2-core machine
    shared with other jobs (spin-waiting), so a main-thread limit would flatter the framework.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_bare_pass, cfg, mem).result()


def _bare_pass(cfg: Any, mem: PeakMemory) -> tuple[list[dict[str, Any]], float]:
    """The codec and the network called directly, per image; returns rows and CPU seconds."""
    from vcm_eval.data.datasets import build_dataset
    from vcm_eval.pipelines.base import FeatureCodingPipeline, ImageCodingPipeline
    from vcm_eval.pipelines.build import build_pipeline
    from vcm_eval.vision.registry import build_task_model

    torch.set_num_threads(cfg.threads)
    dataset = build_dataset(cfg.dataset, data_dir=Path(cfg.paths.data), progress=False)
    model = build_task_model(cfg.model)
    pipeline = build_pipeline(cfg, model)
    rows, cpu = [], 0.0
    for entry in dataset.images:
        image = dataset.load(entry).image
        t: dict[str, float] = {}
        mem.mark()
        c0 = cpu_s()
        if isinstance(pipeline, FeatureCodingPipeline):
            with Stage(t, "features_s"):
                feats = model.features(image)
            with Stage(t, "encode_s"):
                data = pipeline.codec.encode(feats)
            with Stage(t, "decode_s"):
                decoded = pipeline.codec.decode(data)
            with Stage(t, "network_s"):
                model.predict_from_features(decoded)
        elif isinstance(pipeline, ImageCodingPipeline):
            with Stage(t, "encode_s"):
                data = pipeline.codec.encode(image)
            with Stage(t, "decode_s"):
                decoded_image = pipeline.codec.decode(data)
            with Stage(t, "features_s"):
                feats = model.features(decoded_image)
            with Stage(t, "network_s"):
                model.predict_from_features(feats)
        else:  # uncompressed
            data = b""
            with Stage(t, "features_s"):
                feats = model.features(image)
            with Stage(t, "network_s"):
                model.predict_from_features(feats)
        cpu += cpu_s() - c0
        stages = sum(t.values())
        rows.append(
            {
                "image_id": int(entry["id"]),
                "bytes": len(data),
                **t,
                "stages_s": stages,
                "wall_s": stages,
                "overhead_s": 0.0,
                "peak_mb": mem.mark(),
            }
        )
    return rows, cpu


def framework_pass(cfg: Any, mem: PeakMemory) -> tuple[list[dict[str, Any]], dict[str, float], float]:
    """``run_single`` as the CLI runs it; per-image rows from its records, phase times, CPU s."""
    from vcm_eval.engine.run import run_single

    timings: dict[str, float] = {}
    mem.mark()
    c0 = cpu_s()
    row = run_single(cfg, timings=timings)
    cpu = cpu_s() - c0
    timings["peak_mb"] = mem.mark()
    rows = []
    for line in (Path(row["run_dir"]) / "records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        stages = rec["encode_s"] + rec["decode_s"] + rec["task_s"]
        rows.append({
            "image_id": rec["image_id"], "bytes": rec["bits"] // 8, "features_s": rec["features_s"],
            "encode_s": rec["encode_s"], "decode_s": rec["decode_s"], "network_s": rec["task_s"] - rec["features_s"],
            "stages_s": stages, "wall_s": rec["wall_s"], "overhead_s": rec["wall_s"] - stages, "peak_mb": float("nan"),
        })  # fmt: skip
    return sorted(rows, key=lambda r: r["image_id"]), timings, cpu


def compose_cfg(overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir

    import vcm_eval.config  # noqa: F401 - registers the schemas

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def measure(overrides: list[str], case: str, images: int, workers: int, warm: bool, data_dir: str) -> dict[str, Any]:
    """Bare pass, cold framework pass (and a warm one) for one configuration."""
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        base = [
            *overrides, *CASES[case], f"dataset.size={images}", f"workers={workers}", "progress=false",
            f"paths.data={data_dir}", f"paths.cache={tmp}/cache",
        ]  # fmt: skip
        mem = PeakMemory()
        try:
            bare_rows, bare_cpu = bare_pass(
                compose_cfg([*base, f"paths.results={tmp}/bare", "cache.features=false"]), mem
            )
            passes = {"bare": (bare_rows, {}, bare_cpu)}
            passes["framework"] = framework_pass(compose_cfg([*base, f"paths.results={tmp}/cold"]), mem)
            if warm:
                passes["framework_warm"] = framework_pass(compose_cfg([*base, f"paths.results={tmp}/warm"]), mem)
        finally:
            mem.stop()
    limit_wall = sum(r["stages_s"] for r in bare_rows)
    out: dict[str, Any] = {"case": case, "images": images, "workers": workers, "overrides": overrides}
    summary = {"bare": {"wall_s": limit_wall, "cpu_s": bare_cpu, "peak_mb": max(r["peak_mb"] for r in bare_rows)}}
    for name in ("framework", "framework_warm"):
        if name not in passes:
            continue
        rows, timings, cpu = passes[name]
        total = sum(v for k, v in timings.items() if k != "peak_mb")
        own = sum(r["stages_s"] for r in rows)
        summary[name] = {
            **{f"{k}_s": v for k, v in timings.items() if k != "peak_mb"},
            "wall_s": total, "cpu_s": cpu, "peak_mb": timings["peak_mb"], "own_stages_s": own,
            "ratio_to_limit": total / limit_wall, "loop_ratio_to_limit": timings["images"] / limit_wall,
            "ratio_to_own_stages": total / own, "loop_ratio_to_own_stages": timings["images"] / own,
            "cpu_ratio_to_limit": cpu / bare_cpu, "mean_overhead_s": float(np.mean([r["overhead_s"] for r in rows])),
        }  # fmt: skip
    out["summary"] = summary
    out["per_image"] = {name: rows for name, (rows, _, _) in passes.items()}
    # largest child's ru_maxrss: a child forked from this (1 GB) process reports the parent's pages
    # until it execs, so this is an upper bound, not FFmpeg's own peak (see the sampled peak_mb)
    out["children_maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out


def environment() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads_default": torch.get_num_threads(),
        "command": " ".join(["python -m benchmarks.bench_pipeline", *sys.argv[1:]]),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip


def write(results: list[dict[str, Any]], out_dir: Path, name: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps({"environment": environment(), "runs": results}, indent=2))
    fields = [
        "case",
        "workers",
        "pass",
        "image_id",
        "bytes",
        "features_s",
        "encode_s",
        "decode_s",
        "network_s",
        "stages_s",
        "wall_s",
        "overhead_s",
        "peak_mb",
    ]
    with open(out_dir / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for res in results:
            for pass_name, rows in res["per_image"].items():
                for r in rows:
                    w.writerow({"case": res["case"], "workers": res["workers"], "pass": pass_name, **r})


def markdown_table(paths: list[Path]) -> str:
    """One row per (pipeline file, case, workers): means per image and the ratios, as Markdown."""
    head = (
        "| pipeline | input | images | workers | features s | encode s | decode s | network s | overhead s/img "
        "| loop / stages | run / stages | run / bare limit | CPU run / bare | features s (warm cache) "
        "| run / stages (warm) | peak MB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for path in paths:
        data = json.loads(path.read_text())
        name = path.stem.replace("pipeline_", "")
        for run in data["runs"]:
            s, rows = run["summary"], run["per_image"]["framework"]
            mean = {
                k: float(np.mean([r[k] for r in rows]))
                for k in ("features_s", "encode_s", "decode_s", "network_s", "overhead_s")
            }
            fw, warm = s["framework"], s.get("framework_warm")
            warm_feat = (
                float(np.mean([r["features_s"] for r in run["per_image"]["framework_warm"]])) if warm else float("nan")
            )
            cells = [
                name, run["case"], run["images"], run["workers"],
                *(f"{mean[k]:.2f}" for k in ("features_s", "encode_s", "decode_s", "network_s")),
                f"{mean['overhead_s']:.3f}", f"{fw['loop_ratio_to_own_stages']:.3f}",
                f"{fw['ratio_to_own_stages']:.3f}", f"{fw['ratio_to_limit']:.2f}", f"{fw['cpu_ratio_to_limit']:.2f}",
                f"{warm_feat:.3f}" if warm else "-", f"{warm['ratio_to_own_stages']:.3f}" if warm else "-",
                f"{fw['peak_mb']:.0f}",
            ]  # fmt: skip
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="Other arguments are Hydra overrides (pipeline=... first)."
    )
    ap.add_argument("--case", default="synthetic", help=f"comma list of {sorted(CASES)}")
    ap.add_argument("--images", default="4", help="images per case (comma list matching --case, e.g. 4,2)")
    ap.add_argument(
        "--workers", default="1", help="comma list: images in flight (vcm_eval's workers); 1,2 measures the speed-up"
    )
    ap.add_argument(
        "--warm", action="store_true", help="also run with a filled feature cache (later points of a sweep)"
    )
    ap.add_argument("--data", default=str(ROOT / "data"), help="paths.data (synthetic images are generated there once)")
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    ap.add_argument("--name", default="", help="output file stem (default pipeline_<pipeline>)")
    ap.add_argument(
        "--table", nargs="+", metavar="JSON", help="print the Markdown summary of these result files and exit"
    )
    args, overrides = ap.parse_known_args()
    if args.table:
        print(markdown_table([Path(p) for p in args.table]))
        return
    pipeline = next((o.split("=", 1)[1] for o in overrides if o.startswith("pipeline=")), "suite")
    cases = args.case.split(",")
    counts = [int(n) for n in args.images.split(",")]
    counts += [counts[-1]] * (len(cases) - len(counts))
    results = []
    for case, n in zip(cases, counts):
        for workers in (int(w) for w in args.workers.split(",")):
            res = measure(overrides, case, n, workers, args.warm, args.data)
            results.append(res)
            print(json.dumps({"case": case, "workers": workers, **res["summary"]}, indent=1), file=sys.stderr)
    write(results, Path(args.out), args.name or f"pipeline_{pipeline}")
    print(f"wrote {Path(args.out) / (args.name or f'pipeline_{pipeline}')}.json and .csv", file=sys.stderr)


if __name__ == "__main__":
    main()
