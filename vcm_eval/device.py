"""``device=auto|cpu|cuda[:N]``: where the task network, feature extraction and fusion codec run.

``auto`` is CUDA when PyTorch sees a GPU, else the CPU, so the same command line runs on a laptop
and on a GPU node. The resolved device is part of every run key (a GPU's convolutions differ from
the CPU's in the last bits, so its records are another measurement), and bitstreams never depend
on it: the fusion codec computes the parameters that index its CDF tables on the CPU.
"""

from __future__ import annotations

import re

import torch

from vcm_eval.errors import ConfigError

_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(spec: str) -> torch.device:
    """The torch device a ``device`` setting names.

    Raises:
        ConfigError: an unknown spelling, or CUDA asked for where PyTorch sees none.
    """
    if not _SPEC.match(spec):
        raise ConfigError(f"device={spec!r} is unknown; use auto, cpu, cuda or cuda:N")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={spec} but PyTorch sees no CUDA GPU here; use device=cpu or device=auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={spec} but only {torch.cuda.device_count()} CUDA device(s) exist; "
                f"use cuda:0..{torch.cuda.device_count() - 1}"
            )
    return device
