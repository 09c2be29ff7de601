"""The images (and, for a detector, the instances) of a training split, by index, for any dataset kind.

Training reads a split differently from evaluation: it needs image ``i`` of a fixed order, many
times, from any of the ``dataset=`` kinds, without holding the split in memory.

* ``train_images(cfg)``: the images only (what the fusion codec trains on). The synthetic kinds
  draw image ``i`` from the generator in memory (``scene_for``: nothing is written); the others list
  the split's image files once (a sorted list of names: ~100 bytes per image, no annotation file is
  read), ``<root>/<split>/`` for COCO, ``<root>/leftImg8bit/<split>/<city>/`` for Cityscapes, the
  ``dataset.images`` folder for OpenImages.
* ``detection_samples(dataset)``: images with their COCO instances (what the task network trains
  on), from the ``EvalDataset`` the evaluation builds for the same split (so Cityscapes' gtFine and
  the Open Images files are converted exactly as for evaluation). Each image's annotations are
  kept as one compact JSON string (about the json file's size in memory, not Python objects).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from vcm_eval.data.base import EvalDataset
from vcm_eval.data.config import (
    CityscapesDatasetConfig,
    CocoDatasetConfig,
    DatasetConfig,
    Oiv6DatasetConfig,
    SyntheticDatasetConfig,
)
from vcm_eval.data.scene import CLASSES, Scene
from vcm_eval.data.synthetic import SPLIT_CODES, folder_name, scene_for, synthetic_spec
from vcm_eval.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class TrainImages(ABC):
    """Images ``0..len-1`` of a training split in a fixed order; uint8 RGB [H, W, 3] each."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def image(self, index: int) -> np.ndarray:
        """Image ``index`` (uint8 RGB [H, W, 3])."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the images are (kind, how many, first and last): a resumed run checks it is the same."""

    @abstractmethod
    def head(self, count: int) -> TrainImages:
        """The first ``count`` images."""

    def cache_key(self) -> str:
        """A short hash of ``describe`` (and where the files are): names a feature cache of these images."""
        return hashlib.sha256(json.dumps(self._where(), sort_keys=True).encode()).hexdigest()[:16]

    def _where(self) -> dict[str, Any]:
        return self.describe()


class SyntheticImages(TrainImages):
    """Synthetic images ``0..count-1`` of a split, drawn in memory by index (``scene_for``)."""

    def __init__(self, cfg: SyntheticDatasetConfig, *, count: int, split: str | None = None) -> None:
        split = split or cfg.split
        if count <= 0:
            raise ConfigError(
                "the synthetic train split needs a number of images: "
                f"set train.train_images (or train_size) > 0, not {count}"
            )
        if split not in SPLIT_CODES:
            raise ConfigError(
                f"dataset.split={split!r} is not a synthetic split; use one of {sorted(SPLIT_CODES)} (train to train)"
            )
        self.spec, self.split, self.count = synthetic_spec(cfg), split, count

    def __len__(self) -> int:
        return self.count

    def scene(self, index: int) -> Scene:
        """The generated scene (image and instances) of image ``index``."""
        return scene_for(self.spec, self.split, index)

    def image(self, index: int) -> np.ndarray:
        return self.scene(index).image

    def describe(self) -> dict[str, Any]:
        return {"kind": "synthetic", "generator": folder_name(self.spec), "split": self.split, "images": self.count}

    def head(self, count: int) -> SyntheticImages:
        out = SyntheticImages.__new__(SyntheticImages)
        out.spec, out.split, out.count = self.spec, self.split, min(count, self.count)
        return out


class FileImages(TrainImages):
    """Image files under ``root`` (relative names, sorted), read on demand."""

    def __init__(self, root: Path, files: list[str], *, kind: str) -> None:
        self.root, self.files, self.kind = root, files, kind

    def __len__(self) -> int:
        return len(self.files)

    def image(self, index: int) -> np.ndarray:
        path = self.root / self.files[index]
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(
                f"cannot read training image {path} ({exc}); replace the file or remove it from the folder"
            ) from exc

    def describe(self) -> dict[str, Any]:
        ends = {"first": self.files[0], "last": self.files[-1]} if self.files else {}
        return {"kind": self.kind, "images": len(self.files), **ends}

    def head(self, count: int) -> FileImages:
        return FileImages(self.root, self.files[:count], kind=self.kind)

    def _where(self) -> dict[str, Any]:
        return {**self.describe(), "root": str(self.root.resolve())}


