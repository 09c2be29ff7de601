"""VVC coding of a whole sequence as one bitstream: MPEG's random-access and low-delay test conditions.

``VvcSequenceCodec.encode`` takes the frames of a sequence one at a time (``Yuv420``: 8-bit source
samples, or 10-bit frames; ``chroma="400"`` codes the luma only, as the feature anchors' tiled
frames) and returns a ``CodedSequence``: the raw Annex-B stream (its length is the rate: kbps at the
sequence's frame rate, bpp over all frames' pixels) and how it was made. ``decode`` streams the
decoded 10-bit frames back in display order, one at a time.

Backends (``vvc.backend``):
  * ``ffmpeg`` - VVenC (libvvenc) in FFmpeg, fed through a pipe (it holds its look-ahead and GOP,
    never the whole sequence), decoded by FFmpeg's native vvc decoder.
  * ``vtm``    - VTM's EncoderApp with MPEG's ``encoder_randomaccess_vtm.cfg`` or
    ``encoder_lowdelay_vtm.cfg`` (``vvc_sequence.vtm_cfg``) and the arguments of MPEG's FCM scripts
    (CompressAI-Vision's VTM codec): ``-q``, ``-wdt``, ``-hgt``, ``-f``, ``-fr``, ``-ts 1``,
    ``--IntraPeriod``, ``--DecodingRefreshType=1`` (0 with intra period -1), ``--Level=5.1``,
    ``--InputBitDepth``, ``--InternalBitDepth=10``, ``--InputChromaFormat``, ``--ConformanceWindowMode=1``.

**The QP is the coded QP of the intra slices.** Both encoders lower intra slices by the
configuration's ``IntraQPOffset`` (VTM's and VVenC's random access: -3; low delay: -1), so the
encoder gets ``qp - IntraQPOffset`` (``base_qp``): its intra slices carry ``qp`` and every other
slice keeps the configuration's own offsets relative to that base, exactly as MPEG's anchors
(MPEG's ``-q 37`` random-access anchor is ``qp=34`` here: the same VTM command line). Inter
slices then sit at ``qp - IntraQPOffset + QPOffset(layer) + model offset`` (measured in docs/video.md). VVenC
runs with ``GOPQPA=0:BIM=0:STA=0``: no content-adaptive QP or slice-type changes, so slice QPs and
intra positions follow the GOP table like VTM's (``headers.stream_structure`` reads them back;
tested), and ``POC0IDR=1``: the first picture (POC 0) is the first intra picture, as in VTM.

Random access (``structure=random_access``): VVenC ``DecodingRefreshType=1:GOPSize=32:IntraQPOffset=-3``
(CRA every ``intra_period`` pictures, hierarchical B GOP of 32, as VTM's cfg). Low delay
(``low_delay``): VVenC's low-delay keys (its ``cfg/experimental/lowdelay_*.cfg``)
``PicReordering=0:GOPSize=8:DecodingRefreshType=0:IntraQPOffset=-1``; VVenC supports no CRA in low
delay, so its periodic intra pictures are IDR pictures. That cfg also sets ``MCTFFutureReference=0``
(the encoder's temporal pre-filter looks at past frames only); with it, FFmpeg's libvvenc 1.15.0-dev
wrote an empty stream for a 16-frame synthetic sequence (measured), so it is left at its default: the
stream is low delay all the same (no picture references a later one), only the pre-filter looks ahead.
Every VVenC stream's access units are counted against the frames fed (libvvenc writes an access unit
delimiter per picture), so an encoder that silently drops frames is an error, not a short stream.
"""

from __future__ import annotations

import dataclasses
import fractions
import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vcm_eval.codecs.vvc.config import Structure
from vcm_eval.codecs.vvc.encoder import VvcEncoder, check_chroma, check_qp
from vcm_eval.codecs.vvc.external import QUIET, run_tool
from vcm_eval.codecs.vvc.shipped_sequences import SequenceDigest, ShippedSequences
from vcm_eval.codecs.vvc.vtm import existing_file
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.data.video.yuv_file import stream_frames
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.utils.atomic import write_atomic
from vcm_eval.utils.choices import choice

