"""Which decoded level costs the fusion codec its accuracy? Swap decoded levels in one at a time.

    python -m benchmarks.fusion_level_swap [--images 30] [--quality 5] [any Hydra override]

For each val image: features, then the codec's round trip (real range coding); the task network
then runs on the original pyramid with one level (or all) replaced by its decoded version, and
pycocotools scores each variant. Also reports each level's MSE relative to its variance. Writes
results/benchmarks/fusion_level_swap_q<quality>.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

import vcm_eval.config  # noqa: F401 - registers the schemas
from vcm_eval.codecs.fusion.model import CODED_LEVELS
from vcm_eval.data.datasets import build_dataset
from vcm_eval.metrics.coco_eval import CocoEvaluator, label_to_category, to_coco_results
from vcm_eval.pipelines.build import build_codec
from vcm_eval.vision.registry import build_task_model

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("original", "all decoded", *(f"{lv} decoded" for lv in CODED_LEVELS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=30)
    ap.add_argument("--quality", type=int, default=5)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            [
                f"dataset.limit={args.images}",
                "pipeline=fusion_codec",
                f"pipeline.quality={args.quality}",
                *args.overrides,
            ],
        )
    torch.set_num_threads(cfg.threads)
    dataset = build_dataset(cfg.dataset, data_dir=Path(cfg.paths.data), progress=False)
    model = build_task_model(cfg.model)
    codec = build_codec(cfg)
    path = codec.checkpoint  # type: ignore[union-attr]
    label_map = label_to_category(model.class_names, {c.name: c.coco_id for c in dataset.categories})
    detections: dict[str, list] = {v: [] for v in VARIANTS}
    rel_mse: dict[str, list[float]] = {lv: [] for lv in CODED_LEVELS}
    for sample in dataset:
        feats = model.features(sample.image)
        decoded = codec.decode(codec.encode(feats))
        for lv in CODED_LEVELS:
            rel_mse[lv].append(float(((decoded[lv] - feats[lv]) ** 2).mean() / feats[lv].var()))
        for variant in VARIANTS:
            if variant == "original":
                levels = dict(feats.levels)
            elif variant == "all decoded":
                levels = dict(decoded.levels)  # P6 rebuilt from decoded P5, as the pipeline does
            else:
                swapped = variant.split()[0]
                levels = {**feats.levels, swapped: decoded[swapped]}
            detections[variant] += to_coco_results(
                sample.image_id, model.predict_from_features(feats.replace(levels)), label_map
            )
    result = {
        "checkpoint": str(path),
        "images": len(dataset),
        "AP": {},
        "relative_mse": {lv: sum(v) / len(v) for lv, v in rel_mse.items()},
    }
    for variant in VARIANTS:
        evaluator = CocoEvaluator(dataset.coco_json, dataset.image_ids)
        evaluator.process([{}], [{"detections": detections[variant]}])
        result["AP"][variant] = {task: metrics["AP"] for task, metrics in evaluator.evaluate().items()}
        print(f"{variant:12s} " + "  ".join(f"{task} AP {ap:.2f}" for task, ap in result["AP"][variant].items()))
    print("MSE / variance: " + "  ".join(f"{lv} {v:.3f}" for lv, v in result["relative_mse"].items()))
    out = ROOT / "results" / "benchmarks" / f"fusion_level_swap_q{args.quality}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
