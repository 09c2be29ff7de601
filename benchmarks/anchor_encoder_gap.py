"""The encoder gap: each VVenC preset against VTM all-intra on the same images (docs/anchors.md).

    python benchmarks/anchor_encoder_gap.py [--images 20] [--qps 37,42,47,52,57] [--presets faster,fast,medium,slow,slower]

Runs the image anchor (MPEG colour path, coded QP = configured QP) through the project's own
``run_single`` on the first ``--images`` synthetic val images, once per VVenC preset and once with
VTM (the shipped VTM-23.13 bitstreams: ``codec=vtm``), in ``results/encoder_gap/``. For each
preset it reports BD-rate against VTM for box AP, mask AP and Y-PSNR (10-bit, the encoder's input
against the decoded picture, mean over images) and the encode seconds per image (VTM's from
the shipped manifest, measured when the streams were made, two VTM processes at once on 2 cores);
encode seconds are the median of ``--time-images`` encodes timed one at a time. Writes
results/benchmarks/encoder_gap.{json,csv} and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir

import vcm_eval.config  # noqa: F401 - registers the config schemas
from vcm_eval.codecs.bitstream import BitstreamReader
from vcm_eval.codecs.colour import colour_ffmpeg, pad_to_even, rgb_to_yuv420
from vcm_eval.codecs.vvc import VvcCodec
from vcm_eval.data.datasets import build_dataset
from vcm_eval.metrics.bdrate import bd_compare
from vcm_eval.run import run_single

ROOT = Path(__file__).resolve().parent.parent
METRICS = {"box AP": "bbox_AP", "mask AP": "segm_AP", "Y-PSNR": "y_psnr"}


def y_psnr(run_dir: Path, dataset: Any, vvc: VvcCodec, colour_exe: str) -> float:
    """Mean over images of the 10-bit Y PSNR between the encoder's input and the decoded picture."""
    values = []
    for entry in dataset.images:
        sample = dataset.load(entry)
        reader = BitstreamReader((run_dir / "bitstreams" / f"{sample.image_id}.bin").read_bytes(), "image_vvc")
        h, w = reader.uint(), reader.uint()
        recon = vvc.decode(reader.blob(), h + h % 2, w + w % 2).y.astype(np.float64)
        source = rgb_to_yuv420(pad_to_even(sample.image, "mpeg"), colour_exe, "mpeg").to_10bit().y.astype(np.float64)
        values.append(10 * np.log10(1023.0**2 / max(np.mean((recon - source) ** 2), 1e-12)))
    return float(np.mean(values))


def encode_seconds(dataset: Any, vvc: VvcCodec, qp: int, images: int) -> float:
    """Median wall seconds of one encode (VVenC: 1 thread; MPEG colour conversion excluded) over ``images`` images."""
    exe = colour_ffmpeg("", "mpeg", vvc.ffmpeg)
    times = []
    for entry in dataset.images[:images]:
        frame = rgb_to_yuv420(pad_to_even(dataset.load(entry).image, "mpeg"), exe, "mpeg")
        start = time.perf_counter()
        vvc.encode(frame, qp)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--qps", default="37,42,47,52,57")
    parser.add_argument("--presets", default="faster,fast,medium,slow,slower")
    parser.add_argument("--results", default=str(ROOT / "results" / "encoder_gap"))
    parser.add_argument("--vtm-encoder", default="", help="VTM EncoderApp to time (else the manifest's encode seconds)")
    parser.add_argument("--vtm-cfg", default="")
    parser.add_argument("--time-images", type=int, default=5, help="images per preset and QP timed alone (run on a quiet machine)")
    args = parser.parse_args()
    qps = [int(q) for q in args.qps.split(",")]
    setups = {p: [f"codec.preset={p}"] for p in args.presets.split(",")} | {"VTM": ["codec=vtm"]}
    points: dict[str, list[dict[str, float]]] = {}
    manifest = {(r["file_name"], int(r["qp"])): float(r["encode_s"]) for r in csv.DictReader((ROOT / "anchors/vtm_image_anchor/manifest.csv").open())}
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for name, overrides in setups.items():
            for qp in qps:
                cfg = compose("config", ["pipeline=image_anchor", f"pipeline.qp={qp}", f"dataset.limit={args.images}", f"paths.results={args.results}", "progress=false", *overrides])
                row = run_single(cfg)
                dataset = build_dataset(cfg.dataset, data_dir=Path(cfg.paths.data), progress=False)
                vvc = VvcCodec()
                run_dir = Path(row["run_dir"])
                timed = dataset.images[: args.time_images]
                if name != "VTM":
                    seconds = encode_seconds(dataset, VvcCodec(preset=name), qp, args.time_images)
                elif args.vtm_encoder:
                    seconds = encode_seconds(dataset, VvcCodec(backend="vtm", vtm_encoder=args.vtm_encoder, vtm_cfg=args.vtm_cfg), qp, args.time_images)
                else:
                    seconds = np.median([manifest[(e["file_name"], qp)] for e in timed])
                point = {"qp": qp, "bpp": row["bpp"], "bbox_AP": row["bbox_AP"], "segm_AP": row["segm_AP"],
                         "y_psnr": y_psnr(run_dir, dataset, vvc, colour_ffmpeg("", "mpeg", vvc.ffmpeg)), "encode_s": float(seconds)}  # fmt: skip
                points.setdefault(name, []).append(point)
                print(name, point, flush=True)
    vtm = points["VTM"]
    table = []
    for name, pts in points.items():
        out: dict[str, Any] = {"encoder": name, "encode_s_per_image": round(float(np.mean([p["encode_s"] for p in pts])), 3)}
        for label, key in METRICS.items():
            if name == "VTM":
                out[f"BD-rate {label} %"] = 0.0
                continue
            res = bd_compare([p["bpp"] for p in vtm], [p[key] for p in vtm], [p["bpp"] for p in pts], [p[key] for p in pts], min_overlap=0.0)
            out[f"BD-rate {label} %"] = round(res.bd_rate, 1) if np.isfinite(res.bd_rate) else f"n/a ({'; '.join(res.notes)})"
        table.append(out)
    bench = ROOT / "results" / "benchmarks"
    bench.mkdir(parents=True, exist_ok=True)
    (bench / "encoder_gap.json").write_text(json.dumps({"images": args.images, "qps": qps, "points": points, "table": table}, indent=2))
    with (bench / "encoder_gap.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    print("| " + " | ".join(table[0]) + " |\n|" + "---|" * len(table[0]))
    for row in table:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
