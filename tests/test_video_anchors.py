"""The shipped VTM video-anchor streams (anchors/vtm_video_anchor) and ``python -m vcm_eval.video_anchors``.

The shipped streams are checked as they are, without VTM: md5, the frames of the sequence they claim
(content sha256 of today's synthetic video), picture count, intra period and intra QP from their
headers, and decoding with FFmpeg's vvc decoder; one slow test re-encodes a stream with VTM where
``VCM_EVAL_VTM_ENCODER`` and ``VCM_EVAL_VTM_CFG`` point at a build, and compares bytes.
``VvcSequenceCodec`` with the ``vtm`` backend and no encoder codes those sequences from them. The make
command runs a stand-in for VTM's EncoderApp (VTM's command line, a real low-delay stream from VVenC
through the project's FFmpeg): what is tested is the command itself, its resume after a crash and
the checks that keep a wrong stream out.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from pathlib import Path

import pytest
from hydra import compose

from vcm_eval.codecs.vvc.external import ffmpeg_binary
from vcm_eval.codecs.vvc.headers import stream_structure
from vcm_eval.codecs.vvc.sequence import CodedSequence, VvcSequenceCodec
from vcm_eval.codecs.vvc.shipped_sequences import ShippedSequence, ShippedSequences, sequence_digest
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.data.datasets import build_dataset
from vcm_eval.data.video.base import VideoDataset
from vcm_eval.data.video.config import SyntheticVideoConfig
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.video_anchors import content_digest, make_video_anchors, read_manifest

SHIPPED = "anchors/vtm_video_anchor"


@pytest.fixture(scope="module")
def shipped() -> ShippedSequences:
    found = ShippedSequences(SHIPPED)
    if not len(found):
        pytest.fail(f"{SHIPPED}/manifest.csv is missing or empty: the shipped VTM video anchor is in the repository")
    return found


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> VideoDataset:
    """The synthetic video with its default settings (``dataset=synthetic_video``): what the streams were made from."""
    return build_dataset(
        SyntheticVideoConfig(), data_dir=tmp_path_factory.mktemp("video"), progress=False, kind=VideoDataset
    )


def _coded(entry: ShippedSequence, data: bytes) -> CodedSequence:
    return CodedSequence(data, entry.frames, entry.height, entry.width, entry.fps, entry.qp, entry.structure,
                         entry.intra_period, entry.chroma, 0.0)  # fmt: skip


def test_the_shipped_set_is_every_sequence_at_four_qps(shipped: ShippedSequences, video: VideoDataset) -> None:
    digests = {seq.name: content_digest(seq) for seq in video.sequences}
    qps = sorted({e.qp for e in shipped.entries})
    assert len(qps) == 4
    assert sorted((e.qp, e.sequence) for e in shipped.entries) == sorted((q, s) for q in qps for s in digests)
    for e in shipped.entries:
        seq = video[e.sequence]
        assert e.content_sha256 == digests[e.sequence], f"{e.path} was made from other frames than today's {e.sequence}"
        assert (e.frames, e.width, e.height, e.fps) == (seq.frame_count, seq.width, seq.height, seq.fps)
        # the test-condition intra period (8), coded as MPEG's FCM scripts do: one VTM run per period, joined by
        # parcat (one VTM low-delay run with a CRA every 8 writes streams no decoder reads past the CRA)
        assert (
            (e.structure, e.intra_period, e.chroma) == ("low_delay", seq.intra_period, "420") == ("low_delay", 8, "420")
        )
        assert e.encoder.startswith("VTM-") and " encoder_lowdelay_vtm.cfg md5:" in e.encoder
        assert e.path.relative_to(shipped.folder).as_posix() == f"qp{e.qp}/{e.sequence}.266"
    assert shipped.only_encoder("low_delay") == shipped.entries[0].encoder
    assert sum(e.path.stat().st_size for e in shipped.entries) < 500_000  # small enough to live in git


def test_every_shipped_stream_is_what_its_manifest_says(shipped: ShippedSequences) -> None:
    ffmpeg = ffmpeg_binary("")
    decoder = VvcSequenceCodec()  # FFmpeg's vvc decoder
    for e in shipped.entries:
        data = shipped.read(e)  # md5
        s = stream_structure(data, ffmpeg)
        assert s.count == e.frames, e.path
        period = e.intra_period if e.intra_period > 0 else e.frames
        assert s.intra_pocs == list(range(0, e.frames, period)), e.path
        assert s.intra_period == (e.intra_period if e.frames > e.intra_period > 0 else None), e.path
        assert set(s.intra_qps) == {e.qp}, e.path
        assert all(q > e.qp for p in s.pictures if not p.is_intra for q in p.slice_qps), e.path  # inter slices above
        pocs = [p.poc for p in s.pictures]
        assert pocs == sorted(pocs) == list(range(e.frames)), e.path  # low delay: decoding order is display order
        frames = list(decoder.decode(_coded(e, data)))
        assert len(frames) == e.frames and all(f.size == (e.height, e.width) and f.bit_depth == 10 for f in frames)


def test_rates_fall_with_the_qp(shipped: ShippedSequences) -> None:
    for name in {e.sequence for e in shipped.entries}:
        sizes = [e.path.stat().st_size for e in sorted(shipped.entries, key=lambda e: e.qp) if e.sequence == name]
        assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes), name


def test_vvc_sequence_codec_without_vtm_codes_from_the_shipped_streams(
    shipped: ShippedSequences, video: VideoDataset, tmp_path: Path
) -> None:
    entry = shipped.entries[0]
    seq = video[entry.sequence]
    codec = VvcSequenceCodec(backend="vtm", shipped=shipped)  # no encoder: VTM is not installed
    assert codec.version() == f"{entry.encoder} / sequence args v1"
    frames = [Yuv420(*p) for p in seq.yuv_frames()]
    assert sequence_digest(frames) == sequence_digest(seq.yuv_frames()) == entry.content_sha256
    coded = codec.encode(iter(frames), fps=seq.fps, qp=entry.qp, structure="low_delay", intra_period=entry.intra_period)
    assert coded.data == entry.path.read_bytes()
    assert (coded.frames, coded.qp, coded.height, coded.width) == (entry.frames, entry.qp, seq.height, seq.width)
    assert len(list(codec.decode(coded))) == entry.frames
    with pytest.raises(ConfigError, match="no shipped VTM stream fits these 16 frames at QP 62.*vvc.vtm_encoder"):
        codec.encode(iter(frames), fps=seq.fps, qp=62, structure="low_delay", intra_period=entry.intra_period)
    with pytest.raises(ConfigError, match="QP 63 needs the encoder QP 64"):  # MPEG's low-delay cfg: -q = intra QP + 1
        codec.encode(iter(frames), fps=seq.fps, qp=63, structure="low_delay", intra_period=entry.intra_period)
    with pytest.raises(ConfigError, match="intra period -1\\) and vvc.vtm_encoder is empty"):  # another period
        codec.encode(iter(frames), fps=seq.fps, qp=entry.qp, structure="low_delay", intra_period=-1)
    with pytest.raises(ConfigError, match="ships 0 VTM encoder settings for random_access streams"):
        codec.encode(iter(frames), fps=seq.fps, qp=entry.qp, structure="random_access", intra_period=8)
    with pytest.raises(ConfigError, match="cannot encode; set vvc.vtm_encoder"):  # nothing shipped at all
        VvcSequenceCodec(backend="vtm", shipped=ShippedSequences(str(tmp_path))).encode(iter(frames), fps=30, qp=32)


VTM_ENCODER, VTM_CFG, VTM_PARCAT = (os.environ.get(f"VCM_EVAL_VTM_{k}", "") for k in ("ENCODER", "CFG", "PARCAT"))


@pytest.mark.slow
@pytest.mark.skipif(
    not (VTM_ENCODER and VTM_CFG and VTM_PARCAT),
    reason="no VTM configured (set VCM_EVAL_VTM_ENCODER, VCM_EVAL_VTM_CFG and VCM_EVAL_VTM_PARCAT)",
)
def test_shipped_stream_is_what_vtm_writes(shipped: ShippedSequences, video: VideoDataset) -> None:
    """The lowest-rate stream of the last sequence (the quickest to encode), from the low-delay cfg beside VTM_CFG:
    two VTM runs (intra period 8 in 16 frames) joined by parcat, byte for byte the shipped stream."""
    cfg = Path(VTM_CFG).with_name("encoder_lowdelay_vtm.cfg")
    vtm = VvcSequenceCodec(backend="vtm", vtm_encoder=VTM_ENCODER, vtm_cfg=str(cfg), vtm_parcat=VTM_PARCAT)
    entry = max(shipped.entries, key=lambda e: (e.qp, e.sequence))
    assert entry.encoder == vtm.single.version(), "the shipped set was made by another VTM setting than the configured"
    seq = video[entry.sequence]
    coded = vtm.encode((Yuv420(*p) for p in seq.yuv_frames()), fps=seq.fps, qp=entry.qp, structure="low_delay",
                       intra_period=entry.intra_period)  # fmt: skip
    assert coded.data == shipped.read(entry)


@pytest.mark.slow
@pytest.mark.skipif(
    not (VTM_ENCODER and VTM_CFG and VTM_PARCAT),
    reason="no VTM configured (set VCM_EVAL_VTM_ENCODER, VCM_EVAL_VTM_CFG and VCM_EVAL_VTM_PARCAT)",
)
def test_a_vtm_video_run_at_a_test_condition_qp_writes_the_shipped_stream(
    hydra_conf: None,
    shipped: ShippedSequences,
    video: VideoDataset,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The image anchor's video run end to end with VTM (``vvc_sequence.shipped=`` empty: encoded, not read): rate
    point 4 of the synthetic list (MPEG's -q 48, intra QP 47), its two intra periods coded side by side
    (``vvc.threads=2``) and joined by parcat, keeps the very bytes of the shipped stream, and no period behind."""
    from vcm_eval.engine.video import run_video

    entry = max(shipped.entries, key=lambda e: (e.qp, e.sequence))
    data = next(tmp_path_factory.getbasetemp().glob("video*/*/sfu/sequences.csv")).parents[2]  # `video`'s data
    cfg = compose(config_name="config", overrides=[
        "dataset=synthetic_video", f"dataset.sequences=[{entry.sequence}]", f"paths.data={data}",
        f"paths.results={tmp_path / 'r'}", "pipeline=image_anchor", "vvc=vtm", f"vvc.vtm_encoder={VTM_ENCODER}",
        "vvc_sequence=low_delay", f"vvc_sequence.vtm_cfg={Path(VTM_CFG).with_name('encoder_lowdelay_vtm.cfg')}",
        f"vvc_sequence.vtm_parcat={VTM_PARCAT}", "vvc.threads=2", "vvc_sequence.rate_point=4", "progress=false",
        "vvc_sequence.shipped=",  # no shipped streams to read instead: VTM codes it
    ])  # fmt: skip
    result = run_video(cfg)
    folder = Path(result["run_dir"]) / "sequences" / entry.sequence
    assert result["sequences"][0]["qp"] == entry.qp == 47
    assert (folder / "stream.bin").read_bytes() == shipped.read(entry) and not (folder / "vtm_segments").exists()


