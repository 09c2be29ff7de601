"""Each feature codec's own work on a full-size (Cityscapes 2048 x 1024) pyramid: time, memory, rate.

    python benchmarks/bench_feature_codecs.py [--source smooth|network] [--threads 2] [--repeats 5]
        [--codecs quant-causal,quant-static,quant-raw,quant8,feature_anchor] [--pythonpath DIR] [--label TEXT]
        [--out results/benchmarks/feature_codecs.json]
    python benchmarks/bench_feature_codecs.py --table results/benchmarks/feature_codecs_*.json  # Markdown
    python benchmarks/bench_feature_codecs.py --ranges results/benchmarks/feature_codecs_*_run*.json  # ranges over runs

The pyramid is P2..P6 of a 2048 x 1024 image (44,695,552 float32 values, 170.5 MiB):
``smooth`` = deterministic smooth random fields (bilinearly upsampled noise plus a little white
noise, per-channel scale and offset); ``network`` = the features of the Cityscapes R50-FPN task
network (random init, seed 0) on the synthetic 2048 x 1024 street scene.

Each codec runs in its own process (one process, ``--threads`` threads): it loads the pyramid,
codes two channels of it once to compile or load the compiled loops (``first_s``), records its
resident memory (the baseline), codes the pyramid twice to warm up (the peak memory above the
baseline is ``VmHWM``, reset after loading the pyramid, read after these two rounds), then
``--repeats`` timed rounds with a memory pass (a ``numpy`` copy of every level into new memory:
the physical reference) before the first and after each. Reported per codec: encode and decode
seconds (best of the rounds), values per second, bits per value (8 x stream bytes / values), the
fastest memory pass, and the codec's time as a multiple of a memory pass: each round against the
faster of the two passes beside it (a slow minute of a shared machine slows both; a spike in one
pass cannot make the ratio look better), best and median of the rounds. Beside it, the best time
against a copy into memory written before (bandwidth only: a fresh copy also pays the kernel for
zeroing and mapping its pages, as a decoder that returns new tensors does). VVC is excluded:
``feature_anchor`` times its own pre- and post-processing (min-max, 10-bit codes, tiling into the
frame; un-tiling, de-quantization) with the frame passed straight through.

``--pythonpath DIR`` runs the codecs of another checkout (e.g. a ``git worktree`` of an older
commit) on the same pyramid: how the table of docs/performance.md compares old and new.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HEIGHT, WIDTH = 1024, 2048
CODECS = ("quant-causal", "quant-static", "quant-raw", "quant8", "feature_anchor")


def smooth_pyramid(seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic smooth float32 fields of the FPN shapes of a 2048 x 1024 image."""
    import torch
    import torch.nn.functional as F

    from vcm_eval.vision.levels import fpn_shapes

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, (c, h, w) in fpn_shapes(HEIGHT, WIDTH).items():
        coarse = torch.randn(1, c, h // 8 + 2, w // 8 + 2, generator=gen)
        field = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
        field += 0.2 * torch.randn(c, h, w, generator=gen)
        scale, offset = torch.rand(c, 1, 1, generator=gen) * 2 + 0.1, torch.randn(c, 1, 1, generator=gen)
        out[name] = (field * scale + offset).numpy().astype(np.float32)
    return out


def network_pyramid() -> dict[str, np.ndarray]:
    """P2..P6 of the Cityscapes R50-FPN (random init, seed 0) on the synthetic 2048 x 1024 scene."""
    import torch
    from hydra import compose, initialize_config_dir

    import vcm_eval.config  # noqa: F401 - registers the schemas
    from vcm_eval.data.synthetic import SyntheticSpec, scene_for
    from vcm_eval.vision.registry import build_task_model

    torch.manual_seed(0)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=cityscapes_mask_rcnn_r50_fpn", "model.weights=null"])
    model = build_task_model(cfg.model)
    image = scene_for(SyntheticSpec(height=HEIGHT, width=WIDTH, max_objects=24), "val", 0).image
    return {k: v.numpy() for k, v in model.features(image).items()}


def _status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its high-water mark) of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_pass(arrays: dict[str, np.ndarray]) -> float:
    """Seconds for one ``numpy`` copy of every level: the physical reference of a pass over the pyramid."""
    t0 = time.perf_counter()
    dup = [a.copy() for a in arrays.values()]
    elapsed = time.perf_counter() - t0
    del dup
    return elapsed


