"""``dataset=synthetic_oid``: the embedded synthetic split also written as Open Images challenge files.

Its runs are scored by all three evaluators: COCO AP and Cityscapes AP on the synthetic split's own
truth (the same numbers as ``dataset=synthetic``) and the Open Images Challenge metric on the truth below;
the main job runs on it.

An offline stand-in for MPEG's OpenImages V6 subset, read back through the same challenge-file reader
(``vcm_eval.data.oiv6.read_challenge_dataset``) as real data. The images are the synthetic split's own
files (``vcm_eval.data.synthetic``, unchanged); beside them, under ``<root>/oid-v<N>/<split>/``:

    class-descriptions.csv                 Person, Car, Bus, Vehicle (``MID,name``, no header, as V6's)
    hierarchy.json                         root -> Vehicle -> {Car, Bus}; root -> Person
    annotations-bbox.csv                   the 13 columns of V6's boxes CSV, normalized coordinates
    annotations-human-imagelabels.csv      verified labels, Confidence 1 or 0
    annotations-object-segmentation.csv    V6's masks CSV (MaskPath, ImageID, LabelName, BoxID, Box*, ...)
    masks/<ImageID>_<mid>_<BoxID>.png      one 0/255 PNG per mask, at the image's size
    manifest.json                          image count; written last (the split is complete)

ImageID is the image file's stem (``synthtown_000012_000019_leftImg8bit``). The rules, all deterministic:

- Boxes: each instance's tight box around its visible mask (XMax = last column + 1, as TF's
  ``_to_normalized_box``), IsTruncated when it touches the border, Source ``synthetic``.
- Group-of: persons whose boxes overlap, chained, 3 or more of them, are one crowd: a box enclosing them
  is written with IsGroupOf 1 and their own boxes and masks are dropped, as Open Images annotates crowds.
- Masks: every box that is not group-of has its visible mask (group-of boxes have none, as in V6).
- Verified labels: every class with a box is verified present (1); on images with an even index every
  absent class is verified absent (0), on odd ones absent classes stay unverified (not scored there), as
  Open Images verifies only some classes per image. The hierarchy adds Vehicle wherever Car or Bus is.

Written into a temporary folder and renamed into place under a file lock, like the synthetic split.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock
from PIL import Image
from tqdm import tqdm

from vcm_eval.data.base import EvalDataset
from vcm_eval.data.config import SyntheticOidDatasetConfig, SyntheticSpec
from vcm_eval.data.oiv6 import ChallengeFiles, read_challenge_dataset
from vcm_eval.data.scene import CLASSES, Scene
from vcm_eval.data.synthetic import folder_name, scene_for, stem, write_split
from vcm_eval.errors import ConfigError
from vcm_eval.utils.construct import from_config

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from vcm_eval.utils.components import Runtime

OID_FORMAT_VERSION = 1  # bump when a rule changes, so written splits are regenerated
GROUP_MIN = 3  # overlapping persons that make a crowd
VEHICLE = "/m/07yv9"
MIDS = {"person": "/m/01g317", "car": "/m/0k4j", "bus": "/m/01bjv"}
NAMES = {"/m/01g317": "Person", "/m/0k4j": "Car", "/m/01bjv": "Bus", VEHICLE: "Vehicle"}
HIERARCHY = {
    "LabelName": "/m/0bl9f",  # Open Images' root ("Entity"), not a class
    "Subcategory": [
        {"LabelName": VEHICLE, "Subcategory": [{"LabelName": "/m/0k4j"}, {"LabelName": "/m/01bjv"}]},
        {"LabelName": "/m/01g317"},
    ],
}
BOX_HEADER = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
)
MASK_HEADER = "MaskPath,ImageID,LabelName,BoxID,BoxXMin,BoxXMax,BoxYMin,BoxYMax,PredictedIoU,Clicks"


@dataclass(frozen=True)
class OidLayout:
    """The challenge files of one written split."""

    folder: Path

    @property
    def files(self) -> ChallengeFiles:
        f = self.folder
        return ChallengeFiles(
            boxes_csv=f / "annotations-bbox.csv",
            labels_csv=f / "annotations-human-imagelabels.csv",
            classes_csv=f / "class-descriptions.csv",
            hierarchy_json=f / "hierarchy.json",
            masks_csv=f / "annotations-object-segmentation.csv",
            masks_dir=f / "masks",
        )


@dataclass(frozen=True)
class OidInstance:
    """One annotated object of a synthetic image: a box (or a group-of crowd box) and its mask if any."""

    mid: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive
    group_of: bool
    mask: np.ndarray | None


def image_id_of(index: int) -> str:
    """ImageID of synthetic image ``index``: its file's stem."""
    return f"{stem(index)}_leftImg8bit"


def oid_instances(scene: Scene) -> list[OidInstance]:
    """The scene's instances as Open Images annotates them: crowds of persons as group-of boxes."""
    boxes = [_tight_box(m) for m in scene.instance_masks]
    persons = {
        k: b
        for k, (c, b) in enumerate(zip(scene.instance_classes, boxes))
        if CLASSES[c].name == "person" and b is not None
    }
    crowd_of = _crowds(persons)
    out = []
    for k, (c, mask) in enumerate(zip(scene.instance_classes, scene.instance_masks)):
        box = boxes[k]
        if box is not None and k not in crowd_of:
            out.append(OidInstance(MIDS[CLASSES[c].name], box, False, mask))
    for members in sorted({tuple(v) for v in crowd_of.values()}):
        corners = np.array([persons[k] for k in members])
        union = (int(corners[:, 0].min()), int(corners[:, 1].min()), int(corners[:, 2].max()), int(corners[:, 3].max()))
        out.append(OidInstance(MIDS["person"], union, True, None))
    return out