def test_a_corrupted_copy_is_refused(shipped: ShippedSequences, video: VideoDataset, tmp_path: Path) -> None:
    shutil.copytree(shipped.folder, tmp_path / "copy")
    copy = ShippedSequences(str(tmp_path / "copy"))
    entry = copy.entries[-1]
    assert copy.get(entry.content_sha256, entry.qp, "low_delay", entry.encoder) == entry
    data = entry.path.read_bytes()
    entry.path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    one_line = rf"^shipped sequence stream {re.escape(str(entry.path))} fails its md5 check \(manifest.csv says \w+\); "
    one_line += "restore it from git$"
    with pytest.raises(CodecError, match=one_line):
        copy.read(entry)
    seq = video[entry.sequence]
    codec = VvcSequenceCodec(backend="vtm", shipped=copy)
    with pytest.raises(CodecError, match="fails its md5 check"):
        codec.encode((Yuv420(*p) for p in seq.yuv_frames()), fps=seq.fps, qp=entry.qp, structure="low_delay",
                     intra_period=entry.intra_period)  # fmt: skip
    entry.path.unlink()
    with pytest.raises(CodecError, match="cannot be read .*restore it from git"):
        copy.read(entry)


# --- python -m vcm_eval.video_anchors, with a stand-in for VTM's EncoderApp ----------------------------------------

