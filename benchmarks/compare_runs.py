"""Did two result trees get the same results? Run by run: metrics and per-image records, timings aside.

    python benchmarks/compare_runs.py <results A> <results B> [--metrics bpp,bbox_AP,segm_AP,cityscapes_AP]

Runs are matched by dataset / model / pipeline / parameter tag (the folder name without its key,
so a codec whose version changed still pairs with its earlier run). For every pair it prints the
metrics of both and whether the records agree: the same network inputs per image (the records'
``features_sha256`` / ``decoded_sha256``: where two machines first part), the same bits and the same detections
(boxes, scores, classes, masks), ignoring the timing fields and fields only one side records.
Exit status 0 either way; the table is the answer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

TIMING = {"encode_s", "decode_s", "task_s", "features_s", "wall_s"}
HASHES = ("features_sha256", "decoded_sha256")  # sha256 of the features coded / the decoded image, per record


def runs_of(root: Path) -> dict[tuple[str, ...], Path]:
    out = {}
    for metrics in root.rglob("metrics.json"):
        run = metrics.parent
        rel = run.relative_to(root).parts
        if len(rel) >= 4 and (run / "records.jsonl").is_file():
            out[(*rel[:-1], run.name.rsplit("-", 1)[0])] = run
    return out


def records(run: Path) -> dict[int, dict[str, Any]]:
    rows = (json.loads(line) for line in (run / "records.jsonl").read_text().splitlines() if line.strip())
    return {r["image_id"]: {k: v for k, v in r.items() if k not in TIMING} for r in rows}


def compare(a: Path, b: Path) -> str:
    ra, rb = records(a), records(b)
    if set(ra) != set(rb):
        return f"different images ({len(ra)} vs {len(rb)})"
    bits = sum(ra[i]["bits"] != rb[i]["bits"] for i in ra)
    dets = sum(ra[i]["detections"] != rb[i]["detections"] for i in ra)
    seen = [k for k in HASHES if all(k in ra[i] and k in rb[i] for i in ra)]  # what the network saw, per image
    inputs = sum(any(ra[i][k] != rb[i][k] for k in seen) for i in ra)
    others = sorted(
        {
            k
            for i in ra
            for k in set(ra[i]) & set(rb[i])
            if k not in ("bits", "detections", *HASHES) and ra[i][k] != rb[i][k]
        }
    )
    parts = [
        *([f"network inputs ({'/'.join(seen)}) differ on {inputs} images" if inputs else "same network inputs"]
          if seen else []),
        f"bits differ on {bits} images" if bits else "same bits",
        f"detections differ on {dets} images" if dets else "same detections",
    ]  # fmt: skip
    return ", ".join(parts) + (f", other fields differ: {others}" if others else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--metrics", default="bpp,bbox_AP,segm_AP,cityscapes_AP")
    args = ap.parse_args()
    metrics = args.metrics.split(",")
    ra, rb = runs_of(args.a), runs_of(args.b)
    print("| run | " + " | ".join(f"{m} A / B" for m in metrics) + " | records |\n|---|" + "---|" * (len(metrics) + 1))
    for key in sorted(set(ra) | set(rb)):
        if key not in ra or key not in rb:
            print(f"| {'/'.join(key[2:])} | only in {'B' if key not in ra else 'A'} |")
            continue
        ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (ra[key], rb[key]))
        cells = [f"{ma.get(m, float('nan')):.4f} / {mb.get(m, float('nan')):.4f}" for m in metrics]
        print(f"| {'/'.join(key[2:])} | " + " | ".join(cells) + f" | {compare(ra[key], rb[key])} |")


if __name__ == "__main__":
    main()
