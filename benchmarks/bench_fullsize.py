"""Full-size Cityscapes input (2048 x 1024) through the R50-FPN Mask R-CNN on the CPU: time and peak memory.

    python benchmarks/bench_fullsize.py [--model cityscapes_mask_rcnn_r50_fpn] [--weights PATH]
        [--image PATH] [--threads 2] [--repeats 1] [--pipelines uncompressed,image_anchor,quant,...]
        [--pipeline-set pipeline.checkpoint=zoo:synthetic_maskrcnn_slim_q5.pt]

``network``: one worker process builds the model (conf/model/<model>.yaml at its test size,
1024/2048, so a Cityscapes image enters at full resolution), then runs ``features`` (resize,
normalize, backbone + FPN -> P2..P6) and ``predict_from_features`` (RPN, ROI heads, mask
pasting) on the image ``--repeats`` times. Without ``--weights`` the weights are the random
initialization (seeded): the network does the same work, and it keeps all 100 detections, the
worst case for mask pasting. The default image is the synthetic street scene drawn at 2048 x 1024.

``--pipelines``: each named pipeline runs end to end through the CLI (``python -m vcm_eval``) in its
own process on a one-image Cityscapes-layout dataset holding that image (leftImg8bit + gtFine), so
the dataset loader, codec, network and both evaluators all see the full-size image.

Reported: wall and CPU seconds (user + system of the process and its children: robust when the
machine is busy) and the peak RSS (``ru_maxrss``) of each process, plus the RSS after the model is
built. Writes results/benchmarks/fullsize.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HEIGHT, WIDTH = 1024, 2048


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_image(path: str) -> Any:
    """uint8 RGB [1024, 2048, 3]: the given file, or the synthetic street scene at that size."""
    import numpy as np
    from PIL import Image

    from vcm_eval.data.synthetic import SyntheticSpec, scene_for

    if path:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    return scene_for(SyntheticSpec(height=HEIGHT, width=WIDTH, max_objects=24), "val", 0).image


def network_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Runs inside the worker process: model build, features, predict_from_features."""
    import torch
    from hydra import compose, initialize_config_dir

    import vcm_eval.config  # noqa: F401 - registers the schemas
    from vcm_eval.vision.registry import build_task_model

    torch.set_num_threads(args.threads)
    image = load_image(args.image)
    torch.manual_seed(0)
    weights = args.weights or "null"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model={args.model}", f"model.weights={weights}", *args.set])
    t0, c0 = time.perf_counter(), _cpu()
    model = build_task_model(cfg.model)
    out: dict[str, Any] = {
        "build_s": time.perf_counter() - t0,
        "build_cpu_s": _cpu() - c0,
        "rss_after_build_mb": _rss_mb(),
    }
    runs = []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), _cpu()
        feats = model.features(image)
        t1, c1 = time.perf_counter(), _cpu()
        inst = model.predict_from_features(feats)
        t2, c2 = time.perf_counter(), _cpu()
        runs.append(
            {
                "features_s": t1 - t0,
                "features_cpu_s": c1 - c0,
                "predict_s": t2 - t1,
                "predict_cpu_s": c2 - c1,
                "detections": len(inst),
            }
        )
    out.update(
        {
            "image": [int(image.shape[0]), int(image.shape[1])],
            "input_size": list(feats.input_size),
            "feature_shapes": {k: list(v) for k, v in feats.shapes().items()},
            "feature_values": feats.num_values(),
            "feature_float32_mb": feats.num_values() * 4 / 2**20,
            "masks_shape": None if inst.masks is None else list(inst.masks.shape),
            "runs": runs,
            "peak_rss_mb": _rss_mb(),
        }
    )
    return out


