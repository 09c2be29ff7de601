"""The embedded default's video: deterministic street-scene sequences with moving objects and tracks.

Each sequence is the still dataset's street scene (``vcm_eval.data.scene``: its background and object
drawing, unchanged) filmed by a camera that stands or pans: its objects are rigid sprites that move
sideways at their own speed, enter and leave the frame, and occlude one another (painted far to near).
Sequence ``k`` is drawn from ``np.random.default_rng([seed, 9, k])`` (the still splits use codes 1-3),
frame ``f``'s sensor noise from ``[seed, 9, k, f]``: the same settings give the same bytes. Every
sequence has an object entering from the left and one leaving on the right, besides random ones.
Sequences alternate between classes ``A`` and ``B`` (so per-class results can be exercised) and pan
at 0, 1, 2 pixels per frame in turn.

Ground truth per frame and object: the tight box of its visible pixels (detection, as the still
dataset's COCO boxes), its box clipped to the frame and its visible fraction (tracking, MOT). An
object with fewer than ``min_visible_pixels`` visible pixels in a frame is painted over with the
background there, so no unlabelled object is ever visible.

Written on first use under ``paths.data`` in both distributed layouts (docs/video.md)::

    <root>/sfu/sequences.csv                                 the sequence list (sfu_hw_objects.csv's columns)
    <root>/sfu/Class<A|B>/SynthStreet<k>_<W>x<H>_<fps>.yuv   raw yuv420p (FFmpeg's conversion of the PNGs)
    <root>/sfu/Class<A|B>/Annotations/SynthStreet<k>/SynthStreet<k>_<W>x<H>_<fps>_<NNN>.txt
    <root>/mot/SynthStreet<k>/{seqinfo.ini, img1/%06d.png, gt/gt.txt}

and read back through the SFU reader (frames from the YUV, detection truth) and the MOT reader
(tracks): the readers the real data uses. The MOT ``class`` column holds the COCO category id
(person 1, car 3, bus 6; MOT16's own ids agree for pedestrian 1 and car 3).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock
from PIL import Image
from tqdm import tqdm

from vcm_eval.data.base import Category
from vcm_eval.data.oid_truth import read_class_map
from vcm_eval.data.scene import CLASSES, _background, _object_patch
from vcm_eval.data.video.base import MotTruth, VideoDataset, select
from vcm_eval.data.video.config import SyntheticVideoConfig, SyntheticVideoSpec
from vcm_eval.data.video.mot import MotSequence
from vcm_eval.data.video.sfu import COLUMNS, SfuEntry, SfuSequence, read_sequence_list, read_sfu
from vcm_eval.data.video.yuv_file import QUIET, ffmpeg_exe
from vcm_eval.errors import ConfigError, DataError
from vcm_eval.utils.construct import from_config

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from vcm_eval.utils.components import Runtime

FORMAT_VERSION = 2  # bump when the drawing or the layout changes, so cached sequences are regenerated (2: QPs)
VIDEO_CODE = 9  # the rng stream of the video (the still splits use 1, 2, 3)
NOISE_SIGMA = 1.5  # per-frame sensor noise, in 8-bit levels
INTRA_PERIOD = 8  # the synthetic sequences' coding intra period: a 16-frame sequence holds two
# The synthetic sequences' "test-condition" QPs (MPEG's -q, one list for every class): with VTM's low-delay cfg
# (IntraQPOffset -1) their intra slices are coded at 32, 37, 42, 47, the shipped VTM streams' QPs, so
# vvc_sequence.rate_point=1..4 decodes those streams as MPEG's per-class QP tables would pick them.
TEST_CONDITION_QPS = (33, 38, 43, 48)


def folder_name(spec: SyntheticVideoSpec) -> str:
    """The data folder of a generator setting: every field that changes the video is in it."""
    return (
        f"synthetic-video-v{FORMAT_VERSION}-s{spec.seed}-{spec.width}x{spec.height}"
        f"-n{spec.sequence_count}-f{spec.frames}"
        f"-r{spec.fps}-o{spec.min_objects}-{spec.max_objects}-m{spec.min_visible_pixels}"
    )


def sequence_name(k: int) -> str:
    return f"SynthStreet{k}"


def sequence_class(k: int) -> str:
    """``A`` for even ``k``, ``B`` for odd: two classes to aggregate over."""
    return "AB"[k % 2]


def categories() -> list[Category]:
    """The synthetic classes as COCO categories (person 1, car 3, bus 6): the model's classes map by name."""
    by_name = {e.coco_name: e.coco_id for e in read_class_map()}
    return [Category(by_name[c.name], c.name, c.cityscapes_id) for c in CLASSES]


