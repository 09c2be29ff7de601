"""Readers of the Open Images challenge files, and TF object_detection's hierarchical label expansion.

The files, as Open Images and its challenge publish them
(https://storage.googleapis.com/openimages/web/download.html):

- boxes CSV: ``ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,
  IsDepiction,IsInside``, coordinates normalized to 0..1. Only what the Challenge metric uses is read
  (ImageID, LabelName, the coordinates, IsGroupOf), so MPEG's own 7-column files
  (``ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf``, CompressAI-Vision ``data/mpeg-vcm``) read too.
- verified image-level labels CSV: ``ImageID,Source,LabelName,Confidence``, Confidence 1 = verified
  present, 0 = verified absent.
- class descriptions CSV: ``MID,display name`` lines (``oidv6-class-descriptions-boxable.csv`` has no
  header; a ``LabelName,DisplayName`` header line is skipped).
- label hierarchy JSON: ``{"LabelName": root, "Subcategory": [...]}`` (``bbox_labels_600_hierarchy.json``).
- instance masks CSV in either form: Open Images V6's ``MaskPath,ImageID,LabelName,BoxID,BoxXMin,BoxXMax,
  BoxYMin,BoxYMax,PredictedIoU,Clicks`` with one PNG per mask, or the challenge-evaluation form that TF's
  ``metrics/oid_challenge_evaluation_utils.py`` reads, ``ImageID,LabelName,ImageWidth,ImageHeight,XMin,
  YMin,XMax,YMax,IsGroupOf,Mask`` (Mask: COCO RLE counts, zlib-compressed, base64; MPEG's
  ``segmentation_validation_masks_5k.csv`` is in this form).

Masks: TF decodes a challenge-form mask at the ImageWidth x ImageHeight written beside it and resizes
nothing, and V6's PNG masks come at their own resolution; predicted masks are at the image's size, and
mask IoU needs equal shapes, so every mask is brought to its image's size here (nearest neighbour, so a
binary mask stays binary) when its size differs.

Hierarchical expansion (``OidHierarchy``) is the one of TF's
``research/object_detection/dataset_tools/oid_hierarchical_labels_expansion.py``, which the Challenge
ground truth goes through before evaluation: the root is not a class; a box gets one copy per ancestor
of its class; a verified-present label adds its ancestors (present), a verified-absent label adds its
descendants (absent). A class listed under several parents has all of them as ancestors.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from vcm_eval.errors import DataError

BOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsGroupOf")
LABEL_COLUMNS = ("ImageID", "LabelName", "Confidence")
PNG_MASK_COLUMNS = ("MaskPath", "ImageID", "LabelName", "BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax")
RLE_MASK_COLUMNS = (
    "ImageID",
    "LabelName",
    "ImageWidth",
    "ImageHeight",
    "XMin",
    "XMax",
    "YMin",
    "YMax",
    "IsGroupOf",
    "Mask",
)
COORD_SLACK = 1e-3  # normalized coordinates may exceed 0..1 by float noise, not more

Resolve = Callable[[str], str]
"""LabelName as written -> MID; raises ``UnknownLabel`` (saying the fix) when the label is not known."""


class UnknownLabel(ValueError):
    """A LabelName the reader cannot map to a known MID; the message says what to change."""


@dataclass(frozen=True)
class OidHierarchy:
    """The label hierarchy flattened as TF's expansion uses it (the root is not a class).

    Attributes:
        ancestors: MID -> every ancestor below the root, sorted (empty for the root's children).
        descendants: MID -> every descendant, sorted (empty for a leaf).
    """

    ancestors: dict[str, tuple[str, ...]]
    descendants: dict[str, tuple[str, ...]]

    def __contains__(self, mid: object) -> bool:
        return mid in self.ancestors

    def box_labels(self, mid: str) -> tuple[str, ...]:
        """The labels a box of ``mid`` is copied to: itself, then its ancestors."""
        return (mid, *self.ancestors[mid])

    def verified_labels(self, mid: str, present: bool) -> tuple[str, ...]:
        """The labels a verified label expands to: + ancestors when present, + descendants when absent."""
        return (mid, *(self.ancestors[mid] if present else self.descendants[mid]))


@dataclass(frozen=True)
class OidBox:
    """One box row: normalized corners (0..1), the MID and the IsGroupOf flag; ``line`` for messages."""

    image_id: str
    label: str
    x0: float
    y0: float
    x1: float
    y1: float
    group_of: bool
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class OidImageLabel:
    """One verified image-level label: the MID is present (Confidence 1) or absent (0) on the image."""

    image_id: str
    label: str
    present: bool
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class OidMask:
    """One instance mask row and where its pixels are: a PNG file, or challenge-form RLE text.

    Attributes:
        x0, y0, x1, y1: the normalized box the mask belongs to (matched to a box row of the image).
        group_of: the row's IsGroupOf, or None in V6's PNG form (which has no such column).
        png: the mask PNG, at its own resolution (PNG form).
        encoded: base64(zlib(COCO RLE counts)) of a ``size`` = (height, width) mask (challenge form).
        source: file and line, for messages.
    """

    image_id: str
    label: str
    x0: float
    y0: float
    x1: float
    y1: float
    group_of: bool | None
    png: Path | None = None
    encoded: str | None = None
    size: tuple[int, int] | None = None
    source: str = field(default="", compare=False)

    def rle(self, height: int, width: int) -> dict[str, Any]:
        """COCO RLE (ascii counts) of the mask at ``height`` x ``width`` (nearest-neighbour resized if needed)."""
        if self.encoded is not None and self.size == (height, width):
            return {"size": [height, width], "counts": _rle_counts(self.encoded, self.source).decode("ascii")}
        return encode_mask(fit_mask(self.decode(), height, width))

    def decode(self) -> np.ndarray:
        """The mask at its own resolution, bool [h, w]."""
        if self.png is not None:
            return read_mask_png(self.png)
        if self.encoded is None or self.size is None:
            raise DataError(f"{self.source}: the mask row has neither a PNG nor RLE text; fix the masks CSV")
        h, w = self.size
        counts = _rle_counts(self.encoded, self.source)
        try:
            return mask_utils.decode({"size": [h, w], "counts": counts}).astype(bool)
        except Exception as exc:  # pycocotools raises plain Exceptions on bad counts
            raise DataError(
                f"{self.source}: Mask is not a {h}x{w} COCO RLE ({exc}); fix the row or re-encode the mask"
            ) from exc


def parse_hierarchy(tree: object, *, source: str) -> OidHierarchy:
    """Flatten a hierarchy JSON object (``LabelName`` + optional ``Subcategory`` list per node).

    Raises:
        DataError: a node without a string LabelName or with a non-list Subcategory (names ``source``).
    """
    ancestors: dict[str, set[str]] = {}
    descendants: dict[str, set[str]] = {}

    def visit(node: object, path: tuple[str, ...] | None, depth: int) -> None:
        if depth > 64 or not isinstance(node, dict) or not isinstance(node.get("LabelName"), str):
            raise DataError(
                f"{source}: hierarchy node {str(node)[:60]!r} has no LabelName (or nests deeper than 64); "
                "give Open Images' label hierarchy JSON (e.g. bbox_labels_600_hierarchy.json)"
            )
        label, children = node["LabelName"], node.get("Subcategory", [])
        if not isinstance(children, list):
            raise DataError(f"{source}: Subcategory of {label} is not a list; give Open Images' label hierarchy JSON")
        if path is not None:  # the root is a virtual node, not a class (TF's skip_root)
            ancestors.setdefault(label, set()).update(path)
            descendants.setdefault(label, set())
            for parent in path:
                descendants[parent].add(label)
        for child in children:
            visit(child, () if path is None else (*path, label), depth + 1)

    visit(tree, None, 0)
    return OidHierarchy(
        ancestors={k: tuple(sorted(v)) for k, v in ancestors.items()},
        descendants={k: tuple(sorted(v)) for k, v in descendants.items()},
    )


def read_hierarchy(path: Path) -> OidHierarchy:
    """Read and flatten a label hierarchy JSON file (see ``parse_hierarchy``)."""
    _require_file(path, "label hierarchy JSON", "set dataset.hierarchy_json to it, or leave it empty (no expansion)")
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"label hierarchy {path} is not JSON ({exc}); give Open Images' hierarchy JSON") from exc
    return parse_hierarchy(tree, source=str(path))


def read_class_descriptions(path: Path) -> dict[str, str]:
    """MID -> display name from a class descriptions CSV (``/m/01g317,Person`` lines)."""
    _require_file(
        path, "class descriptions CSV", "set dataset.classes_csv to it (e.g. oidv6-class-descriptions-boxable.csv)"
    )
    names: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.reader(f):
            if not row or (not names and row[:2] == ["LabelName", "DisplayName"]):
                continue
            if len(row) < 2 or not row[0].strip():
                raise DataError(f"{path} line {len(names) + 1}: expected 'MID,display name', got {row!r}; fix the line")
            names[row[0].strip()] = row[1].strip()
    if not names:
        raise DataError(f"class descriptions {path} is empty; give the class descriptions CSV of the release")
    return names


def read_boxes(path: Path, resolve: Resolve) -> list[OidBox]:
    """Every box row of a boxes CSV (coordinates checked: finite, ordered, within 0..1)."""
    boxes = []
    for line, row in _rows(path, "boxes CSV", BOX_COLUMNS, "dataset.boxes_csv"):
        x0, x1, y0, y1 = (_coord(row, c, path, line) for c in ("XMin", "XMax", "YMin", "YMax"))
        _check_order(x0, y0, x1, y1, path, line)
        label = _label(row, resolve, path, line)
        boxes.append(OidBox(row["ImageID"], label, x0, y0, x1, y1, _flag(row, "IsGroupOf", path, line), line))
    return boxes


def read_image_labels(path: Path, resolve: Resolve) -> list[OidImageLabel]:
    """Every verified image-level label row (Confidence must be 0 or 1: human-verified labels only)."""
    labels = []
    for line, row in _rows(path, "image-level labels CSV", LABEL_COLUMNS, "dataset.labels_csv"):
        confidence = _number(row, "Confidence", path, line)
        if confidence not in (0.0, 1.0):
            raise DataError(
                f"{path} line {line}, column Confidence: {row['Confidence']!r} is not 0 or 1; use the human-verified "
                "image-level labels file (machine-generated labels have fractional confidences)"
            )
        labels.append(OidImageLabel(row["ImageID"], _label(row, resolve, path, line), confidence == 1.0, line))
    return labels


def read_masks(path: Path, resolve: Resolve, masks_dir: Path) -> list[OidMask]:
    """Every mask row of a masks CSV, in V6's PNG form or the challenge's RLE form (picked by its columns).

    A PNG is looked for as ``masks_dir/MaskPath``, then ``masks_dir/<first character>/MaskPath`` (Open Images
    ships masks in 16 zips named by that character). Rows with an empty Mask (challenge form) have no mask
    and are skipped, as TF reads them.
    """
    masks = []
    header = _header(path, "masks CSV", "dataset.masks_csv")
    rle_form = "Mask" in header
    columns = RLE_MASK_COLUMNS if rle_form else PNG_MASK_COLUMNS
    prefix = "" if rle_form else "Box"
    for line, row in _rows(path, "masks CSV", columns, "dataset.masks_csv"):
        x0, x1, y0, y1 = (_coord(row, prefix + c, path, line) for c in ("XMin", "XMax", "YMin", "YMax"))
        _check_order(x0, y0, x1, y1, path, line)
        label = _label(row, resolve, path, line)
        source = f"{path} line {line}"
        if rle_form:
            if not row["Mask"].strip() or row["Mask"].strip().lower() == "nan":
                continue
            size = (_int(row, "ImageHeight", path, line), _int(row, "ImageWidth", path, line))
            group_of = _flag(row, "IsGroupOf", path, line)
            masks.append(
                OidMask(
                    row["ImageID"],
                    label,
                    x0,
                    y0,
                    x1,
                    y1,
                    group_of,
                    encoded=row["Mask"].strip(),
                    size=size,
                    source=source,
                )
            )
        else:
            png = _mask_file(masks_dir, row["MaskPath"].strip(), path, line)
            masks.append(OidMask(row["ImageID"], label, x0, y0, x1, y1, None, png=png, source=source))
    return masks


def read_mask_png(path: Path) -> np.ndarray:
    """A mask PNG as bool [h, w]: every non-zero pixel is the object (0/255 L, 1-bit or palette files)."""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img if img.mode in ("1", "L", "P", "I", "I;16") else img.convert("L"))
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot read mask {path} ({exc}); replace the file (Open Images' masks zips)") from exc
    return arr != 0


def fit_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """``mask`` (bool [h, w]) at ``height`` x ``width``: nearest-neighbour resized when the size differs."""
    if mask.shape == (height, width):
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.resize((width, height), Image.Resampling.NEAREST)) > 127


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE with ascii counts (what COCO jsons and ``OidImageTruth.masks`` hold) of a bool mask."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": rle["counts"].decode("ascii")}


def empty_rle(height: int, width: int) -> dict[str, Any]:
    """RLE of an all-zero mask: what a box without a mask gets in an image that has masks (as TF fills)."""
    rle = mask_utils.frPyObjects({"counts": [height * width], "size": [height, width]}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _rle_counts(encoded: str, source: str) -> bytes:
    try:
        return zlib.decompress(base64.b64decode(encoded, validate=True))
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise DataError(
            f"{source}: Mask is not base64 zlib-compressed COCO RLE ({exc}); fix the row or re-encode the mask"
        ) from exc


def _require_file(path: Path, what: str, fix: str) -> None:
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist; {fix}")


def _header(path: Path, what: str, key: str) -> list[str]:
    _require_file(path, what, f"set {key} to it")
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [c.strip() for c in next(csv.reader(f), [])]


def _rows(path: Path, what: str, required: tuple[str, ...], key: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV after checking its header has the ``required`` columns."""
    header = _header(path, what, key)
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{what} {path} has no column {', '.join(missing)} (header: {','.join(header) or 'empty'}); "
            f"give a file with the columns {','.join(required)} ({key})"
        )
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, fieldnames=header)
        next(reader)
        for row in reader:
            if None in row or any(row[c] is None for c in required):
                raise DataError(f"{path} line {reader.line_num}: {len(header)} columns expected; fix the row")
            yield reader.line_num, row


