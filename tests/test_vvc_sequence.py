"""Multi-frame VVC: a synthetic sequence coded with VVenC random access and low delay, read back from the
stream's headers (picture count, intra period, intra QP), its rate, and decoded frames.

The VTM tests run MPEG's random-access and low-delay cfgs when ``VCM_EVAL_VTM_ENCODER`` and
``VCM_EVAL_VTM_CFG`` (the intra cfg; the others are taken from its folder) point at a VTM build, and
skip otherwise (``slow``: VTM takes minutes).
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from vcm_eval.codecs.vvc.headers import stream_structure
from vcm_eval.codecs.vvc.sequence import CodedSequence, SequenceJob, VvcSequenceCodec, access_units, vtm_segments
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.data.datasets import build_dataset
from vcm_eval.data.video.base import VideoDataset, VideoSequence
from vcm_eval.data.video.config import SyntheticVideoConfig
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.resources import CONF_DIR

VTM_ENCODER, VTM_CFG, VTM_DECODER, VTM_PARCAT = (
    os.environ.get(f"VCM_EVAL_VTM_{k}", "") for k in ("ENCODER", "CFG", "DECODER", "PARCAT")
)
needs_vtm = pytest.mark.skipif(
    not (VTM_ENCODER and VTM_CFG), reason="no VTM configured (set VCM_EVAL_VTM_ENCODER and VCM_EVAL_VTM_CFG)"
)
QP = 27


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1023.0) -> float:
    return float(10 * np.log10(peak**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> VideoSequence:
    """Synthetic sequence 1 (16 frames of 256x128 at 30 fps, panning camera, intra period 8)."""
    return build_dataset(
        SyntheticVideoConfig(), data_dir=tmp_path_factory.mktemp("video"), progress=False, kind=VideoDataset
    ).sequences[1]


@pytest.fixture(scope="module")
def codec() -> VvcSequenceCodec:
    return VvcSequenceCodec(preset="faster")


def _frames(seq: VideoSequence):
    return (Yuv420(*planes) for planes in seq.yuv_frames())


@pytest.fixture(scope="module", params=["random_access", "low_delay"])
def coded(request: pytest.FixtureRequest, codec: VvcSequenceCodec, sequence: VideoSequence) -> CodedSequence:
    return codec.encode(
        _frames(sequence), fps=sequence.fps, qp=QP, structure=request.param, intra_period=sequence.intra_period
    )


def test_headers_give_picture_count_intra_period_and_intra_qp(coded: CodedSequence, codec: VvcSequenceCodec) -> None:
    s = stream_structure(coded.data, codec.ffmpeg)
    assert s.count == 16 == coded.frames == access_units(coded.data)
    assert s.intra_pocs == [0, 8] and s.intra_period == 8
    assert s.intra_qps == [QP, QP]  # the configured QP is the intra slices' coded QP
    inter = [q for p in s.pictures if not p.is_intra for q in p.slice_qps]
    assert min(inter) > QP and {t for p in s.pictures if not p.is_intra for t in p.slice_types} == {"B"}
    assert sorted(p.poc for p in s.pictures) == list(range(16))
    reordered = [p.poc for p in s.pictures] != list(range(16))
    assert reordered == (coded.structure == "random_access")  # low delay codes in display order
    assert s.pictures[0].is_irap and s.pictures[0].poc == 0


def test_rate_is_counted_from_the_stream(coded: CodedSequence) -> None:
    bits = 8 * len(coded.data)
    assert coded.bits == bits and coded.seconds == pytest.approx(16 / 30)
    assert coded.kbps == pytest.approx(bits / (16 / 30) / 1000)
    assert coded.bpp() == pytest.approx(bits / (16 * 256 * 128))
    assert coded.bpp(pixels_per_frame=100 * 100) == pytest.approx(bits / (16 * 100 * 100))
    assert 10 < coded.kbps < 1000 and coded.encode_s > 0


def test_decoded_frames_match_the_source(
    coded: CodedSequence, codec: VvcSequenceCodec, sequence: VideoSequence
) -> None:
    count = 0
    for source, decoded in zip(sequence.yuv_frames(), codec.decode(coded)):
        assert decoded.size == (128, 256) and decoded.bit_depth == 10 and decoded.u.shape == (64, 128)
        assert psnr(decoded.y, source[0].astype(np.uint16) << 2) > 32.0
        assert psnr(decoded.u, source[1].astype(np.uint16) << 2) > 32.0
        count += 1
    assert count == 16


def test_low_qp_costs_more_bits(codec: VvcSequenceCodec, sequence: VideoSequence) -> None:
    frames = [Yuv420(*p) for p in sequence.yuv_frames()][:8]
    low, high = (codec.encode(frames, fps=30, qp=q, structure="low_delay", intra_period=-1) for q in (22, 42))
    assert low.bits > 3 * high.bits
    assert stream_structure(high.data, codec.ffmpeg).intra_pocs == [0]  # -1: only the first picture is intra


def test_monochrome_feature_frames(codec: VvcSequenceCodec) -> None:
    yy, xx = np.mgrid[0:64, 0:96]
    frames = [
        Yuv420.from_luma((512 + 300 * np.sin(xx / 9.0 + k / 3) * np.cos(yy / 7.0)).astype(np.uint16)) for k in range(6)
    ]
    coded = codec.encode(frames, fps=25, qp=22, structure="random_access", intra_period=4, chroma="400")
    assert stream_structure(coded.data, codec.ffmpeg).intra_pocs == [0, 4]
    out = list(codec.decode(coded))
    assert len(out) == 6 and all(int(f.u.max()) == int(f.u.min()) == 512 for f in out)
    assert min(psnr(o.y, f.y) for o, f in zip(out, frames)) > 40.0


def test_base_qp_keeps_the_structures_intra_offset(codec: VvcSequenceCodec, tmp_path: Path) -> None:
    assert codec.base_qp(32, "random_access") == 35 and codec.base_qp(32, "low_delay") == 33
    cfg = tmp_path / "encoder_randomaccess_vtm.cfg"
    cfg.write_text("GOPSize                       : 32\nIntraQPOffset                 : -3\nLambdaFromQpEnable : 1\n")
    app = tmp_path / "EncoderAppStatic"
    app.write_text("")
    vtm = VvcSequenceCodec(backend="vtm", vtm_encoder=str(app), vtm_cfg=str(cfg))
    assert vtm.base_qp(34, "random_access") == 37  # MPEG's -q 37 random-access anchor codes its intra slices at 34
    shipped = VvcSequenceCodec(backend="vtm")  # no encoder: the shipped streams, made with MPEG's cfgs
    assert (shipped.intra_qp_offset("random_access"), shipped.intra_qp_offset("low_delay")) == (-3, -1)
    job = SequenceJob(
        416, 240, bit_depth=8, fps=50, base_qp=37, structure="random_access", intra_period=64, chroma="420"
    )
    cmd = vtm.vtm_command(tmp_path / "in.yuv", tmp_path / "out.bin", 97, job)
    assert (
        cmd[:3] == [str(app), "-c", str(cfg)] and cmd[cmd.index("-q") + 1] == "37" and cmd[cmd.index("-f") + 1] == "97"
    )
    assert {
        "--IntraPeriod=64",
        "--DecodingRefreshType=1",
        "--InputBitDepth=8",
        "--InternalBitDepth=10",
        "--Level=5.1",
    } <= set(cmd)
    assert cmd[cmd.index("-fr") + 1] == "50" and cmd[cmd.index("-ts") + 1] == "1"


@pytest.mark.parametrize(
    "frames, period, want",
    [
        (16, 8, [(0, 9), (8, 8)]),
        (17, 8, [(0, 9), (8, 9)]),
        (9, 8, [(0, 9)]),
        (100, 32, [(0, 33), (32, 33), (64, 33), (96, 4)]),
        (600, 64, [(k * 64, 65) for k in range(9)] + [(576, 24)]),
        (16, -1, [(0, 16)]),
        (1, 8, [(0, 1)]),
    ],
)
def test_vtm_segments_are_mpegs_parallel_encoding(frames: int, period: int, want: list[tuple[int, int]]) -> None:
    """One VTM run per intra period, each ending on the next run's first (intra) picture, every frame coded."""
    got = vtm_segments(frames, period)
    assert got == want
    covered = sorted({f for start, n in got for f in range(start, start + n)})
    assert covered == list(range(frames))
    assert all(start % max(period, 1) == 0 for start, _ in got)
    assert all(a + n - 1 == b for (a, n), (b, _) in itertools.pairwise(got))  # consecutive runs share one picture


