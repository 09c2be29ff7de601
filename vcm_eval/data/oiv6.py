"""MPEG's OpenImages V6 subset (``dataset=oiv6``) read in either form users have it in.

1. The Open Images challenge files (``read_challenge_dataset``; readers in ``vcm_eval.data.oid_csv``):
   boxes CSV, verified image-level labels CSV, class descriptions CSV, label hierarchy JSON, masks (PNG +
   CSV, or the challenge's RLE CSV). LabelName is a MID, or a COCO class name of the class map (``coco_to_oid.csv``), as
   in MPEG's own files (CompressAI-Vision ``data/mpeg-vcm``: ``detection_validation_5k_bbox.csv`` ...).
   The image list is a COCO json when one is given, else one derived from the CSVs and written once
   under the data folder (``<data>/oiv6/<name>-<content key>.json``), so EvalDataset, its categories and
   pycocotools have a file to read.
2. CompressAI-Vision's converted form (``read_compressai_dataset``): its COCO json
   (``mpeg-oiv6-{detection,segmentation}-coco.json`` from its mpeg-oiv6-dataset.tar.gz) holds, besides the
   COCO keys, ``oic_labelmap`` ([{id, name}], the evaluated classes by COCO name) and ``oic_annotations``
   ([{image_id, annotations: {bbox, cls, group_of, img_cls[, mask, img_size]}}]): boxes as TF's evaluator
   takes them (normalized YMin, XMin, YMax, XMax), class ids of oic_labelmap, verified class names, and
   masks as base64 zlib COCO RLE of img_size. CompressAI-Vision's OIC-EVAL evaluator reads exactly these
   (``compressai_vision/evaluators/evaluators.py``). The file keeps no label confidence, so a verified
   class with no box on an image is read as verified absent, which the Challenge metric scores the same.

Either way the dataset's categories are COCO's (a COCO-trained model maps its labels to them by name)
and ``oid.category_to_mid`` maps them to Open Images MIDs through ``coco_to_oid.csv`` (MPEG's table, its
source in its header); a COCO class without a MID there is dropped, as MPEG's evaluation drops COCO
classes missing from its label map. The hierarchy, when given, expands the ground truth as TF does
(``oid_csv.OidHierarchy``); CompressAI-Vision does not expand (its classes are COCO's), so leave
``hierarchy_json`` empty to match it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from vcm_eval.data.base import Category, EvalDataset
from vcm_eval.data.config import Oiv6DatasetConfig
from vcm_eval.data.oid import OidImageTruth, OidTruthSet
from vcm_eval.data.oid_csv import (
    OidBox,
    OidHierarchy,
    OidImageLabel,
    OidMask,
    Resolve,
    UnknownLabel,
    read_boxes,
    read_class_descriptions,
    read_hierarchy,
    read_image_labels,
    read_masks,
)
from vcm_eval.data.oid_truth import (
    CLASS_MAP,
    ClassMapEntry,
    ImageRef,
    ImageRows,
    category_to_mid,
    coco_categories,
    expand_truth,
    group_rows,
    image_truth,
    label_map_of,
    normalize_name,
    pairs_truth,
    read_class_map,
)
from vcm_eval.errors import ConfigError, DataError
from vcm_eval.utils.atomic import atomic_write

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from vcm_eval.utils.components import Runtime

DERIVED_VERSION = 1  # bump when the derived COCO json changes
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class ChallengeFiles:
    """The challenge-form files of one split (see the module docstring); None = not given."""

    boxes_csv: Path
    labels_csv: Path
    classes_csv: Path | None = None
    hierarchy_json: Path | None = None
    masks_csv: Path | None = None
    masks_dir: Path | None = None


def read_challenge_dataset(
    *,
    name: str,
    images: Path,
    files: ChallengeFiles,
    data_dir: Path,
    coco_json: Path | None = None,
    limit: int = 0,
    progress: bool = True,
    cityscapes_gt: Path | None = None,
) -> EvalDataset:
    """An ``EvalDataset`` with ``oid`` ground truth from the challenge files.

    Args:
        name: dataset name (result folders; also names the derived json).
        images: folder of ``<ImageID>.jpg`` (or .png) files, or the folder ``coco_json``'s file names are in.
        files: the CSVs, hierarchy and masks.
        data_dir: where the derived COCO json is written when ``coco_json`` is None.
        coco_json: the image list (ImageID = ``oid_image_id`` of an entry, else its file name's stem).
        limit: keep the first ``limit`` images by id (0 = all); truth is read for those only.
        cityscapes_gt: a gtFine/<split> folder of the same images (``synthetic_oid``), else None.
    """
    names = read_class_descriptions(files.classes_csv) if files.classes_csv else None
    hierarchy = read_hierarchy(files.hierarchy_json) if files.hierarchy_json else None
    resolve = _resolver(names, files.classes_csv)
    boxes = read_boxes(files.boxes_csv, resolve)
    labels = read_image_labels(files.labels_csv, resolve)
    masks = read_masks(files.masks_csv, resolve, files.masks_dir or files.masks_csv.parent) if files.masks_csv else []
    if hierarchy is not None:
        for rows, path in ((boxes, files.boxes_csv), (labels, files.labels_csv), (masks, files.masks_csv)):
            _check_in_hierarchy(rows, path, hierarchy, files.hierarchy_json)
    per_image = group_rows(boxes, labels, masks)
    unexpanded: dict[int, OidImageTruth] = {}
    if coco_json is None:
        coco_json, unexpanded = _derived_json(name, images, files, per_image, data_dir, progress)
    if not coco_json.is_file():
        raise DataError(
            f"image list {coco_json} does not exist; give the COCO json of the images (or none: one is derived)"
        )
    refs = _image_refs(coco_json)
    _check_known_images(per_image, refs, coco_json)
    dataset = EvalDataset(name=name, image_root=images, coco_json=coco_json, cityscapes_gt=cityscapes_gt, limit=limit)
    kept = set(dataset.image_ids)
    truths = {}
    for image_id in tqdm(sorted(per_image), desc=f"{name} truth", disable=not progress, unit="img"):
        ref = refs[image_id]
        if ref.coco_id in kept:
            truth = unexpanded[ref.coco_id] if ref.coco_id in unexpanded else image_truth(per_image[image_id], ref)
            truths[ref.coco_id] = expand_truth(truth, hierarchy) if hierarchy else truth
    cat_mids = category_to_mid(dataset.categories)
    display = names or {e.mid: e.oid_name for e in read_class_map() if e.mid}
    dataset.oid = OidTruthSet(
        label_map=label_map_of(list(cat_mids.values()), display, hierarchy),
        images=truths,
        category_to_mid=cat_mids,
        ancestors=hierarchy.ancestors if hierarchy else None,
    )
    return dataset


def read_compressai_dataset(
    *, name: str, images: Path, coco_json: Path, hierarchy_json: Path | None = None, limit: int = 0
) -> EvalDataset:
    """An ``EvalDataset`` with ``oid`` ground truth from CompressAI-Vision's converted COCO json."""
    if not coco_json.is_file():
        raise DataError(
            f"CompressAI-Vision json {coco_json} does not exist; "
            "set dataset.coco_json (e.g. annotations/mpeg-oiv6-detection-coco.json)"
        )
    try:
        data = json.loads(coco_json.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{coco_json} is not JSON ({exc}); give CompressAI-Vision's mpeg-oiv6-*-coco.json") from exc
    missing = [k for k in ("images", "categories", "oic_labelmap", "oic_annotations") if k not in data]
    if missing:
        raise DataError(
            f"{coco_json} has no {', '.join(missing)}; give CompressAI-Vision's mpeg-oiv6-*-coco.json "
            "(from mpeg-oiv6-dataset.tar.gz), or the challenge CSVs (dataset.boxes_csv, dataset.labels_csv)"
        )
    hierarchy = read_hierarchy(hierarchy_json) if hierarchy_json else None
    by_name = {normalize_name(e.coco_name): e for e in read_class_map() if e.mid}
    try:
        oic = sorted(data["oic_labelmap"], key=lambda item: int(item["id"]))
        oic_mid = {int(item["id"]): by_name[normalize_name(item["name"])].mid for item in oic}
    except KeyError as exc:
        raise DataError(
            f"{coco_json}: oic_labelmap entry {exc} is unknown (no id/name, or no MID in {CLASS_MAP}); fix the file"
        ) from exc
    dataset = EvalDataset(name=name, image_root=images, coco_json=coco_json, cityscapes_gt=None, limit=limit)
    refs = {r.coco_id: r for r in _image_refs(coco_json).values()}
    kept = set(dataset.image_ids)
    truths = {}
    for k, entry in enumerate(data["oic_annotations"]):
        pairs, verified, ref = _compressai_entry(entry, k, coco_json, refs, oic_mid, by_name, hierarchy)
        if ref.coco_id in kept:
            truth = pairs_truth(pairs, verified, ref, has_masks=any(m is not None for _, m in pairs))
            truths[ref.coco_id] = expand_truth(truth, hierarchy) if hierarchy else truth
    display = {e.mid: e.oid_name for e in by_name.values()}
    dataset.oid = OidTruthSet(
        label_map=label_map_of(list(oic_mid.values()), display, hierarchy),
        images=truths,
        category_to_mid=category_to_mid(dataset.categories),
        ancestors=hierarchy.ancestors if hierarchy else None,
    )
    return dataset


def oiv6_dataset(view: DictConfig, runtime: Runtime) -> EvalDataset:
    """``dataset=oiv6``: the challenge files when ``boxes_csv``/``labels_csv`` are set, else CompressAI-Vision's."""
    cfg: Oiv6DatasetConfig = view.dataset
    root = Path(cfg.root).expanduser() if cfg.root else None

    def path(value: str) -> Path | None:
        p = Path(value).expanduser() if value else None
        return root / p if p is not None and root is not None and not p.is_absolute() else p

    images = path(cfg.images)
    if images is None or not images.is_dir():
        raise DataError(
            f"image folder {images} does not exist; set dataset.images (relative to dataset.root) to the images"
        )
    if cfg.boxes_csv or cfg.labels_csv:
        boxes, labels = path(cfg.boxes_csv), path(cfg.labels_csv)
        if boxes is None or labels is None:
            raise ConfigError(
                "the challenge form needs both dataset.boxes_csv and dataset.labels_csv (verified image-level labels)"
            )
        files = ChallengeFiles(
            boxes, labels, path(cfg.classes_csv), path(cfg.hierarchy_json), path(cfg.masks_csv), path(cfg.masks_dir)
        )
        if files.masks_dir is not None and files.masks_csv is None:
            raise ConfigError("dataset.masks_dir is set without dataset.masks_csv; set both (or neither)")
        return read_challenge_dataset(
            name=cfg.name,
            images=images,
            files=files,
            data_dir=runtime.data_dir,
            coco_json=path(cfg.coco_json),
            limit=cfg.limit,
            progress=runtime.progress,
        )
    coco_json = path(cfg.coco_json)
    if coco_json is None:
        raise ConfigError(
            "dataset=oiv6 needs dataset.boxes_csv + dataset.labels_csv (the Open Images challenge files) "
            "or dataset.coco_json (CompressAI-Vision's mpeg-oiv6-*-coco.json)"
        )
    if cfg.classes_csv or cfg.masks_csv or cfg.masks_dir:
        raise ConfigError(
            "dataset.classes_csv/masks_csv/masks_dir belong to the challenge files; "
            "with CompressAI-Vision's json leave them empty"
        )
    return read_compressai_dataset(
        name=cfg.name, images=images, coco_json=coco_json, hierarchy_json=path(cfg.hierarchy_json), limit=cfg.limit
    )


def _resolver(names: dict[str, str] | None, classes_csv: Path | None) -> Resolve:
    """LabelName -> MID: a MID of the class descriptions (or of the class map without them), or a COCO name."""
    class_map = read_class_map()
    by_name = {normalize_name(e.coco_name): e.mid for e in class_map if e.mid}
    known = names if names is not None else {e.mid for e in class_map if e.mid}

    def resolve(label: str) -> str:
        if label in known:
            return label
        mid = by_name.get(normalize_name(label))
        if mid:
            return mid
        where = f"a MID of {classes_csv}" if classes_csv else "a MID or COCO class name of the class map"
        fix = (
            "add it there or fix the label" if classes_csv else "set dataset.classes_csv to the class descriptions CSV"
        )
        raise UnknownLabel(f"{label!r} is not {where} ({CLASS_MAP.name}); {fix}")

    return resolve


def _check_in_hierarchy(
    rows: Sequence[OidBox | OidImageLabel | OidMask], path: Path | None, hierarchy: OidHierarchy, source: Path | None
) -> None:
    for row in rows:
        if row.label not in hierarchy:
            where = getattr(row, "source", "") or f"{path} line {getattr(row, 'line', '?')}"
            raise DataError(
                f"{where}: class {row.label} is not in the hierarchy {source} (or is its root); use the hierarchy of "
                "the same release, or leave dataset.hierarchy_json empty (no expansion)"
            )


def _compressai_entry(
    entry: Any,
    k: int,
    source: Path,
    refs: dict[int, ImageRef],
    oic_mid: dict[int, str],
    by_name: dict[str, ClassMapEntry],
    hierarchy: OidHierarchy | None,
) -> tuple[list[tuple[OidBox, OidMask | None]], dict[str, bool], ImageRef]:
    """One ``oic_annotations`` entry as (box, mask) pairs, verified labels and its image."""
    where = f"{source} oic_annotations[{k}]"
    try:
        ref = refs[int(entry["image_id"])]
        ann = entry["annotations"]
        bbox, cls, group_of = ann["bbox"], ann["cls"], ann["group_of"]
        masks, sizes = ann.get("mask"), ann.get("img_size")
        if not len(bbox) == len(cls) == len(group_of) or (
            masks is not None and not len(masks) == len(sizes) == len(bbox)
        ):
            raise ValueError("bbox, cls, group_of (and mask, img_size) differ in length")
        pairs = []
        for j, ((y0, x0, y1, x1), c, g) in enumerate(zip(bbox, cls, group_of)):
            box = OidBox(str(ref.coco_id), oic_mid[int(c)], float(x0), float(y0), float(x1), float(y1), bool(g), k)
            mask = None
            if masks is not None and str(masks[j]).lower() != "nan":
                size = (int(sizes[j]["img_height"]), int(sizes[j]["img_width"]))
                corners = (box.x0, box.y0, box.x1, box.y1)
                mask = OidMask(
                    box.image_id, box.label, *corners, box.group_of, encoded=masks[j], size=size, source=where
                )
            pairs.append((box, mask))
        unknown = [n for n in ann["img_cls"] if normalize_name(n) not in by_name]
        if unknown:
            raise DataError(f"{where}: img_cls {unknown[0]!r} has no MID in {CLASS_MAP}; fix the name in the json")
        present = {b.label for b, _ in pairs}
        verified = {by_name[normalize_name(n)].mid: by_name[normalize_name(n)].mid in present for n in ann["img_cls"]}
        if hierarchy is not None:
            outside = sorted(({b.label for b, _ in pairs} | set(verified)) - set(hierarchy.ancestors))
            if outside:
                raise DataError(
                    f"{where}: class {outside[0]} is not in the hierarchy; use the release's hierarchy JSON, "
                    "or leave dataset.hierarchy_json empty (no expansion, as CompressAI-Vision evaluates)"
                )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise DataError(
            f"{where}: malformed entry ({type(exc).__name__}: {exc}); give CompressAI-Vision's converted json"
        ) from exc
    return pairs, verified, ref


def _image_refs(coco_json: Path) -> dict[str, ImageRef]:
    """ImageID -> (COCO id, size) of every image of a COCO json."""
    try:
        images = json.loads(coco_json.read_text(encoding="utf-8"))["images"]
        return {
            str(im.get("oid_image_id") or Path(im["file_name"]).stem): ImageRef(
                int(im["id"]), int(im["height"]), int(im["width"])
            )
            for im in images
        }
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{coco_json}: images need id, file_name, height and width ({type(exc).__name__}: {exc}); fix the json"
        ) from exc


def _check_known_images(per_image: dict[str, ImageRows], refs: dict[str, ImageRef], coco_json: Path) -> None:
    for image_id, rows in per_image.items():
        if image_id not in refs:
            first: OidBox | OidImageLabel | OidMask = (rows.boxes or rows.labels or rows.masks)[0]
            where = getattr(first, "source", "") or f"line {getattr(first, 'line', '?')} of the boxes/labels CSV"
            raise DataError(
                f"ImageID {image_id} ({where}) is not an image of {coco_json}; add it there or drop its rows"
            )


def _derived_json(
    name: str, images: Path, files: ChallengeFiles, per_image: dict[str, ImageRows], data_dir: Path, progress: bool
) -> tuple[Path, dict[int, OidImageTruth]]:
    """The COCO json of the CSVs' images, written once under ``data_dir`` (keyed by the files' contents).

    Returns the json and, when it was written now, every image's unexpanded truth (so nothing is read twice).
    """
    key = hashlib.sha256(f"v{DERIVED_VERSION}|{images.resolve()}|".encode())
    for p in (CLASS_MAP, files.boxes_csv, files.labels_csv, files.masks_csv, files.classes_csv):
        if p is not None:
            key.update(p.read_bytes())
    out = data_dir / "oiv6" / f"{name}-{key.hexdigest()[:16]}.json"
    if out.is_file():
        return out, {}
    on_disk = {p.stem: p.name for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    absent = sorted(set(per_image) - set(on_disk))
    if absent:
        raise DataError(
            f"{len(absent)} images of {files.labels_csv.name}/{files.boxes_csv.name} are not in {images} "
            f"(first: {absent[0]}.jpg); "
            "set dataset.images to the folder of the <ImageID>.jpg files"
        )
    entries, truths = [], {}
    for coco_id, image_id in enumerate(
        tqdm(sorted(per_image), desc=f"{name} images", disable=not progress, unit="img"), start=1
    ):
        try:
            with Image.open(images / on_disk[image_id]) as img:
                width, height = img.size
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"cannot read image {images / on_disk[image_id]} ({exc}); replace the file") from exc
        entries.append(
            {"id": coco_id, "file_name": on_disk[image_id], "height": height, "width": width, "oid_image_id": image_id}
        )
        truths[coco_id] = image_truth(per_image[image_id], ImageRef(coco_id, height, width))
    categories = coco_categories()
    category_of: dict[str, int] = {}
    for cid, mid in category_to_mid(Category(c["id"], c["name"], None) for c in categories).items():
        category_of.setdefault(mid, cid)
    annotations: list[dict[str, Any]] = []
    for coco_id, truth in truths.items():
        for i, mid in enumerate(truth.labels):
            if mid in category_of:
                annotations.append(_coco_annotation(len(annotations) + 1, coco_id, truth, i, category_of[mid]))
    info = {
        "description": f"vcm_eval {name}: image list derived from {files.labels_csv.name} and {files.boxes_csv.name}"
    }
    doc = {"info": info, "images": entries, "annotations": annotations, "categories": categories}
    atomic_write(out, json.dumps(doc))
    return out, truths


def _coco_annotation(ann_id: int, coco_id: int, truth: OidImageTruth, i: int, category_id: int) -> dict[str, Any]:
    """A COCO annotation of box ``i`` (iscrowd = group-of); its mask, else the box outline as the segmentation."""
    x0, y0, x1, y1 = (float(v) for v in truth.boxes[i])
    segmentation: Any = truth.masks[i] if truth.masks is not None else [[x0, y0, x0, y1, x1, y1, x1, y0]]
    return {
        "id": ann_id,
        "image_id": coco_id,
        "category_id": category_id,
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": (x1 - x0) * (y1 - y0),
        "iscrowd": int(truth.group_of[i]),
        "segmentation": segmentation,
    }
