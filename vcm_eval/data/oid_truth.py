"""Open Images ground truth assembled from file rows, and the COCO -> Open Images class map.

Shared by both readers of ``dataset=oiv6`` (``vcm_eval.data.oiv6``): rows of one image (boxes,
verified labels, masks: ``vcm_eval.data.oid_csv``) become one ``OidImageTruth`` in pixels, masks matched
to their boxes as TF's ``oid_challenge_evaluation.py`` merges the two CSVs (same image, label, box corners;
a mask with no box row stays an instance of its own, as its outer merge keeps it), then optionally
expanded up the label hierarchy. ``coco_to_oid.csv`` (MPEG's table, its source in its header) maps the
dataset's COCO categories to MIDs.
"""

from __future__ import annotations

import csv
import functools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from vcm_eval.data.base import Category
from vcm_eval.data.oid import OidImageTruth, OidLabelMap
from vcm_eval.data.oid_csv import OidBox, OidHierarchy, OidImageLabel, OidMask, empty_rle
from vcm_eval.errors import DataError

CLASS_MAP = Path(__file__).with_name("coco_to_oid.csv")
MATCH_TOLERANCE = 1e-4  # a mask row belongs to the box whose normalized corners agree within this


@dataclass(frozen=True)
class ClassMapEntry:
    """One COCO category and its Open Images counterpart (``mid`` empty: none, its detections are dropped)."""

    coco_id: int
    coco_name: str
    mid: str
    oid_name: str


@dataclass(frozen=True)
class ImageRef:
    """An image of the dataset's COCO json: its id there and its size in pixels (boxes are scaled by it)."""

    coco_id: int
    height: int
    width: int


def normalize_name(name: str) -> str:
    """A class name compared across files: lower case, ``_`` as a space (MPEG's files write ``cell_phone``)."""
    return " ".join(name.lower().replace("_", " ").split())