def test_a_vtm_intra_period_needs_parcat(sequence: VideoSequence, tmp_path: Path) -> None:
    """Periodic intra pictures in more frames than one period: VTM runs per period, so parcat must be set."""
    app, cfg = tmp_path / "EncoderAppStatic", tmp_path / "encoder_lowdelay_vtm.cfg"
    app.write_text("")
    cfg.write_text("IntraQPOffset : -1\n")
    vtm = VvcSequenceCodec(backend="vtm", vtm_encoder=str(app), vtm_cfg=str(cfg))
    frames = [Yuv420(*p) for p in sequence.yuv_frames()][:9]
    with pytest.raises(ConfigError, match="2 runs joined by VTM's parcat.*vvc_sequence.vtm_parcat"):
        vtm.encode(frames, fps=30, qp=QP, structure="low_delay", intra_period=4)
    job = SequenceJob(256, 128, bit_depth=8, fps=30, base_qp=33, structure="low_delay", intra_period=4, chroma="420")
    cmd = vtm.vtm_command(tmp_path / "in.yuv", tmp_path / "part-001.266", 5, job, skip=4)
    assert "--FrameSkip=4" in cmd and cmd[cmd.index("-f") + 1] == "5" and "--IntraPeriod=4" in cmd
    with pytest.raises(ConfigError, match="vvc_sequence.vtm_parcat="):
        VvcSequenceCodec(backend="vtm", vtm_encoder=str(app), vtm_cfg=str(cfg), vtm_parcat=str(tmp_path / "none"))


