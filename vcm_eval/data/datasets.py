"""Build the evaluation dataset a config names: synthetic (generated), COCO or Cityscapes.

Every kind ends up as an ``EvalDataset``: a COCO instances json (what pycocotools evaluates), the
image folder it refers to, and, when present, a Cityscapes gtFine folder (what cityscapesscripts
evaluates). Synthetic and Cityscapes data carry both; COCO data only the json.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vcm_eval.data.base import Category, EvalDataset
from vcm_eval.data.cityscapes import cityscapes_dataset
from vcm_eval.data.coco import coco_dataset
from vcm_eval.data.config import DATASET_SCHEMAS, DatasetConfig, SyntheticDatasetConfig
from vcm_eval.data.synthetic import SyntheticSpec, folder_name, write_split
from vcm_eval.errors import ConfigError
from vcm_eval.utils.construct import from_config

__all__ = ["Category", "EvalDataset", "build_dataset", "synthetic_spec"]


def synthetic_spec(cfg: SyntheticDatasetConfig) -> SyntheticSpec:
    """The generator settings of a synthetic dataset config (what names its folder)."""
    return from_config(SyntheticSpec, cfg)


def synthetic_dataset(cfg: SyntheticDatasetConfig, *, data_dir: Path, progress: bool = True) -> EvalDataset:
    """The embedded default, written under ``root`` (or ``data_dir``/<generator folder>) on first use."""
    if cfg.size <= 0 or cfg.height < 64 or cfg.width < 64:
        raise ConfigError(f"synthetic dataset needs size > 0 and height, width >= 64 (got {cfg.size}, {cfg.height}x{cfg.width})")
    spec = synthetic_spec(cfg)
    root = Path(cfg.root) if cfg.root else data_dir / folder_name(spec)
    coco_json = write_split(root, spec, cfg.split, cfg.size, progress=progress)
    return EvalDataset(name=cfg.name, image_root=root, coco_json=coco_json, cityscapes_gt=root / "gtFine" / cfg.split, limit=cfg.limit)


_BUILDERS: dict[str, Callable[..., EvalDataset]] = {
    "synthetic": synthetic_dataset,
    "coco": coco_dataset,
    "cityscapes": cityscapes_dataset,
}
assert set(_BUILDERS) == set(DATASET_SCHEMAS), "every dataset kind has a schema and a builder"


def build_dataset(cfg: DatasetConfig, *, data_dir: Path, progress: bool = True) -> EvalDataset:
    """The ``EvalDataset`` a config describes (generating the synthetic one on first use)."""
    if cfg.limit < 0:
        raise ConfigError(f"dataset.limit={cfg.limit} must be >= 0 (0 keeps every image)")
    builder = _BUILDERS.get(cfg.kind)
    if builder is None:
        raise ConfigError(f"dataset.kind={cfg.kind!r} is unknown; use one of {', '.join(_BUILDERS)} (dataset=<kind>)")
    return builder(cfg, data_dir=data_dir, progress=progress)
