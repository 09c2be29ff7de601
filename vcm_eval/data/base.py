"""What every dataset kind becomes: ``EvalDataset`` (images of one split + their annotation files).

Kept apart from ``datasets.py`` (which builds one from config) so the COCO and Cityscapes
readers can return it without importing the builder that imports them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from vcm_eval.data.oid import OidTruthSet
from vcm_eval.data.sample import Sample
from vcm_eval.errors import DataError


@dataclass(frozen=True)
class Category:
    """A dataset category: COCO id, name, and Cityscapes label id (None outside Cityscapes)."""

    coco_id: int
    name: str
    cityscapes_id: int | None


class EvalDataset:
    """Images of one split with their annotation files.

    Args:
        name: dataset name used in result folders.
        image_root: folder the json's ``file_name`` entries are relative to.
        coco_json: COCO instances json of the split.
        cityscapes_gt: gtFine/<split> folder, or None.
        limit: keep the first ``limit`` images by id (0 = all).
        oid: Open Images ground truth (``dataset=oiv6`` / ``synthetic_oid``), what the Open Images
            Challenge metric reads; None for the other kinds.
    """

    def __init__(
        self,
        *,
        name: str,
        image_root: Path,
        coco_json: Path,
        cityscapes_gt: Path | None,
        limit: int = 0,
        oid: OidTruthSet | None = None,
    ) -> None:
        if not coco_json.is_file():
            raise DataError(
                f"annotation file {coco_json} does not exist; set dataset.annotations (or dataset.root) to it"
            )
        if not image_root.is_dir():
            raise DataError(f"image folder {image_root} does not exist; set dataset.images (or dataset.root) to it")
        self.name = name
        self.image_root = image_root
        self.coco_json = coco_json
        self.cityscapes_gt = cityscapes_gt
        self.oid = oid
        with open(coco_json) as f:
            coco = json.load(f)
        try:
            images = sorted(coco["images"], key=lambda im: im["id"])
            self.categories = [
                Category(c["id"], c["name"], c.get("cityscapes_id"))
                for c in sorted(coco["categories"], key=lambda c: c["id"])
            ]
        except (KeyError, TypeError) as exc:
            raise DataError(
                f"{coco_json} is not a COCO instances file (missing {exc}); give a file with images/categories"
            ) from exc
        self.images: list[dict[str, Any]] = images[:limit] if limit > 0 else images
        self.has_coco_annotations = bool(coco.get("annotations"))  # what pycocotools can score

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_ids(self) -> list[int]:
        return [int(im["id"]) for im in self.images]

    def path_of(self, image_id: int) -> Path:
        for im in self.images:
            if im["id"] == image_id:
                return self.image_root / im["file_name"]
        raise DataError(f"image id {image_id} is not in {self.coco_json}")

    def load(self, entry: dict[str, Any]) -> Sample:
        path = self.image_root / entry["file_name"]
        try:
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(
                f"cannot read image {path} ({exc}); replace the file or drop it from {self.coco_json}"
            ) from exc
        return Sample(image_id=int(entry["id"]), image=rgb, path=path)

    def __iter__(self) -> Iterator[Sample]:
        for entry in self.images:
            yield self.load(entry)