def yolo_class(cls: int) -> int:
    """The SFU (YOLO) class id of ``CLASSES[cls]``: its index in COCO's 80-class order."""
    return [e.coco_name for e in read_class_map()].index(CLASSES[cls].name)


@dataclass(frozen=True)
class TruthBox:
    """One object in one frame.

    Attributes:
        track_id: the object's identity (1-based, per sequence).
        cls: index into ``scene.CLASSES``.
        visible: (x, y, w, h) tight box of its visible pixels.
        full: (x, y, w, h) its whole silhouette's box, clipped to the frame (MOT box).
        visibility: visible pixels / silhouette pixels.
    """

    track_id: int
    cls: int
    visible: tuple[int, int, int, int]
    full: tuple[int, int, int, int]
    visibility: float


@dataclass
class _Track:
    track_id: int
    cls: int
    depth: float
    y0: int
    x0: float  # screen x of the left edge at frame 0
    vx: float  # screen pixels per frame (object speed minus the camera's pan)
    patch: np.ndarray
    mask: np.ndarray


def _tracks(rng: np.random.Generator, spec: SyntheticVideoSpec, horizon: int, pan: int) -> list[_Track]:
    """The objects of one sequence: two forced (enter left, leave right) and random ones."""
    height, width, frames = spec.height, spec.width, spec.frames
    freqs = np.array([c.frequency for c in CLASSES])
    n = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    tracks = []
    for j in range(n):
        depth = (0.3, 0.4)[j] if j < 2 else 0.02 + 1.06 * float(rng.uniform()) ** 1.5
        cls = 1 if j < 2 else int(rng.choice(len(CLASSES), p=freqs / freqs.sum()))
        c = CLASSES[cls]
        scale = c.height_at_bottom * (0.06 + 0.94 * depth) * rng.uniform(0.85, 1.15)  # as scene.generate_scene
        obj_h = max(6, int(round(height * scale)))  # noqa: RUF046
        obj_w = max(3, int(round(obj_h * rng.uniform(*c.aspect))))  # noqa: RUF046
        bottom = horizon + (height - horizon) * depth
        y0 = int(round(bottom - obj_h))  # noqa: RUF046
        patch, mask = _object_patch(c, obj_w, obj_h, rng)
        if j == 0:  # enters: fully left of the frame at frame 0, 30% into it by mid-sequence
            vx, x0 = (obj_w + 0.3 * width) / (0.5 * frames), -obj_w - 1.0
        elif j == 1:  # leaves: its left edge at 60% of the width at frame 0, past the right edge by 3/4
            vx, x0 = (0.4 * width + 1) / (0.75 * frames - 1), 0.6 * width
        else:  # visible around a random frame, moving either way (people slower), as seen by the panning camera
            speed = rng.uniform(0.5, 1.5) * (1 + 2 * depth) * width / 256 * (0.5 if c.name == "person" else 1.0)
            vx = float(speed * rng.choice([-1.0, 1.0]) - pan)
            centre_frame, centre_x = rng.uniform(0, frames - 1), rng.uniform(0, width)
            x0 = centre_x - obj_w / 2 - vx * centre_frame
        tracks.append(_Track(j + 1, cls, depth, y0, float(x0), float(vx), patch, mask))
    return sorted(tracks, key=lambda t: t.depth)  # far first: near objects occlude far ones


