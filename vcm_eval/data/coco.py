"""COCO (or any COCO-format instances json) from a local root, as an ``EvalDataset``.

Expected layout (the official val2017.zip + annotations_trainval2017.zip)::

    <root>/<split>/<file_name>                       e.g. <root>/val2017/000000000139.jpg
    <root>/annotations/instances_<split>.json

``dataset.images`` / ``dataset.annotations`` override either path (then ``root`` may be empty).
The json's first image must exist under the image folder, so a wrong folder fails at once with
the layout it expected, not in the middle of a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vcm_eval.data.base import EvalDataset
from vcm_eval.data.config import CocoDatasetConfig
from vcm_eval.errors import ConfigError, DataError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from vcm_eval.utils.components import Runtime

LAYOUT = "<root>/{split}/<image files> and <root>/annotations/instances_{split}.json"


def coco_paths(cfg: CocoDatasetConfig) -> tuple[Path, Path]:
    """(image folder, instances json) from ``images``/``annotations``, else from ``root`` + ``split``."""
    if not cfg.root and not (cfg.images and cfg.annotations):
        raise ConfigError(
            f"a COCO dataset needs dataset.root=<folder holding {LAYOUT.format(split=cfg.split)}> "
            "or dataset.images=<image folder> dataset.annotations=<instances json>"
        )
    root = Path(cfg.root).expanduser() if cfg.root else Path()
    images = Path(cfg.images).expanduser() if cfg.images else root / cfg.split
    annotations = (
        Path(cfg.annotations).expanduser() if cfg.annotations else root / "annotations" / f"instances_{cfg.split}.json"
    )
    if cfg.root and not root.is_dir():
        raise DataError(f"dataset.root={cfg.root} is not a folder; it must hold {LAYOUT.format(split=cfg.split)}")
    for path, what in ((annotations, "annotation file"), (images, "image folder")):
        if not path.exists():
            raise DataError(
                f"COCO {what} {path} does not exist; expected {LAYOUT.format(split=cfg.split)} "
                "(or set dataset.images/annotations)"
            )
    return images, annotations


def coco_dataset(view: DictConfig, runtime: Runtime) -> EvalDataset:
    """An ``EvalDataset`` of a COCO-format split, read in place (nothing is written under ``runtime.data_dir``); checks
    the first image's path."""
    cfg: CocoDatasetConfig = view.dataset
    images, annotations = coco_paths(cfg)
    dataset = EvalDataset(name=cfg.name, image_root=images, coco_json=annotations, cityscapes_gt=None, limit=cfg.limit)
    if dataset.images:
        first = images / dataset.images[0]["file_name"]
        if not first.is_file():
            raise DataError(
                f"image {first} listed in {annotations.name} does not exist; dataset.images must be the folder "
                f"the json's file_name entries are relative to (expected {LAYOUT.format(split=cfg.split)})"
            )
    return dataset