def _touched_pass(arrays: dict[str, np.ndarray], dst: dict[str, np.ndarray]) -> float:
    """Seconds for copying every level into memory already written once: the bandwidth alone, no page faults.

    A fresh copy (``memory_pass``) also pays the kernel for zeroing and mapping 170 MiB of new
    pages (on this machine more than half its time); a decoder that returns new tensors pays that
    too, which is why the fresh copy is the reference and this one is reported beside it.
    """
    t0 = time.perf_counter()
    for name, a in arrays.items():
        np.copyto(dst[name], a)
    return time.perf_counter() - t0


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak excludes loading the pyramid."""
    Path("/proc/self/clear_refs").write_text("5")


def _accepts(cls: Any, name: str) -> bool:
    return name in inspect.signature(cls).parameters


def build_codec(name: str, threads: int) -> tuple[Any, Any]:
    """(encode, decode) of one codec, each FeatureSet -> ... as its own work (VVC left out)."""
    from vcm_eval.codecs.quant.nsymbol import NormalizedQuantizer
    from vcm_eval.codecs.quant.uniform8 import Uniform8bitQuantizer

    if name.startswith("quant-"):
        kw: dict[str, Any] = {"threads": threads} if _accepts(NormalizedQuantizer, "threads") else {}
        q = NormalizedQuantizer(4, 1.5, entropy_model=name.split("-", 1)[1], **kw)
        return q.encode, q.decode
    if name == "quant8":
        kw8: dict[str, Any] = {"threads": threads} if _accepts(Uniform8bitQuantizer, "threads") else {}
        q8 = Uniform8bitQuantizer(**kw8)
        return q8.encode, q8.decode
    if name == "feature_anchor":
        from vcm_eval.codecs.feature_anchor import tiling
        from vcm_eval.codecs.feature_anchor.codec import BITS, FeatureVvcCodec

        levels = (
            {"levels": "p2-p5"} if _accepts(FeatureVvcCodec, "levels") else {"split": "p2-p5"}
        )  # older checkouts: split
        codec = FeatureVvcCodec(vvc=None, qp=32, **levels)  # type: ignore[arg-type]  # VVC is never called here

        def encode(features: Any) -> Any:
            _, ranges, frame, layout = codec.frame(features)
            return frame, ranges, layout

        def decode(
            coded: Any,
        ) -> Any:  # what FeatureVvcCodec.decode does after VVC (older checkouts: untile + dequantize)
            frame, ranges, layout = coded
            return tiling.frame_values(frame, layout, ranges, bits=BITS)

        return encode, decode
    raise SystemExit(f"unknown codec {name!r}; choose from {CODECS}")


def worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from vcm_eval.vision.base import FeatureSet

    torch.set_num_threads(args.threads)
    arrays = dict(np.load(args.pyramid))
    values = sum(a.size for a in arrays.values())
    features = FeatureSet(
        levels={k: torch.from_numpy(v) for k, v in arrays.items()},
        image_size=(HEIGHT, WIDTH),
        input_size=(HEIGHT, WIDTH),
    )
    encode, decode = build_codec(args.codec, args.threads)
    t0 = time.perf_counter()
    decode(encode(features.replace({k: v[:2] for k, v in features.items()})))  # compile (or load) the loops once
    first = time.perf_counter() - t0
    touched = {
        k: a.copy() for k, a in arrays.items()
    }  # the destination of the bandwidth-only pass, faulted in before the baseline
    _reset_peak()
    baseline = _status_mb("VmRSS")
    for _ in range(
        2
    ):  # warm; the peak of two rounds (the thread pool's allocator arenas settle), before any copy below
        decode(encode(features))
    peak = _status_mb("VmHWM") - baseline
    enc, dec, size = [], [], 0
    copies, touched_copies = [memory_pass(arrays)], [_touched_pass(arrays, touched)]
    ratios = []  # each round against the memory passes just before and after it: slow drift of the machine cancels
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        data = encode(features)
        t1 = time.perf_counter()
        out = decode(data)
        t2 = time.perf_counter()
        enc.append(t1 - t0)
        dec.append(t2 - t1)
        size = len(data) if isinstance(data, bytes) else 0
        del data, out
        copies.append(memory_pass(arrays))
        touched_copies.append(_touched_pass(arrays, touched))
        ratios.append(
            (t2 - t0) / min(copies[-2], copies[-1])
        )  # the faster neighbour: a pass slowed by a spike cannot flatter the ratio
    coded_values = values if args.codec != "feature_anchor" else values - arrays["p6"].size
    return {
        "codec": args.codec,
        "values": coded_values,
        "memory_pass_s": min(copies),
        "first_s": first,
        "encode_s": min(enc),
        "decode_s": min(dec),
        "encode_decode_s": min(enc) + min(dec),
        "x_memory_pass": min(ratios),
        "x_memory_pass_median": statistics.median(ratios),
        "touched_pass_s": min(touched_copies),
        "x_touched_pass": (min(enc) + min(dec)) / min(touched_copies),
        "mvalues_per_s": coded_values / (min(enc) + min(dec)) / 1e6,
        "bits_per_value": 8 * size / coded_values if size else None,
        "baseline_rss_mb": baseline,
        "peak_above_baseline_mb": peak,
        "pyramid_float32_mb": values * 4 / 2**20,
    }


def markdown_table(results: list[dict[str, Any]]) -> str:
    """One Markdown row per codec of each result file (the table of docs/performance.md)."""
    lines = [
        (
            "| source | implementation | codec | bits/value | encode s | decode s | enc + dec s "
            "| x memory pass: best / median (pass) | x copy into touched memory | M values/s | peak MiB | first s |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        impl = res.get("label") or (
            "format 1 (before)" if res["implementation"] != "this checkout" else "this checkout"
        )
        for r in res["codecs"]:
            bpv = "-" if r["bits_per_value"] is None else f"{r['bits_per_value']:.4f}"
            median = (
                f"{r['x_memory_pass_median']:.1f}" if "x_memory_pass_median" in r else "-"
            )  # older result files: best only
            touched = (
                f"{r['x_touched_pass']:.1f} ({1000 * r['touched_pass_s']:.0f} ms)" if "x_touched_pass" in r else "-"
            )
            lines.append(
                f"| {res['source']} | {impl} | {r['codec']} | {bpv} | {r['encode_s']:.3f} | {r['decode_s']:.3f} | "
                f"{r['encode_decode_s']:.3f} | {r['x_memory_pass']:.1f} / {median} "
                f"({1000 * r['memory_pass_s']:.0f} ms) | {touched} | {r['mvalues_per_s']:.1f} | "
                f"{r['peak_above_baseline_mb']:.0f} | {r['first_s']:.2f} |"
            )
    return "\n".join(lines)


def ranges_table(results: list[dict[str, Any]]) -> str:
    """Several runs of the same rows: per (source, implementation, codec) the range over the runs (Markdown)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for res in results:
        for r in res["codecs"]:
            groups.setdefault((res["source"], res.get("label") or res["implementation"], r["codec"]), []).append(r)

    def span(rows: list[dict[str, Any]], key: str, fmt: str, scale: float = 1.0) -> str:
        values = [scale * r[key] for r in rows if r.get(key) is not None]
        if not values:
            return "-"
        lo, hi = format(min(values), fmt), format(max(values), fmt)
        return lo if lo == hi else f"{lo}-{hi}"

    lines = [
        (
            "| source | implementation | codec | runs | bits/value | enc + dec s | x memory pass, best "
            "| x memory pass, median | memory pass ms | x copy into touched memory | peak MiB |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (source, label, codec), rows in groups.items():
        lines.append(
            f"| {source} | {label} | {codec} | {len(rows)} | {span(rows, 'bits_per_value', '.4f')} | "
            f"{span(rows, 'encode_decode_s', '.3f')} | {span(rows, 'x_memory_pass', '.1f')} | "
            f"{span(rows, 'x_memory_pass_median', '.1f')} | {span(rows, 'memory_pass_s', '.0f', 1000)} | "
            f"{span(rows, 'x_touched_pass', '.1f')} | {span(rows, 'peak_above_baseline_mb', '.0f')} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", choices=("smooth", "network"), default="smooth")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--codecs", default=",".join(CODECS))
    ap.add_argument(
        "--pythonpath", default="", help="import vcm_eval from this checkout instead (compare implementations)"
    )
    ap.add_argument(
        "--label",
        default="",
        help="the implementation column of the table (default: this checkout, or the --pythonpath)",
    )
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "feature_codecs.json"))
    ap.add_argument("--table", nargs="*", default=None, help="print the Markdown table of these result files and exit")
    ap.add_argument(
        "--ranges",
        nargs="*",
        default=None,
        help="print the range over these result files (runs of the same rows) and exit",
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--codec", default="", help=argparse.SUPPRESS)
    ap.add_argument("--pyramid", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.table is not None or args.ranges is not None:
        files = [json.loads(Path(f).read_text()) for f in (args.table if args.table is not None else args.ranges)]
        print(markdown_table(files) if args.table is not None else ranges_table(files))
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (args.pythonpath, str(ROOT)) if p)}
    env.update(OMP_NUM_THREADS=str(args.threads), NUMBA_NUM_THREADS=str(args.threads))
    result: dict[str, Any] = {
        "command": " ".join(["benchmarks/bench_feature_codecs.py", *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
        "source": args.source,
        "threads": args.threads,
        "implementation": args.pythonpath or "this checkout",
        "label": args.label or args.pythonpath or "this checkout",
        "codecs": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench_feature_codecs_") as tmp:
        pyramid = Path(tmp) / "pyramid.npz"
        np.savez(pyramid, **(smooth_pyramid() if args.source == "smooth" else network_pyramid()))
        for name in [c for c in args.codecs.split(",") if c]:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                "--codec",
                name,
                "--pyramid",
                str(pyramid),
            ]
            cmd += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
            proc = subprocess.run(cmd, check=False, cwd=tmp, env=env, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            result["codecs"].append(row)
            print(json.dumps(row))
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(result, indent=2))
    tmp_out.replace(out)
    print(markdown_table([result]))


if __name__ == "__main__":
    main()
