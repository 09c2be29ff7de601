"""The embedded default dataset: deterministic synthetic street scenes on disk, in two formats.

One split is written as

    <root>/leftImg8bit/<split>/synthtown/synthtown_<index:06d>_000019_leftImg8bit.png
    <root>/gtFine/<split>/synthtown/synthtown_<index:06d>_000019_gtFine_{instanceIds,labelIds}.png
    <root>/annotations/instances_<split>.json        (COCO instances, RLE masks)

so that the real pycocotools and cityscapesscripts evaluators run on it unchanged. Both formats
are written from the same masks; ``tests/test_synthetic.py`` checks they describe the same
instances. Image ``index`` of ``split`` is drawn from ``np.random.default_rng([seed, split code,
index])``, so any image can be regenerated alone (training draws its images in memory this way).

A split is written into a temporary folder and renamed into place when complete, so an
interrupted generation never leaves a half-written dataset behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import FileLock
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from vcm_eval.data.base import EvalDataset
from vcm_eval.data.config import SyntheticDatasetConfig, SyntheticSpec
from vcm_eval.data.scene import CLASSES, Scene, generate_scene
from vcm_eval.errors import ConfigError
from vcm_eval.utils.construct import from_config

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from vcm_eval.utils.components import Runtime

CITY = "synthtown"
FRAME = 19  # Cityscapes' annotated frames are *_000019
SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
FORMAT_VERSION = 1  # bump when the drawing changes, so cached splits are regenerated


def folder_name(spec: SyntheticSpec) -> str:
    """The data folder of a generator setting: every field that changes the images is in it."""
    return (
        f"synthetic-v{FORMAT_VERSION}-s{spec.seed}-{spec.width}x{spec.height}"
        f"-o{spec.min_objects}-{spec.max_objects}-m{spec.min_visible_pixels}"
    )


def scene_for(spec: SyntheticSpec, split: str, index: int) -> Scene:
    """Regenerate image ``index`` of ``split`` (deterministic)."""
    rng = np.random.default_rng([spec.seed, SPLIT_CODES[split], index])
    return generate_scene(
        rng,
        height=spec.height,
        width=spec.width,
        objects=(spec.min_objects, spec.max_objects),
        min_visible_pixels=spec.min_visible_pixels,
    )


def stem(index: int) -> str:
    """Cityscapes file stem of image ``index``: <city>_<sequence>_<frame>."""
    return f"{CITY}_{index:06d}_{FRAME:06d}"


def coco_categories() -> list[dict[str, Any]]:
    """COCO categories: ids 1..K in ``CLASSES`` order, with the Cityscapes label id kept."""
    return [
        {"id": k + 1, "name": c.name, "supercategory": "street", "cityscapes_id": c.cityscapes_id}
        for k, c in enumerate(CLASSES)
    ]


def instance_id_map(scene: Scene) -> np.ndarray:
    """Cityscapes instanceIds image: label id for stuff, label_id * 1000 + k for instance k."""
    ids = scene.label_ids.astype(np.int32)
    for k, (cls_idx, mask) in enumerate(zip(scene.instance_classes, scene.instance_masks)):
        ids[mask] = CLASSES[cls_idx].cityscapes_id * 1000 + k
    return ids


def coco_annotations(scene: Scene, image_id: int, first_ann_id: int) -> list[dict[str, Any]]:
    """COCO instance annotations (RLE segmentation, tight box, area) of one scene."""
    anns = []
    for k, (cls_idx, mask) in enumerate(zip(scene.instance_classes, scene.instance_masks)):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        box = mask_utils.toBbox(rle).tolist()
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append(
            {
                "id": first_ann_id + k,
                "image_id": image_id,
                "category_id": cls_idx + 1,
                "segmentation": rle,
                "area": float(mask.sum()),
                "bbox": [float(v) for v in box],
                "iscrowd": 0,
            }
        )
    return anns


def split_is_complete(root: Path, split: str) -> bool:
    return (root / "annotations" / f"instances_{split}.json").is_file()


def write_split(root: Path, spec: SyntheticSpec, split: str, count: int, *, progress: bool = True) -> Path:
    """Write ``count`` images of ``split`` under ``root`` (atomic per split); returns the json.

    Does nothing when the split is already complete with the same number of images. Safe when
    several processes of a parallel sweep ask for the same split at once: they serialize on
    ``root/.<split>.lock`` (released by the OS if a process dies), the first one writes, the
    others then find the split complete.
    """
    coco_json = root / "annotations" / f"instances_{split}.json"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{split}.lock")):
        if coco_json.is_file():
            with open(coco_json) as f:
                if len(json.load(f)["images"]) == count:
                    return coco_json
        return _write_split_locked(root, spec, split, count, coco_json, progress=progress)


def _write_split_locked(
    root: Path, spec: SyntheticSpec, split: str, count: int, coco_json: Path, *, progress: bool
) -> Path:
    with tempfile.TemporaryDirectory(dir=root, prefix=f".tmp-{split}-") as tmp:
        tmp_root = Path(tmp)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        img_dir = tmp_root / "leftImg8bit" / split / CITY
        gt_dir = tmp_root / "gtFine" / split / CITY
        img_dir.mkdir(parents=True)
        gt_dir.mkdir(parents=True)
        for index in tqdm(range(count), desc=f"synthetic {split}", disable=not progress, unit="img"):
            scene = scene_for(spec, split, index)
            name = stem(index)
            Image.fromarray(scene.image).save(img_dir / f"{name}_leftImg8bit.png")
            Image.fromarray(scene.label_ids).save(gt_dir / f"{name}_gtFine_labelIds.png")
            Image.fromarray(instance_id_map(scene).astype(np.uint16)).save(gt_dir / f"{name}_gtFine_instanceIds.png")
            images.append(
                {
                    "id": index,
                    "file_name": f"leftImg8bit/{split}/{CITY}/{name}_leftImg8bit.png",
                    "height": spec.height,
                    "width": spec.width,
                }
            )
            annotations.extend(coco_annotations(scene, index, first_ann_id=len(annotations) + 1))
        (tmp_root / "annotations").mkdir()
        info = {
            "description": "vcm_eval synthetic street scenes",
            "spec": {f.name: getattr(spec, f.name) for f in fields(SyntheticSpec)},
            "split": split,
        }
        with open(tmp_root / "annotations" / f"instances_{split}.json", "w") as f:
            json.dump({"info": info, "images": images, "annotations": annotations, "categories": coco_categories()}, f)
        for sub in (f"leftImg8bit/{split}", f"gtFine/{split}"):
            target = root / sub
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_root / sub, target)
        (root / "annotations").mkdir(exist_ok=True)
        os.replace(tmp_root / "annotations" / f"instances_{split}.json", coco_json)
    return coco_json


def synthetic_spec(cfg: SyntheticDatasetConfig) -> SyntheticSpec:
    """The generator settings of a synthetic dataset config (what names its folder)."""
    return from_config(SyntheticSpec, cfg)


def synthetic_dataset(view: DictConfig, runtime: Runtime) -> EvalDataset:
    """The embedded default, written under ``root`` (or ``runtime.data_dir``/<generator folder>) on first use."""
    cfg: SyntheticDatasetConfig = view.dataset
    if cfg.size <= 0 or cfg.height < 64 or cfg.width < 64:
        raise ConfigError(
            f"synthetic dataset needs size > 0 and height, width >= 64 (got {cfg.size}, {cfg.height}x{cfg.width})"
        )
    spec = synthetic_spec(cfg)
    root = Path(cfg.root) if cfg.root else runtime.data_dir / folder_name(spec)
    coco_json = write_split(root, spec, cfg.split, cfg.size, progress=runtime.progress)
    return EvalDataset(
        name=cfg.name, image_root=root, coco_json=coco_json, cityscapes_gt=root / "gtFine" / cfg.split, limit=cfg.limit
    )
