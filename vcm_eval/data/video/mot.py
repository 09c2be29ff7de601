"""Tracking sets in MOT layout (TVD and HiEve as MPEG's FCM test conditions use them).

Layout (``dataset.root``; MOTChallenge's, which CompressAI-Vision's TVD/HiEve readers take)::

    <root>/<seq>/seqinfo.ini        [Sequence] name, imDir, frameRate, seqLength, imWidth, imHeight, imExt
    <root>/<seq>/<imDir>/000001.png one image per frame, numbered from 1 (%06d + imExt: .png or .jpg)
    <root>/<seq>/gt/gt.txt          frame,id,x,y,w,h,conf,class,visibility  (frame from 1, box in pixels)

``gt.txt`` rows keep every column as written (``VideoSequence.mot()``); the tracking evaluator
decides which rows count (MOTChallenge: conf 0 marks an ignore region). For detection truth
(``coco()``) MOT16's class ids map to COCO: 1, 2, 7 (pedestrian, person on vehicle, static person)
and class <= 0 (unspecified, as in pedestrian-only sets) -> person, 3 -> car, 4 -> bicycle,
5 -> motorcycle; other classes (distractors, occluders) are left out.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from vcm_eval.data.base import Category
from vcm_eval.data.video.base import (
    FrameObject,
    MotTruth,
    VideoDataset,
    VideoFrame,
    VideoSequence,
    coco_json,
    default_intra_period,
    select,
)
from vcm_eval.data.video.config import MotDatasetConfig
from vcm_eval.errors import ConfigError, DataError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from vcm_eval.utils.components import Runtime

SEQINFO_KEYS = ("imDir", "frameRate", "seqLength", "imWidth", "imHeight", "imExt")
MOT_CATEGORIES = [
    Category(1, "person", None),
    Category(2, "bicycle", None),
    Category(3, "car", None),
    Category(4, "motorcycle", None),
]
MOT_TO_COCO = {1: 1, 2: 1, 7: 1, 3: 3, 4: 2, 5: 4}  # MOT16 class -> COCO category id (class <= 0: person)


def read_seqinfo(path: Path) -> dict[str, str]:
    """The ``[Sequence]`` section of a ``seqinfo.ini``.

    Raises:
        DataError: the file is missing or lacks a key the reader needs.
    """
    if not path.is_file():
        raise DataError(
            f"{path} does not exist; a MOT sequence folder needs seqinfo.ini with [Sequence] {SEQINFO_KEYS}"
        )
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep the keys' case (frameRate)
    try:
        parser.read(path, encoding="utf-8")
        section = dict(parser["Sequence"])
    except (configparser.Error, KeyError) as exc:
        raise DataError(
            f"{path} has no readable [Sequence] section ({exc}); write it as MOTChallenge's seqinfo.ini"
        ) from exc
    missing = [k for k in SEQINFO_KEYS if k not in section]
    if missing:
        raise DataError(f"{path} lacks {missing} in [Sequence]; MOT seqinfo.ini needs {SEQINFO_KEYS}")
    return section


def read_gt(path: Path, frames: int) -> MotTruth:
    """``gt.txt`` as [N, 9] float rows (missing trailing columns: conf 1, class 1, visibility 1).

    Raises:
        DataError: the file is missing, not comma-separated numbers with at least 6 columns, or names a
            frame outside 1..``frames``.
    """
    if not path.is_file():
        raise DataError(
            f"{path} does not exist; a MOT sequence needs gt/gt.txt (frame,id,x,y,w,h,conf,class,visibility)"
        )
    try:
        raw = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise DataError(
            f"{path} is not comma-separated numbers ({exc}); MOT gt rows are frame,id,x,y,w,h,conf,class,visibility"
        ) from exc
    if raw.size == 0:
        return MotTruth(np.zeros((0, 9)))
    if raw.shape[1] < 6:
        raise DataError(f"{path} has {raw.shape[1]} columns; MOT gt rows need at least frame,id,x,y,w,h")
    rows = np.ones((raw.shape[0], 9))
    rows[:, : min(9, raw.shape[1])] = raw[:, :9]
    bad = rows[(rows[:, 0] < 1) | (rows[:, 0] > frames) | (rows[:, 0] != np.round(rows[:, 0]))]
    if len(bad):
        raise DataError(
            f"{path} has rows for frame {bad[0, 0]:g}, outside 1..{frames} (seqLength); fix gt.txt or seqinfo.ini"
        )
    return MotTruth(rows)


def _coco_id(mot_class: float) -> int:
    """COCO category of a MOT16 class (0: none)."""
    return 1 if mot_class <= 0 else MOT_TO_COCO.get(int(mot_class), 0)


class MotSequence(VideoSequence):
    """One MOT-layout sequence: frames from its images, objects and tracks from ``gt.txt``."""

    def __init__(self, folder: Path, *, intra_period: int = 0, seq_class: str = "", limit: int = 0) -> None:
        info = read_seqinfo(folder / "seqinfo.ini")
        try:
            fps, length, width, height = (
                float(info["frameRate"]),
                int(info["seqLength"]),
                int(info["imWidth"]),
                int(info["imHeight"]),
            )
        except ValueError as exc:
            raise DataError(
                f"{folder / 'seqinfo.ini'}: frameRate, seqLength, imWidth, imHeight must be numbers ({exc})"
            ) from exc
        count = min(length, limit) if limit > 0 else length
        super().__init__(
            name=folder.name,
            seq_class=seq_class or f"{height}p",
            width=width,
            height=height,
            fps=fps,
            frame_count=count,
            intra_period=intra_period or default_intra_period(fps),
        )
        self.folder, self.length = folder, length
        self.image_dir, self.ext = folder / info["imDir"], info["imExt"]
        self.truth = read_gt(folder / "gt" / "gt.txt", length)
        present = {p.name for p in self.image_dir.iterdir()} if self.image_dir.is_dir() else set()
        missing = [i for i in range(1, count + 1) if self.image_path(i).name not in present]
        if missing:
            raise DataError(
                f"{len(missing)} of {count} images of {folder.name} are missing, first {self.image_path(missing[0])}; "
                f"MOT images are <seq>/{info['imDir']}/%06d{self.ext} from 000001"
            )

    def image_path(self, frame: int) -> Path:
        """The image of MOT frame ``frame`` (1-based)."""
        return self.image_dir / f"{frame:06d}{self.ext}"

    def objects(self, index: int) -> list[FrameObject]:
        """The ground-truth objects of frame ``index`` (0-based; MOT frame ``index + 1``)."""
        return [
            FrameObject(_coco_id(r[7]), (r[2], r[3], r[4], r[5]), int(r[1]), float(r[8]), bool(r[6] == 0))
            for r in self.truth.at(index + 1)
        ]

    def frames(self) -> Iterator[VideoFrame]:
        for index in range(self.frame_count):
            path = self.image_path(index + 1)
            try:
                with Image.open(path) as img:
                    rgb = np.asarray(img.convert("RGB"))
            except (OSError, UnidentifiedImageError) as exc:
                raise DataError(f"cannot read image {path} ({exc}); replace the file") from exc
            if rgb.shape[:2] != (self.height, self.width):
                raise DataError(f"{path} is {rgb.shape[1]}x{rgb.shape[0]}, seqinfo.ini says {self.width}x{self.height}")
            yield VideoFrame(index, rgb, tuple(self.objects(index)))

    def coco(self) -> dict[str, Any]:
        boxes = [[o for o in self.objects(i) if o.category_id] for i in range(self.frame_count)]
        return coco_json(self.name, self.width, self.height, self.frame_count, boxes, MOT_CATEGORIES)

    def mot(self) -> MotTruth:
        return MotTruth(self.truth.rows[self.truth.rows[:, 0] <= self.frame_count])


def read_mot(root: Path, *, intra_period: int = 0, seq_class: str = "", limit: int = 0) -> list[MotSequence]:
    """Every sequence folder (one holding ``seqinfo.ini``) under ``root``, by name."""
    if not root.is_dir():
        raise DataError(f"MOT root {root} is not a folder; set dataset.root to the folder holding <seq>/seqinfo.ini")
    folders = sorted(p for p in root.iterdir() if (p / "seqinfo.ini").is_file())
    if not folders:
        raise DataError(f"no sequence under {root}: a MOT sequence is a folder with seqinfo.ini, img1/ and gt/gt.txt")
    return [MotSequence(f, intra_period=intra_period, seq_class=seq_class, limit=limit) for f in folders]


def mot_dataset(view: DictConfig, runtime: Runtime) -> VideoDataset:
    """A MOT-layout tracking set under ``dataset.root`` (read in place)."""
    cfg: MotDatasetConfig = view.dataset
    if not cfg.root:
        raise ConfigError("dataset=mot needs dataset.root=<folder holding <seq>/seqinfo.ini, img1/, gt/gt.txt>")
    if cfg.intra_period < 0:
        raise ConfigError(f"dataset.intra_period={cfg.intra_period} must be >= 0 (0: the frame rate's default)")
    sequences = read_mot(
        Path(cfg.root).expanduser(), intra_period=cfg.intra_period, seq_class=cfg.seq_class, limit=cfg.limit
    )
    kept = select(
        sequences,
        names=list(cfg.sequences),
        classes=list(cfg.classes),
        name_of=lambda s: s.name,
        class_of=lambda s: s.seq_class,
        dataset=f"the MOT set at {cfg.root}",
    )
    return VideoDataset(name=cfg.name, sequences=list(kept), categories=MOT_CATEGORIES)