@functools.lru_cache(maxsize=4)
def read_class_map(path: Path = CLASS_MAP) -> tuple[ClassMapEntry, ...]:
    """The COCO -> Open Images table (``#`` lines are comments), in COCO id order."""
    if not path.is_file():
        raise DataError(f"class map {path} does not exist; reinstall vcm_eval (it ships vcm_eval/data/coco_to_oid.csv)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    try:
        entries = [ClassMapEntry(int(r["coco_id"]), r["coco_name"], r["oid_mid"], r["oid_name"]) for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"class map {path} is malformed ({exc}); restore it from the vcm_eval sources") from exc
    return tuple(sorted(entries, key=lambda e: e.coco_id))


def coco_categories() -> list[dict[str, Any]]:
    """COCO's 80 categories (ids and names of instances_val2017.json), from the class map."""
    return [{"id": e.coco_id, "name": e.coco_name, "supercategory": ""} for e in read_class_map()]


def category_to_mid(categories: Iterable[Category]) -> dict[int, str]:
    """Dataset category id -> MID, by COCO name through the class map; unmapped categories are left out."""
    by_name = {normalize_name(e.coco_name): e.mid for e in read_class_map() if e.mid}
    return {c.coco_id: by_name[normalize_name(c.name)] for c in categories if normalize_name(c.name) in by_name}


def expand_truth(truth: OidImageTruth, hierarchy: OidHierarchy) -> OidImageTruth:
    """``truth`` expanded up the hierarchy as TF's oid_hierarchical_labels_expansion.py does.

    Each box is followed by one copy per ancestor of its class (same box, group-of flag and mask); a
    verified-present class makes its ancestors verified present, a verified-absent one its descendants
    verified absent (where both meet, present wins: a class with a present descendant is present).
    """
    order = [(i, label) for i, mid in enumerate(truth.labels) for label in hierarchy.box_labels(mid)]
    index = np.array([i for i, _ in order], dtype=np.int64)
    verified: dict[str, bool] = {}
    for mid, present in truth.verified.items():
        for label in hierarchy.verified_labels(mid, present):
            verified[label] = verified.get(label, False) or present
    return replace(
        truth,
        boxes=truth.boxes[index].reshape(-1, 4),
        labels=[label for _, label in order],
        group_of=truth.group_of[index],
        masks=None if truth.masks is None else [truth.masks[i] for i in index],
        verified=verified,
    )


@dataclass
class ImageRows:
    """The rows of one ImageID across the boxes, labels and masks files."""

    boxes: list[OidBox]
    labels: list[OidImageLabel]
    masks: list[OidMask]


def group_rows(boxes: list[OidBox], labels: list[OidImageLabel], masks: list[OidMask]) -> dict[str, ImageRows]:
    """ImageID -> its rows, in file order (an image with only labels, or only boxes, is kept)."""
    per_image: dict[str, ImageRows] = defaultdict(lambda: ImageRows([], [], []))
    for b in boxes:
        per_image[b.image_id].boxes.append(b)
    for lab in labels:
        per_image[lab.image_id].labels.append(lab)
    for m in masks:
        per_image[m.image_id].masks.append(m)
    return dict(per_image)


def image_truth(rows: ImageRows, ref: ImageRef) -> OidImageTruth:
    """One image's truth (unexpanded) from its rows: masks matched to boxes as TF's merge does."""
    pairs: list[tuple[OidBox, OidMask | None]] = [(b, None) for b in rows.boxes]
    for m in rows.masks:
        best, best_diff = -1, MATCH_TOLERANCE
        for i, (b, taken) in enumerate(pairs):
            if taken is None and b.label == m.label and (m.group_of is None or m.group_of == b.group_of):
                diff = max(abs(b.x0 - m.x0), abs(b.x1 - m.x1), abs(b.y0 - m.y0), abs(b.y1 - m.y1))
                if diff <= best_diff:
                    best, best_diff = i, diff
        if best >= 0:
            pairs[best] = (pairs[best][0], m)
        else:  # TF's outer merge keeps a mask without a box row as an instance of its own
            pairs.append((OidBox(m.image_id, m.label, m.x0, m.y0, m.x1, m.y1, bool(m.group_of)), m))
    verified: dict[str, bool] = {}
    for lab in rows.labels:
        verified[lab.label] = verified.get(lab.label, False) or lab.present
    return pairs_truth(pairs, verified, ref, has_masks=bool(rows.masks))


def pairs_truth(
    pairs: list[tuple[OidBox, OidMask | None]], verified: dict[str, bool], ref: ImageRef, *, has_masks: bool
) -> OidImageTruth:
    """``OidImageTruth`` in pixels from (box, mask or None) pairs.

    ``has_masks``: the image has mask annotations, so every box gets a mask (all-zero where none, as TF
    fills them); otherwise ``masks`` is None and the boxes are detection ground truth only.
    """
    h, w = ref.height, ref.width
    boxes = np.array([[b.x0 * w, b.y0 * h, b.x1 * w, b.y1 * h] for b, _ in pairs], dtype=np.float64).reshape(-1, 4)
    masks = [m.rle(h, w) if m is not None else empty_rle(h, w) for _, m in pairs] if has_masks else None
    return OidImageTruth(
        boxes=boxes,
        labels=[b.label for b, _ in pairs],
        group_of=np.array([b.group_of for b, _ in pairs], dtype=bool),
        verified=verified,
        height=h,
        width=w,
        masks=masks,
    )


def label_map_of(mids: list[str], names: dict[str, str], hierarchy: OidHierarchy | None) -> OidLabelMap:
    """The classes detections can carry: the mapped MIDs, then (expanded) their ancestors, sorted."""
    order = list(dict.fromkeys(mids))
    if hierarchy is not None:
        order += sorted({a for m in order for a in hierarchy.ancestors.get(m, ())} - set(order))
    return OidLabelMap(mids=tuple(order), names=tuple(names.get(m, m) for m in order))