STAND_IN = """#!{python}
# Stands in for VTM's EncoderApp: checks the input file against the arguments, then codes it with FFmpeg's libvvenc.
import subprocess, sys
args = sys.argv[1:]
opt = {{a: b for a, b in zip(args, args[1:]) if a.startswith("-") and not a.startswith("--")}}
long = dict(a[2:].split("=", 1) for a in args if a.startswith("--"))
w, h, n, depth = int(opt["-wdt"]), int(opt["-hgt"]), int(opt["-f"]), int(long["InputBitDepth"])
mono = long["InputChromaFormat"] == "400"
per = w * h * (1 if mono else 1.5) * (2 if depth == 10 else 1)
data = open(opt["-i"], "rb").read()
assert len(data) == n * per, (len(data), n, per)
fmt = ("gray" if mono else "yuv420p") + ("10le" if depth == 10 else "")
subprocess.run(["{ffmpeg}", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", fmt, "-s", f"{{w}}x{{h}}",
                "-i", opt["-i"],
                "-pix_fmt", "yuv420p10le", "-c:v", "libvvenc", "-qp", opt["-q"], "-preset", "faster",
                "-vvenc-params", f"IntraPeriod={{long['IntraPeriod']}}" + (":ChromaFormatIDC=400" if mono else ""),
                "-f", "vvc", "-y", opt["-b"]], check=True)
"""


@pytest.mark.parametrize("chroma", ["420", "400"])
def test_vtm_backend_plumbing(chroma: str, codec: VvcSequenceCodec, sequence: VideoSequence, tmp_path: Path) -> None:
    """The VTM path end to end with a stand-in EncoderApp: the input file it reads, the stream it writes, decoding."""
    app = tmp_path / "EncoderAppStatic"
    app.write_text(STAND_IN.format(python=sys.executable, ffmpeg=codec.ffmpeg))
    app.chmod(0o755)
    cfg = tmp_path / "encoder_lowdelay_vtm.cfg"
    cfg.write_text("IntraPeriod : -1\nIntraQPOffset : -1\n")
    vtm = VvcSequenceCodec(backend="vtm", vtm_encoder=str(app), vtm_cfg=str(cfg))
    frames = [Yuv420(*p) for p in sequence.yuv_frames()][:5]
    coded = vtm.encode(frames, fps=30, qp=QP, structure="low_delay", intra_period=4, chroma=chroma)
    assert coded.frames == 5 and access_units(coded.data) == 5
    out = list(vtm.decode(coded))
    assert len(out) == 5 and psnr(out[2].y, frames[2].to_10bit().y) > 30.0


def test_bad_inputs_fail_with_the_fix(codec: VvcSequenceCodec) -> None:
    frame = Yuv420.from_luma(np.full((64, 64), 512, np.uint16))
    with pytest.raises(CodecError, match="no frame"):
        codec.encode([], fps=30, qp=QP)
    with pytest.raises(CodecError, match="one size and depth"):
        codec.encode([frame, Yuv420.from_luma(np.full((32, 64), 512, np.uint16))], fps=30, qp=QP, intra_period=8)
    with pytest.raises(CodecError, match="even sizes"):
        codec.encode([Yuv420.from_luma(np.full((33, 64), 512, np.uint16))], fps=30, qp=QP)
    with pytest.raises(ConfigError, match="intra period 0"):
        codec.encode([frame], fps=30, qp=QP, intra_period=0)
    with pytest.raises(ConfigError, match="vvc_sequence.structure='bidirectional' is unknown"):
        codec.encode([frame], fps=30, qp=QP, structure="bidirectional")
    with pytest.raises(ConfigError, match="outside 0..63"):
        codec.encode([frame], fps=30, qp=64)
    with pytest.raises(ConfigError, match="needs the encoder QP 64"):
        codec.encode([frame], fps=30, qp=61)
    with pytest.raises(ConfigError, match="single pictures only"):
        VvcSequenceCodec(backend="vvenc_apps")