STANDIN = '''#!{python}
"""Stand-in for VTM's EncoderApp: VTM's sequence command line, a real low-delay VVC stream from VVenC (FFmpeg)."""
import os, subprocess, sys
args = sys.argv[1:]
if "--help" in args:
    print("VTM Encoder Version 99.0 [stand-in]")
    sys.exit(0)
calls = os.environ["STANDIN_CALLS"]
with open(calls, "a") as f:
    f.write("x")
if len(open(calls).read()) == int(os.environ.get("STANDIN_FAIL_AT", "0")):
    sys.exit("stand-in: simulated crash")
opt = {{a: b for a, b in zip(args, args[1:]) if a.startswith("-") and not a.startswith("--")}}
long = dict(a[2:].split("=", 1) for a in args if a.startswith("--"))
offset = -1 + int(os.environ.get("STANDIN_QP_OFFSET", "0"))  # the LD cfg's IntraQPOffset
params = ("PicReordering=0:GOPSize=8:DecodingRefreshType=0:GOPQPA=0:BIM=0:STA=0:POC0IDR=1:"
          f"IntraQPOffset={{offset}}:IntraPeriod={{long['IntraPeriod']}}")
subprocess.run([{ffmpeg!r}, "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p",
                "-s", f"{{opt['-wdt']}}x{{opt['-hgt']}}", "-r", opt["-fr"], "-i", opt["-i"],
                "-pix_fmt", "yuv420p10le", "-c:v", "libvvenc", "-qp", opt["-q"], "-qpa", "0", "-preset", "faster",
                "-vvenc-params", params, "-f", "vvc", "-y", opt["-b"]], check=True)
'''