SEQUENCE_PARAMS_VERSION = 1  # bump when the encoder arguments below change: it is part of the codec's version


VVENC_FIXED = "GOPQPA=0:BIM=0:STA=0:POC0IDR=1"  # slice QPs and intra positions follow the GOP table, as in VTM
VVENC_STRUCTURE = {
    Structure.random_access: "DecodingRefreshType=1:GOPSize=32:IntraQPOffset=-3",
    Structure.low_delay: "PicReordering=0:GOPSize=8:DecodingRefreshType=0:IntraQPOffset=-1",
}
# IntraQPOffset of VTM's encoder_randomaccess_vtm.cfg / encoder_lowdelay_vtm.cfg (MPEG's), which VVenC is set to
# and the shipped VTM streams were coded with.
INTRA_QP_OFFSET = {Structure.random_access: -3, Structure.low_delay: -1}


@dataclass(frozen=True)
class CodedSequence:
    """One sequence's VVC bitstream and how it was coded.

    Attributes:
        data: the raw Annex-B VVC stream, byte for byte what the decoder reads.
        frames: pictures coded.
        height, width: coded picture size in samples.
        fps: frame rate the rate is counted at.
        qp: the intra slices' coded QP.
        structure: ``random_access`` or ``low_delay``.
        intra_period: pictures between intra pictures (-1: only the first).
        chroma: ``420`` or ``400``.
        encode_s: wall-clock seconds of the encoder (input piping included).
    """

    data: bytes
    frames: int
    height: int
    width: int
    fps: float
    qp: int
    structure: str
    intra_period: int
    chroma: str
    encode_s: float

    @property
    def bits(self) -> int:
        """The rate's numerator: 8 x the stream's length."""
        return 8 * len(self.data)

    @property
    def seconds(self) -> float:
        """Duration at ``fps``."""
        return self.frames / self.fps

    @property
    def kbps(self) -> float:
        """kbit/s at the sequence's frame rate (1 kbit = 1000 bits), as MPEG's video test conditions report it."""
        return self.bits / self.seconds / 1000.0

    def bpp(self, pixels_per_frame: int | None = None) -> float:
        """Bits per pixel over all frames: of ``pixels_per_frame`` (the original frame's, e.g. before padding or
        tiling), else of the coded picture."""
        return self.bits / (self.frames * (pixels_per_frame or self.height * self.width))


def cfg_value(cfg: str, key: str) -> str | None:
    """The value of ``key`` in a VTM cfg file (``Key : value # comment``), None when absent."""
    for line in Path(cfg).read_text(errors="replace").splitlines():
        found = re.match(rf"\s*{re.escape(key)}\s*:\s*(\S+)", line)
        if found:
            return found.group(1)
    return None


def access_units(data: bytes) -> int:
    """Access unit delimiters (NAL unit type 20) in an Annex-B VVC stream: its picture count when every access
    unit starts with one, as libvvenc writes them. (The NAL unit type is the top 5 bits of the header's second byte.)"""
    return sum(1 for m in _START_CODE.finditer(data) if m.group(1)[1] >> 3 == 20)


_START_CODE = re.compile(rb"\x00\x00\x01(..)", re.DOTALL)


def vtm_segments(frames: int, intra_period: int) -> list[tuple[int, int]]:
    """(first frame, frame count) of each VTM run that codes ``frames`` pictures with an intra picture every
    ``intra_period``: MPEG's FCM parallel encoding (CompressAI-Vision's VTM codec). Run k codes frames
    ``k * period .. (k + 1) * period``, so its last picture is the next run's first (intra) picture, and no
    picture follows an intra picture within a run but the run's first; parcat keeps one copy of each
    shared picture and renumbers the POCs. One run when only the first picture is intra or the sequence
    is no longer than one period and its closing intra picture.
    """
    if intra_period < 1 or frames <= intra_period + 1:
        return [(0, frames)]
    return [(start, min(intra_period + 1, frames - start)) for start in range(0, frames - 1, intra_period)]


def _rate(fps: float) -> str:
    """A frame rate as FFmpeg's rational (``30``, ``30000/1001``)."""
    r = fractions.Fraction(fps).limit_denominator(1001)
    return str(r.numerator) if r.denominator == 1 else f"{r.numerator}/{r.denominator}"