def _list_images(folder: Path, pattern: str, layout: str) -> list[str]:
    if not folder.is_dir():
        raise DataError(f"training image folder {folder} does not exist; expected {layout}")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}; expected {layout}")
    return files


def _coco_files(cfg: CocoDatasetConfig) -> tuple[Path, list[str]]:
    if not cfg.images and not cfg.root:
        raise ConfigError(
            "a COCO training split needs dataset.root=<folder holding <split>/> or dataset.images=<image folder>"
        )
    folder = Path(cfg.images).expanduser() if cfg.images else Path(cfg.root).expanduser() / cfg.split
    return folder, _list_images(
        folder, "*", "<root>/<split>/<image files> (e.g. dataset.split=train2017) or dataset.images"
    )


def _cityscapes_files(cfg: CityscapesDatasetConfig) -> tuple[Path, list[str]]:
    if not cfg.root:
        raise ConfigError("a Cityscapes training split needs dataset.root=<folder holding leftImg8bit/<split>/>")
    folder = Path(cfg.root).expanduser() / "leftImg8bit" / cfg.split
    files = _list_images(
        folder, "*/*_leftImg8bit.png", "<root>/leftImg8bit/<split>/<city>/*_leftImg8bit.png (dataset.split=train)"
    )
    return folder, sorted(files, key=lambda f: f.rsplit("/", 1)[-1])  # by file name, as the evaluation orders them


def _oiv6_files(cfg: Oiv6DatasetConfig) -> tuple[Path, list[str]]:
    images = Path(cfg.images).expanduser()
    folder = images if images.is_absolute() or not cfg.root else Path(cfg.root).expanduser() / images
    return folder, _list_images(
        folder, "*", "dataset.images=<folder of the OpenImages train images> (relative to dataset.root)"
    )


_FILE_LISTERS = {"coco": _coco_files, "cityscapes": _cityscapes_files, "oiv6": _oiv6_files}
_SYNTHETIC_KINDS = ("synthetic", "synthetic_oid")


def train_images(cfg: DatasetConfig, *, count: int = 0) -> TrainImages:
    """The images of ``cfg``'s split in a fixed order: the first ``count`` (0 = all), within ``dataset.limit``.

    Raises:
        ConfigError: an unknown kind, or a synthetic split without a count.
        DataError: the image folder is missing or holds no images (naming the layout expected).
    """
    if count < 0 or cfg.limit < 0:
        raise ConfigError(f"train.train_images={count} and dataset.limit={cfg.limit} must be >= 0 (0 = every image)")
    keep = min(n for n in (count, cfg.limit) if n > 0) if count > 0 or cfg.limit > 0 else 0
    if cfg.kind in _SYNTHETIC_KINDS:
        return SyntheticImages(cfg, count=keep)  # type: ignore[arg-type]
    if cfg.kind not in _FILE_LISTERS:
        raise ConfigError(
            f"dataset.kind={cfg.kind!r} cannot be trained on; use one of {[*_SYNTHETIC_KINDS, *_FILE_LISTERS]}"
        )
    folder, files = _FILE_LISTERS[cfg.kind](cfg)  # type: ignore[operator]
    return FileImages(folder, files[:keep] if keep else files, kind=cfg.kind)


@dataclass
class DetectionTarget:
    """The instances of one training image, in pixels of the image as loaded.

    Attributes:
        boxes: float32 [N, 4] (x0, y0, x1, y1), x1 > x0 and y1 > y0.
        names: category name of each instance (the detector maps names to its classes).
        masks: uint8 [N, H, W] (0/1), or None when the split has no masks.
    """

    boxes: np.ndarray
    names: list[str]
    masks: np.ndarray | None

    def flipped(self, width: int) -> DetectionTarget:
        """The same instances in the horizontally mirrored image."""
        boxes = self.boxes.copy()
        boxes[:, [0, 2]] = width - self.boxes[:, [2, 0]]
        return DetectionTarget(
            boxes, self.names, None if self.masks is None else np.ascontiguousarray(self.masks[:, :, ::-1])
        )