@pytest.fixture
def vtm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in encoder beside a low-delay cfg; ``STANDIN_CALLS`` counts its encodes."""
    exe = tmp_path / "EncoderAppStatic"
    exe.write_text(STANDIN.format(python=sys.executable, ffmpeg=ffmpeg_binary("")))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "encoder_lowdelay_vtm.cfg").write_text("IntraPeriod : -1\nIntraQPOffset : -1\n")
    monkeypatch.setenv("STANDIN_CALLS", str(tmp_path / "calls"))
    return exe


def _cfg(tmp_path: Path, vtm: Path, qps: str = "[32,42]", *more: str, intra_period: int = 0) -> object:
    """Two 9-frame synthetic sequences at the test-condition intra period (8: intra pictures 0 and 8) by default."""
    overrides = [f"vvc.vtm_encoder={vtm}", f"vvc_sequence.vtm_cfg={vtm.parent / 'encoder_lowdelay_vtm.cfg'}",
                 f"vvc_sequence.intra_period={intra_period}", "dataset.sequence_count=2", "dataset.frames=9",
                 f"paths.data={tmp_path / 'data'}", f"qps={qps}", f"output={tmp_path / 'shipped'}", "workers=1",
                 *more]  # fmt: skip
    return compose(config_name="make_video_anchors", overrides=overrides)


def _calls(tmp_path: Path) -> int:
    path = tmp_path / "calls"
    return len(path.read_text()) if path.exists() else 0


def test_a_crashed_run_resumes_where_it_stopped(
    hydra_conf: None, tmp_path: Path, vtm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_FAIL_AT", "3")  # the third encode dies, as a killed VTM would
    with pytest.raises(CodecError, match="simulated crash"):
        make_video_anchors(_cfg(tmp_path, vtm))  # type: ignore[arg-type]
    manifest = tmp_path / "shipped" / "manifest.csv"
    assert len(read_manifest(manifest)) == 3  # every stream but the crashed one is kept
    monkeypatch.delenv("STANDIN_FAIL_AT")
    make_video_anchors(_cfg(tmp_path, vtm))  # type: ignore[arg-type]
    assert _calls(tmp_path) == 4 + 1  # the rerun encoded only the missing stream
    shipped = ShippedSequences(str(tmp_path / "shipped"))
    assert sorted((e.qp, e.sequence) for e in shipped.entries) == [
        (32, "SynthStreet0_256x128_30"), (32, "SynthStreet1_256x128_30"),
        (42, "SynthStreet0_256x128_30"), (42, "SynthStreet1_256x128_30"),
    ]  # fmt: skip
    for e in shipped.entries:
        s = stream_structure(shipped.read(e), ffmpeg_binary(""))
        assert (s.count, s.intra_pocs, set(s.intra_qps)) == (9, [0, 8], {e.qp})
        assert (e.frames, e.intra_period, e.structure) == (9, 8, "low_delay")
        assert e.encoder.startswith("VTM-99.0 encoder_lowdelay_vtm.cfg md5:")
    make_video_anchors(_cfg(tmp_path, vtm))  # type: ignore[arg-type]
    assert _calls(tmp_path) == 5  # complete: nothing encoded again
    assert len(read_manifest(manifest)) == 4


def test_a_stream_with_other_intra_qps_is_never_shipped(
    hydra_conf: None, tmp_path: Path, vtm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_QP_OFFSET", "-2")  # a cfg with another IntraQPOffset than the one read
    with pytest.raises(CodecError, match=r"intra slices at QP \[30\], not 32: check vvc_sequence.vtm_cfg"):
        make_video_anchors(_cfg(tmp_path, vtm, "[32]"))  # type: ignore[arg-type]
    assert read_manifest(tmp_path / "shipped" / "manifest.csv") == []
    assert not (tmp_path / "shipped" / "qp32").exists()


def test_another_setting_is_not_written_over_the_shipped_one(hydra_conf: None, tmp_path: Path, vtm: Path) -> None:
    make_video_anchors(_cfg(tmp_path, vtm, "[42]", "dataset.sequence_count=1"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="write this setting to another folder"):
        other = _cfg(tmp_path, vtm, "[42]", "dataset.sequence_count=1", intra_period=4)
        make_video_anchors(other)  # type: ignore[arg-type]


def test_the_default_command_is_the_shipped_set(hydra_conf: None) -> None:
    cfg = compose(config_name="make_video_anchors")
    shipped = ShippedSequences(SHIPPED)
    assert sorted(cfg.qps) == sorted({e.qp for e in shipped.entries})
    assert (cfg.vvc.backend, cfg.vvc_sequence.structure) == ("vtm", "low_delay")
    assert cfg.vvc_sequence.intra_period == 0  # each sequence's own test-condition period
    assert {e.intra_period for e in shipped.entries} == {8}
    assert cfg.dataset.kind == "synthetic_video" and cfg.output == SHIPPED


def test_make_video_anchors_needs_qps_and_a_vtm_encoder(hydra_conf: None, tmp_path: Path, vtm: Path) -> None:
    with pytest.raises(ConfigError, match="qps is empty"):
        make_video_anchors(_cfg(tmp_path, vtm, "[]"))  # type: ignore[arg-type]
    cfg = compose(config_name="make_video_anchors", overrides=["qps=[32]"])
    with pytest.raises(ConfigError, match="make_video_anchors runs VTM: set vvc=vtm, vvc.vtm_encoder"):
        make_video_anchors(cfg)  # type: ignore[arg-type]


def test_mpeg_qps_of_a_sequence_list_find_the_shipped_streams(
    hydra_conf: None, video: VideoDataset, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``vvc_sequence.rate_point=k`` reads MPEG's ``-q`` from the sequence list: the synthetic video's ``-q`` 33..48
    in low delay are the intra QPs 32..47 the shipped streams were coded at (VTM's cfg: IntraQPOffset -1), so the
    video job's check finds every stream; a list one QP off finds none."""
    from vcm_eval.engine.video_suite import shipped_gaps

    made = next(tmp_path_factory.getbasetemp().glob("video*/*/sfu/sequences.csv"))  # the `video` fixture's data
    assert all(seq.qps == (33, 38, 43, 48) for seq in video.sequences)
    lines = made.read_text().splitlines()
    qps_at = lines[1].split(",").index("qps")
    rows = [line.split(",") for line in lines[2:]]
    for row in rows:
        row[qps_at] = "32 37 42 47"
    off = tmp_path_factory.mktemp("list") / "list.csv"
    off.write_text("\n".join([*lines[:2], *(",".join(r) for r in rows)]) + "\n")

    def gaps(point: int, *dataset: str) -> list[str]:
        overrides = [*dataset, "pipeline=image_anchor", "vvc=vtm", "vvc_sequence=low_delay",
                     f"vvc_sequence.rate_point={point}"]  # fmt: skip
        return shipped_gaps(compose(config_name="config", overrides=overrides))

    own = ["dataset=synthetic_video", f"paths.data={made.parents[2]}"]
    assert all(gaps(k, *own) == [] for k in (1, 2, 3, 4))
    listed = ["dataset=sfu", f"dataset.root={made.parent}", f"dataset.sequence_list={off}"]
    assert len(gaps(1, *listed)) == len(video.sequences)  # intra QP 31: never shipped
