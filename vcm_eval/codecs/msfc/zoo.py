"""MSFC checkpoints: fp16 weights that describe their own architecture (the fusion zoo's pattern).

A checkpoint holds ``format``, ``architecture`` (``MsfcArchConfig`` as a dict), ``meta`` (the
training settings and the task model it was trained for) and the weights in fp16. Evaluation builds
the architecture the checkpoint names; one file per task model, ``zoo/<task model name>.pt``, with
its training loss log beside it (``<task model name>_train_log.csv``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vcm_eval.codecs.msfc.config import MsfcArchConfig
from vcm_eval.codecs.msfc.model import MsfcModel
from vcm_eval.errors import CheckpointError, ConfigError, load_failure
from vcm_eval.utils.construct import from_config

FORMAT = "vcm_eval.msfc/1"
ZOO_DIR = Path(__file__).resolve().parent / "zoo"


def build_model(arch: MsfcArchConfig) -> MsfcModel:
    return from_config(MsfcModel, arch)


def zoo_path(task_model: str) -> Path:
    return ZOO_DIR / f"{task_model}.pt"


def log_path(checkpoint: Path) -> Path:
    """The loss log shipped beside a checkpoint."""
    return checkpoint.with_name(f"{checkpoint.stem}_train_log.csv")


def resolve(checkpoint: str, *, task_model: str) -> Path:
    """'' -> the zoo file of the task model; 'zoo:<f>' -> a zoo file; else a path."""
    if not checkpoint:
        return zoo_path(task_model)
    return ZOO_DIR / checkpoint[4:] if checkpoint.startswith("zoo:") else Path(checkpoint).expanduser()


def save(path: Path, model: MsfcModel, arch: MsfcArchConfig, *, meta: dict[str, Any]) -> None:
    """Write the fp16 weights atomically (a kill mid-write leaves the previous file)."""
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT, "architecture": arch.as_dict(), "meta": meta, "state_dict": state}, tmp)
    tmp.replace(path)


def load(path: Path) -> tuple[MsfcModel, dict[str, Any]]:
    """The model a checkpoint names, with its weights (eval mode), and its meta.

    Raises:
        CheckpointError: a missing or unreadable file, another format, or an architecture this
            version cannot build.
    """
    if not path.is_file():
        raise CheckpointError(
            f"MSFC checkpoint {path} does not exist; train it with `python -m vcm_eval.codecs.msfc.train` "
            "(docs/msfc.md) or set pipeline.checkpoint"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read MSFC checkpoint {path}: {load_failure(exc)}; retrain it or fix pipeline.checkpoint"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a vcm_eval MSFC checkpoint (format {FORMAT}); set pipeline.checkpoint to one"
        )
    try:
        model = build_model(MsfcArchConfig(**payload["architecture"]))
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(
            f"MSFC checkpoint {path} names an architecture this vcm_eval cannot build ({exc}); "
            "update vcm_eval or retrain it"
        ) from exc
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"MSFC checkpoint {path} does not fit its architecture ({str(exc)[:200]}); retrain it"
        ) from exc
    return model.eval(), dict(payload.get("meta", {}))