def scene_detection_target(scene: Scene) -> DetectionTarget:
    """A synthetic scene's instances: boxes are the masks' pixel extents (x1 = last column + 1)."""
    masks = np.stack(scene.instance_masks) if scene.instance_masks else np.zeros((0, *scene.image.shape[:2]), bool)
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return DetectionTarget(
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        [CLASSES[c].name for c in scene.instance_classes],
        masks.astype(np.uint8),
    )


class DetectionSamples:
    """Images with their COCO instances (iscrowd and empty boxes left out), by index.

    Args:
        dataset: the split as the evaluation reads it (its COCO json and image folder), or None
            with ``synthetic``.
        synthetic: the generator's images, whose instances come from the scene itself.
        count: keep the first ``count`` images (0 = all).
    """

    def __init__(
        self, dataset: EvalDataset | None = None, *, synthetic: SyntheticImages | None = None, count: int = 0
    ) -> None:
        self.dataset, self.synthetic = dataset, synthetic
        if synthetic is not None:
            self.category_names = [c.name for c in CLASSES]
            self.count = len(synthetic)
            return
        if dataset is None:
            raise ConfigError("DetectionSamples needs a dataset or the synthetic images")
        with open(dataset.coco_json) as f:
            coco = json.load(f)
        names = {c["id"]: c["name"] for c in coco.get("categories", [])}
        self.category_names = [names[k] for k in sorted(names)]
        entries = dataset.images[:count] if count > 0 else dataset.images
        per_image: dict[int, list[dict[str, Any]]] = {int(e["id"]): [] for e in entries}
        for ann in coco.get("annotations", []):
            if ann.get("iscrowd", 0) or int(ann["image_id"]) not in per_image:
                continue
            per_image[int(ann["image_id"])].append(
                {"bbox": ann["bbox"], "name": names[ann["category_id"]], "segmentation": ann.get("segmentation")}
            )
        del coco
        blobs = [json.dumps({"entry": e, "anns": per_image[int(e["id"])]}).encode() for e in entries]
        self._offsets = np.cumsum([0] + [len(b) for b in blobs])
        self._blob = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        self.count = len(entries)

    def __len__(self) -> int:
        return self.count

    def describe(self) -> dict[str, Any]:
        if self.synthetic is not None:
            return self.synthetic.describe()
        return {"kind": "coco_json", "json": str(self._dataset().coco_json), "images": self.count}

    def _dataset(self) -> EvalDataset:
        if self.dataset is None:
            raise ConfigError("these samples are synthetic: they have no dataset")
        return self.dataset

    def sample(self, index: int) -> tuple[np.ndarray, DetectionTarget]:
        """Image ``index`` (uint8 RGB [H, W, 3]) and its instances."""
        if self.synthetic is not None:
            scene = self.synthetic.scene(index)
            return scene.image, scene_detection_target(scene)
        record = json.loads(self._blob[self._offsets[index] : self._offsets[index + 1]].tobytes())
        image = self._dataset().load(record["entry"]).image
        h, w = image.shape[:2]
        boxes, names, masks = [], [], []
        for ann in record["anns"]:
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            if bw <= 0 or bh <= 0:
                continue
            boxes.append([x, y, x + bw, y + bh])
            names.append(ann["name"])
            masks.append(_decode_mask(ann["segmentation"], h, w))
        masks_array: np.ndarray | None = None  # instances without masks: a box-only split
        if not boxes:
            masks_array = np.zeros((0, h, w), np.uint8)
        elif all(m is not None for m in masks):
            masks_array = np.stack(masks).astype(np.uint8)  # type: ignore[arg-type]
        return image, DetectionTarget(
            np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            names,
            masks_array,
        )


def _decode_mask(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    """A COCO segmentation (polygons, RLE or uncompressed RLE) as a uint8 [H, W] mask; None if absent."""
    if not segmentation:
        return None
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    return mask_utils.decode(rle).astype(np.uint8)
