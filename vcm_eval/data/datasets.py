"""Build the evaluation dataset a config names: its ``_target_`` builder (synthetic, COCO, Cityscapes, OIV6).

Every kind ends up as an ``EvalDataset``: a COCO instances json (what pycocotools evaluates), the
image folder it refers to, and, when present, a Cityscapes gtFine folder (what cityscapesscripts
evaluates) or Open Images ground truth (what the Open Images Challenge metric evaluates). Each
dataset schema (``vcm_eval.data.config``) names its builder, a function
``(cfg, *, data_dir, progress) -> EvalDataset`` beside the reader it calls.
"""

from __future__ import annotations

from pathlib import Path

from vcm_eval.data.base import Category, EvalDataset
from vcm_eval.data.config import DatasetConfig
from vcm_eval.data.synthetic import synthetic_spec
from vcm_eval.errors import ConfigError
from vcm_eval.utils.components import locate

__all__ = ["Category", "EvalDataset", "build_dataset", "synthetic_spec"]


def build_dataset(cfg: DatasetConfig, *, data_dir: Path, progress: bool = True) -> EvalDataset:
    """The ``EvalDataset`` a config describes (generating the synthetic one on first use)."""
    if cfg.limit < 0:
        raise ConfigError(f"dataset.limit={cfg.limit} must be >= 0 (0 keeps every image)")
    builder = locate(cfg._target_, "dataset._target_")
    dataset = builder(cfg, data_dir=data_dir, progress=progress)
    if not isinstance(dataset, EvalDataset):
        raise ConfigError(f"dataset._target_={cfg._target_} built a {type(dataset).__name__}, not an EvalDataset")
    return dataset
