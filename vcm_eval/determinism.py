"""The same features on another machine: what decides the task network's float features on a CPU.

Measured (benchmarks/feature_determinism.py, docs/performance.md): the features of one image
change in their last bits with

* oneDNN's instruction set (its AVX-512 and AVX2 convolutions sum in another order: up to 7e-5
  apart on the synthetic default), which it picks from the CPU it runs on: two x86 machines, one
  with AVX-512 and one without, compute different features from the same weights and pixels;
* the number of intra-op threads (1e-5 apart between 1 and 2 threads, at either instruction set);

and not with torch's own kernel dispatch (``ATEN_CPU_CAPABILITY``): its kernels here are exact.

So every command pins oneDNN to AVX2 (``DNNL_MAX_CPU_ISA=AVX2``, what nearly every x86-64 CPU of
the last ten years has) before torch loads, unless the user set it, and the run key holds the
pinned instruction set and the thread count (``cpu_identity``): a run made otherwise is another
measurement, never a resumed one. Each record keeps a hash of the features the network produced
(``features_sha256``), so two machines compare their runs image by image. What remains: another
oneDNN or torch version, another CPU vendor's AVX2 implementation (not measured), and GPUs.
"""

from __future__ import annotations

import os

PINNED_ISA = "AVX2"


def pin_cpu_kernels() -> None:
    """Pin oneDNN's instruction set for this process (before torch's first convolution; the user's setting wins)."""
    os.environ.setdefault("DNNL_MAX_CPU_ISA", PINNED_ISA)


def cpu_identity(threads: int) -> dict[str, str | int]:
    """What besides weights and pixels decides CPU features: the oneDNN instruction set and the thread count."""
    return {"cpu_isa": os.environ.get("DNNL_MAX_CPU_ISA", "native"), "cpu_threads": int(threads)}
