"""Speed and peak memory of the feature anchor codec (encode + decode of one image's features).

    python benchmarks/bench_feature_anchor.py [--cases synthetic,cityscapes] [--qps 32] [--repeats 1]

Cases (features of the default slim R-CNN with random-init weights, i.e. the real network run on a
synthetic scene; timing does not depend on the weights' training):

* ``synthetic``  - the synthetic default, 512 x 256 input: P2 256 x 64 x 128 -> 1536 x 2048 frame
* ``cityscapes`` - a 2048 x 1024 input at full size (model min/max size 1024/2048): P2 256 x 256
  x 512, as R50-FPN gives on Cityscapes -> 6144 x 8192 frame

Each (case, qp, levels) runs in a fresh worker process that only loads the features and codes
them, so its peak RSS is the codec's, not the network's. Reported per image: wall and CPU seconds
of encode and decode (CPU = worker + its FFmpeg children, from ``getrusage``: robust on a busy
machine), the worker's peak RSS (and its RSS after importing torch, before any data), the
largest FFmpeg child's peak RSS, and their sum (an upper bound of the peak of both together).

Peak RSS is each process's ``VmHWM`` from /proc (Linux), the children's sampled every 10 ms while
they run. ``getrusage(...).ru_maxrss`` is not used: Linux carries the parent's peak into a child
across fork + exec, so it reports the forking process's size, not FFmpeg's. Writes
results/benchmarks/feature_anchor.{json,csv}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
CASES = {"synthetic": (256, 512, 256, 512), "cityscapes": (1024, 2048, 1024, 2048)}  # image h, w, model min, max size


def features_file(case: str, out_dir: Path) -> Path:
    """Extract the case's features once (random-init model on a synthetic scene) and save them."""
    from vcm_eval.data.synthetic import SyntheticSpec, scene_for
    from vcm_eval.vision.torchvision_rcnn import RcnnConfig, TorchvisionRcnn

    height, width, min_size, max_size = CASES[case]
    torch.manual_seed(0)
    model = TorchvisionRcnn(RcnnConfig(weights=None, min_size=min_size, max_size=max_size))
    image = scene_for(SyntheticSpec(height=height, width=width), "val", 0).image
    feats = model.features(image)
    path = out_dir / f"{case}.pt"
    torch.save({"levels": dict(feats.levels), "image_size": feats.image_size, "input_size": feats.input_size}, path)
    return path


def _hwm_mb(pid: int | str = "self") -> float:
    """Peak RSS (VmHWM) of a live process in MB; 0 if it has already exited."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0.0


class ChildPeak:
    """Samples the peak RSS of this process's children (the FFmpeg runs) every ``interval`` s."""

    def __init__(self, interval: float = 0.01) -> None:
        self.peak_mb, self._interval, self._stop = 0.0, interval, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _children(self) -> list[int]:
        me, kids = os.getpid(), []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == me:  # field 4: ppid
                            kids.append(int(entry))
                except (OSError, IndexError, ValueError):
                    continue
        return kids

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            for pid in self._children():
                self.peak_mb = max(self.peak_mb, _hwm_mb(pid))

    def __enter__(self) -> ChildPeak:  # noqa: PYI034 - py3.10 has no typing.Self
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def worker(path: Path, qp: int, levels: str, minmax: str, chroma: str) -> dict[str, Any]:
    """Encode + decode once in this process; times and peak memory (run in a fresh process)."""
    from vcm_eval.codecs.feature_anchor.codec import FeatureVvcCodec
    from vcm_eval.codecs.vvc.encoder import VvcEncoder
    from vcm_eval.vision.base import FeatureSet

    baseline_mb = _hwm_mb()  # Python + torch + vcm_eval imported, before any data
    saved = torch.load(path, weights_only=True)
    feats = FeatureSet(
        levels=saved["levels"], image_size=tuple(saved["image_size"]), input_size=tuple(saved["input_size"])
    )
    del saved
    codec = FeatureVvcCodec(vvc=VvcEncoder(threads=1), qp=qp, levels=levels, minmax=minmax, chroma=chroma)
    me, kids = resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN
    with ChildPeak() as children:
        c0, w0 = _cpu(me) + _cpu(kids), time.perf_counter()
        data = codec.encode(feats)
        c1, w1 = _cpu(me) + _cpu(kids), time.perf_counter()
        decoded = codec.decode(data)
        c2, w2 = _cpu(me) + _cpu(kids), time.perf_counter()
    mse = float(
        sum(float((decoded[k] - feats[k]).pow(2).sum()) for k in decoded) / sum(decoded[k].numel() for k in decoded)
    )
    report = codec.report(feats, data)
    worker_mb, child_mb = _hwm_mb(), children.peak_mb
    h, w = feats.image_size
    return {
        "qp": qp, "levels": levels, "minmax": minmax, "chroma": chroma,
        "image": f"{w}x{h}", "frame": f"{report['frame_width']}x{report['frame_height']}",
        "bytes": len(data), "header_bytes": report["header_bytes"], "bpp": 8 * len(data) / (h * w), "feature_mse": mse,
        "encode_s": w1 - w0, "decode_s": w2 - w1, "encode_cpu_s": c1 - c0, "decode_cpu_s": c2 - c1,
        "import_baseline_mb": baseline_mb, "worker_peak_mb": worker_mb, "ffmpeg_peak_mb": child_mb,
        "peak_total_mb": worker_mb + child_mb,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="synthetic,cityscapes")
    ap.add_argument("--qps", default="32")
    ap.add_argument("--levels", default="p2-p5")
    ap.add_argument("--minmax", default="tensor")
    ap.add_argument("--chroma", default="400")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    ap.add_argument(
        "--worker", nargs=5, metavar=("FEATURES", "QP", "SPLIT", "MINMAX", "CHROMA"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.worker:
        path, qp, levels, minmax, chroma = args.worker
        print(json.dumps(worker(Path(path), int(qp), levels, minmax, chroma)))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_fa_") as tmp:
        for case in args.cases.split(","):
            t0 = time.perf_counter()
            feats = features_file(case, Path(tmp))
            print(f"{case}: features in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            for qp in map(int, args.qps.split(",")):
                for levels in args.levels.split(","):
                    for rep in range(args.repeats):
                        cmd = [
                            sys.executable,
                            __file__,
                            "--worker",
                            str(feats),
                            str(qp),
                            levels,
                            args.minmax,
                            args.chroma,
                        ]
                        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                        row = {"case": case, "repeat": rep, **json.loads(out.strip().splitlines()[-1])}
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr)
    env = {
        "cpu_count": os.cpu_count(), "load_avg_1m_at_end": os.getloadavg()[0], "python": platform.python_version(),
        "torch": torch.__version__, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }  # fmt: skip
    from vcm_eval.codecs.vvc.encoder import VvcEncoder

    env["codec"] = VvcEncoder().version() + " preset faster, 1 thread"
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "feature_anchor.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2))
    with open(out_dir / "feature_anchor.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out_dir / 'feature_anchor.json'} and .csv", file=sys.stderr)


if __name__ == "__main__":
    main()
