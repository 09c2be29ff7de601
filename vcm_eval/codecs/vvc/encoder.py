"""VVC (H.266) intra coding of one picture: VVenC through FFmpeg, Fraunhofer's apps, or VTM.

``VvcEncoder`` codes one picture per call. It takes planar 4:2:0 frames (``Yuv420``: 8-bit
samples from the MPEG colour path, or 10-bit feature frames) and returns the raw Annex-B VVC
stream (parameter sets + one intra slice), byte for byte what the decoder reads, so its length is
the rate. Decoding returns the 10-bit picture.

**The QP is the coded QP.** VVenC's presets lower the QP of intra slices by ``IntraQPOffset=-3``;
a single picture is an intra slice, so every VVenC call sets ``IntraQPOffset=0`` and a picture
coded at ``qp`` carries slice QP ``qp`` (``vcm_eval.codecs.vvc.headers`` reads it back; tested).
VTM's ``-q`` is the slice QP of an all-intra picture already.

Backends (``vvc.backend``):
  * ``ffmpeg``     - libvvenc + FFmpeg's native vvc decoder in one FFmpeg binary (default: the one
                     imageio-ffmpeg ships; ``vvc.ffmpeg`` overrides it). libvvenc takes 10-bit
                     input only, so 8-bit samples are scaled by 4 first, exactly as VTM does
                     internally with ``InputBitDepth=8`` and ``InternalBitDepth=10``.
  * ``vvenc_apps`` - Fraunhofer's vvencapp / vvdecapp command-line tools.
  * ``vtm``        - the JVET reference software, as MPEG's anchor scripts run it (``vcm_eval.codecs.vvc.vtm``).

Chroma format (``chroma`` of ``encode``/``decode``): ``420`` codes all three planes; ``400`` codes
the luma plane only (a monochrome VVC stream, as the MPEG feature anchors use for feature frames),
and the decoder returns the luma plane with neutral (512) chroma. Sizes must be even (4:2:0);
callers pad.
"""

from __future__ import annotations

import functools
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vcm_eval.codecs.feature_anchor.config import Chroma
from vcm_eval.codecs.vvc.config import Backend, Preset
from vcm_eval.codecs.vvc.external import QUIET, ffmpeg_binary, ffmpeg_capabilities, run_tool
from vcm_eval.codecs.vvc.vtm import Vtm
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.utils.choices import choice
from vcm_eval.utils.construct import from_config

QP_RANGE = (0, 63)
CODED_QP_PARAMS = "IntraQPOffset=0"  # VVenC presets carry IntraQPOffset=-3: the coded QP would be qp-3


def check_qp(qp: int) -> int:
    if not isinstance(qp, int) or not QP_RANGE[0] <= qp <= QP_RANGE[1]:
        raise ConfigError(
            f"QP {qp!r} is outside {QP_RANGE[0]}..{QP_RANGE[1]}; pick an integer QP in that range (e.g. 22..47)"
        )
    return qp


def check_chroma(chroma: str) -> str:
    """``420`` or ``400`` (a ``Chroma`` choice), else ``ConfigError`` naming the valid formats."""
    return str(choice(Chroma, chroma, "chroma"))


@functools.lru_cache(maxsize=8)
def libvvenc_version(ffmpeg: str) -> str:
    """The libvvenc an FFmpeg binary links (``1.15.0``), read from its log of a 64x64 encode.

    FFmpeg's ``-version`` names only itself; the encoder library that made the bitstreams is
    recorded too. Returns ``"unknown"`` when the binary does not report it.
    """
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "verbose", "-f", "lavfi", "-i", "color=size=64x64",
           "-frames:v", "1", "-c:v", "libvvenc", "-pix_fmt", "yuv420p10le", "-f", "null", "-"]  # fmt: skip
    try:
        log = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stderr
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = re.search(r"libvvenc version:\s*(\S+)", log)
    return found.group(1) if found else "unknown"