def test_presets_compose() -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        assert compose(config_name="vvc_sequence/random_access").vvc_sequence.structure == "random_access"
        low = compose(config_name="vvc_sequence/low_delay", overrides=["vvc_sequence.intra_period=32"]).vvc_sequence
        assert (low.structure, low.intra_period) == ("low_delay", 32)
        with pytest.raises(Exception, match="structure"):
            compose(config_name="vvc_sequence/low_delay", overrides=["vvc_sequence.structure=hierarchical"])


@pytest.mark.slow
@needs_vtm
@pytest.mark.parametrize(
    "structure, cfg_name, period, intra",
    [
        # VTM's random-access cfg takes only multiples of its GOP (32) as intra period (docs/anchors.md)
        ("random_access", "encoder_randomaccess_vtm.cfg", 32, [0]),
        ("low_delay", "encoder_lowdelay_vtm.cfg", 8, [0, 8]),  # one run: the CRA is its last picture
    ],
)
def test_vtm_sequence(structure: str, cfg_name: str, period: int, intra: list[int], sequence: VideoSequence) -> None:
    cfg = Path(VTM_CFG).with_name(cfg_name)
    vtm = VvcSequenceCodec(backend="vtm", vtm_encoder=VTM_ENCODER, vtm_decoder=VTM_DECODER, vtm_cfg=str(cfg))
    frames = [Yuv420(*p) for p in sequence.yuv_frames()][:9]
    coded = vtm.encode(frames, fps=sequence.fps, qp=QP, structure=structure, intra_period=period)
    s = stream_structure(coded.data, vtm.ffmpeg)
    assert s.count == 9 and s.intra_pocs == intra and s.intra_qps == [QP] * len(intra)
    out = list(vtm.decode(coded))
    assert len(out) == 9 and min(psnr(o.y, f.to_10bit().y) for o, f in zip(out, frames)) > 32.0


@pytest.mark.slow
@needs_vtm
@pytest.mark.skipif(not VTM_PARCAT, reason="no parcat configured (set VCM_EVAL_VTM_PARCAT)")
def test_vtm_low_delay_with_periodic_intra_pictures(sequence: VideoSequence, tmp_path: Path) -> None:
    """MPEG's low-delay anchor with an intra picture every 8: two VTM runs joined by parcat decode in full, with
    FFmpeg's decoder and VTM's, intra pictures at POC 0 and 8 at the configured QP; the runs side by side, or
    resumed from a kept first period, give the same stream."""
    cfg = Path(VTM_CFG).with_name("encoder_lowdelay_vtm.cfg")
    vtm = VvcSequenceCodec(
        backend="vtm", vtm_encoder=VTM_ENCODER, vtm_decoder=VTM_DECODER, vtm_cfg=str(cfg), vtm_parcat=VTM_PARCAT
    )
    frames = [Yuv420(*p) for p in sequence.yuv_frames()][:16]
    coded = vtm.encode(frames, fps=sequence.fps, qp=QP, structure="low_delay", intra_period=8)
    s = stream_structure(coded.data, vtm.ffmpeg)
    assert s.count == 16 and s.intra_pocs == [0, 8] and s.intra_qps == [QP, QP]
    for decoder in (vtm, VvcSequenceCodec(ffmpeg=vtm.ffmpeg)):
        out = list(decoder.decode(coded))
        assert len(out) == 16 and min(psnr(o.y, f.to_10bit().y) for o, f in zip(out, frames)) > 32.0
    both = VvcSequenceCodec(backend="vtm", vtm_encoder=VTM_ENCODER, vtm_cfg=str(cfg), vtm_parcat=VTM_PARCAT, threads=2)
    kept = tmp_path / "segments"
    again = both.encode(frames, fps=sequence.fps, qp=QP, structure="low_delay", intra_period=8, segments_dir=kept)
    assert again.data == coded.data  # the two periods coded at once: the same stream
    next(kept.glob("part-001-*")).unlink()  # as if killed during the second period
    resumed = both.encode(frames, fps=sequence.fps, qp=QP, structure="low_delay", intra_period=8, segments_dir=kept)
    assert resumed.data == coded.data


