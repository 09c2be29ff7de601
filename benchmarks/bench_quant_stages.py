"""Where the 2-bit codec's time goes: CPU time of each compiled pass on a full-size pyramid.

    python benchmarks/bench_quant_stages.py [--source smooth|network] [--models causal,static,raw]
        [--threads 2] [--repeats 5] [--out results/benchmarks/quant_stages.json]
    PYTHONPATH=/tmp/before python benchmarks/bench_quant_stages.py ...   # the codec of another checkout

For each entropy model, ``NormalizedQuantizer(4, 1.5, entropy_model=..., threads=...)`` encodes
and decodes the pyramid of ``bench_feature_codecs.py`` (same sources) ``--repeats`` times after a
warm-up; the fastest round counts. Every compiled pass the codec calls (``quant_kernels``: channel
stats, symbol assignment, cell counts, lookup; ``rans``: context counts, the coding loops, bit
packing) is timed with the CPU time of the thread that runs it (``time.thread_time``, summed over
the thread pool), so the stages add up to the process's CPU time rather than overlapping in wall
time. Reported per model: wall encode / decode ms, the same process's memory pass (a ``numpy``
copy of the pyramid), process CPU ms, and per stage CPU ms and ns per value. The timers wrap the
module attributes the codec looks up at call time; the codec's code is not changed.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_feature_codecs import HEIGHT, ROOT, WIDTH, memory_pass, network_pyramid, smooth_pyramid

STAGES = {
    "quant_kernels": ("channel_stats", "assign", "cell_counts", "lookup"),
    "rans": ("context_counts", "encode", "encode_branchless", "decode", "decode_branchless", "pack", "unpack"),
}


def instrument(cpu: dict[str, float]) -> None:
    """Wrap the codec's compiled passes so that each call adds its thread's CPU seconds to ``cpu[name]``."""
    from vcm_eval.codecs.quant import kernels as quant_kernels
    from vcm_eval.codecs.quant import rans

    modules = {"quant_kernels": quant_kernels, "rans": rans}
    for module_name, names in STAGES.items():
        module = modules[module_name]
        for name in names:
            setattr(module, name, _timed(getattr(module, name), name, cpu))


def _timed(fn: Callable[..., Any], name: str, cpu: dict[str, float]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        t0 = time.thread_time()
        try:
            return fn(*args)
        finally:
            cpu[name] += time.thread_time() - t0

    return call


def measure(
    model: str, features: Any, arrays: dict[str, np.ndarray], threads: int, repeats: int, cpu: dict[str, float]
) -> dict[str, Any]:
    from vcm_eval.codecs.quant.nsymbol import NormalizedQuantizer

    codec = NormalizedQuantizer(4, 1.5, entropy_model=model, threads=threads)
    codec.decode(codec.encode(features))  # compile or load the loops, warm the pool
    values = sum(a.size for a in arrays.values())
    best: dict[str, Any] | None = None
    for _ in range(repeats):
        cpu.clear()
        p0, t0 = time.process_time(), time.perf_counter()
        data = codec.encode(features)
        t1 = time.perf_counter()
        codec.decode(data)
        t2, p1 = time.perf_counter(), time.process_time()
        if best is None or t2 - t0 < best["wall_ms"] / 1e3:
            best = {
                "model": model,
                "bits_per_value": 8 * len(data) / values,
                "encode_ms": 1e3 * (t1 - t0),
                "decode_ms": 1e3 * (t2 - t1),
                "wall_ms": 1e3 * (t2 - t0),
                "process_cpu_ms": 1e3 * (p1 - p0),
                "stages_cpu_ms": {k: 1e3 * v for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])},
                "stages_ns_per_value": {k: 1e9 * v / values for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])},
            }
    assert best is not None
    best["memory_pass_ms"] = 1e3 * min(memory_pass(arrays) for _ in range(repeats))
    best["x_memory_pass"] = best["wall_ms"] / best["memory_pass_ms"]
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", choices=("smooth", "network"), default="smooth")
    ap.add_argument("--models", default="causal,static,raw")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "quant_stages.json"))
    args = ap.parse_args()

    import torch

    from vcm_eval.vision.base import FeatureSet

    torch.set_num_threads(args.threads)
    arrays = smooth_pyramid() if args.source == "smooth" else network_pyramid()
    features = FeatureSet(
        levels={k: torch.from_numpy(v) for k, v in arrays.items()},
        image_size=(HEIGHT, WIDTH),
        input_size=(HEIGHT, WIDTH),
    )
    cpu: dict[str, float] = collections.defaultdict(float)
    instrument(cpu)
    rows = [measure(m, features, arrays, args.threads, args.repeats, cpu) for m in args.models.split(",") if m]
    import vcm_eval

    result = {
        "command": " ".join(["benchmarks/bench_quant_stages.py", *sys.argv[1:]]),
        "vcm_eval": str(Path(vcm_eval.__file__).parent),  # which checkout ran (PYTHONPATH=DIR runs another)
        "source": args.source,
        "threads": args.threads,
        "models": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    for r in rows:
        print(
            f"{r['model']}: {r['bits_per_value']:.4f} bits/value; wall encode {r['encode_ms']:.0f} "
            f"+ decode {r['decode_ms']:.0f} ms = {r['x_memory_pass']:.1f}x a memory pass "
            f"({r['memory_pass_ms']:.0f} ms); process CPU {r['process_cpu_ms']:.0f} ms"
        )
        for name, ms in r["stages_cpu_ms"].items():
            print(f"    {name:18s} {ms:7.1f} ms CPU  {r['stages_ns_per_value'][name]:5.2f} ns/value")


if __name__ == "__main__":
    main()