def _number(row: dict[str, str], column: str, path: Path, line: int) -> float:
    try:
        value = float(row[column])
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(f"{path} line {line}, column {column}: {row[column]!r} is not a number; fix the row")
    return value


def _coord(row: dict[str, str], column: str, path: Path, line: int) -> float:
    value = _number(row, column, path, line)
    if not -COORD_SLACK <= value <= 1 + COORD_SLACK:
        raise DataError(f"{path} line {line}, column {column}: {value} is outside 0..1; coordinates must be normalized")
    return min(max(value, 0.0), 1.0)


def _int(row: dict[str, str], column: str, path: Path, line: int) -> int:
    value = _number(row, column, path, line)
    if value != int(value) or value <= 0:
        raise DataError(f"{path} line {line}, column {column}: {row[column]!r} is not a positive integer; fix the row")
    return int(value)


def _flag(row: dict[str, str], column: str, path: Path, line: int) -> bool:
    value = row[column].strip()
    if value not in ("0", "1"):
        raise DataError(f"{path} line {line}, column {column}: {value!r} is not 0 or 1; fix the row")
    return value == "1"


def _check_order(x0: float, y0: float, x1: float, y1: float, path: Path, line: int) -> None:
    if x0 > x1 or y0 > y1:
        raise DataError(f"{path} line {line}: XMin > XMax or YMin > YMax ({x0}, {x1}, {y0}, {y1}); fix the row")


def _label(row: dict[str, str], resolve: Resolve, path: Path, line: int) -> str:
    try:
        return resolve(row["LabelName"].strip())
    except UnknownLabel as exc:
        raise DataError(f"{path} line {line}, column LabelName: {exc}") from exc


def _mask_file(masks_dir: Path, name: str, path: Path, line: int) -> Path:
    for candidate in (masks_dir / name, masks_dir / name[:1] / name):
        if name and candidate.is_file():
            return candidate
    raise DataError(
        f"{path} line {line}: mask PNG {name!r} is in neither {masks_dir} nor {masks_dir / name[:1]}; "
        "set dataset.masks_dir to the folder the masks zips were unpacked into"
    )
