"""VVC (H.266) intra coding of 10-bit 4:2:0 frames through FFmpeg (libvvenc + native vvc decoder).

``VvcCodec`` codes one picture per call. It takes and returns planar YUV 4:2:0 10-bit frames as
numpy uint16 arrays; colour conversion lives in ``vcm_eval.codecs.colour``. The bitstream it
returns is the raw Annex-B VVC stream (parameter sets + one intra slice), byte for byte what the
decoder reads, so its length is the rate.

Backends (``codec.backend``):
  * ``ffmpeg``     - libvvenc / vvc in one FFmpeg binary (default: the one imageio-ffmpeg ships;
                     ``codec.ffmpeg`` overrides it). libvvenc only takes yuv420p10le.
  * ``vvenc_apps`` - Fraunhofer's vvencapp / vvdecapp command-line tools, for users who have them.

Chroma format (``chroma`` of ``encode``/``decode``): ``420`` codes all three planes; ``400`` codes
the luma plane only (a monochrome VVC stream, as the MPEG feature anchors use for feature frames).
Both encoders read 4:2:0 input, so for ``400`` the caller's chroma planes are read and dropped:
VVenC's ``ChromaFormatIDC=400`` makes the bitstream 4:0:0, and the decoder returns the luma
plane with neutral (512) chroma.

Programs run without a shell, in a ``TemporaryDirectory``; a failure raises ``CodecError`` with
the command line, the return code and the end of stderr. Sizes must be even (4:2:0); callers pad.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from vcm_eval.errors import CodecError, ConfigError

PRESETS = ("faster", "fast", "medium", "slow", "slower")
CHROMA_FORMATS = ("420", "400")
QP_RANGE = (0, 63)


@dataclass(frozen=True)
class Yuv420:
    """A 10-bit 4:2:0 picture: Y [H, W], U and V [H/2, W/2], uint16 values 0..1023."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return int(self.y.shape[0]), int(self.y.shape[1])

    def tobytes(self) -> bytes:
        """yuv420p10le raw bytes (little-endian 16-bit samples, planar)."""
        return b"".join(np.ascontiguousarray(p, dtype="<u2").tobytes() for p in (self.y, self.u, self.v))

    @classmethod
    def from_luma(cls, y: np.ndarray) -> Yuv420:
        """Luma [H, W] (H, W even) with neutral chroma 512 (read-only views: no chroma memory)."""
        neutral = np.broadcast_to(np.uint16(512), (y.shape[0] // 2, y.shape[1] // 2))
        return cls(y=y, u=neutral, v=neutral)

    @classmethod
    def frombytes(cls, data: bytes, height: int, width: int) -> Yuv420:
        n_y, n_c = height * width, (height // 2) * (width // 2)
        if len(data) != 2 * (n_y + 2 * n_c):
            raise CodecError(f"decoder returned {len(data)} bytes, expected a {width}x{height} yuv420p10le frame")
        arr = np.frombuffer(data, dtype="<u2")
        return cls(
            y=arr[:n_y].reshape(height, width),
            u=arr[n_y : n_y + n_c].reshape(height // 2, width // 2),
            v=arr[n_y + n_c :].reshape(height // 2, width // 2),
        )


def check_qp(qp: int) -> int:
    if not isinstance(qp, int) or not QP_RANGE[0] <= qp <= QP_RANGE[1]:
        raise ConfigError(f"QP {qp!r} is outside {QP_RANGE[0]}..{QP_RANGE[1]}; pick an integer QP in that range (e.g. 22..47)")
    return qp


def check_chroma(chroma: str) -> str:
    if chroma not in CHROMA_FORMATS:
        raise ConfigError(f"chroma format {chroma!r} is unknown; use one of {CHROMA_FORMATS}")
    return chroma


def ffmpeg_binary(path: str) -> str:
    """The FFmpeg to use: ``path`` if given, else imageio-ffmpeg's bundled binary."""
    if path:
        found = shutil.which(path) or (path if Path(path).is_file() else None)
        if not found:
            raise CodecError(f"ffmpeg binary {path!r} not found; set codec.ffmpeg to an FFmpeg with libvvenc, or leave it empty")
        return found
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as exc:
        raise CodecError(f"no FFmpeg found ({exc}); `pip install imageio-ffmpeg>=0.6` or set codec.ffmpeg") from exc


@functools.lru_cache(maxsize=8)
def ffmpeg_capabilities(exe: str) -> tuple[str, bool, bool]:
    """(version line, has libvvenc encoder, has vvc decoder) of an FFmpeg binary."""
    try:
        version = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, check=True).stdout
        encoders = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True).stdout
        decoders = subprocess.run([exe, "-hide_banner", "-decoders"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise CodecError(f"cannot run ffmpeg {exe!r} ({exc}); set codec.ffmpeg to a working FFmpeg with libvvenc") from exc
    has_dec = any(line.split()[1:2] == ["vvc"] for line in decoders.splitlines() if len(line.split()) > 1)
    return version.splitlines()[0] if version else "ffmpeg (unknown version)", " libvvenc " in encoders, has_dec


def _run(cmd: list[str], *, stdin: bytes | None = None) -> bytes:
    """Run an external program (no shell); CodecError with command, code and stderr tail."""
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    except OSError as exc:
        raise CodecError(f"cannot start {cmd[0]!r} ({exc}); install it or fix its path in codec.*") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise CodecError(f"{' '.join(cmd)} failed with code {proc.returncode}: {' | '.join(tail)}")
    return proc.stdout


class VvcCodec:
    """One-picture VVC intra encoder/decoder for 10-bit frames.

    Args:
        backend: ``ffmpeg`` or ``vvenc_apps``.
        ffmpeg: FFmpeg binary ("" = imageio-ffmpeg's).
        vvencapp, vvdecapp: the Fraunhofer tools (``vvenc_apps`` backend).
        preset: VVenC preset, one of ``PRESETS``.
        threads: encoder threads.
        qpa: VVenC perceptual QP adaptation (off for machine vision).
        extra_params: extra ``key=value:key=value`` VVenC parameters.
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
    ) -> None:
        if backend not in ("ffmpeg", "vvenc_apps"):
            raise ConfigError(f"codec.backend={backend!r} is unknown; use 'ffmpeg' or 'vvenc_apps'")
        if preset not in PRESETS:
            raise ConfigError(f"codec.preset={preset!r} is unknown; use one of {PRESETS}")
        if threads < 1:
            raise ConfigError(f"codec.threads={threads} must be >= 1")
        self.backend, self.preset, self.threads, self.qpa, self.extra_params = backend, preset, threads, qpa, extra_params
        self.ffmpeg = ffmpeg_binary(ffmpeg)
        self.vvencapp, self.vvdecapp = vvencapp, vvdecapp
        if backend == "ffmpeg":
            _, has_enc, has_dec = ffmpeg_capabilities(self.ffmpeg)
            if not (has_enc and has_dec):
                raise CodecError(
                    f"ffmpeg {self.ffmpeg} lacks {'the libvvenc encoder' if not has_enc else 'the vvc decoder'}; "
                    "use imageio-ffmpeg>=0.6 (leave codec.ffmpeg empty) or codec.backend=vvenc_apps"
                )

    def version(self) -> str:
        """What made the bitstreams (recorded with every run)."""
        if self.backend == "ffmpeg":
            return ffmpeg_capabilities(self.ffmpeg)[0] + " / libvvenc"
        out = _run([self.vvencapp, "--version"]).decode(errors="replace").strip().splitlines()
        return out[0] if out else "vvencapp"

    def encode(self, frame: Yuv420, qp: int, *, chroma: str = "420") -> bytes:
        """One intra picture at ``qp`` -> raw VVC bitstream bytes (``chroma="400"``: luma only)."""
        check_qp(qp)
        check_chroma(chroma)
        vvenc_params = ":".join(p for p in (self.extra_params, "ChromaFormatIDC=400" if chroma == "400" else "") if p)
        height, width = frame.size
        if height % 2 or width % 2:
            raise CodecError(f"4:2:0 frames need even sizes, got {width}x{height}; pad the frame first")
        with tempfile.TemporaryDirectory(prefix="vcm_vvc_") as tmp:
            out = Path(tmp) / "out.266"
            if self.backend == "ffmpeg":
                params = {"vvenc-params": vvenc_params} if vvenc_params else {}
                cmd = (
                    ffmpeg.input("pipe:", format="rawvideo", pix_fmt="yuv420p10le", s=f"{width}x{height}")
                    .output(str(out), vcodec="libvvenc", qp=qp, preset=self.preset, qpa=int(self.qpa), threads=self.threads,
                            frames=1, format="vvc", **params)
                    .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
                    .overwrite_output()
                    .compile(cmd=self.ffmpeg)
                )
                _run(cmd, stdin=frame.tobytes())
            else:
                raw = Path(tmp) / "in.yuv"
                raw.write_bytes(frame.tobytes())
                cmd = [self.vvencapp, "-i", str(raw), "-s", f"{width}x{height}", "-c", "yuv420_10", "--qp", str(qp),
                       "--preset", self.preset, "-t", str(self.threads), "--qpa", str(int(self.qpa)), "-f", "1",
                       "-o", str(out)] + (["--additional", vvenc_params] if vvenc_params else [])
                _run(cmd)
            data = out.read_bytes()
        if not data:
            raise CodecError(f"the VVC encoder wrote an empty bitstream for a {width}x{height} frame at QP {qp}")
        return data

    def decode(self, bitstream: bytes, height: int, width: int, *, chroma: str = "420") -> Yuv420:
        """Raw VVC bitstream -> the decoded 10-bit picture of size (height, width).

        ``chroma`` is the format the stream was encoded with; for ``400`` the result is the decoded
        luma with neutral chroma (``Yuv420.from_luma``).
        """
        check_chroma(chroma)
        with tempfile.TemporaryDirectory(prefix="vcm_vvc_") as tmp:
            src = Path(tmp) / "in.266"
            src.write_bytes(bitstream)
            if self.backend == "ffmpeg":
                cmd = (
                    ffmpeg.input(str(src), format="vvc", err_detect="explode")
                    .output("pipe:", format="rawvideo", pix_fmt="gray10le" if chroma == "400" else "yuv420p10le", frames=1)
                    .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
                    .compile(cmd=self.ffmpeg)
                )
                data = _run(cmd)
            else:
                out = Path(tmp) / "out.yuv"
                _run([self.vvdecapp, "-b", str(src), "-o", str(out), "-d", "10"])
                data = out.read_bytes()
        if chroma == "400":  # FFmpeg writes luma only; vvdecapp may add neutral chroma planes
            n_y = height * width
            if len(data) not in (2 * n_y, 2 * (n_y + 2 * (height // 2) * (width // 2))):
                raise CodecError(f"decoder returned {len(data)} bytes, expected a {width}x{height} 10-bit 4:0:0 frame")
            return Yuv420.from_luma(np.frombuffer(data, dtype="<u2", count=n_y).reshape(height, width))
        return Yuv420.frombytes(data, height, width)
