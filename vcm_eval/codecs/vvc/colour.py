"""RGB <-> YUV 4:2:0 for the image anchor: MPEG's colour and padding path, or BT.709 limited range.

``mpeg`` (default; ``vvc.colour=mpeg``) is what MPEG's VCM reference-software anchor scripts do,
with the same FFmpeg arguments (only the PNG files are replaced by pipes of the same pixels):

1. pad to even width and height with black on the right/bottom (``-vf pad=ceil(iw/2)*2:ceil(ih/2)*2``);
2. ``ffmpeg -i in.png -f rawvideo -pix_fmt yuv420p -dst_range 1 out.yuv``: 8-bit 4:2:0, full
   range, FFmpeg's default matrix (the encoder reads these samples; at ``InternalBitDepth=10``
   they are scaled by 4);
3. back: ``ffmpeg -f rawvideo -pix_fmt yuv420p10le -s WxH -src_range 1 -i rec.yuv -frames 1
   -pix_fmt rgb24 out.png`` on the 10-bit reconstruction, then crop to the original size.

MPEG's scripts were written for the FFmpeg of their day: FFmpeg 4.2.2 (imageio-ffmpeg 0.4.9's
binary) honours ``-dst_range 1`` and writes full-range samples, while FFmpeg 9 ignores it and writes
limited range (white RGB -> Y 235; measured, tests/test_anchors.py). Both read the reconstruction
as limited range, since ``-src_range 1`` before ``-i`` is not applied to the input (black Y=64 at
10 bit -> RGB 0): MPEG's anchors carry that contrast stretch, and so does this path. To be
sample-exact with MPEG's anchors, the ``mpeg`` path runs both steps with FFmpeg 4.2.2
(``vvc.colour_ffmpeg``; ``make`` installs it into the virtual environment from PyPI's
imageio-ffmpeg 0.4.9 wheel).

``bt709_limited`` is vcm_eval's earlier path: edge-repeat padding, BT.709 limited range straight to
10 bit with accurate rounding, and the same matrix and range back.

Tests check that step 2 is byte-identical to the FFmpeg command line run on a PNG (odd sizes too)
and step 3 to the command line run on the same reconstruction.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from vcm_eval.codecs.vvc.external import QUIET, run_tool
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.errors import ConfigError

MPEG_FFMPEG = Path(sys.prefix) / "mpeg-ffmpeg" / "ffmpeg-4.2.2"  # where `make` installs it

COLOUR_PATHS = ("mpeg", "bt709_limited")
_BT709_SCALE = "accurate_rnd+full_chroma_int+full_chroma_inp+bicubic"


def check_colour(colour: str) -> str:
    if colour not in COLOUR_PATHS:
        raise ConfigError(f"vvc.colour={colour!r} is unknown; use one of {COLOUR_PATHS}")
    return colour


def colour_ffmpeg(path: str, colour: str, default: str) -> str:
    """The FFmpeg that converts colours: ``path`` if set, FFmpeg 4.2.2 for ``mpeg``, else ``default``."""
    if path:
        if not Path(path).is_file():
            raise ConfigError(
                f"vvc.colour_ffmpeg={path!r} does not exist; point it at an FFmpeg binary or leave it empty"
            )
        return path
    if check_colour(colour) != "mpeg":
        return default
    if not MPEG_FFMPEG.is_file():
        raise ConfigError(
            f"the mpeg colour path runs FFmpeg 4.2.2 as MPEG's scripts did, and {MPEG_FFMPEG} is missing; "
            "run `make venv` (it installs it), set vvc.colour_ffmpeg, or use vvc.colour=bt709_limited"
        )
    return str(MPEG_FFMPEG)


def pad_to_even(image: np.ndarray, colour: str) -> np.ndarray:
    """Pad right/bottom to even sizes: black for ``mpeg`` (as its pad filter), edge repeat for ``bt709_limited``."""
    h, w = image.shape[:2]
    widths = ((0, h % 2), (0, w % 2)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, widths, mode="constant") if colour == "mpeg" else np.pad(image, widths, mode="edge")


def _raw_input(pix_fmt: str, width: int, height: int) -> list[str]:
    return ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{width}x{height}"]


def mpeg_rgb_to_yuv_args() -> list[str]:
    """Output arguments of the MPEG scripts' RGB -> YUV step (8-bit full-range 4:2:0)."""
    return ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-dst_range", "1"]


def mpeg_yuv_to_rgb_args(width: int, height: int) -> tuple[list[str], list[str]]:
    """(input, output) arguments of the MPEG scripts' reconstruction -> RGB step."""
    return [*_raw_input("yuv420p10le", width, height), "-src_range", "1"], ["-frames", "1", "-pix_fmt", "rgb24"]


def _bt709_command(exe: str, source: str, target: str, side: str, width: int, height: int) -> list[str]:
    """One raw picture piped through FFmpeg's BT.709 limited-range conversion (``side``: which end is YUV)."""
    scale = f"scale=flags={_BT709_SCALE}:{side}_color_matrix=bt709:{side}_range=tv"
    return [exe, *QUIET, *_raw_input(source, width, height), "-i", "pipe:", "-vf", scale,
            "-f", "rawvideo", "-pix_fmt", target, "-frames:v", "1", "pipe:"]  # fmt: skip


def rgb_to_yuv420(image: np.ndarray, exe: str, colour: str = "mpeg") -> Yuv420:
    """uint8 RGB [H, W, 3] (H, W even) -> the encoder's 4:2:0 input (8-bit for ``mpeg``, 10-bit otherwise)."""
    height, width = image.shape[:2]
    rgb = np.ascontiguousarray(image, np.uint8).tobytes()
    if check_colour(colour) == "mpeg":
        data = run_tool(
            [exe, *QUIET, *_raw_input("rgb24", width, height), "-i", "pipe:", *mpeg_rgb_to_yuv_args(), "pipe:"],
            stdin=rgb,
        )
        return Yuv420.frombytes(data, height, width, bit_depth=8)
    cmd = _bt709_command(exe, "rgb24", "yuv420p10le", "out", width, height)
    return Yuv420.frombytes(run_tool(cmd, stdin=rgb), height, width)


def yuv420_to_rgb(frame: Yuv420, exe: str, colour: str = "mpeg") -> np.ndarray:
    """A decoded 10-bit 4:2:0 picture -> uint8 RGB [H, W, 3] by the colour path's inverse."""
    height, width = frame.size
    if check_colour(colour) == "mpeg":
        inp, out = mpeg_yuv_to_rgb_args(width, height)
        cmd = [exe, *QUIET, *inp, "-i", "pipe:", *out, "-f", "rawvideo", "pipe:"]
    else:
        cmd = _bt709_command(exe, "yuv420p10le", "rgb24", "in", width, height)
    data = run_tool(cmd, stdin=frame.tobytes())
    return np.frombuffer(data, np.uint8).reshape(height, width, 3).copy()
