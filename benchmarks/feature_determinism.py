"""Which CPU settings change the task network's float features? (README: "The same numbers on another machine")

Runs the embedded default's backbone + FPN on the first N synthetic val images in a fresh process
per setting (the ISA settings are read when torch loads) and prints a hash of each image's
features (``vcm_eval.pipelines.base.features_digest``, as records.jsonl holds them) and the largest
difference from the first setting. Settings: torch's ATen kernel dispatch (``ATEN_CPU_CAPABILITY``),
oneDNN's instruction set (``DNNL_MAX_CPU_ISA``), MKL's code path (``MKL_ENABLE_INSTRUCTIONS``),
oneDNN off (``torch.backends.mkldnn``), and the intra-op thread count.

    python benchmarks/feature_determinism.py --images 4        # writes results/benchmarks/feature_determinism.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SETTINGS: dict[str, dict[str, str]] = {
    "default, 2 threads": {"THREADS": "2"},
    "default, 1 thread": {"THREADS": "1"},
    "ATen avx2": {"THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2"},
    "oneDNN AVX2": {"THREADS": "2", "DNNL_MAX_CPU_ISA": "AVX2"},
    "oneDNN AVX512_CORE": {"THREADS": "2", "DNNL_MAX_CPU_ISA": "AVX512_CORE"},
    "ATen avx2 + oneDNN AVX2 + MKL AVX2": {"THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2",
                                          "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "ATen avx2 + oneDNN AVX2 + MKL AVX2, 1 thread": {"THREADS": "1", "ATEN_CPU_CAPABILITY": "avx2",
                                                     "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "oneDNN off": {"THREADS": "2", "NO_MKLDNN": "1"},
}  # fmt: skip


def worker(images: int, out: Path) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(int(os.environ["THREADS"]))
    if os.environ.get("NO_MKLDNN"):
        torch.backends.mkldnn.enabled = False
    from vcm_eval.data.synthetic import SyntheticSpec, scene_for
    from vcm_eval.pipelines.base import features_digest
    from vcm_eval.vision.config import RcnnConfig
    from vcm_eval.vision.torchvision_rcnn import TorchvisionRcnn

    model = TorchvisionRcnn(RcnnConfig())
    arrays, digests = {}, []
    for i in range(images):
        feats = model.features(scene_for(SyntheticSpec(), "val", i).image)
        digests.append(features_digest(feats))
        arrays.update({f"{i}_{k}": v.numpy() for k, v in feats.items()})
    np.savez(out, **arrays)
    info = {"digests": digests, "capability": torch.backends.cpu.get_cpu_capability()}
    out.with_suffix(".json").write_text(json.dumps(info))


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--out", default="results/benchmarks/feature_determinism.json")
    parser.add_argument("--worker", default="")
    args = parser.parse_args()
    if args.worker:
        worker(args.images, Path(args.worker))
        return
    tmp = Path(args.out).with_suffix("")
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    reference = None
    for name, env in SETTINGS.items():
        path = tmp / f"{len(rows)}.npz"
        subprocess.run([sys.executable, __file__, "--images", str(args.images), "--worker", str(path)],
                       env={**os.environ, **env}, check=True)  # fmt: skip
        info = json.loads(path.with_suffix(".json").read_text())
        arrays = dict(np.load(path))
        reference = reference or arrays
        diff = max(float(np.abs(arrays[k] - reference[k]).max()) for k in arrays)
        rows.append({"setting": name, "env": env, **info, "max_abs_diff_vs_first": diff,
                     "same_as_first": info["digests"] == rows[0]["digests"] if rows else True})  # fmt: skip
        print(f"{name:50s} {info['capability']:8s} same={rows[-1]['same_as_first']!s:5s} max|diff|={diff:.3g}")
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