def write_oid_split(root: Path, spec: SyntheticSpec, split: str, count: int, *, progress: bool = True) -> OidLayout:
    """Write the challenge files of the synthetic ``split`` (its images must be written: ``write_split``).

    Does nothing when the split is already written for ``count`` images; parallel processes serialize on
    ``root/.oid-<split>.lock``.
    """
    layout = OidLayout(root / f"oid-v{OID_FORMAT_VERSION}" / split)
    manifest = layout.folder / "manifest.json"
    with FileLock(str(root / f".oid-{split}.lock")):
        if manifest.is_file() and json.loads(manifest.read_text())["images"] == count:
            return layout
        with tempfile.TemporaryDirectory(dir=root, prefix=f".tmp-oid-{split}-") as tmp:
            written = Path(tmp) / split
            _write_files(written, spec, split, count, progress)
            if layout.folder.exists():
                shutil.rmtree(layout.folder)
            layout.folder.parent.mkdir(parents=True, exist_ok=True)
            os.replace(written, layout.folder)
    return layout


def synthetic_oid_dataset(view: DictConfig, runtime: Runtime) -> EvalDataset:
    """``dataset=synthetic_oid``: written on first use beside the synthetic split, read as challenge files."""
    cfg: SyntheticOidDatasetConfig = view.dataset
    if cfg.size <= 0 or cfg.height < 64 or cfg.width < 64:
        raise ConfigError(
            f"synthetic_oid needs size > 0 and height, width >= 64 (got {cfg.size}, {cfg.height}x{cfg.width})"
        )
    spec = from_config(SyntheticSpec, cfg)
    root = Path(cfg.root) if cfg.root else runtime.data_dir / folder_name(spec)
    coco_json = write_split(root, spec, cfg.split, cfg.size, progress=runtime.progress)
    layout = write_oid_split(root, spec, cfg.split, cfg.size, progress=runtime.progress)
    return read_challenge_dataset(
        name=cfg.name,
        images=root,
        files=layout.files,
        data_dir=runtime.data_dir,
        coco_json=coco_json,
        limit=cfg.limit,
        progress=runtime.progress,
        cityscapes_gt=root / "gtFine" / cfg.split,  # the same split's Cityscapes truth: all three metrics
    )


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    return None if xs.size == 0 else (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _crowds(persons: dict[int, tuple[int, int, int, int]]) -> dict[int, list[int]]:
    """Instance index -> its crowd (sorted members), for crowds of ``GROUP_MIN`` or more overlapping persons."""
    parent = {k: k for k in persons}

    def root(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    order = sorted(persons)
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = persons[a], persons[b]
            if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for k in order:
        groups.setdefault(root(k), []).append(k)
    return {k: members for members in groups.values() if len(members) >= GROUP_MIN for k in members}


def _write_files(folder: Path, spec: SyntheticSpec, split: str, count: int, progress: bool) -> None:
    (folder / "masks").mkdir(parents=True)
    (folder / "class-descriptions.csv").write_text("".join(f"{mid},{name}\n" for mid, name in NAMES.items()))
    (folder / "hierarchy.json").write_text(json.dumps(HIERARCHY, indent=1))
    boxes, labels, masks = _Csv(BOX_HEADER), _Csv("ImageID,Source,LabelName,Confidence"), _Csv(MASK_HEADER)
    w, h = spec.width, spec.height
    for index in tqdm(range(count), desc=f"synthetic_oid {split}", disable=not progress, unit="img"):
        image_id = image_id_of(index)
        instances = oid_instances(scene_for(spec, split, index))
        for k, inst in enumerate(instances):
            x0, y0, x1, y1 = inst.box
            nx0, nx1, ny0, ny1 = (repr(v) for v in (x0 / w, x1 / w, y0 / h, y1 / h))
            truncated = int(x0 == 0 or y0 == 0 or x1 == w or y1 == h)
            boxes.row([image_id, "synthetic", inst.mid, 1, nx0, nx1, ny0, ny1, 0, truncated, int(inst.group_of), 0, 0])
            if inst.mask is not None:
                box_id = f"{index:04x}{k:04x}"
                name = f"{image_id}_{inst.mid.replace('/', '')}_{box_id}.png"
                Image.fromarray(inst.mask.astype(np.uint8) * 255).save(folder / "masks" / name)
                masks.row([name, image_id, inst.mid, box_id, nx0, nx1, ny0, ny1, "1.00000", ""])
        present = {inst.mid for inst in instances}
        for mid in MIDS.values():
            if mid in present:
                labels.row([image_id, "verification", mid, 1])
            elif index % 2 == 0:
                labels.row([image_id, "verification", mid, 0])
    boxes.save(folder / "annotations-bbox.csv")
    labels.save(folder / "annotations-human-imagelabels.csv")
    masks.save(folder / "annotations-object-segmentation.csv")
    (folder / "manifest.json").write_text(json.dumps({"images": count, "version": OID_FORMAT_VERSION}))


class _Csv:
    """A CSV built in memory (``\n`` line ends on every platform), saved once complete."""

    def __init__(self, header: str) -> None:
        self._buf = io.StringIO()
        self._writer = csv.writer(self._buf, lineterminator="\n")
        self._writer.writerow(header.split(","))

    def row(self, values: list[object]) -> None:
        self._writer.writerow(values)

    def save(self, path: Path) -> None:
        path.write_text(self._buf.getvalue())