@dataclass(frozen=True)
class SequenceJob:
    """What one ``encode`` call codes: the picture format and the coding conditions (``vtm_command`` takes it)."""

    width: int
    height: int
    bit_depth: int
    fps: float
    base_qp: int
    structure: str
    intra_period: int
    chroma: str


class VvcSequenceCodec:
    """Codes a sequence of frames as one VVC stream (random access or low delay) and decodes it back.

    Args:
        backend: ``ffmpeg`` (VVenC + FFmpeg's vvc decoder) or ``vtm``.
        ffmpeg: FFmpeg binary ("" = imageio-ffmpeg's).
        preset: VVenC preset (``ffmpeg`` backend).
        threads: VVenC threads.
        extra_params: more VVenC ``key=value:...`` parameters, applied last.
        vtm_encoder, vtm_decoder: VTM's EncoderApp and DecoderApp ("" decoder = FFmpeg's, bit-exact).
        vtm_cfg: MPEG's random-access or low-delay VTM cfg (``vtm`` backend).
        vtm_parcat: VTM's parcat: periodic intra pictures with VTM are coded one intra period per VTM run and
            joined by it (``vtm_segments``), as MPEG's FCM scripts do.
        shipped: shipped VTM sequence streams (``vtm`` backend): a stream made from the same frames at the same
            QP, structure, intra period and VTM setting is read (md5 checked) instead of running VTM; without
            ``vtm_encoder`` only those can be coded, with the one setting shipped (CI has no VTM).
    """

    def __init__(
        self,
        *,
        backend: str = "ffmpeg",
        ffmpeg: str = "",
        preset: str = "faster",
        threads: int = 1,
        extra_params: str = "",
        vtm_encoder: str = "",
        vtm_decoder: str = "",
        vtm_cfg: str = "",
        vtm_parcat: str = "",
        shipped: ShippedSequences | None = None,
    ) -> None:
        if str(backend) == "vvenc_apps":
            raise ConfigError("vvc.backend=vvenc_apps codes single pictures only; use vvc.backend=ffmpeg or vtm")
        if str(backend) == "vtm" and vtm_encoder and not vtm_cfg:
            raise ConfigError("vvc.backend=vtm needs vvc_sequence.vtm_cfg=<VTM cfg/encoder_randomaccess_vtm.cfg or "
                              "encoder_lowdelay_vtm.cfg>")  # fmt: skip
        self.single = VvcEncoder(backend=backend, ffmpeg=ffmpeg, preset=preset, threads=threads,
                                 extra_params=extra_params, vtm_encoder=vtm_encoder, vtm_decoder=vtm_decoder,
                                 vtm_cfg=vtm_cfg)  # fmt: skip
        self.backend, self.ffmpeg, self.vtm = self.single.backend, self.single.ffmpeg, self.single.vtm
        self.preset, self.threads, self.extra_params = self.single.preset, threads, extra_params
        self.shipped = shipped if self.vtm is not None and shipped is not None and len(shipped) else None
        self.parcat = existing_file(vtm_parcat, "vvc_sequence.vtm_parcat") if vtm_parcat else ""

    @classmethod
    def from_settings(cls, vvc: Any, sequence: Any) -> VvcSequenceCodec:
        """The codec the ``vvc`` group (encoder) and a ``vvc_sequence`` preset (its VTM cfg) describe; with
        ``vvc.backend=vtm`` it uses the shipped VTM streams of the folder ``vvc_sequence.shipped`` where they fit."""
        return cls(backend=vvc.backend, ffmpeg=vvc.ffmpeg, preset=vvc.preset, threads=vvc.threads,
                   extra_params=vvc.extra_params, vtm_encoder=vvc.vtm_encoder, vtm_decoder=vvc.vtm_decoder,
                   vtm_cfg=sequence.vtm_cfg, vtm_parcat=sequence.vtm_parcat,
                   shipped=ShippedSequences(sequence.shipped) if str(vvc.backend) == "vtm" else None)  # fmt: skip

    def version(self) -> str:
        """What makes the bitstreams: the encoder build (or VTM setting) and this module's argument revision."""
        encoder = self.shipped.only_encoder() if self.shipped is not None and not self.single.can_encode else None
        return f"{encoder or self.single.version()} / sequence args v{SEQUENCE_PARAMS_VERSION}"

    def tool_versions(self) -> dict[str, str]:
        """Versions of the libraries behind ``version()``, for provenance (FFmpeg's libvvenc)."""
        return self.single.tool_versions()

    def intra_qp_offset(self, structure: str) -> int:
        """The ``IntraQPOffset`` the encoder applies to intra slices: the VTM cfg's (0, VTM's default, where the cfg
        has none); VVenC's, set here; the shipped VTM streams' (no encoder, no cfg): MPEG's cfgs', which made them."""
        if self.vtm is not None and self.vtm.cfg:
            value = cfg_value(self.vtm.cfg, "IntraQPOffset")
            return int(value) if value is not None else 0
        return INTRA_QP_OFFSET[choice(Structure, structure, "vvc_sequence.structure")]

    def base_qp(self, qp: int, structure: str) -> int:
        """The encoder's QP argument that makes the intra slices' coded QP ``qp`` (``qp - IntraQPOffset``)."""
        base = check_qp(qp) - self.intra_qp_offset(structure)
        if not -1 <= base <= 63:
            raise ConfigError(f"QP {qp} needs the encoder QP {base}, outside -1..63; pick an intra QP nearer 32")
        return base

    def encode(self, frames: Iterable[Yuv420], *, fps: float, qp: int, structure: str = "random_access",
               intra_period: int = 32, chroma: str = "420",
               segments_dir: Path | None = None) -> CodedSequence:  # fmt: skip
        """Code ``frames`` (all of one even size and one bit depth) as one stream.

        Args:
            frames: the pictures in display order, consumed one at a time.
            fps: frame rate (signalled, and what ``kbps`` counts at).
            qp: the intra slices' coded QP (module docstring).
            structure: ``random_access`` or ``low_delay``.
            intra_period: pictures between intra pictures; -1 only the first (low delay and VTM).
            chroma: ``420``, or ``400`` to code the luma only.
            segments_dir: where VTM keeps each intra period's finished stream (``vtm_segment_streams``), so an
                encode killed half way resumes at the first missing segment; None: a temporary folder.

        Raises:
            ConfigError: a bad QP, structure, intra period or frame rate.
            CodecError: no frame, mixed sizes or depths, an odd size, or the encoder failed.
        """
        structure = str(choice(Structure, structure, "vvc_sequence.structure"))
        check_chroma(chroma)
        if fps <= 0:
            raise ConfigError(f"frame rate {fps} must be > 0")
        first_only = intra_period == -1 and (structure == "low_delay" or self.vtm is not None)
        if intra_period < 1 and not first_only:
            raise ConfigError(f"intra period {intra_period} is invalid for {structure}; use a period >= 1 "
                              "(-1: only the first picture, with low delay or VTM)")  # fmt: skip
        if self.vtm is not None and not self.vtm.can_encode and self.shipped is None:
            raise ConfigError("vvc.backend=vtm without vvc.vtm_encoder cannot encode; set vvc.vtm_encoder")
        base = self.base_qp(qp, structure)
        it = iter(frames)
        first = next(it, None)
        if first is None:
            raise CodecError("no frame to encode; a sequence needs at least one frame")
        height, width = first.size
        if height % 2 or width % 2:
            raise CodecError(f"4:2:0 frames need even sizes, got {width}x{height}; pad the frames first")
        job = SequenceJob(width, height, first.bit_depth, float(fps), base, structure, intra_period, chroma)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="vcm_vvcseq_") as tmp:
            out = Path(tmp) / "out.266"
            segment_s = None  # VTM's intra periods: the sum of their encode seconds, wherever they ran
            if self.vtm is not None:
                count, segment_s = self._vtm_encode(_checked(first, it), Path(tmp), out, job, qp, segments_dir)
            else:
                count = self._vvenc_encode(_checked(first, it), out, job)
            data = out.read_bytes() if out.is_file() else b""
        if not data:
            raise CodecError(f"the VVC encoder wrote an empty stream for {count} frames of {width}x{height} at QP {qp}")
        seconds = time.perf_counter() - start if segment_s is None else segment_s
        return CodedSequence(data, count, height, width, float(fps), qp, structure, intra_period, chroma, seconds)

    def vvenc_params(self, structure: str, intra_period: int, chroma: str) -> str:
        """The ``-vvenc-params`` of a sequence (module docstring); ``extra_params`` last, so they win."""
        parts = [VVENC_FIXED, VVENC_STRUCTURE[Structure(structure)], f"IntraPeriod={intra_period}",
                 "ChromaFormatIDC=400" if chroma == "400" else "", self.extra_params]  # fmt: skip
        return ":".join(p for p in parts if p)

    def _vvenc_encode(self, frames: Iterator[Yuv420], out: Path, job: SequenceJob) -> int:
        params = self.vvenc_params(job.structure, job.intra_period, job.chroma)
        cmd = [self.ffmpeg, *QUIET, "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s", f"{job.width}x{job.height}",
               "-framerate", _rate(job.fps), "-i", "pipe:", "-c:v", "libvvenc", "-qp", str(job.base_qp),
               "-preset", str(self.preset), "-qpa", "0", "-threads", str(self.threads), "-vvenc-params", params,
               "-f", "vvc", "-y", str(out)]  # fmt: skip
        count = _feed(cmd, (f.to_10bit().tobytes() for f in frames), setting="vvc.ffmpeg")
        coded = access_units(out.read_bytes()) if out.is_file() else 0
        if coded and coded != count:  # no delimiter at all: extra_params turned them off, nothing to count
            raise CodecError(f"libvvenc wrote {coded} access units for {count} frames ({job.structure}, "
                             f"-vvenc-params {params}); change the parameters or the FFmpeg build")  # fmt: skip
        return count

    def vtm_command(self, yuv: Path, out: Path, frames: int, job: SequenceJob, *, skip: int | None = None) -> list[str]:
        """MPEG's FCM encoder command line for a sequence of ``frames`` pictures (the reconstruction goes beside
        the output: the cfg's default ``rec.yuv`` would land in the working folder); ``skip``: one segment of a
        segmented run (``--FrameSkip``, as MPEG's parallel encoding)."""
        if self.vtm is None:
            raise ConfigError("vtm_command needs vvc.backend=vtm")
        segment = [] if skip is None else [f"--FrameSkip={skip}"]
        return [self.vtm.encoder, "-c", self.vtm.cfg, "-i", str(yuv), "-o", str(out.with_suffix(".rec.yuv")),
                "-b", str(out), "-q", str(job.base_qp), "-wdt", str(job.width), "-hgt", str(job.height),
                "-f", str(frames), "-fr", str(round(job.fps)), "-ts", "1", f"--IntraPeriod={job.intra_period}",
                f"--DecodingRefreshType={1 if job.intra_period >= 1 else 0}", "--Level=5.1",
                f"--InputBitDepth={job.bit_depth}", "--InternalBitDepth=10", f"--InputChromaFormat={job.chroma}",
                "--ConformanceWindowMode=1", *segment]  # fmt: skip

    def _vtm_encode(self, frames: Iterator[Yuv420], tmp: Path, out: Path, job: SequenceJob, qp: int,
                    segments_dir: Path | None = None) -> tuple[int, float | None]:  # fmt: skip
        """Code with VTM (or read a shipped stream) into ``out``; returns the frame count and, for a segmented
        encode, the sum of its segments' encode seconds (None: time the call)."""
        if self.vtm is None:
            raise ConfigError("the VTM path needs vvc.backend=vtm")
        yuv, digest = tmp / "in.yuv", SequenceDigest()
        luma = np.dtype("<u2") if job.bit_depth == 10 else np.dtype(np.uint8)
        with open(yuv, "wb") as f:
            for frame in frames:  # written as they come: VTM reads a file; hashed: a shipped stream may fit
                digest.update(frame)
                if self.vtm.can_encode:
                    f.write(np.ascontiguousarray(frame.y, dtype=luma).tobytes() if job.chroma == "400"
                            else frame.tobytes())  # fmt: skip
        count = digest.frames
        if self.shipped is not None:
            encoder = self.single.version() if self.vtm.can_encode else self.shipped.only_encoder(job.structure)
            found = self.shipped.get(digest.hexdigest(), qp, job.structure, encoder, intra_period=job.intra_period,
                                     chroma=job.chroma, fps=job.fps)  # fmt: skip
            if found is not None:
                out.write_bytes(self.shipped.read(found))
                return count, None
        if not self.vtm.can_encode:
            raise ConfigError(f"no shipped VTM stream fits these {count} frames at QP {qp} ({job.structure}, intra "
                              f"period {job.intra_period}) and vvc.vtm_encoder is empty; set vvc.vtm_encoder and "
                              "vvc_sequence.vtm_cfg (docs/anchors.md) to encode them")  # fmt: skip
        segments = vtm_segments(count, job.intra_period)
        if len(segments) == 1:
            run_tool(self.vtm_command(yuv, out, count, job), setting="vvc.vtm_encoder")
            return count, None
        if not self.parcat:
            raise ConfigError(f"VTM codes an intra period of {job.intra_period} in {count} frames as "
                              f"{len(segments)} runs joined by VTM's parcat (one run writes no decodable stream: "
                              "docs/anchors.md); set vvc_sequence.vtm_parcat=<VTM>/bin/parcatStatic")  # fmt: skip
        parts = self.vtm_segment_streams(yuv, segments_dir or tmp / "segments", segments, job, digest.hexdigest())
        start = time.perf_counter()
        run_tool([self.parcat, *(str(part) for part, _ in parts), str(out)], setting="vvc_sequence.vtm_parcat")
        return count, sum(seconds for _, seconds in parts) + time.perf_counter() - start

    def vtm_segment_streams(self, yuv: Path, folder: Path, segments: list[tuple[int, int]], job: SequenceJob,
                            content: str) -> list[tuple[Path, float]]:  # fmt: skip
        """Each segment's VTM stream (``vtm_segments``) and its encode seconds, ``vvc.threads`` VTM processes at
        once (VTM codes on one core; the segments are independent, as in MPEG's parallel encoding).

        A finished segment is kept in ``folder`` under a name hashed from all that makes it (the frames'
        digest ``content``, the VTM setting, the job, its frames), its seconds beside it (``.json``), written
        whole or not at all, so a rerun after a killed encode codes only the missing segments, never reuses
        another setting's, and still reports every segment's time.
        """
        folder.mkdir(parents=True, exist_ok=True)
        version = self.single.version()

        def one(k: int, skip: int, length: int) -> tuple[Path, float]:
            spec = json.dumps([content, version, dataclasses.astuple(job), skip, length])
            part = folder / f"part-{k:03d}-{hashlib.sha256(spec.encode()).hexdigest()[:16]}.266"
            timing = part.with_suffix(".json")
            if part.is_file() and timing.is_file():
                return part, float(json.loads(timing.read_text())["seconds"])
            work = part.with_name(f".{part.name}.tmp")
            try:
                start = time.perf_counter()
                run_tool(self.vtm_command(yuv, work, length, job, skip=skip), setting="vvc.vtm_encoder")
                seconds = time.perf_counter() - start
                write_atomic(timing, lambda f: f.write(json.dumps({"seconds": seconds}).encode()))
                os.replace(work, part)  # last: a kept stream always has its seconds
            finally:  # the reconstruction is not needed; a failed run's half stream is not kept
                work.with_suffix(".rec.yuv").unlink(missing_ok=True)
                work.unlink(missing_ok=True)
            return part, seconds

        with ThreadPoolExecutor(max_workers=max(1, self.threads)) as pool:
            return list(pool.map(lambda seg: one(seg[0], *seg[1]), enumerate(segments)))

    def decode(self, coded: CodedSequence) -> Iterator[Yuv420]:
        """The decoded 10-bit frames in display order, one at a time (``400``: luma with neutral chroma).

        Raises:
            CodecError: the decoder fails or returns another number of frames than were coded.
        """
        with tempfile.TemporaryDirectory(prefix="vcm_vvcseq_") as tmp:
            src = Path(tmp) / "in.266"
            src.write_bytes(coded.data)
            if self.vtm is not None and self.vtm.decoder:
                rec = Path(tmp) / "out.yuv"
                run_tool([self.vtm.decoder, "-b", str(src), "-o", str(rec), "-d", "10"], setting="vvc.vtm_decoder")
                yield from _read_frames(rec, coded)
                return
            fmt = "gray10le" if coded.chroma == "400" else "yuv420p10le"
            cmd = [self.ffmpeg, *QUIET, "-f", "vvc", "-i", str(src), "-fps_mode", "passthrough",
                   "-f", "rawvideo", "-pix_fmt", fmt, "pipe:"]  # fmt: skip
            n_y, n_c = coded.height * coded.width, (coded.height // 2) * (coded.width // 2)
            size = 2 * n_y if coded.chroma == "400" else 2 * (n_y + 2 * n_c)
            count = 0
            for arr in stream_frames(
                cmd, size, -1, (size // 2,), np.dtype("<u2"), what="the VVC stream", error=CodecError
            ):
                count += 1
                if count > coded.frames:
                    raise CodecError(f"the decoder returned more than the {coded.frames} coded frames")
                yield _frame(arr, coded)
            if count != coded.frames:
                raise CodecError(f"the decoder returned {count} frames, {coded.frames} were coded")


def _frame(samples: np.ndarray, coded: CodedSequence) -> Yuv420:
    """One decoded frame from its 16-bit samples (``400``: luma only)."""
    h, w = coded.height, coded.width
    if coded.chroma == "400":
        return Yuv420.from_luma(samples[: h * w].reshape(h, w))
    n_y, n_c = h * w, (h // 2) * (w // 2)
    return Yuv420(
        samples[:n_y].reshape(h, w),
        samples[n_y : n_y + n_c].reshape(h // 2, w // 2),
        samples[n_y + n_c :].reshape(h // 2, w // 2),
    )


def _read_frames(path: Path, coded: CodedSequence) -> Iterator[Yuv420]:
    """Frames of a 10-bit file DecoderApp wrote (4:0:0 streams may carry neutral chroma planes), one at a time."""
    n_y, n_c = coded.height * coded.width, (coded.height // 2) * (coded.width // 2)
    total = path.stat().st_size
    size = next((s for s in (2 * n_y, 2 * (n_y + 2 * n_c)) if s * coded.frames == total), 0)
    if not size:
        raise CodecError(
            f"DecoderApp wrote {total} bytes, not {coded.frames} 10-bit {coded.width}x{coded.height} frames"
        )
    with open(path, "rb") as f:
        for _ in range(coded.frames):
            yield _frame(np.frombuffer(f.read(size), dtype="<u2"), coded)


def _checked(first: Yuv420, rest: Iterator[Yuv420]) -> Iterator[Yuv420]:
    """``first`` then ``rest``, each checked to have ``first``'s size and bit depth."""
    yield first
    for k, frame in enumerate(rest, 1):
        if frame.size != first.size or frame.bit_depth != first.bit_depth:
            raise CodecError(
                f"frame {k} is {frame.size[1]}x{frame.size[0]} {frame.bit_depth}-bit, frame 0 "
                f"{first.size[1]}x{first.size[0]} {first.bit_depth}-bit; a sequence has one size and depth"
            )
        yield frame


def _feed(cmd: list[str], chunks: Iterable[bytes], *, setting: str) -> int:
    """Run ``cmd`` writing ``chunks`` (one frame each) to its stdin; returns the number written.

    Raises:
        CodecError: the program cannot start or fails (command, return code and end of stderr).
    """
    count = 0
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        except OSError as exc:
            raise CodecError(f"cannot start {cmd[0]!r} ({exc}); install it or fix its path in {setting}") from exc
        try:
            if proc.stdin is not None:
                for chunk in chunks:
                    proc.stdin.write(chunk)
                    count += 1
                proc.stdin.close()
        except BrokenPipeError:
            pass  # the encoder died: its stderr says why
        finally:
            if proc.poll() is None and (proc.stdin is None or not proc.stdin.closed):
                proc.kill()
            code = proc.wait()
        if code != 0:
            err.seek(0)
            tail = " | ".join(err.read().decode(errors="replace").strip().splitlines()[-5:])
            raise CodecError(f"{' '.join(cmd)} failed with code {code} after {count} frames: {tail}")
    return count
