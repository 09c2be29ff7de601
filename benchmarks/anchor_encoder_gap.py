"""The encoder gap: each VVenC preset against VTM all-intra on the same images (docs/anchors.md).

    python benchmarks/anchor_encoder_gap.py [--images 20] [--qps 37,42,47,52,57]
        [--presets faster,fast,medium,slow,slower]
        [--vtm-encoder <EncoderApp> --vtm-cfg <encoder_intra_vtm.cfg> --feature-images 2 --feature-qps 27,32,37]

Image anchor: runs ``pipeline=image_anchor`` (MPEG colour path, coded QP = configured QP) through
the project's own ``run_single`` on the first ``--images`` synthetic val images, once per VVenC
preset and once with VTM (the shipped VTM-23.13 bitstreams: ``vvc=vtm``), in
``results/encoder_gap/``. Feature anchor (only with ``--vtm-encoder``, VTM being far slower on
feature frames): the same with ``pipeline=feature_anchor`` on ``--feature-images`` images.

For each preset it reports BD-rate against VTM for box AP, mask AP and Y-PSNR (10-bit: the
encoder's input picture against the decoded one, mean over images) and the encode seconds per
image. Image encodes are timed one at a time on the first ``--time-images`` images (median; VVenC
1 thread; VTM from the shipped manifest unless ``--vtm-encoder`` is given); feature encodes are the
median of the runs' own records (one image in flight). Writes results/benchmarks/encoder_gap.{json,csv}
and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import vcm_eval.config  # noqa: F401 - registers the config schemas
from vcm_eval.codecs.bitstream import BitstreamReader
from vcm_eval.codecs.feature_anchor.codec import FeatureVvcCodec
from vcm_eval.codecs.vvc.colour import colour_ffmpeg, pad_to_even, rgb_to_yuv420
from vcm_eval.codecs.vvc.encoder import VvcEncoder
from vcm_eval.data.datasets import EvalDataset, build_dataset
from vcm_eval.engine.run import run_single
from vcm_eval.metrics.bdrate import bd_compare
from vcm_eval.resources import ANCHORS_DIR, CONF_DIR
from vcm_eval.vision.registry import build_task_model

ROOT = Path(__file__).resolve().parent.parent
METRICS = {"box AP": "bbox_AP", "mask AP": "segm_AP", "Y-PSNR": "y_psnr"}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1023.0**2 / max(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2), 1e-12)))


def image_psnr(run_dir: Path, dataset: EvalDataset, cfg: DictConfig) -> float:
    """Mean 10-bit Y PSNR between the encoder's input (MPEG colour path) and the decoded picture."""
    vvc = VvcEncoder()
    exe = colour_ffmpeg("", "mpeg", vvc.ffmpeg)
    values = []
    for entry in dataset.images:
        sample = dataset.load(entry)
        reader = BitstreamReader((run_dir / "bitstreams" / f"{sample.image_id}.bin").read_bytes(), "image_vvc")
        h, w = reader.uint(), reader.uint()
        recon = vvc.decode(reader.blob(), h + h % 2, w + w % 2).y
        values.append(psnr(recon, rgb_to_yuv420(pad_to_even(sample.image, "mpeg"), exe, "mpeg").to_10bit().y))
    return float(np.mean(values))


def feature_psnr(run_dir: Path, dataset: EvalDataset, cfg: DictConfig) -> float:
    """Mean PSNR between the tiled 10-bit feature frame and its decoded picture."""
    model = build_task_model(cfg.model, device="cpu")
    p = cfg.pipeline
    codec = FeatureVvcCodec(vvc=VvcEncoder(), qp=p.qp, split=p.split, minmax=p.minmax, chroma=p.chroma)
    values = []
    for entry in dataset.images:
        sample = dataset.load(entry)
        frame = codec.frame(model.features(sample.image))[2].view(np.uint16)
        values.append(
            psnr(codec.decoded_frame((run_dir / "bitstreams" / f"{sample.image_id}.bin").read_bytes()), frame)
        )
    return float(np.mean(values))


def timed_image_encodes(dataset: EvalDataset, vvc: VvcEncoder, qp: int, images: int) -> float:
    """Median wall seconds of one image encode (MPEG colour conversion excluded) over ``images`` images."""
    exe = colour_ffmpeg("", "mpeg", vvc.ffmpeg)
    times = []
    for entry in dataset.images[:images]:
        frame = rgb_to_yuv420(pad_to_even(dataset.load(entry).image, "mpeg"), exe, "mpeg")
        start = time.perf_counter()
        vvc.encode(frame, qp)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def recorded_encodes(run_dir: Path) -> float:
    return float(
        np.median([json.loads(line)["encode_s"] for line in (run_dir / "records.jsonl").read_text().splitlines()])
    )


