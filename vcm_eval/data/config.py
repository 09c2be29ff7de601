"""Config schemas of the evaluation datasets: one per kind, on one shared base.

``dataset=synthetic|coco|cityscapes`` picks a kind; each kind's schema holds only the fields its
reader uses, so ``dataset.annotations=...`` on the synthetic data, say, fails when the config is
composed instead of being ignored. ``kind`` names the builder (``vcm_eval.data.datasets``).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING


@dataclass
class SyntheticSpec:
    """Everything that determines the synthetic images (and so the name of their folder)."""

    seed: int = 0
    height: int = 256
    width: int = 512
    min_objects: int = 4
    max_objects: int = 12
    min_visible_pixels: int = 48


@dataclass
class DatasetConfig:
    """What every dataset kind has: ``limit`` > 0 keeps the first ``limit`` images (sorted by id)."""

    name: str = MISSING
    kind: str = MISSING
    split: str = "val"
    limit: int = 0
    root: str = ""


@dataclass
class SyntheticDatasetConfig(DatasetConfig, SyntheticSpec):
    """``kind: synthetic``: the embedded default, generated on first use.

    ``size`` images per split are written under ``root`` (empty = ``paths.data``/<folder named by
    the generator settings>); the generator settings are ``SyntheticSpec``'s.
    """

    name: str = "synthetic"
    kind: str = "synthetic"
    size: int = 100


@dataclass
class CocoDatasetConfig(DatasetConfig):
    """``kind: coco``: a COCO-format split, ``<root>/<split>/`` + ``<root>/annotations/instances_<split>.json``.

    ``images`` / ``annotations`` override either path (then ``root`` may be empty).
    """

    name: str = "coco"
    kind: str = "coco"
    split: str = "val2017"
    images: str = ""
    annotations: str = ""


@dataclass
class CityscapesDatasetConfig(DatasetConfig):
    """``kind: cityscapes``: ``<root>/leftImg8bit/<split>/`` + ``<root>/gtFine/<split>/``."""

    name: str = "cityscapes"
    kind: str = "cityscapes"


DATASET_SCHEMAS: dict[str, type[DatasetConfig]] = {
    "synthetic": SyntheticDatasetConfig,
    "coco": CocoDatasetConfig,
    "cityscapes": CityscapesDatasetConfig,
}