class VvcEncoder:
    """One-picture VVC intra encoder/decoder.

    Args:
        backend: a ``Backend`` (``ffmpeg``, ``vvenc_apps``, ``vtm``).
        ffmpeg: FFmpeg binary ("" = imageio-ffmpeg's); also decodes VTM streams unless
            ``vtm_decoder`` is set, and converts colours.
        vvencapp, vvdecapp: the Fraunhofer tools (``vvenc_apps`` backend).
        preset: VVenC preset, a ``Preset`` (VVenC backends).
        threads: encoder threads (VVenC backends).
        qpa: VVenC perceptual QP adaptation (off for machine vision).
        extra_params: extra ``key=value:key=value`` VVenC parameters.
        vtm_encoder, vtm_decoder, vtm_cfg: VTM's EncoderApp, DecoderApp ("" = FFmpeg's vvc
            decoder, bit-exact) and encoder configuration file (``vtm`` backend).
    """

    def __init__(
        self,
        *,
        backend: str = "ffmpeg",
        ffmpeg: str = "",
        vvencapp: str = "vvencapp",
        vvdecapp: str = "vvdecapp",
        preset: str = "faster",
        threads: int = 1,
        qpa: bool = False,
        extra_params: str = "",
        vtm_encoder: str = "",
        vtm_decoder: str = "",
        vtm_cfg: str = "",
    ) -> None:
        backend, preset = choice(Backend, backend, "vvc.backend"), choice(Preset, preset, "vvc.preset")
        if threads < 1:
            raise ConfigError(f"vvc.threads={threads} must be >= 1")
        self.backend, self.preset, self.threads, self.qpa, self.extra_params = (
            backend,
            preset,
            threads,
            qpa,
            extra_params,
        )
        self.ffmpeg = ffmpeg_binary(ffmpeg)
        self.vvencapp, self.vvdecapp = vvencapp, vvdecapp
        self.vtm = Vtm(encoder=vtm_encoder, decoder=vtm_decoder, cfg=vtm_cfg) if backend == "vtm" else None
        needs_enc = backend == "ffmpeg"
        needs_dec = backend == "ffmpeg" or (backend == "vtm" and not vtm_decoder)
        _, has_enc, has_dec = ffmpeg_capabilities(self.ffmpeg) if needs_enc or needs_dec else ("", True, True)
        if (needs_enc and not has_enc) or (needs_dec and not has_dec):
            raise CodecError(
                f"ffmpeg {self.ffmpeg} lacks "
                f"{'the libvvenc encoder' if needs_enc and not has_enc else 'the vvc decoder'}; "
                "use imageio-ffmpeg>=0.6 (leave vvc.ffmpeg empty) or another vvc.backend"
            )

    @classmethod
    def from_settings(cls, vvc: Any) -> VvcEncoder:
        """The encoder the ``vvc`` config group describes (its fields are this constructor's parameters)."""
        return from_config(cls, vvc, optional=("preset",))

    @property
    def can_encode(self) -> bool:
        """False for a VTM backend without ``vvc.vtm_encoder`` (it can only decode shipped streams)."""
        return self.vtm is None or self.vtm.can_encode

    def version(self) -> str:
        """What makes the bitstreams (recorded with every run, part of the run key)."""
        if self.vtm is not None:
            return self.vtm.version()
        if self.backend == "ffmpeg":
            return ffmpeg_capabilities(self.ffmpeg)[0] + " / libvvenc"
        out = (
            run_tool([self.vvencapp, "--version"], setting="vvc.vvencapp").decode(errors="replace").strip().splitlines()
        )
        return out[0] if out else "vvencapp"

    def tool_versions(self) -> dict[str, str]:
        """Versions of the libraries behind ``version()`` for provenance.json (not the run key): FFmpeg's libvvenc."""
        return {"libvvenc": libvvenc_version(self.ffmpeg)} if self.backend == "ffmpeg" else {}

    def _vvenc_params(self, chroma: str) -> str:
        return ":".join(
            p for p in (CODED_QP_PARAMS, self.extra_params, "ChromaFormatIDC=400" if chroma == "400" else "") if p
        )

    def encode(self, frame: Yuv420, qp: int, *, chroma: str = "420") -> bytes:
        """One intra picture at slice QP ``qp`` -> raw VVC bitstream bytes (``chroma="400"``: luma only)."""
        check_qp(qp)
        check_chroma(chroma)
        height, width = frame.size
        if height % 2 or width % 2:
            raise CodecError(f"4:2:0 frames need even sizes, got {width}x{height}; pad the frame first")
        if self.vtm is not None:
            data = self.vtm.encode(frame, qp, chroma=chroma)
        else:
            data = self._vvenc_encode(frame.to_10bit(), qp, chroma)
        if not data:
            raise CodecError(f"the VVC encoder wrote an empty bitstream for a {width}x{height} frame at QP {qp}")
        return data

    def _vvenc_encode(self, frame: Yuv420, qp: int, chroma: str) -> bytes:
        height, width = frame.size
        with tempfile.TemporaryDirectory(prefix="vcm_vvc_") as tmp:
            out = Path(tmp) / "out.266"
            if self.backend == "ffmpeg":
                cmd = [self.ffmpeg, *QUIET, "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s", f"{width}x{height}",
                       "-i", "pipe:",
                       "-c:v", "libvvenc", "-qp", str(qp), "-preset", self.preset, "-qpa", str(int(self.qpa)),
                       "-threads", str(self.threads), "-vvenc-params", self._vvenc_params(chroma),
                       "-frames:v", "1", "-f", "vvc", "-y", str(out)]  # fmt: skip
                run_tool(cmd, stdin=frame.tobytes(), setting="vvc.ffmpeg")
            else:
                raw = Path(tmp) / "in.yuv"
                raw.write_bytes(frame.tobytes())
                cmd = [self.vvencapp, "-i", str(raw), "-s", f"{width}x{height}", "-c", "yuv420_10", "--qp", str(qp),
                       "--preset", self.preset, "-t", str(self.threads), "--qpa", str(int(self.qpa)), "-f", "1",
                       "-o", str(out), "--additional", self._vvenc_params(chroma)]  # fmt: skip
                run_tool(cmd, setting="vvc.vvencapp")
            return out.read_bytes()

    def decode(self, bitstream: bytes, height: int, width: int, *, chroma: str = "420") -> Yuv420:
        """Raw VVC bitstream -> the decoded 10-bit picture of size (height, width).

        ``chroma`` is the format the stream was encoded with; for ``400`` the result is the decoded
        luma with neutral chroma (``Yuv420.from_luma``).
        """
        check_chroma(chroma)
        if self.vtm is not None and self.vtm.decoder:
            data = self.vtm.decode(bitstream)
        elif self.backend == "vvenc_apps":
            with tempfile.TemporaryDirectory(prefix="vcm_vvc_") as tmp:
                src, out = Path(tmp) / "in.266", Path(tmp) / "out.yuv"
                src.write_bytes(bitstream)
                run_tool([self.vvdecapp, "-b", str(src), "-o", str(out), "-d", "10"], setting="vvc.vvdecapp")
                data = out.read_bytes()
        else:
            data = ffmpeg_decode(self.ffmpeg, bitstream, chroma)
        if chroma == "400":  # FFmpeg writes luma only; the apps may add neutral chroma planes
            n_y = height * width
            if len(data) not in (2 * n_y, 2 * (n_y + 2 * (height // 2) * (width // 2))):
                raise CodecError(f"decoder returned {len(data)} bytes, expected a {width}x{height} 10-bit 4:0:0 frame")
            return Yuv420.from_luma(np.frombuffer(data, dtype="<u2", count=n_y).reshape(height, width))
        return Yuv420.frombytes(data, height, width)


def ffmpeg_decode(ffmpeg: str, bitstream: bytes, chroma: str = "420") -> bytes:
    """FFmpeg's native vvc decoder: raw stream -> raw 10-bit planes (``gray10le`` for 4:0:0)."""
    with tempfile.TemporaryDirectory(prefix="vcm_vvc_") as tmp:
        src = Path(tmp) / "in.266"
        src.write_bytes(bitstream)
        cmd = [ffmpeg, *QUIET, "-err_detect", "explode", "-f", "vvc", "-i", str(src),
               "-f", "rawvideo", "-pix_fmt", "gray10le" if chroma == "400" else "yuv420p10le",
               "-frames:v", "1", "pipe:"]  # fmt: skip
        return run_tool(cmd, setting="vvc.ffmpeg")