def _box(ys: np.ndarray, xs: np.ndarray) -> tuple[int, int, int, int]:
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def sequence_frames(spec: SyntheticVideoSpec, k: int) -> Iterator[tuple[np.ndarray, list[TruthBox]]]:
    """Frames of sequence ``k`` in order: (uint8 [H, W, 3] RGB, its objects), drawn one at a time."""
    rng = np.random.default_rng([spec.seed, VIDEO_CODE, k])
    pan = k % 3
    height, width = spec.height, spec.width
    world, _, horizon = _background(rng, height, width + pan * (spec.frames - 1))
    tracks = _tracks(rng, spec, horizon, pan)
    for f in range(spec.frames):
        background = world[:, pan * f : pan * f + width]
        rgb = background.copy()
        owner = np.full((height, width), -1, np.int32)
        silhouettes: list[tuple[np.ndarray, np.ndarray] | None] = []
        for idx, t in enumerate(tracks):
            x0 = int(round(t.x0 + t.vx * f))  # noqa: RUF046
            h, w = t.mask.shape
            ys, xs = slice(max(0, t.y0), min(height, t.y0 + h)), slice(max(0, x0), min(width, x0 + w))
            if ys.stop <= ys.start or xs.stop <= xs.start:
                silhouettes.append(None)
                continue
            m = t.mask[ys.start - t.y0 : ys.stop - t.y0, xs.start - x0 : xs.stop - x0]
            rgb[ys, xs][m] = t.patch[ys.start - t.y0 : ys.stop - t.y0, xs.start - x0 : xs.stop - x0][m]
            owner[ys, xs][m] = idx
            my, mx = np.nonzero(m)
            silhouettes.append((my + ys.start, mx + xs.start) if my.size else None)
        boxes = []
        for idx, t in enumerate(tracks):
            visible = owner == idx
            count = int(visible.sum())
            if count < spec.min_visible_pixels:
                rgb[visible] = background[visible]  # too little to label: not there at all
                continue
            sil = silhouettes[idx]
            vy, vx = np.nonzero(visible)
            boxes.append(
                TruthBox(
                    t.track_id, t.cls, _box(vy, vx), _box(*sil) if sil else _box(vy, vx), count / float(t.mask.sum())
                )
            )
        noise = np.random.default_rng([spec.seed, VIDEO_CODE, k, f]).normal(0.0, NOISE_SIGMA, size=rgb.shape)
        yield np.clip(np.rint(rgb + noise), 0, 255).astype(np.uint8), sorted(boxes, key=lambda b: b.track_id)


def sfu_entry(spec: SyntheticVideoSpec, k: int) -> SfuEntry:
    """The sequence-list row of sequence ``k``."""
    name, cls = sequence_name(k), sequence_class(k)
    return SfuEntry(
        f"{name}_{spec.width}x{spec.height}_{spec.fps}",
        name,
        cls,
        cls,
        spec.width,
        spec.height,
        spec.fps,
        spec.frames,
        0,
        INTRA_PERIOD,
        TEST_CONDITION_QPS,
        f"{name}_{spec.width}x{spec.height}_{spec.fps}",
        (name,),
    )


def _write_sequence(root: Path, spec: SyntheticVideoSpec, k: int) -> None:
    entry = sfu_entry(spec, k)
    mot_dir = root / "mot" / entry.name
    (mot_dir / "img1").mkdir(parents=True)
    (mot_dir / "gt").mkdir()
    ann_dir = root / "sfu" / f"Class{entry.jctvc_class}" / "Annotations" / entry.name
    ann_dir.mkdir(parents=True)
    gt_rows = []
    for f, (rgb, boxes) in enumerate(sequence_frames(spec, k)):
        Image.fromarray(rgb).save(mot_dir / "img1" / f"{f + 1:06d}.png")
        lines = []
        for b in boxes:
            x, y, w, h = b.visible
            lines.append(
                f"{yolo_class(b.cls)} {(x + w / 2) / spec.width:.6f} {(y + h / 2) / spec.height:.6f} "
                f"{w / spec.width:.6f} {h / spec.height:.6f}"
            )
            fx, fy, fw, fh = b.full
            gt_rows.append(
                f"{f + 1},{b.track_id},{fx},{fy},{fw},{fh},1,{categories()[b.cls].coco_id},{b.visibility:.4f}"
            )
        (ann_dir / f"{entry.sequence}_{f:03d}.txt").write_text("".join(line + "\n" for line in lines))
    (mot_dir / "gt" / "gt.txt").write_text("".join(r + "\n" for r in gt_rows))
    (mot_dir / "seqinfo.ini").write_text(
        f"[Sequence]\nname={entry.name}\nimDir=img1\nframeRate={spec.fps}\nseqLength={spec.frames}\n"
        f"imWidth={spec.width}\nimHeight={spec.height}\nimExt=.png\n"
    )
    yuv = root / "sfu" / f"Class{entry.jctvc_class}" / f"{entry.yuv_prefix}.yuv"
    cmd = [
        ffmpeg_exe(),
        *QUIET,
        "-framerate",
        str(spec.fps),
        "-i",
        str(mot_dir / "img1" / "%06d.png"),
        "-frames:v",
        str(spec.frames),
        "-pix_fmt",
        "yuv420p",
        "-f",
        "rawvideo",
        "-y",
        str(yuv),
    ]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise DataError(
            f"FFmpeg could not convert {entry.name} to yuv420p: {proc.stderr.decode(errors='replace').strip()[-300:]}"
        )


