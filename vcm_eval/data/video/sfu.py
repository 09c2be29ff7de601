"""SFU-HW-Objects-v1 as distributed: raw YUV sequences and per-frame YOLO-style annotation files.

Layout (``dataset.root``; CompressAI-Vision's SFU conversion reads the same)::

    <root>/Class<X>/<yuv_prefix>*.yuv                      e.g. ClassD/BasketballPass_416x240_50Hz_8bit_P420.yuv
    <root>/Class<X>/Annotations/<Name>/<anything>_<NNN>.txt  one file per frame, NNN = frame index from 000

A YUV may also lie directly in ``<root>`` (MPEG's clip ``BasketballPass_416x240_50_val.yuv``). A file
holding the whole JCT-VC sequence is read from ``frame_skip`` on; one holding exactly the clip's
``frames`` frames from its start. Annotation files are numbered in the JCT-VC sequence (the clip's
frame i is file ``frame_skip + i``), or from 0 when the folder holds exactly the clip's files 0..frames-1.

Each annotation line is ``class cx cy w h``: the class id (the index of a COCO class in COCO's 80-class
order, as YOLO numbers them: 0 person, 2 car, 5 bus, ...; ``vcm_eval/data/coco_to_oid.csv`` lists that
order, the table MPEG's m59143 annotations use) and the box centre and size normalized by the frame
width and height. Boxes become COCO boxes in pixels: x = (cx - w/2) W, y = (cy - h/2) H, w W, h H.

The sequence list (``sfu_hw_objects.csv`` beside this module: names, classes, sizes, frame rates,
frame counts, the clip's first frame, intra periods, QPs, with its sources) says what to read.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vcm_eval.data.base import Category
from vcm_eval.data.oid_truth import read_class_map
from vcm_eval.data.video.base import FrameObject, VideoDataset, VideoFrame, VideoSequence, coco_json, select
from vcm_eval.data.video.config import SfuDatasetConfig
from vcm_eval.data.video.yuv_file import Yuv420File
from vcm_eval.errors import ConfigError, DataError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from vcm_eval.utils.components import Runtime

SEQUENCE_LIST = Path(__file__).with_name("sfu_hw_objects.csv")
COLUMNS = (
    "sequence",
    "name",
    "class",
    "mpeg_class",
    "width",
    "height",
    "fps",
    "frames",
    "frame_skip",
    "intra_period",
    "qps",
    "yuv_prefix",
    "annotation_dirs",
)
_FRAME_FILE = re.compile(r"_(\d+)\.txt$")


@dataclass(frozen=True)
class SfuEntry:
    """One row of a sequence list (``sfu_hw_objects.csv`` names the columns' sources).

    Attributes:
        sequence: MPEG's name (``BasketballPass_416x240_50``), the ``VideoSequence.name``.
        name: the short name (``BasketballPass``).
        jctvc_class: the JCT-VC class, the ``Class<X>`` folder (``A``..``D``).
        seq_class: the class results are reported over (``AB``, ``C``, ``D``).
        width, height, fps: picture size and frame rate.
        frames: frames in MPEG's clip; frame_skip: the clip's first frame in the JCT-VC sequence.
        intra_period: the test conditions' intra period; qps: their QPs (MPEG's ``-q``).
        yuv_prefix: how the raw file's name starts; annotation_dirs: names its annotation folder may have.
    """

    sequence: str
    name: str
    jctvc_class: str
    seq_class: str
    width: int
    height: int
    fps: int
    frames: int
    frame_skip: int
    intra_period: int
    qps: tuple[int, ...]
    yuv_prefix: str
    annotation_dirs: tuple[str, ...]


def read_sequence_list(path: Path = SEQUENCE_LIST) -> list[SfuEntry]:
    """The sequences of a list CSV (``#`` lines are comments).

    Raises:
        DataError: the file is missing or a row is malformed (the message names the line).
    """
    if not path.is_file():
        raise DataError(
            f"SFU sequence list {path} does not exist; set dataset.sequence_list to a CSV with columns {COLUMNS}"
        )
    with open(path, newline="", encoding="utf-8") as f:
        lines = [(k, line) for k, line in enumerate(f, 1) if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(line for _, line in lines)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    rows = list(reader)
    if missing:
        raise DataError(f"SFU sequence list {path} lacks the columns {missing}; it needs {COLUMNS}")
    entries = []
    for (line, _), row in zip(lines[1:], rows):
        try:
            entries.append(
                SfuEntry(
                    row["sequence"],
                    row["name"],
                    row["class"],
                    row["mpeg_class"],
                    int(row["width"]),
                    int(row["height"]),
                    int(row["fps"]),
                    int(row["frames"]),
                    int(row["frame_skip"]),
                    int(row["intra_period"]),
                    tuple(int(q) for q in row["qps"].split()),
                    row["yuv_prefix"],
                    tuple(row["annotation_dirs"].split()),
                )
            )
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}:{line}: malformed row ({exc}); fix it to the columns {COLUMNS}") from exc
    return entries


def sfu_categories() -> list[Category]:
    """COCO's 80 categories in COCO's 80-class order: SFU class id k is entry k (YOLO's numbering)."""
    return [Category(e.coco_id, e.coco_name, None) for e in read_class_map()]


def read_frame_file(path: Path, width: int, height: int, categories: list[Category]) -> list[FrameObject]:
    """The objects of one annotation file (``class cx cy w h`` per line, normalized), boxes in pixels.

    Raises:
        DataError: a line is not five numbers, a class id is outside COCO's 80 classes, or a coordinate
            is outside 0..1 (the message names the file and line).
    """
    objects = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read annotation file {path} ({exc}); restore it from SFU-HW-Objects-v1") from exc
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 5:
                raise ValueError(f"{len(fields)} fields, expected 5: class cx cy w h")
            cls, (cx, cy, w, h) = int(fields[0]), (float(v) for v in fields[1:])
            if not 0 <= cls < len(categories):
                raise ValueError(f"class id {cls} is not one of COCO's 0..{len(categories) - 1}")
            if not all(math.isfinite(v) and -1e-3 <= v <= 1 + 1e-3 for v in (cx, cy, w, h)):
                raise ValueError(f"coordinates {cx} {cy} {w} {h} are not normalized to 0..1")
        except ValueError as exc:
            raise DataError(f"{path}:{k}: {exc}; SFU annotation lines are `class cx cy w h`, normalized") from exc
        box = ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)
        objects.append(FrameObject(categories[cls].coco_id, box))
    return objects


def find_yuv(root: Path, entry: SfuEntry) -> tuple[Path, int]:
    """The raw file of a sequence and the index of the clip's first frame in it.

    Raises:
        DataError: no file fits (the message lists the places looked at).
    """
    folders = (root / f"Class{entry.jctvc_class}", root)
    candidates = [p for d in folders for p in sorted(d.glob(f"{entry.yuv_prefix}*.yuv"))]
    for path in candidates:
        n = Yuv420File.frames_in(path, entry.width, entry.height)
        if n == entry.frames:
            return path, 0
        if n >= entry.frame_skip + entry.frames:
            return path, entry.frame_skip
    where = " or ".join(str(d / f"{entry.yuv_prefix}*.yuv") for d in folders)
    found = f"; {[p.name for p in candidates]} hold too few frames" if candidates else ""
    raise DataError(
        f"no raw video of {entry.sequence} ({entry.width}x{entry.height}, {entry.frames} frames from "
        f"{entry.frame_skip}) "
        f"at {where}{found}; put the JCT-VC sequence or MPEG's clip there"
    )


def find_annotations(root: Path, entry: SfuEntry) -> tuple[dict[int, Path], int]:
    """The annotation files of a sequence by the clip's frame index, and the number of the clip's first file.

    Raises:
        DataError: no annotation folder, or a frame's file is missing.
    """
    tried = [
        base / name
        for name in entry.annotation_dirs
        for base in (root / f"Class{entry.jctvc_class}" / "Annotations", root / "Annotations")
    ]
    folder = next((d for d in tried if d.is_dir()), None)
    if folder is None:
        raise DataError(
            f"no annotation folder for {entry.sequence}; looked for {[str(d) for d in tried]} "
            "(SFU-HW-Objects-v1 layout)"
        )
    files: dict[int, Path] = {}
    for path in folder.glob("*.txt"):
        found = _FRAME_FILE.search(path.name)
        if found:
            files[int(found.group(1))] = path
    first = (
        0 if sorted(files) == list(range(entry.frames)) else entry.frame_skip
    )  # just the clip's files, or the sequence's
    if all(first + i in files for i in range(entry.frames)):
        return {i: files[first + i] for i in range(entry.frames)}, first
    missing = next(i for i in range(entry.frames) if entry.frame_skip + i not in files)
    raise DataError(
        f"{folder} has no annotation file for frame {entry.frame_skip + missing} of {entry.name} (a file *_"
        f"{entry.frame_skip + missing:03d}.txt); SFU-HW-Objects-v1 has one file per frame, empty when no object"
    )


class SfuSequence(VideoSequence):
    """One SFU-HW-Objects-v1 sequence: frames from its raw file, objects from its annotation files."""

    def __init__(
        self,
        entry: SfuEntry,
        *,
        yuv: Yuv420File,
        annotations: dict[int, Path],
        categories: list[Category],
        limit: int = 0,
    ):
        count = min(entry.frames, limit) if limit > 0 else entry.frames
        super().__init__(
            name=entry.sequence,
            seq_class=entry.seq_class,
            width=entry.width,
            height=entry.height,
            fps=entry.fps,
            frame_count=count,
            intra_period=entry.intra_period,
            qps=entry.qps,
        )
        self.entry, self.yuv, self.annotations, self.categories = entry, yuv, annotations, categories

    @property
    def has_yuv(self) -> bool:
        return True

    def yuv_frames(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return self.yuv.planes(self.frame_count)

    def objects(self, index: int) -> list[FrameObject]:
        """The ground-truth objects of frame ``index`` (0-based in the clip)."""
        return read_frame_file(self.annotations[index], self.width, self.height, self.categories)

    def frames(self) -> Iterator[VideoFrame]:
        for index, rgb in enumerate(self.yuv.rgb_frames(self.frame_count)):
            yield VideoFrame(index, rgb, tuple(self.objects(index)))

    def coco(self) -> dict[str, Any]:
        boxes = [self.objects(i) for i in range(self.frame_count)]
        used = {o.category_id for frame in boxes for o in frame}
        return coco_json(
            self.name,
            self.width,
            self.height,
            self.frame_count,
            boxes,
            [c for c in self.categories if c.coco_id in used],
        )


def read_sfu(
    root: Path, entries: list[SfuEntry], *, limit: int = 0, categories: list[Category] | None = None
) -> list[SfuSequence]:
    """The sequences of ``entries`` found under ``root`` (every file is checked now, not half-way through a run)."""
    if not root.is_dir():
        raise DataError(
            f"SFU root {root} is not a folder; set dataset.root to the folder holding Class<X>/ (SFU-HW-Objects-v1)"
        )
    cats = categories if categories is not None else sfu_categories()
    sequences = []
    for entry in entries:
        path, first = find_yuv(root, entry)
        annotations, _ = find_annotations(root, entry)
        yuv = Yuv420File(path, width=entry.width, height=entry.height, first=first, count=entry.frames)
        sequences.append(SfuSequence(entry, yuv=yuv, annotations=annotations, categories=cats, limit=limit))
    return sequences


def sfu_dataset(view: DictConfig, runtime: Runtime) -> VideoDataset:
    """SFU-HW-Objects-v1 under ``dataset.root`` (read in place; nothing is written under ``runtime.data_dir``)."""
    cfg: SfuDatasetConfig = view.dataset
    if not cfg.root:
        raise ConfigError(
            "dataset=sfu needs dataset.root=<folder holding Class<X>/ of SFU-HW-Objects-v1> (or $SFU_HW_ROOT)"
        )
    entries = read_sequence_list(Path(cfg.sequence_list).expanduser() if cfg.sequence_list else SEQUENCE_LIST)
    entries = select(
        entries,
        names=list(cfg.sequences),
        classes=list(cfg.classes),
        name_of=lambda e: e.sequence,
        class_of=lambda e: e.seq_class,
        dataset="the SFU sequence list",
    )
    sequences = read_sfu(Path(cfg.root).expanduser(), entries, limit=cfg.limit)
    return VideoDataset(name=cfg.name, sequences=list(sequences), categories=sfu_categories())
