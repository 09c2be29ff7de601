"""Build the evaluation dataset a config names: synthetic (generated), COCO or Cityscapes.

Every kind ends up as an ``EvalDataset``: a COCO instances json (what pycocotools evaluates), the
image folder it refers to, and, when present, a Cityscapes gtFine folder (what cityscapesscripts
evaluates). Synthetic and Cityscapes data carry both; COCO data only the json.
"""

from __future__ import annotations

from pathlib import Path

from vcm_eval.config import DatasetConfig
from vcm_eval.data.base import Category, EvalDataset
from vcm_eval.data.synthetic import SyntheticSpec, write_split
from vcm_eval.errors import ConfigError
from vcm_eval.utils.construct import from_config

__all__ = ["Category", "EvalDataset", "build_dataset", "synthetic_spec"]


def synthetic_spec(cfg: DatasetConfig) -> SyntheticSpec:
    return from_config(SyntheticSpec, cfg)


def build_dataset(cfg: DatasetConfig, *, data_dir: Path, progress: bool = True) -> EvalDataset:
    """The ``EvalDataset`` a config describes (generating the synthetic one on first use)."""
    if cfg.limit < 0:
        raise ConfigError(f"dataset.limit={cfg.limit} must be >= 0 (0 keeps every image)")
    if cfg.kind == "synthetic":
        if cfg.size <= 0 or cfg.height < 64 or cfg.width < 64:
            raise ConfigError(f"synthetic dataset needs size > 0 and height, width >= 64 (got {cfg.size}, {cfg.height}x{cfg.width})")
        spec = synthetic_spec(cfg)
        root = Path(cfg.root) if cfg.root else data_dir / spec.folder_name()
        coco_json = write_split(root, spec, cfg.split, cfg.size, progress=progress)
        return EvalDataset(name=cfg.name, image_root=root, coco_json=coco_json, cityscapes_gt=root / "gtFine" / cfg.split, limit=cfg.limit)
    if cfg.kind == "coco":
        from vcm_eval.data.coco import coco_dataset

        return coco_dataset(cfg)
    if cfg.kind == "cityscapes":
        from vcm_eval.data.cityscapes import cityscapes_dataset

        return cityscapes_dataset(cfg, cache_dir=data_dir, progress=progress)
    raise ConfigError(f"dataset.kind={cfg.kind!r} is unknown; use one of synthetic, coco, cityscapes")