SEGMENT_STAND_IN = """#!{python}
# Stands in for VTM's EncoderApp in one segment of a segmented encode: logs its segment and when it ran, writes
# a stream naming its segment and QP, and a reconstruction; fails when SEGMENT_FAIL names its segment.
import os, sys, time
args = sys.argv[1:]
if "--help" in args:
    print("VTM Encoder Version 99.0 [stand-in]")
    sys.exit(0)
opt = {{a: b for a, b in zip(args, args[1:]) if a.startswith("-") and not a.startswith("--")}}
skip = dict(a[2:].split("=", 1) for a in args if a.startswith("--")).get("FrameSkip", "0")
start = time.time()
time.sleep(1.0)
if os.environ.get("SEGMENT_FAIL") == skip:
    open(opt["-b"], "wb").write(b"half")
    sys.exit("stand-in: killed mid-segment")
open(opt["-b"], "wb").write(f"{{skip}}:{{opt['-f']}}:{{opt['-q']}}".encode())
open(opt["-o"], "wb").write(b"reconstruction")
with open(os.environ["SEGMENT_CALLS"], "a") as f:
    f.write(f"{{skip}} {{start}} {{time.time()}}\\n")
"""


def test_vtm_segments_run_in_parallel_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``vvc.threads`` VTM processes at once, one per intra period; a finished segment is kept whole with its
    encode seconds, so a rerun after a failure codes only the missing one and still counts every segment's time,
    and another setting never reuses it."""
    app, cfg, calls = tmp_path / "EncoderAppStatic", tmp_path / "encoder_lowdelay_vtm.cfg", tmp_path / "calls"
    app.write_text(SEGMENT_STAND_IN.format(python=sys.executable))
    app.chmod(0o755)
    cfg.write_text("IntraQPOffset : -1\n")
    monkeypatch.setenv("SEGMENT_CALLS", str(calls))
    vtm = VvcSequenceCodec(backend="vtm", vtm_encoder=str(app), vtm_cfg=str(cfg), threads=3)
    job = SequenceJob(256, 128, bit_depth=8, fps=30, base_qp=33, structure="low_delay", intra_period=8, chroma="420")
    segments, folder = vtm_segments(25, 8), tmp_path / "segments"
    assert segments == [(0, 9), (8, 9), (16, 9)]

    def ran() -> list[tuple[str, float, float]]:
        return [(s, float(a), float(b)) for s, a, b in (line.split() for line in calls.read_text().splitlines())]

    monkeypatch.setenv("SEGMENT_FAIL", "8")
    with pytest.raises(CodecError, match="killed mid-segment"):
        vtm.vtm_segment_streams(tmp_path / "in.yuv", folder, segments, job, "frames-digest")
    first = ran()
    assert sorted(s for s, _, _ in first) == ["0", "16"]  # the other segments finished beside the failing one
    (_, a0, a1), (_, b0, b1) = first
    assert a0 < b1 and b0 < a1  # they ran at the same time
    kept = sorted(p.name[:8] + p.suffix for p in folder.iterdir())  # no half stream, no reconstruction
    assert kept == ["part-000.266", "part-000.json", "part-002.266", "part-002.json"]  # each with its seconds
    monkeypatch.delenv("SEGMENT_FAIL")
    parts = vtm.vtm_segment_streams(tmp_path / "in.yuv", folder, segments, job, "frames-digest")
    assert [s for s, _, _ in ran()[2:]] == ["8"]  # only the missing segment was coded again
    assert [p.read_bytes() for p, _ in parts] == [b"0:9:33", b"8:9:33", b"16:9:33"]  # in order
    assert all(seconds >= 1.0 for _, seconds in parts)  # each run's own time (1 s in the stand-in), kept or new
    other = SequenceJob(256, 128, bit_depth=8, fps=30, base_qp=34, structure="low_delay", intra_period=8, chroma="420")
    vtm.vtm_segment_streams(tmp_path / "in.yuv", folder, segments, other, "frames-digest")
    assert len(ran()) == 6  # another QP: nothing reused
    vtm.vtm_segment_streams(tmp_path / "in.yuv", folder, segments, job, "other-frames")
    assert len(ran()) == 9  # other frames: nothing reused