def _write_list(path: Path, entries: list[SfuEntry]) -> None:
    rows = [",".join(COLUMNS)]
    for e in entries:
        rows.append(
            ",".join(
                str(v)
                for v in (
                    e.sequence,
                    e.name,
                    e.jctvc_class,
                    e.seq_class,
                    e.width,
                    e.height,
                    e.fps,
                    e.frames,
                    e.frame_skip,
                    e.intra_period,
                    " ".join(map(str, e.qps)),
                    e.yuv_prefix,
                    " ".join(e.annotation_dirs),
                )
            )
        )
    path.write_text("# vcm_eval synthetic video (vcm_eval.data.video.synthetic)\n" + "\n".join(rows) + "\n")


def write_video(root: Path, spec: SyntheticVideoSpec, *, progress: bool = True) -> Path:
    """Write every sequence of ``spec`` under ``root`` in both layouts, once; returns ``root``.

    Parallel processes serialize on ``root/.lock``; the files are written into a temporary folder and
    moved into place, then ``complete.json`` is written last, so a killed generation is redone.
    """
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock")):
        done = root / "complete.json"
        if done.is_file():
            return root
        with tempfile.TemporaryDirectory(dir=root, prefix=".tmp-") as tmp:
            for k in tqdm(range(spec.sequence_count), desc="synthetic video", disable=not progress, unit="seq"):
                _write_sequence(Path(tmp), spec, k)
            _write_list(Path(tmp) / "sfu" / "sequences.csv", [sfu_entry(spec, k) for k in range(spec.sequence_count)])
            for sub in ("mot", "sfu"):
                if (root / sub).exists():
                    shutil.rmtree(root / sub)
                os.replace(Path(tmp) / sub, root / sub)
        done.write_text(json.dumps({"format_version": FORMAT_VERSION, "spec": asdict(spec)}, indent=2))
    return root


class SyntheticSequence(SfuSequence):
    """A synthetic sequence read through the SFU reader, with its tracks from the MOT layout."""

    def __init__(self, base: SfuSequence, mot: MotSequence) -> None:
        super().__init__(
            base.entry, yuv=base.yuv, annotations=base.annotations, categories=base.categories, limit=base.frame_count
        )
        self._mot = mot

    def mot(self) -> MotTruth:
        return self._mot.mot()


def check_spec(spec: SyntheticVideoSpec) -> None:
    """Settings the generator can honour, else ``ConfigError`` naming the bad ones."""
    problems = [
        msg
        for bad, msg in (
            (
                spec.height < 64 or spec.width < 64 or spec.height % 2 or spec.width % 2,
                f"height, width even and >= 64 (got {spec.height}x{spec.width})",
            ),
            (
                spec.sequence_count < 1 or spec.frames < 4,
                f"sequence_count >= 1 and frames >= 4 (got {spec.sequence_count}, {spec.frames})",
            ),
            (spec.fps <= 0, f"fps > 0 (got {spec.fps})"),
            (
                not 2 <= spec.min_objects <= spec.max_objects,
                f"2 <= min_objects <= max_objects (got {spec.min_objects}, {spec.max_objects})",
            ),
            (spec.min_visible_pixels < 1, f"min_visible_pixels >= 1 (got {spec.min_visible_pixels})"),
        )
        if bad
    ]
    if problems:
        raise ConfigError(f"dataset=synthetic_video needs {'; '.join(problems)}")


def synthetic_video_dataset(view: DictConfig, runtime: Runtime) -> VideoDataset:
    """The embedded default's video, written under ``root`` (or ``runtime.data_dir``/<generator folder>) on
    first use."""
    cfg: SyntheticVideoConfig = view.dataset
    spec: SyntheticVideoSpec = from_config(SyntheticVideoSpec, cfg)
    check_spec(spec)
    root = write_video(
        Path(cfg.root).expanduser() if cfg.root else runtime.data_dir / folder_name(spec),
        spec,
        progress=runtime.progress,
    )
    entries = select(
        read_sequence_list(root / "sfu" / "sequences.csv"),
        names=list(cfg.sequences),
        classes=list(cfg.classes),
        name_of=lambda e: e.sequence,
        class_of=lambda e: e.seq_class,
        dataset="the synthetic video",
    )
    sequences = [
        SyntheticSequence(
            s,
            MotSequence(
                root / "mot" / s.entry.name, intra_period=s.intra_period, seq_class=s.seq_class, limit=s.frame_count
            ),
        )
        for s in read_sfu(root / "sfu", entries, limit=cfg.limit)
    ]
    return VideoDataset(name=cfg.name, sequences=list(sequences), categories=categories())
