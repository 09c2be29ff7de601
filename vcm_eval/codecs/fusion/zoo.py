"""Fusion codec checkpoints: weights-only files that describe their own architecture.

A checkpoint holds ``format``, ``architecture`` (FusionArchConfig as a dict), ``meta`` (lambda,
training command, task model) and the fp16 weights without CompressAI's derived CDF tables
(``update()`` rebuilds those deterministically), which keeps each rate point under 10 MB.
Evaluation builds the model the checkpoint names, so rate points of different architectures sit
side by side in one zoo; training (``init_from``) asks for its own architecture and gets an error
when the file has another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vcm_eval.codecs.fusion.config import FusionArchConfig
from vcm_eval.codecs.fusion.model import FusionCodecModel
from vcm_eval.errors import CheckpointError, ConfigError, load_failure
from vcm_eval.utils.construct import from_config

FORMAT = "vcm_eval.fusion/1"
ZOO_DIR = Path(__file__).resolve().parent / "zoo"
_DERIVED = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
# Architecture fields added after format 1 shipped: a checkpoint without them was made with these.
_ARCH_BEFORE_FIELD = {"latent_stride": 64, "decoder": "cascade"}


def build_model(arch: FusionArchConfig) -> FusionCodecModel:
    return from_config(FusionCodecModel, arch)


def zoo_path(task_model: str, quality: int) -> Path:
    return ZOO_DIR / f"{task_model}_q{quality}.pt"


def resolve(checkpoint: str, *, task_model: str, quality: int) -> Path:
    """'' -> the zoo file of (task model, quality); 'zoo:<f>' -> a zoo file; else a path."""
    if not checkpoint:
        return zoo_path(task_model, quality)
    return ZOO_DIR / checkpoint[4:] if checkpoint.startswith("zoo:") else Path(checkpoint).expanduser()


def save(path: Path, model: FusionCodecModel, arch: FusionArchConfig, *, meta: dict[str, Any]) -> None:
    state = {
        k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items() if not k.endswith(_DERIVED)
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT, "architecture": arch.as_dict(), "meta": meta, "state_dict": state}, tmp)
    tmp.replace(path)


def load(path: Path, arch: FusionArchConfig | None = None) -> tuple[FusionCodecModel, dict[str, Any]]:
    """Model with the checkpoint's weights (eval mode) and its meta.

    ``arch`` None builds the architecture the checkpoint names; given, it must be that one.

    Raises:
        CheckpointError: missing or unreadable file, another architecture than ``arch``, or one
            this version cannot build.
    """
    if not path.is_file():
        raise CheckpointError(
            f"fusion codec checkpoint {path} does not exist; train it with `python -m vcm_eval.codecs.fusion.train "
            "train.quality=<q> train.lmbda=<l>` (docs/fusion_codec.md) or set pipeline.checkpoint"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read fusion checkpoint {path}: {load_failure(exc)}; retrain it or fix pipeline.checkpoint"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vcm_eval fusion codec checkpoint (format {FORMAT})")
    have = {**_ARCH_BEFORE_FIELD, **payload["architecture"]}
    if arch is None:
        try:
            arch = FusionArchConfig(**have)
        except TypeError as exc:
            raise CheckpointError(
                f"fusion checkpoint {path} names an architecture this vcm_eval does not know ({exc}); "
                "update vcm_eval or retrain it"
            ) from exc
    want = arch.as_dict()
    diff = sorted(k for k in want if want[k] != have.get(k))
    if diff:
        detail = "; ".join(f"{k}: wanted {want[k]} vs checkpoint {have.get(k)}" for k in diff)
        raise CheckpointError(
            f"fusion checkpoint {path} has another architecture ({detail}); "
            "start from a checkpoint of this architecture or change arch"
        )
    try:
        model = build_model(arch)
    except ConfigError as exc:
        raise CheckpointError(
            f"fusion checkpoint {path} names an architecture this vcm_eval cannot build ({exc}); "
            "update vcm_eval or retrain it"
        ) from exc
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()}
    # nn.Module's loader: CompressAI's override expects the derived CDF buffers we leave out.
    missing, unexpected = torch.nn.Module.load_state_dict(model, state, strict=False)
    bad = [k for k in missing if not k.endswith(_DERIVED)] + list(unexpected)
    if bad:
        raise CheckpointError(f"fusion checkpoint {path} has missing/unexpected weights {bad[:5]}; retrain it")
    return model.eval(), dict(payload.get("meta", {}))
