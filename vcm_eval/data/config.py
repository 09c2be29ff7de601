"""Config schemas of the evaluation datasets: one per kind, on one shared base.

``dataset=synthetic|coco|cityscapes|oiv6|synthetic_oid`` picks a kind; each kind's schema holds only
the fields its reader uses, so ``dataset.annotations=...`` on the synthetic data, say, fails when the config is
composed instead of being ignored. ``_target_`` names the builder (``vcm_eval.data.datasets``).
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
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
    _target_: str = MISSING  # the builder: (cfg, runtime) -> EvalDataset, built by components.build
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
    _target_: str = "vcm_eval.data.synthetic.synthetic_dataset"
    size: int = 100


@dataclass
class CocoDatasetConfig(DatasetConfig):
    """``kind: coco``: a COCO-format split, ``<root>/<split>/`` + ``<root>/annotations/instances_<split>.json``.

    ``images`` / ``annotations`` override either path (then ``root`` may be empty).
    """

    name: str = "coco"
    kind: str = "coco"
    _target_: str = "vcm_eval.data.coco.coco_dataset"
    split: str = "val2017"
    images: str = ""
    annotations: str = ""


@dataclass
class CityscapesDatasetConfig(DatasetConfig):
    """``kind: cityscapes``: ``<root>/leftImg8bit/<split>/`` + ``<root>/gtFine/<split>/``."""

    name: str = "cityscapes"
    kind: str = "cityscapes"
    _target_: str = "vcm_eval.data.cityscapes.cityscapes_dataset"


@dataclass
class Oiv6DatasetConfig(DatasetConfig):
    """``kind: oiv6``: MPEG's OpenImages V6 subset, in either form (``vcm_eval.data.oiv6``).

    Relative paths are under ``root``. ``images``: the image folder. The Open Images challenge files:
    ``boxes_csv`` (boxes), ``labels_csv`` (verified image-level labels), ``classes_csv`` (class
    descriptions; empty = LabelNames are COCO names or MIDs of the shipped class map, as in MPEG's own
    CSVs), ``hierarchy_json`` (label hierarchy: expands the truth as TF does; empty = no expansion, as
    MPEG's CompressAI-Vision evaluates), ``masks_csv`` + ``masks_dir`` (instance masks: V6's PNG CSV and
    the PNG folder, default the CSV's folder; or the challenge's RLE CSV); ``coco_json`` then optionally
    lists the images (else a COCO json is derived under ``paths.data``). Or CompressAI-Vision's converted
    form: ``coco_json`` alone (its ``mpeg-oiv6-*-coco.json`` with ``oic_labelmap``/``oic_annotations``).
    """

    name: str = "oiv6"
    kind: str = "oiv6"
    _target_: str = "vcm_eval.data.oiv6.oiv6_dataset"
    split: str = "validation"
    images: str = "images"
    coco_json: str = ""
    boxes_csv: str = ""
    labels_csv: str = ""
    classes_csv: str = ""
    hierarchy_json: str = ""
    masks_csv: str = ""
    masks_dir: str = ""


@dataclass
class SyntheticOidDatasetConfig(SyntheticDatasetConfig):
    """``kind: synthetic_oid``: the synthetic split also written as Open Images challenge files.

    Same images and generator settings as ``synthetic``; the rules (group-of boxes, verified labels,
    hierarchy, masks) are in ``vcm_eval.data.synthetic_oid``.
    """

    name: str = "synthetic_oid"
    kind: str = "synthetic_oid"
    _target_: str = "vcm_eval.data.synthetic_oid.synthetic_oid_dataset"


DATASET_SCHEMAS: dict[str, type[DatasetConfig]] = {
    "synthetic": SyntheticDatasetConfig,
    "coco": CocoDatasetConfig,
    "cityscapes": CityscapesDatasetConfig,
    "oiv6": Oiv6DatasetConfig,
    "synthetic_oid": SyntheticOidDatasetConfig,
}


def register(cs: ConfigStore) -> None:
    for kind, node in DATASET_SCHEMAS.items():
        cs.store(group="dataset", name=f"base_{kind}", node=node)
