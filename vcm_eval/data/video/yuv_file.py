"""Raw 8-bit 4:2:0 video files (``yuv420p``), read one frame at a time.

``planes`` reads a frame's Y, U, V samples straight from the file (a seek and a read: the codec
codes these). ``rgb_frames`` converts them as MPEG's SFU preparation does,
``ffmpeg -f rawvideo -pix_fmt yuv420p -s WxH -i seq.yuv ... -pix_fmt rgb24`` (FFmpeg's default
matrix and range), streamed through one FFmpeg process whose output is read frame by frame, so
memory holds one frame, never the sequence. The data layer finds FFmpeg itself (imageio-ffmpeg's
binary), as it sits below the codecs.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vcm_eval.errors import DataError, VcmEvalError

QUIET = ["-hide_banner", "-nostdin", "-loglevel", "error"]


def ffmpeg_exe() -> str:
    """imageio-ffmpeg's FFmpeg (a dependency of vcm_eval)."""
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as exc:
        raise DataError(f"no FFmpeg to read video with ({exc}); `pip install imageio-ffmpeg>=0.6`") from exc


def frame_bytes(width: int, height: int) -> int:
    """Bytes of one ``yuv420p`` frame."""
    return width * height + 2 * (width // 2) * (height // 2)


class Yuv420File:
    """A raw ``yuv420p`` file holding at least ``first + count`` frames of ``width`` x ``height``.

    Args:
        path: the file.
        width, height: frame size (even).
        first: index of the first frame used (MPEG's SFU clips start inside the JCT-VC sequence).
        count: frames used from ``first`` on.

    Raises:
        DataError: the file is missing, or its size is not a whole number of frames or holds too few.
    """

    def __init__(self, path: Path, *, width: int, height: int, first: int, count: int) -> None:
        if width % 2 or height % 2:
            raise DataError(f"{path}: 4:2:0 frames need an even size, got {width}x{height}")
        if not path.is_file():
            raise DataError(f"video file {path} does not exist; put the raw yuv420p sequence there")
        size, per = path.stat().st_size, frame_bytes(width, height)
        if size % per:
            raise DataError(
                f"{path} ({size} bytes) is not a whole number of {width}x{height} yuv420p frames ({per} bytes each); "
                "check the size in its name"
            )
        if size // per < first + count:
            raise DataError(
                f"{path} holds {size // per} frames, fewer than the {first} + {count} needed; use the complete sequence"
            )
        self.path, self.width, self.height, self.first, self.count = path, width, height, first, count

    @staticmethod
    def frames_in(path: Path, width: int, height: int) -> int:
        """Whole frames a file holds (0 for a missing file)."""
        return path.stat().st_size // frame_bytes(width, height) if path.is_file() else 0

    def planes(self, limit: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(Y [H, W], U, V [H/2, W/2]) uint8 of each frame used, read one at a time (``limit`` > 0: the first
        ``limit``)."""
        w, h, per = self.width, self.height, frame_bytes(self.width, self.height)
        n_y, n_c = w * h, (w // 2) * (h // 2)
        with open(self.path, "rb") as f:
            f.seek(self.first * per)
            for _ in range(min(self.count, limit) if limit > 0 else self.count):
                data = np.frombuffer(f.read(per), dtype=np.uint8)
                if data.size != per:
                    raise DataError(f"{self.path} ended early; the file was truncated while being read")
                yield (
                    data[:n_y].reshape(h, w),
                    data[n_y : n_y + n_c].reshape(h // 2, w // 2),
                    data[n_y + n_c :].reshape(h // 2, w // 2),
                )

    def rgb_frames(self, limit: int = 0) -> Iterator[np.ndarray]:
        """uint8 [H, W, 3] RGB of each frame used, converted by FFmpeg as MPEG's SFU preparation does."""
        count = min(self.count, limit) if limit > 0 else self.count
        per = self.width * self.height * 3
        cmd = [
            ffmpeg_exe(),
            *QUIET,
            "-skip_initial_bytes",
            str(self.first * frame_bytes(self.width, self.height)),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-s",
            f"{self.width}x{self.height}",
            "-i",
            str(self.path),
            "-frames:v",
            str(count),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:",
        ]
        yield from stream_frames(cmd, per, count, (self.height, self.width, 3), np.dtype(np.uint8), what=str(self.path))


def stream_frames(
    cmd: list[str],
    frame_size: int,
    count: int,
    shape: tuple[int, ...],
    dtype: np.dtype,
    *,
    what: str,
    error: type[VcmEvalError] = DataError,
) -> Iterator[np.ndarray]:
    """Run ``cmd`` (which writes raw frames to stdout) and yield its ``count`` frames one at a time.

    stderr goes to a temporary file (no pipe to fill up); closing the generator early stops the process.
    ``count`` < 0: every frame the process writes (it must end on a frame boundary).

    Raises:
        error (DataError unless given): the process cannot start, fails, or writes fewer frames than ``count``.
    """
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        except OSError as exc:
            raise error(f"cannot start {cmd[0]!r} to read {what} ({exc}); install it or fix its path") from exc
        out = proc.stdout
        try:
            k = 0
            while count < 0 or k < count:
                data = out.read(frame_size) if out is not None else b""
                if count < 0 and not data and proc.wait() == 0:
                    return
                if len(data) != frame_size:
                    proc.wait()
                    err.seek(0)
                    tail = " | ".join(err.read().decode(errors="replace").strip().splitlines()[-3:])
                    raise error(
                        f"{Path(cmd[0]).name} gave {k} of {count if count >= 0 else 'all'} frames of {what} "
                        f"(exit code {proc.returncode}): {tail or 'no error message'}"
                    )
                yield np.frombuffer(data, dtype=dtype).reshape(shape)
                k += 1
        finally:
            if out is not None:
                out.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
