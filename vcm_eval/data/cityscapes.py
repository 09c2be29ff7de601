"""Cityscapes from a local root, as an ``EvalDataset`` both evaluators run on.

Expected layout (the official leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip)::

    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png

cityscapesscripts scores predictions against the gtFine instanceIds PNGs directly (the paper's
mAP). For pycocotools a COCO instances json is generated once from the same PNGs, the way
detectron2's Cityscapes loader reads them: each instanceIds value >= 1000 of one of the 8
evaluated instance classes (``hasInstances`` and not ``ignoreInEval``: person, rider, car, truck,
bus, train, motorcycle, bicycle) is one instance; a value < 1000 of such a class is a group region
without instance ids and becomes an ``iscrowd`` annotation (ignored by COCO AP). Categories are
ids 1..8 in that order with their Cityscapes label id as ``cityscapes_id``. The json is cached
under ``<data dir>/cityscapes/`` keyed by the root, split and file list, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from vcm_eval.data.base import EvalDataset
from vcm_eval.data.config import CityscapesDatasetConfig
from vcm_eval.errors import ConfigError, DataError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from vcm_eval.utils.components import Runtime

IMAGE_SUFFIX = "_leftImg8bit.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
JSON_VERSION = 1  # bump when the generated json changes
LAYOUT = (
    "<root>/leftImg8bit/{split}/<city>/<city>_<seq>_<frame>_leftImg8bit.png and "
    "<root>/gtFine/{split}/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png"
)


def instance_categories() -> list[dict[str, Any]]:
    """The 8 evaluated Cityscapes instance classes as COCO categories (ids 1..8, label id kept)."""
    from cityscapesscripts.helpers.labels import labels

    things = [lb for lb in labels if lb.hasInstances and not lb.ignoreInEval]
    return [
        {"id": k + 1, "name": lb.name, "supercategory": lb.category, "cityscapes_id": lb.id}
        for k, lb in enumerate(things)
    ]


def find_images(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, gtFine instanceIds) pairs of a split, sorted by file name.

    Raises:
        DataError: naming the expected layout when a folder or a ground-truth file is missing.
    """
    image_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for folder in (image_dir, gt_dir):
        if not folder.is_dir():
            raise DataError(
                f"Cityscapes folder {folder} does not exist; dataset.root must hold {LAYOUT.format(split=split)}"
            )
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"), key=lambda p: p.name)
    if not images:
        raise DataError(
            f"no *{IMAGE_SUFFIX} files under {image_dir}/<city>/; dataset.root must hold {LAYOUT.format(split=split)}"
        )
    pairs = []
    for image in images:
        gt = gt_dir / image.parent.name / (image.name[: -len(IMAGE_SUFFIX)] + INSTANCE_SUFFIX)
        if not gt.is_file():
            raise DataError(f"missing Cityscapes ground truth {gt} for {image.name}; unpack gtFine next to leftImg8bit")
        pairs.append((image, gt))
    return pairs


def annotations_from_instance_ids(
    ids: np.ndarray, image_id: int, first_ann_id: int, label_to_cat: dict[int, int]
) -> list[dict[str, Any]]:
    """COCO annotations (RLE, tight box, area) of one gtFine instanceIds image [H, W] int.

    A box is the pixel extent of its mask, ``[x0, y0, x1 + 1 - x0, y1 + 1 - y0]`` for pixel
    columns x0..x1 and rows y0..y1 (``toBbox``), and instances one pixel wide or tall are kept.
    That is COCO's convention, the box vcm_eval's task model is trained to predict
    (``vision/train.py``) and, up to the polygon buffer's approximation, detectron2's registered
    Cityscapes dataset (``load_cityscapes_instances(from_json=True)``: the polygon shifted by 0.5
    and dilated by 0.5), on which its Cityscapes models were trained. detectron2's instanceIds
    path (``from_json=False``) instead boxes ``[x0, y0, x1, y1]`` (one pixel narrower and shorter)
    and drops instances with ``x1 <= x0`` or ``y1 <= y0``; scoring the synthetic model's 100 val
    images against such boxes would lower its bbox AP from 69.91 to 64.21 (ground truth as
    detections: 100 to 87.92), without any change of the detections (docs/reporting.md).
    """
    anns: list[dict[str, Any]] = []
    for value in np.unique(ids):
        label = int(value) // 1000 if value >= 1000 else int(value)
        if label not in label_to_cat:
            continue
        mask = np.asfortranarray((ids == value).astype(np.uint8))
        rle = mask_utils.encode(mask)
        box = mask_utils.toBbox(rle).tolist()
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append(
            {
                "id": first_ann_id + len(anns),
                "image_id": image_id,
                "category_id": label_to_cat[label],
                "segmentation": rle,
                "area": float(mask.sum()),
                "bbox": [float(v) for v in box],
                "iscrowd": int(value < 1000),
            }
        )
    return anns


def build_coco_json(root: Path, pairs: list[tuple[Path, Path]], *, progress: bool = True) -> dict[str, Any]:
    """The COCO instances dict of a split (image ids 0..N-1 in file-name order)."""
    categories = instance_categories()
    label_to_cat = {c["cityscapes_id"]: c["id"] for c in categories}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, (image, gt) in enumerate(
        tqdm(pairs, desc="cityscapes gtFine -> COCO json", disable=not progress, unit="img")
    ):
        with Image.open(gt) as png:
            ids = np.asarray(png).astype(np.int32)
        images.append(
            {
                "id": image_id,
                "file_name": image.relative_to(root).as_posix(),
                "height": ids.shape[0],
                "width": ids.shape[1],
            }
        )
        annotations.extend(annotations_from_instance_ids(ids, image_id, len(annotations) + 1, label_to_cat))
    info = {
        "description": f"Cityscapes instances from gtFine instanceIds (vcm_eval v{JSON_VERSION})",
        "root": str(root),
    }
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def cityscapes_dataset(view: DictConfig, runtime: Runtime) -> EvalDataset:
    """An ``EvalDataset`` of ``dataset.split`` under ``dataset.root``, its COCO json cached under
    ``runtime.data_dir``/cityscapes."""
    cfg: CityscapesDatasetConfig = view.dataset
    if not cfg.root:
        raise ConfigError(f"a Cityscapes dataset needs dataset.root=<folder holding {LAYOUT.format(split=cfg.split)}>")
    root = Path(cfg.root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"dataset.root={cfg.root} is not a folder; it must hold {LAYOUT.format(split=cfg.split)}")
    pairs = find_images(root, cfg.split)
    listing = "\n".join(p.relative_to(root).as_posix() for p, _ in pairs)
    key = hashlib.sha256(f"{JSON_VERSION}\n{root}\n{cfg.split}\n{listing}".encode()).hexdigest()[:12]
    coco_json = runtime.data_dir / "cityscapes" / f"instances_{cfg.split}-{key}.json"
    if not coco_json.is_file():
        coco = build_coco_json(root, pairs, progress=runtime.progress)
        coco_json.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=coco_json.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(coco, f)
        os.replace(tmp, coco_json)
    return EvalDataset(
        name=cfg.name, image_root=root, coco_json=coco_json, cityscapes_gt=root / "gtFine" / cfg.split, limit=cfg.limit
    )
