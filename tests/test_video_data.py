"""Video data: the synthetic video (deterministic, moving objects, consistent tracks), and the SFU-HW-Objects-v1
and MOT readers on folders written here in the distributed layouts, with their errors and memory."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from PIL import Image

import vcm_eval.config  # noqa: F401 - registers the image schemas the video ones extend
from vcm_eval.data.datasets import build_dataset
from vcm_eval.data.video import config as video_config
from vcm_eval.data.video.base import VideoDataset, default_intra_period
from vcm_eval.data.video.config import MotDatasetConfig, SfuDatasetConfig, SyntheticVideoConfig, SyntheticVideoSpec
from vcm_eval.data.video.sfu import COLUMNS, SfuSequence, read_sequence_list
from vcm_eval.data.video.synthetic import categories, sequence_frames, write_video
from vcm_eval.data.video.yuv_file import frame_bytes
from vcm_eval.errors import ConfigError, DataError
from vcm_eval.resources import CONF_DIR

SMALL = SyntheticVideoSpec(height=64, width=128, sequence_count=2, frames=8)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> VideoDataset:
    """The default synthetic video (3 x 16 frames of 256x128), generated once for this module."""
    return build_dataset(
        SyntheticVideoConfig(), data_dir=tmp_path_factory.mktemp("video"), progress=False, kind=VideoDataset
    )


def _root(video: VideoDataset) -> Path:
    """The folder the synthetic video was written to (its first sequence's raw file is <root>/sfu/Class<X>/...)."""
    seq = video.sequences[0]
    assert isinstance(seq, SfuSequence)
    return seq.yuv.path.parents[2]


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != ".lock":
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_synthetic_video_is_deterministic(tmp_path: Path) -> None:
    write_video(tmp_path / "a", SMALL, progress=False)
    write_video(tmp_path / "b", SMALL, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    a = [f for f, _ in sequence_frames(SMALL, 0)]
    b = [f for f, _ in sequence_frames(SyntheticVideoSpec(height=64, width=128, sequence_count=2, frames=8, seed=1), 0)]
    assert len(a) == 8 and a[0].shape == (64, 128, 3) and a[0].dtype == np.uint8
    assert not np.array_equal(a[0], b[0])


def test_objects_move_enter_and_leave(video: VideoDataset) -> None:
    assert [s.seq_class for s in video] == ["A", "B", "A"] and list(video.by_class()) == ["A", "B"]
    for seq in video:
        truth = seq.mot()
        assert truth is not None
        rows, n, width = truth.rows, seq.frame_count, seq.width
        assert len(truth.track_ids) >= 3
        entered = left = moved = 0
        for tid in truth.track_ids:
            track = rows[rows[:, 1] == tid]
            assert len(set(track[:, 7])) == 1  # an object keeps its class
            first, last = track[0], track[-1]
            entered += first[0] > 1 and (first[2] == 0 or first[2] + first[4] == width)
            left += last[0] < n and (last[2] == 0 or last[2] + last[4] == width)
            moved += len(set(track[:, 2])) > 1
        assert entered >= 1 and left >= 1 and moved >= 2, seq.name
        for f in range(1, n + 1):
            ids = rows[rows[:, 0] == f, 1]
            assert len(ids) == len(set(ids))  # one row per object and frame


def test_detection_and_tracking_truths_agree(video: VideoDataset) -> None:
    coco_ids = {c.coco_id for c in categories()}
    for seq in video:
        truth, coco = seq.mot(), seq.coco()
        assert truth is not None and len(coco["images"]) == seq.frame_count == 16
        assert len(coco["annotations"]) == len(truth.rows)
        for frame in range(seq.frame_count):
            boxes = sorted((a["category_id"], *a["bbox"]) for a in coco["annotations"] if a["image_id"] == frame)
            rows = truth.at(frame + 1)
            assert sorted(int(c) for c in rows[:, 7]) == [b[0] for b in boxes]
            assert {b[0] for b in boxes} <= coco_ids
            for b in boxes:  # each visible box lies inside the full box of an object of its class
                assert any(r[7] == b[0] and r[2] - 0.01 <= b[1] and b[1] + b[3] <= r[2] + r[4] + 0.01 for r in rows)
            assert np.all((rows[:, 8] > 0) & (rows[:, 8] <= 1))


def test_frames_stream_from_the_yuv_file(video: VideoDataset) -> None:
    seq = video.sequences[1]
    frames = list(seq.frames())
    assert [f.index for f in frames] == list(range(16)) and frames[3].image.shape == (128, 256, 3)
    assert [o.category_id for o in frames[3].objects] == [
        a["category_id"] for a in seq.coco()["annotations"] if a["image_id"] == 3
    ]
    png = np.asarray(Image.open(_root(video) / "mot" / "SynthStreet1" / "img1" / "000004.png"))
    assert np.abs(frames[3].image.astype(int) - png).mean() < 4  # the MOT PNG through 4:2:0 and back
    y, u, v = next(seq.yuv_frames())
    assert (y.shape, u.shape, v.shape) == ((128, 256), (64, 128), (64, 128))
    assert seq.intra_period == 8 and seq.fps == 30 and seq.has_yuv


def test_config_schemas_compose_and_refuse_typos() -> None:
    video_config.register(ConfigStore.instance())
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["dataset=synthetic_video", "dataset.limit=4"])
        assert cfg.dataset.kind == "synthetic_video" and cfg.dataset.frames == 16 and cfg.dataset.limit == 4
        assert compose(config_name="config", overrides=["dataset=sfu", "dataset.classes=[C,D]"]).dataset.classes == [
            "C",
            "D",
        ]
        assert compose(config_name="config", overrides=["dataset=tvd"]).dataset.intra_period == 64
        assert compose(config_name="config", overrides=["dataset=hieve"]).dataset.kind == "mot"
        for name, tracked in (("tvd", ["person"]), ("hieve", ["person"]), ("sfu", []), ("synthetic_video", [])):
            assert compose(config_name="config", overrides=[f"dataset={name}"]).dataset.tracked == tracked  # JDE's
        with pytest.raises(Exception, match="sequence_lst"):
            compose(config_name="config", overrides=["dataset=sfu", "dataset.sequence_lst=x"])
        with pytest.raises(Exception, match="frames"):
            compose(config_name="config", overrides=["dataset=synthetic_video", "dataset.frames=many"])


def test_limit_and_selection(tmp_path: Path, video: VideoDataset) -> None:
    root = _root(video)
    small = build_dataset(
        SyntheticVideoConfig(root=str(root), limit=5, classes=["B"]),
        data_dir=tmp_path,
        progress=False,
        kind=VideoDataset,
    )
    assert [s.name for s in small] == ["SynthStreet1_256x128_30"]
    seq = small.sequences[0]
    assert seq.frame_count == 5 and len(list(seq.frames())) == 5 and len(list(seq.yuv_frames())) == 5
    truth = seq.mot()
    assert truth is not None and truth.rows[:, 0].max() == 5
    with pytest.raises(ConfigError, match=r"classes=\['E'\] matches nothing"):
        build_dataset(
            SyntheticVideoConfig(root=str(root), classes=["E"]), data_dir=tmp_path, progress=False, kind=VideoDataset
        )
    with pytest.raises(ConfigError, match="min_objects"):
        build_dataset(SyntheticVideoConfig(min_objects=1), data_dir=tmp_path, progress=False, kind=VideoDataset)


def test_mpeg_sequence_list_and_intra_period_rule() -> None:
    entries = read_sequence_list()
    assert len(entries) == 14
    assert {c: sum(e.seq_class == c for e in entries) for c in ("AB", "C", "D")} == {"AB": 6, "C": 4, "D": 4}
    assert all(e.intra_period == default_intra_period(e.fps) for e in entries)
    assert all(len(e.qps) == 6 for e in entries)
    assert default_intra_period(50) == 64 and default_intra_period(30) == 32  # TVD, HiEve (CompressAI-Vision's json)


# --- SFU-HW-Objects-v1 layout, written by hand ------------------------------------------------------------------------

LIST_HEADER = ",".join(COLUMNS)


def _sfu_root(tmp_path: Path, *, frames_in_file: int = 6, clip: bool = False) -> tuple[Path, Path, np.ndarray]:
    """A one-sequence SFU layout: a 64x32 sequence of ``frames_in_file`` frames (clip: 4 frames in the root),
    the clip = frames 2..5, one annotation file per frame of the full sequence; returns (root, list, raw bytes)."""
    root = tmp_path / "sfu"
    (root / "ClassD" / "Annotations" / "Foo").mkdir(parents=True)
    raw = np.random.default_rng(0).integers(16, 236, size=frames_in_file * frame_bytes(64, 32), dtype=np.uint8)
    where = root / "Foo_64x32_30_val.yuv" if clip else root / "ClassD" / "Foo_64x32_30Hz_8bit_P420.yuv"
    where.write_bytes(raw.tobytes())
    for k in range(6):
        lines = "0 0.5 0.5 0.25 0.5\n2 0.125 0.25 0.25 0.125\n" if k % 2 == 0 else ""
        (root / "ClassD" / "Annotations" / "Foo" / f"Foo_64x32_30_seq_{k:03d}.txt").write_text(lines)
    seq_list = tmp_path / "list.csv"
    seq_list.write_text(f"# test\n{LIST_HEADER}\nFoo_64x32_30,Foo,D,D,64,32,30,4,2,32,22 27,Foo_64x32_30,Foo\n")
    return root, seq_list, raw


def test_sfu_reader_reads_the_distributed_layout(tmp_path: Path) -> None:
    root, seq_list, raw = _sfu_root(tmp_path)
    dataset = build_dataset(
        SfuDatasetConfig(root=str(root), sequence_list=str(seq_list)), data_dir=tmp_path, kind=VideoDataset
    )
    seq = dataset["Foo_64x32_30"]
    assert (seq.width, seq.height, seq.fps, seq.frame_count, seq.seq_class, seq.qps) == (64, 32, 30, 4, "D", (22, 27))
    per = frame_bytes(64, 32)
    planes = list(seq.yuv_frames())
    assert (
        len(planes) == 4 and planes[0][0].tobytes() == raw[2 * per : 2 * per + 64 * 32].tobytes()
    )  # the clip starts at frame 2
    frames = list(seq.frames())
    assert len(frames) == 4 and frames[0].image.shape == (32, 64, 3)
    assert [o.category_id for o in frames[0].objects] == [1, 3]  # YOLO 0 = person, 2 = car (COCO ids 1, 3)
    assert frames[0].objects[0].bbox == (24.0, 8.0, 16.0, 16.0) and frames[0].objects[1].bbox == (0.0, 6.0, 16.0, 4.0)
    assert frames[1].objects == ()  # frame 3 of the sequence: an empty file
    coco = seq.coco()
    assert len(coco["images"]) == 4 and len(coco["annotations"]) == 4
    assert {c["name"] for c in coco["categories"]} == {"person", "car"}
    assert len(dataset.categories) == 80 and seq.mot() is None


def test_sfu_reader_takes_mpeg_clips(tmp_path: Path) -> None:
    root, seq_list, raw = _sfu_root(tmp_path, frames_in_file=4, clip=True)
    seq = build_dataset(
        SfuDatasetConfig(root=str(root), sequence_list=str(seq_list)), data_dir=tmp_path, kind=VideoDataset
    ).sequences[0]
    assert next(seq.yuv_frames())[0].tobytes() == raw[: 64 * 32].tobytes()  # a 4-frame clip starts at its first byte


def test_sfu_reader_errors_name_the_file(tmp_path: Path) -> None:
    root, seq_list, _ = _sfu_root(tmp_path)
    cfg = SfuDatasetConfig(root=str(root), sequence_list=str(seq_list))
    ann = root / "ClassD" / "Annotations" / "Foo"
    (ann / "Foo_64x32_30_seq_002.txt").write_text("0 0.5 0.5 0.25\n")
    with pytest.raises(DataError, match=r"Foo_64x32_30_seq_002.txt:1: 4 fields"):
        build_dataset(cfg, data_dir=tmp_path, kind=VideoDataset).sequences[0].coco()
    (ann / "Foo_64x32_30_seq_002.txt").write_text("80 0.5 0.5 0.25 0.1\n")
    with pytest.raises(DataError, match="class id 80"):
        list(build_dataset(cfg, data_dir=tmp_path, kind=VideoDataset).sequences[0].frames())
    (ann / "Foo_64x32_30_seq_002.txt").write_text("1 1.5 0.5 0.25 0.1\n")
    with pytest.raises(DataError, match="not normalized"):
        build_dataset(cfg, data_dir=tmp_path, kind=VideoDataset).sequences[0].coco()
    (ann / "Foo_64x32_30_seq_004.txt").unlink()
    with pytest.raises(DataError, match="no annotation file for frame 4"):
        build_dataset(cfg, data_dir=tmp_path, kind=VideoDataset)
    (root / "ClassD" / "Foo_64x32_30Hz_8bit_P420.yuv").write_bytes(b"\0" * (frame_bytes(64, 32) * 5 + 7))
    with pytest.raises(DataError, match="no raw video of Foo_64x32_30"):
        build_dataset(cfg, data_dir=tmp_path, kind=VideoDataset)
    seq_list.write_text(f"{LIST_HEADER.replace(',qps', '')}\n")
    with pytest.raises(DataError, match=r"lacks the columns \['qps'\]"):
        build_dataset(cfg, data_dir=tmp_path, kind=VideoDataset)
    with pytest.raises(ConfigError, match="dataset.root"):
        build_dataset(SfuDatasetConfig(), data_dir=tmp_path, kind=VideoDataset)
    with pytest.raises(ConfigError, match=r"sequences=\['Nope'\] matches nothing"):
        build_dataset(SfuDatasetConfig(root=str(root), sequences=["Nope"]), data_dir=tmp_path, kind=VideoDataset)


def test_sequence_frames_hold_one_frame_in_memory(tmp_path: Path) -> None:
    """A 1080p sequence streams: the peak of Python allocations stays far below the decoded sequence."""
    root = tmp_path / "big"
    (root / "ClassB" / "Annotations" / "Big").mkdir(parents=True)
    count, per = 12, frame_bytes(1920, 1080)
    with open(root / "ClassB" / "Big_1920x1080_50.yuv", "wb") as f:
        for k in range(count):
            f.write(np.full(per, 16 + 10 * k, np.uint8).tobytes())
            (root / "ClassB" / "Annotations" / "Big" / f"Big_{k:03d}.txt").write_text("0 0.5 0.5 0.1 0.2\n")
    seq_list = tmp_path / "list.csv"
    seq_list.write_text(f"{LIST_HEADER}\nBig_1920x1080_50,Big,B,AB,1920,1080,50,{count},0,64,,Big_1920x1080_50,Big\n")
    seq = build_dataset(
        SfuDatasetConfig(root=str(root), sequence_list=str(seq_list)), data_dir=tmp_path, kind=VideoDataset
    ).sequences[0]
    tracemalloc.start()
    try:
        n = sum(1 for frame in seq.frames() if frame.image.shape == (1080, 1920, 3))
        m = sum(1 for _ in seq.yuv_frames())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    frame = 1920 * 1080 * 3
    assert n == m == count
    assert peak < 2.5 * frame, (
        f"peak {peak / 1e6:.1f} MB for {count} frames of {frame / 1e6:.1f} MB"
    )  # the frame read and the one in use


# --- MOT layout, written by hand --------------------------------------------------------------------------------------


def _mot_root(tmp_path: Path, fps: int = 25) -> Path:
    seq = tmp_path / "mot" / "S1"
    (seq / "img1").mkdir(parents=True)
    (seq / "gt").mkdir()
    (seq / "seqinfo.ini").write_text(
        f"[Sequence]\nname=S1\nimDir=img1\nframeRate={fps}\nseqLength=3\nimWidth=32\nimHeight=16\nimExt=.jpg\n"
    )
    for k in range(1, 4):
        Image.fromarray(np.full((16, 32, 3), 40 * k, np.uint8)).save(seq / "img1" / f"{k:06d}.jpg")
    (seq / "gt" / "gt.txt").write_text(
        "1,1,2,3,4,5,1,1,1.0\n2,1,3,3,4,5,1,1,0.5\n2,2,10,1,6,6,0,3,1\n3,2,11,1,6,6,1,3,1\n"
    )
    return tmp_path / "mot"


def test_mot_reader_reads_the_layout(tmp_path: Path) -> None:
    dataset = build_dataset(MotDatasetConfig(root=str(_mot_root(tmp_path))), data_dir=tmp_path, kind=VideoDataset)
    seq = dataset["S1"]
    assert (seq.width, seq.height, seq.fps, seq.frame_count, seq.intra_period, seq.seq_class) == (
        32,
        16,
        25,
        3,
        32,
        "16p",
    )
    frames = list(seq.frames())
    assert len(frames) == 3 and frames[1].image.shape == (16, 32, 3) and abs(int(frames[1].image.mean()) - 80) <= 2
    person, car = frames[1].objects
    assert (person.category_id, person.bbox, person.track_id, person.visibility) == (1, (3.0, 3.0, 4.0, 5.0), 1, 0.5)
    assert (car.category_id, car.track_id, car.ignore) == (3, 2, True)  # conf 0: an ignore region
    truth = seq.mot()
    assert truth is not None and truth.rows.shape == (4, 9) and truth.track_ids == [1, 2] and len(truth.at(2)) == 2
    assert [a["iscrowd"] for a in seq.coco()["annotations"]] == [0, 0, 1, 0]
    fast = build_dataset(
        MotDatasetConfig(root=str(_mot_root(tmp_path / "b", fps=50)), limit=2), data_dir=tmp_path, kind=VideoDataset
    ).sequences[0]
    fast_truth = fast.mot()
    assert fast.intra_period == 64 and fast.frame_count == 2 and fast_truth is not None and len(fast_truth.rows) == 3


def test_mot_reader_errors_name_the_file(tmp_path: Path) -> None:
    root = _mot_root(tmp_path)
    cfg = MotDatasetConfig(root=str(root))
    gt = root / "S1" / "gt" / "gt.txt"
    gt.write_text("1,1,2,3,4,5,1,1,1\n9,1,2,3,4,5,1,1,1\n")
    with pytest.raises(DataError, match="frame 9, outside 1..3"):
        build_dataset(cfg, data_dir=tmp_path, kind=VideoDataset)
    gt.write_text("1,1,two,3,4,5,1,1,1\n")
    with pytest.raises(DataError, match="gt.txt is not comma-separated numbers"):
        build_dataset(cfg, data_dir=tmp_path, kind=VideoDataset)
    gt.write_text("1,1,2\n")
    with pytest.raises(DataError, match="3 columns"):
        build_dataset(cfg, data_dir=tmp_path, kind=VideoDataset)
    gt.write_text("1,1,2,3,4,5,1,1,1\n")
    (root / "S1" / "img1" / "000002.jpg").unlink()
    with pytest.raises(DataError, match="1 of 3 images of S1 are missing, first .*000002.jpg"):
        build_dataset(cfg, data_dir=tmp_path, kind=VideoDataset)
    info = root / "S1" / "seqinfo.ini"
    info.write_text(info.read_text().replace("frameRate=25\n", ""))
    with pytest.raises(DataError, match=r"lacks \['frameRate'\]"):
        build_dataset(cfg, data_dir=tmp_path, kind=VideoDataset)
    with pytest.raises(DataError, match="no sequence under"):
        build_dataset(MotDatasetConfig(root=str(tmp_path / "mot" / "S1" / "gt")), data_dir=tmp_path, kind=VideoDataset)
