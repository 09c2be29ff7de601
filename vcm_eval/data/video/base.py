"""What every video dataset kind becomes: ``VideoDataset``, a list of ``VideoSequence``.

A sequence streams its frames from disk (``frames()`` yields one ``VideoFrame`` at a time: RGB
pixels and that frame's ground-truth objects), so a 1080p sequence is never held whole in memory.
It also gives its ground truth whole, which is small: COCO instances for detection AP (``coco()``,
image id = frame index) and MOT rows for tracking (``mot()``, frame numbers from 1).

The pipelines (docs/video.md) read, per sequence: ``name``, ``seq_class`` (what per-class results
aggregate over), ``width`` x ``height``, ``fps``, ``frame_count``, ``intra_period`` (the coding
test condition), ``qps`` (the test conditions' QPs, may be empty), ``frames()``, and, when the source
is raw 4:2:0 video, ``yuv_frames()`` (the source samples the codec codes, no colour conversion).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from vcm_eval.data.base import Category
from vcm_eval.errors import ConfigError, DataError

T = TypeVar("T")


@dataclass(frozen=True)
class FrameObject:
    """One ground-truth object in one frame.

    Attributes:
        category_id: COCO category id (``VideoDataset.categories``).
        bbox: (x, y, w, h) in pixels of the frame, top-left origin.
        track_id: the object's identity across frames (MOT), -1 where the dataset has none (SFU).
        visibility: visible fraction 0..1 (MOT's column; 1 where unknown).
        ignore: a region that scores neither way (MOT rows with conf 0).
    """

    category_id: int
    bbox: tuple[float, float, float, float]
    track_id: int = -1
    visibility: float = 1.0
    ignore: bool = False


@dataclass(frozen=True)
class VideoFrame:
    """One decoded source frame.

    Attributes:
        index: 0-based position in the sequence.
        image: uint8 [H, W, 3] RGB.
        objects: the frame's ground truth.
    """

    index: int
    image: np.ndarray
    objects: tuple[FrameObject, ...]


@dataclass(frozen=True)
class MotTruth:
    """MOT ground truth of one sequence: one row per object and frame (MOTChallenge ``gt.txt`` columns).

    Attributes:
        rows: float64 [N, 9]: frame (from 1), id, x, y, w, h (pixels), conf (0 = ignore), class, visibility.
    """

    rows: np.ndarray

    COLUMNS = ("frame", "id", "x", "y", "w", "h", "conf", "class", "visibility")

    def at(self, frame: int) -> np.ndarray:
        """The rows of frame ``frame`` (1-based, as MOT numbers them)."""
        return self.rows[self.rows[:, 0] == frame]

    @property
    def track_ids(self) -> list[int]:
        return sorted({int(v) for v in self.rows[:, 1]})


class VideoSequence(abc.ABC):
    """One video sequence of a dataset (see the module docstring for what the pipelines read).

    Args:
        name: sequence name (e.g. ``BasketballPass_416x240_50``), unique in its dataset.
        seq_class: the class results are aggregated over (SFU: ``AB``, ``C``, ``D``).
        width, height: frame size in pixels.
        fps: frame rate (the rate in kbps is counted at it).
        frame_count: frames in the sequence (after ``dataset.limit``).
        intra_period: the coding test condition's intra period in frames.
        qps: the test conditions' QPs for this sequence (may be empty).
    """

    def __init__(
        self,
        *,
        name: str,
        seq_class: str,
        width: int,
        height: int,
        fps: float,
        frame_count: int,
        intra_period: int,
        qps: tuple[int, ...] = (),
    ) -> None:
        if width <= 0 or height <= 0 or fps <= 0 or frame_count <= 0:
            raise DataError(
                f"sequence {name}: size {width}x{height}, {fps} fps, {frame_count} frames must all be positive"
            )
        self.name, self.seq_class = name, seq_class
        self.width, self.height, self.fps = width, height, fps
        self.frame_count, self.intra_period, self.qps = frame_count, intra_period, tuple(qps)

    def __repr__(self) -> str:
        size = f"{self.width}x{self.height}, {self.fps:g} fps, {self.frame_count} frames"
        return f"{type(self).__name__}({self.name}, class {self.seq_class}, {size})"

    @property
    def has_yuv(self) -> bool:
        """True when the source is raw 4:2:0 video (``yuv_frames`` gives its samples)."""
        return False

    def yuv_frames(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The source's 8-bit 4:2:0 planes (Y [H, W], U, V [H/2, W/2]), one frame at a time.

        Raises:
            DataError: the source is not raw 4:2:0 video (convert ``frames()`` instead).
        """
        raise DataError(f"sequence {self.name} is not stored as raw 4:2:0 video; convert its RGB frames() instead")

    @abc.abstractmethod
    def frames(self) -> Iterator[VideoFrame]:
        """The frames in order, one at a time, each with its ground-truth objects."""

    @abc.abstractmethod
    def coco(self) -> dict[str, Any]:
        """COCO instances of the sequence (image id = frame index; bbox only), what pycocotools scores."""

    def mot(self) -> MotTruth | None:
        """MOT ground truth (tracks), or None where the dataset has no identities (SFU-HW-Objects-v1)."""
        return None

    @property
    def seconds(self) -> float:
        """Duration at the sequence's frame rate (what a rate in kbps divides by)."""
        return self.frame_count / self.fps


class VideoDataset:
    """The sequences of a video dataset and the categories their ground truth uses.

    Args:
        name: dataset name used in result folders.
        sequences: the sequences, in the dataset's order.
        categories: COCO categories of the ground truth (the task model's classes map onto them by name).
    """

    def __init__(self, *, name: str, sequences: list[VideoSequence], categories: list[Category]) -> None:
        names = [s.name for s in sequences]
        if len(set(names)) != len(names):
            raise DataError(f"dataset {name} lists a sequence twice ({names}); give each sequence once")
        self.name, self.sequences, self.categories = name, sequences, categories

    def __len__(self) -> int:
        return len(self.sequences)

    def __iter__(self) -> Iterator[VideoSequence]:
        return iter(self.sequences)

    def __getitem__(self, name: str) -> VideoSequence:
        for s in self.sequences:
            if s.name == name:
                return s
        raise DataError(f"dataset {self.name} has no sequence {name!r}; it has {[s.name for s in self.sequences]}")

    def by_class(self) -> dict[str, list[VideoSequence]]:
        """Sequences grouped by ``seq_class`` (first appearance order): what per-class results average over."""
        groups: dict[str, list[VideoSequence]] = {}
        for s in self.sequences:
            groups.setdefault(s.seq_class, []).append(s)
        return groups


def default_intra_period(fps: float) -> int:
    """MPEG's intra period for a frame rate: 32 up to 30 fps, 64 above (about one second, a multiple of the
    random-access GOP of 32). Every sequence of the FCM video sets follows it (SFU-HW-Objects-v1, TVD,
    HiEve: CompressAI-Vision's scripts/evaluation/*/*.json; tested)."""
    return 32 if fps <= 30 else 64


def select(
    items: list[T],
    *,
    names: list[str],
    classes: list[str],
    name_of: Callable[[T], str],
    class_of: Callable[[T], str],
    dataset: str,
) -> list[T]:
    """The items (sequences or list rows) named in ``names`` and of a class in ``classes`` (empty = no filter).

    Raises:
        ConfigError: a name or class matches nothing (a typo would otherwise silently drop data).
    """
    for wanted, have, key in (
        (names, {name_of(i) for i in items}, "sequences"),
        (classes, {class_of(i) for i in items}, "classes"),
    ):
        unknown = sorted(set(wanted) - have)
        if unknown:
            raise ConfigError(f"dataset.{key}={unknown} matches nothing in {dataset}; valid: {sorted(have)}")
    return [i for i in items if (not names or name_of(i) in names) and (not classes or class_of(i) in classes)]


def coco_json(
    name: str, width: int, height: int, frame_count: int, boxes: list[list[FrameObject]], categories: list[Category]
) -> dict[str, Any]:
    """A COCO instances dict of one sequence: one image per frame (id = frame index), one annotation per box."""
    images = [
        {"id": i, "file_name": f"{name}/{i:06d}", "height": height, "width": width, "frame": i}
        for i in range(frame_count)
    ]
    anns: list[dict[str, Any]] = []
    for i, objects in enumerate(boxes):
        for obj in objects:
            x, y, w, h = obj.bbox
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": obj.category_id,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(obj.ignore),
                }
            )
    cats = [{"id": c.coco_id, "name": c.name, "supercategory": ""} for c in categories]
    return {
        "info": {"description": f"vcm_eval video sequence {name}"},
        "images": images,
        "annotations": anns,
        "categories": cats,
    }
