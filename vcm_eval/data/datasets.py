"""Build the dataset a config names, as every component is built: its ``_target_`` through
``vcm_eval.utils.components.build``.

Every image kind ends up as an ``EvalDataset``: a COCO instances json (what pycocotools evaluates),
the image folder it refers to, and, when present, a Cityscapes gtFine folder (what cityscapesscripts
evaluates) or Open Images ground truth (what the Open Images Challenge metric evaluates); every video
kind as a ``VideoDataset``. Each dataset schema (``vcm_eval.data.config``, ``vcm_eval.data.video.config``)
names its builder, a function ``(cfg, runtime)`` beside the reader it calls: ``cfg`` is the read-only
view holding the ``dataset`` group, ``runtime`` says where generated data goes and whether to show
progress (``vcm_eval.utils.components.Runtime``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, overload

from omegaconf import OmegaConf

from vcm_eval.data.base import Category, EvalDataset
from vcm_eval.data.synthetic import synthetic_spec
from vcm_eval.errors import ConfigError
from vcm_eval.utils.components import Runtime, build, resolved

__all__ = ["Category", "EvalDataset", "build_dataset", "synthetic_spec"]

D = TypeVar("D")


@overload
def build_dataset(cfg: Any, *, data_dir: Path, progress: bool = ...) -> EvalDataset: ...


@overload
def build_dataset(cfg: Any, *, data_dir: Path, progress: bool = ..., kind: type[D]) -> D: ...


def build_dataset(cfg: Any, *, data_dir: Path, progress: bool = True, kind: type[Any] = EvalDataset) -> Any:
    """The dataset the ``dataset`` config node ``cfg`` describes (generating a synthetic one on first use),
    checked to be a ``kind`` (``EvalDataset`` for image runs, ``VideoDataset`` for video runs).

    Raises:
        ConfigError: a negative ``limit``, a ``_target_`` that names nothing, or one that builds another kind.
    """
    node = resolved(cfg, "dataset")
    if node.limit < 0:
        raise ConfigError(f"dataset.limit={node.limit} must be >= 0 (0 keeps everything)")
    runtime = Runtime(data_dir=Path(data_dir), progress=progress)
    dataset = build(OmegaConf.create({"dataset": node}), "dataset", runtime)
    if not isinstance(dataset, kind):
        raise ConfigError(f"dataset._target_={node._target_} built a {type(dataset).__name__}, not a {kind.__name__}")
    return dataset