def gap_table(points: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    """BD-rate of every encoder against VTM per metric, and its encode seconds."""
    vtm = points["VTM"]
    table = []
    for name, pts in points.items():
        row: dict[str, Any] = {
            "encoder": name,
            "encode s/image": round(float(np.mean([p["encode_s"] for p in pts])), 3),
        }
        for label, key in METRICS.items():
            if name == "VTM":
                row[f"BD-rate {label} (%)"] = "0 (reference)"
                continue
            res = bd_compare(
                [p["bpp"] for p in vtm],
                [p[key] for p in vtm],
                [p["bpp"] for p in pts],
                [p[key] for p in pts],
                min_overlap=0.0,
            )
            row[f"BD-rate {label} (%)"] = (
                f"{res.bd_rate:+.1f}" if np.isfinite(res.bd_rate) else f"n/a ({'; '.join(res.notes)})"
            )
        table.append(row)
    return table


def markdown(table: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(table[0]) + " |\n|" + "---|" * len(table[0]) + "\n"
    return head + "".join("| " + " | ".join(str(v) for v in r.values()) + " |\n" for r in table)


def measure(
    pipeline: str, setups: dict[str, list[str]], qps: list[int], images: int, results: str,
    psnr_of: Callable[[Path, EvalDataset, DictConfig], float],
    seconds_of: Callable[[str, Path, EvalDataset, int], float],
) -> dict[str, list[dict[str, float]]]:  # fmt: skip
    points: dict[str, list[dict[str, float]]] = {}
    for name, overrides in setups.items():
        for qp in qps:
            cfg = compose(
                "config",
                [
                    f"pipeline={pipeline}",
                    f"pipeline.qp={qp}",
                    f"dataset.limit={images}",
                    f"paths.results={results}",
                    "progress=false",
                    "device=cpu",
                    *overrides,
                ],
            )
            row = run_single(cfg)
            dataset = build_dataset(cfg.dataset, data_dir=Path(cfg.paths.data), progress=False)
            run_dir = Path(row["run_dir"])
            point = {"qp": qp, "bpp": row["bpp"], "bbox_AP": row["bbox_AP"], "segm_AP": row["segm_AP"],
                     "y_psnr": psnr_of(run_dir, dataset, cfg),
                     "encode_s": seconds_of(name, run_dir, dataset, qp)}  # fmt: skip
            points.setdefault(name, []).append(point)
            print(pipeline, name, point, flush=True)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--qps", default="37,42,47,52,57")
    parser.add_argument("--presets", default="faster,fast,medium,slow,slower")
    parser.add_argument("--results", default=str(ROOT / "results" / "encoder_gap"))
    parser.add_argument(
        "--vtm-encoder",
        default="",
        help="VTM EncoderApp: times VTM image encodes and runs the feature-anchor comparison",
    )
    parser.add_argument("--vtm-cfg", default="")
    parser.add_argument(
        "--time-images",
        type=int,
        default=5,
        help="images per preset and QP timed one at a time (run on a quiet machine)",
    )
    parser.add_argument(
        "--feature-images", type=int, default=0, help="> 0: also compare on the feature anchor (needs --vtm-encoder)"
    )
    parser.add_argument("--skip-images", action="store_true", help="only the feature-anchor comparison")
    parser.add_argument("--feature-qps", default="27,32,37")
    args = parser.parse_args()
    presets = args.presets.split(",")
    manifest = {
        (r["file_name"], int(r["qp"])): float(r["encode_s"])
        for r in csv.DictReader((ANCHORS_DIR / "vtm_image_anchor" / "manifest.csv").open())
    }
    vtm_args = [f"vvc.vtm_encoder={args.vtm_encoder}", f"vvc.vtm_cfg={args.vtm_cfg}"]

    def image_seconds(name: str, run_dir: Path, dataset: EvalDataset, qp: int) -> float:
        if name != "VTM":
            return timed_image_encodes(dataset, VvcEncoder(preset=name), qp, args.time_images)
        if args.vtm_encoder:
            return timed_image_encodes(
                dataset,
                VvcEncoder(backend="vtm", vtm_encoder=args.vtm_encoder, vtm_cfg=args.vtm_cfg),
                qp,
                args.time_images,
            )
        return float(np.median([manifest[(e["file_name"], qp)] for e in dataset.images[: args.time_images]]))

    out: dict[str, Any] = {}
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        if not args.skip_images:
            setups = {p: [f"vvc.preset={p}"] for p in presets} | {"VTM": ["vvc=vtm"]}
            points = measure(
                "image_anchor",
                setups,
                [int(q) for q in args.qps.split(",")],
                args.images,
                args.results,
                image_psnr,
                image_seconds,
            )
            out["image_anchor"] = {"images": args.images, "points": points, "table": gap_table(points)}
        if args.vtm_encoder and args.feature_images > 0:
            setups = {p: [f"vvc.preset={p}", "workers=1"] for p in presets} | {
                "VTM": ["vvc=vtm", *vtm_args, "workers=1"]
            }
            fqps = [int(q) for q in args.feature_qps.split(",")]
            points = measure(
                "feature_anchor",
                setups,
                fqps,
                args.feature_images,
                args.results,
                feature_psnr,
                lambda n, d, ds, q: recorded_encodes(d),
            )
            out["feature_anchor"] = {"images": args.feature_images, "points": points, "table": gap_table(points)}
    bench = ROOT / "results" / "benchmarks"
    bench.mkdir(parents=True, exist_ok=True)
    name = "encoder_gap" + ("_features" if args.skip_images else "")
    (bench / f"{name}.json").write_text(json.dumps(out, indent=2))
    with (bench / f"{name}.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        for kind, part in out.items():
            for row in part["table"]:
                writer.writerow([kind, part["images"], *row.values()])
    for kind, part in out.items():
        print(f"\n{kind}, {part['images']} images\n\n{markdown(part['table'])}")


if __name__ == "__main__":
    main()
