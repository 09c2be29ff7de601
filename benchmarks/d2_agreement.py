"""How closely the torchvision backend reproduces detectron2 itself on the same model-zoo file.

    python benchmarks/d2_agreement.py [--height 1024 --width 2048] [--objectness-gain 1 8] [--model NAME]

Needs detectron2 importable (docs/reproducing.md). Builds random R50-FPN Cityscapes weights at a
trained scale (the helpers of tests/test_d2_weights.py), optionally multiplies the RPN objectness
weights by ``--objectness-gain`` (a gain of 8 drives logits past 16, where float32 sigmoid
saturates at 1.0 and ranking by probability ties), writes them as a detectron2 .pkl, runs both
backends on one synthetic street scene and reports: detections of each, whether labels and order
agree, the largest box and score differences, and the differing mask pixels. Writes
results/benchmarks/d2_agreement.json. ``--model coco_mask_rcnn_x101_fpn`` / ``coco_faster_rcnn_x101_fpn``
measure MPEG VCM's X101-FPN networks instead (random COCO X101 weights, ``tests/test_x101.py``), written to
results/benchmarks/d2_agreement_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_d2_weights import d2_r50_fpn_shapes, random_d2_state, write_pkl
from test_x101 import random_x101_state

import vcm_eval.config  # noqa: F401 - registers the config schemas
from vcm_eval.data.synthetic import SyntheticSpec, scene_for
from vcm_eval.resources import CONF_DIR
from vcm_eval.vision.registry import BACKENDS, build_task_model

R50 = "cityscapes_mask_rcnn_r50_fpn"
MODELS = (R50, "coco_mask_rcnn_x101_fpn", "coco_faster_rcnn_x101_fpn")


def compare(height: int, width: int, gain: float, model: str = R50) -> dict[str, float | int | bool | str]:
    state = random_d2_state(d2_r50_fpn_shapes(8)) if model == R50 else random_x101_state(masks="mask" in model)
    for key in [k for k in state if "objectness_logits" in k]:
        state[key] = state[key] * gain
    image = scene_for(SyntheticSpec(height=height, width=width), "val", 0).image
    out = {}
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        path = write_pkl(Path(tmp) / "model_final.pkl", state)
        for backend in ("torchvision", "detectron2"):
            cfg = compose("config", [f"model={model}", f"model.weights={path}", f"model._target_={BACKENDS[backend]}"])
            out[backend] = build_task_model(cfg.model, device="cpu").predict(image)
    tv, d2 = out["torchvision"], out["detectron2"]
    same = len(tv.scores) == len(d2.scores) and bool(np.array_equal(tv.labels, d2.labels))
    row: dict[str, float | int | bool | str] = {"model": model, "height": height, "width": width}
    row |= {"objectness_gain": gain, "detections_torchvision": len(tv.scores), "detections_detectron2": len(d2.scores)}
    row["same_labels_in_order"] = same
    if same and len(tv.scores):
        row["max_box_diff_px"] = float(np.abs(tv.boxes - d2.boxes).max())
        row["max_score_diff"] = float(np.abs(tv.scores - d2.scores).max())
        if tv.masks is not None and d2.masks is not None:
            row["mask_pixels_differing"] = int((tv.masks != d2.masks).sum())
            row["mask_pixels"] = int(tv.masks.size)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--objectness-gain", type=float, nargs="+", default=[1.0, 8.0])
    parser.add_argument("--model", choices=MODELS, default=R50)
    args = parser.parse_args()
    rows = [compare(args.height, args.width, g, args.model) for g in args.objectness_gain]
    out = ROOT / "results" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    name = "d2_agreement.json" if args.model == R50 else f"d2_agreement_{args.model}.json"
    (out / name).write_text(json.dumps(rows, indent=2))
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
