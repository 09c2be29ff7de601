"""Bytes of the 2-bit codec at every Table 3 setting on real features, for comparing implementations.

    python benchmarks/quant_rates.py [--images 5] [--repeats 5] [--pythonpath DIR]
        [--out results/benchmarks/quant_rates.json]

Features: P2..P6 of the first ``--images`` synthetic val images from the embedded default task
model (the committed checkpoint). Codecs: ``NormalizedQuantizer(n, z)`` for n = 3, 4 and z = 0.5,
1.0, 1.5, 2.0 (causal context model), plus n = 4, z = 1.5 with the static and raw models. The
output holds the total stream bytes of each setting and, per setting, the median encode and
decode milliseconds per image (2 threads, ``--repeats`` passes over the images after a warm-up
pass; the codec's own work on a 512 x 256 image's features). ``--pythonpath`` imports vcm_eval from
another checkout (e.g. a ``git worktree`` of an older commit), so two files compare two coders on
the same features; ``--compare A B`` prints the per-setting difference of two output files.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = [(n, z, "causal") for n in (4, 3) for z in (0.5, 1.0, 1.5, 2.0)] + [(4, 1.5, "static"), (4, 1.5, "raw")]


def worker(images: int, repeats: int) -> dict[str, dict]:
    import torch
    from hydra import compose, initialize_config_dir

    import vcm_eval.config  # noqa: F401 - registers the schemas
    from vcm_eval.codecs.quant.nsymbol import NormalizedQuantizer
    from vcm_eval.data.synthetic import SyntheticSpec, scene_for
    from vcm_eval.vision.registry import build_task_model

    torch.set_num_threads(2)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config")
    model = build_task_model(cfg.model)
    feats = [model.features(scene_for(SyntheticSpec(), "val", i).image) for i in range(images)]
    sizes, times = {}, {}
    for n, z, em in SETTINGS:
        kw = {"threads": 2} if "threads" in inspect.signature(NormalizedQuantizer).parameters else {}
        codec = NormalizedQuantizer(n, z, entropy_model=em, **kw)
        for f in feats:  # warm-up: compiles or loads the loops
            codec.decode(codec.encode(f))
        sizes[f"n{n} z{z} {em}"] = sum(len(codec.encode(f)) for f in feats)
        enc, dec = [], []
        for _ in range(repeats):
            for f in feats:
                t0 = time.perf_counter()
                data = codec.encode(f)
                t1 = time.perf_counter()
                codec.decode(data)
                enc.append(t1 - t0)
                dec.append(time.perf_counter() - t1)
        times[f"n{n} z{z} {em}"] = {
            "encode_ms": 1e3 * statistics.median(enc),
            "decode_ms": 1e3 * statistics.median(dec),
        }
    return {"bytes": sizes, "ms_per_image": times}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pythonpath", default="")
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "quant_rates.json"))
    ap.add_argument("--compare", nargs=2, default=None, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.images, args.repeats)))
        return
    if args.compare:
        before, after = (json.loads(Path(f).read_text())["bytes"] for f in args.compare)
        ms = [json.loads(Path(f).read_text()).get("ms_per_image", {}) for f in args.compare]
        print(
            "| setting | before (bytes) | after (bytes) | change | encode / decode ms before | after |\n"
            "|---|---|---|---|---|---|"
        )
        for k in before:
            t = [f"{m[k]['encode_ms']:.1f} / {m[k]['decode_ms']:.1f}" if k in m else "-" for m in ms]
            print(
                f"| {k} | {before[k]:,} | {after[k]:,} | {100 * (after[k] / before[k] - 1):+.3f}% | {t[0]} | {t[1]} |"
            )
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (args.pythonpath, str(ROOT)) if p)}
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--images",
        str(args.images),
        "--repeats",
        str(args.repeats),
    ]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    result = {"command": " ".join(["benchmarks/quant_rates.py", *sys.argv[1:]]),
              "implementation": args.pythonpath or "this checkout", "images": args.images,
              **json.loads(proc.stdout.strip().splitlines()[-1])}  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("bytes", "ms_per_image")}, indent=1))


if __name__ == "__main__":
    main()