def write_one_image_cityscapes(root: Path, image_path: str) -> None:
    """A Cityscapes-layout dataset of the benchmark image (gtFine from the synthetic scene's instances)."""
    import numpy as np
    from PIL import Image

    from vcm_eval.data.synthetic import SyntheticSpec, instance_id_map, scene_for

    scene = scene_for(SyntheticSpec(height=HEIGHT, width=WIDTH, max_objects=24), "val", 0)
    image = load_image(image_path) if image_path else scene.image
    stem = "synthtown_000000_000019"
    (root / "leftImg8bit/val/synthtown").mkdir(parents=True)
    (root / "gtFine/val/synthtown").mkdir(parents=True)
    Image.fromarray(image).save(root / f"leftImg8bit/val/synthtown/{stem}_leftImg8bit.png")
    Image.fromarray(instance_id_map(scene).astype(np.uint16)).save(
        root / f"gtFine/val/synthtown/{stem}_gtFine_instanceIds.png"
    )
    Image.fromarray(scene.label_ids).save(root / f"gtFine/val/synthtown/{stem}_gtFine_labelIds.png")


def worker_cmd(args: argparse.Namespace, json_out: Path) -> list[str]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--json-out",
        str(json_out),
        "--model",
        args.model,
    ]
    cmd += ["--threads", str(args.threads), "--repeats", str(args.repeats), "--set", *args.set]
    if args.weights:
        cmd += ["--weights", args.weights]
    if args.image:
        cmd += ["--image", args.image]
    return cmd


def measure(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """wall / CPU seconds and peak RSS of one child process (``os.wait4`` gives its own rusage)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err.strip()[-2000:]}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="cityscapes_mask_rcnn_r50_fpn")
    ap.add_argument("--weights", default="", help="detectron2/torchvision/vcm_eval checkpoint; empty = random init")
    ap.add_argument(
        "--image", default="", help="a 2048x1024 image (e.g. a Cityscapes leftImg8bit PNG); empty = synthetic"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument(
        "--set", nargs="*", default=[], help="extra config overrides, e.g. model.box_score_thresh=0 (100 detections)"
    )
    ap.add_argument(
        "--pipeline-set",
        nargs="*",
        default=[],
        help="overrides for the pipeline runs only, e.g. pipeline.checkpoint=zoo:<file>",
    )
    ap.add_argument(
        "--pipelines",
        default="",
        help="comma list run end to end through the CLI, e.g. uncompressed,image_anchor,quant",
    )
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "fullsize.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        Path(args.json_out).write_text(json.dumps(network_worker(args)))
        return

    import torch

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_at_start": os.getloadavg(),
            "torch": torch.__version__,
        },
        "threads": args.threads,
        "model": args.model,
        "weights": args.weights or "random init (seed 0)",
        "overrides": args.set,
    }
    with tempfile.TemporaryDirectory(prefix="bench_fullsize_") as tmp:
        json_out = Path(tmp) / "network.json"
        proc = measure(worker_cmd(args, json_out), env)
        result["network"] = {**json.loads(json_out.read_text()), "process": proc}
        print(json.dumps(result["network"], indent=1))
        pipelines = [p for p in args.pipelines.split(",") if p]
        if pipelines:
            root = Path(tmp) / "cityscapes"
            write_one_image_cityscapes(root, args.image)
            result["pipelines"] = {}
            for name in pipelines:
                cmd = [
                    sys.executable,
                    "-m",
                    "vcm_eval",
                    f"pipeline={name}",
                    "dataset=cityscapes",
                    f"dataset.root={root}",
                ]
                cmd += [
                    f"model={args.model}",
                    f"model.weights={args.weights or 'null'}",
                    f"threads={args.threads}",
                    "workers=1",
                ]
                cmd += [
                    f"paths.results={tmp}/results",
                    f"paths.data={tmp}/data",
                    f"paths.cache={tmp}/cache",
                    "progress=false",
                    *args.set,
                    *args.pipeline_set,
                ]
                result["pipelines"][name] = measure(cmd, env)
                metrics = sorted(Path(tmp, "results").rglob("metrics.json"), key=lambda p: p.stat().st_mtime)
                if metrics:
                    row = json.loads(metrics[-1].read_text())
                    result["pipelines"][name]["metrics"] = {
                        k: row[k] for k in ("bpp", "encode_s", "decode_s", "task_s") if k in row
                    }
                print(name, json.dumps(result["pipelines"][name]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
