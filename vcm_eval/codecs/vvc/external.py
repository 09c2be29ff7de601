"""External programs the VVC codecs run: FFmpeg (located and probed) and a no-shell runner.

Every program runs without a shell; a failure raises ``CodecError`` with the command line, the
return code and the end of stderr, so a user sees which tool failed and why.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

from vcm_eval.errors import CodecError


def run_tool(cmd: list[str], *, stdin: bytes | None = None, setting: str = "codec.*") -> bytes:
    """Run ``cmd`` (no shell) and return its stdout; ``setting`` names the config key that points at it."""
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    except OSError as exc:
        raise CodecError(f"cannot start {cmd[0]!r} ({exc}); install it or fix its path in {setting}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()[-5:]
        raise CodecError(f"{' '.join(cmd)} failed with code {proc.returncode}: {' | '.join(tail)}")
    return proc.stdout


def ffmpeg_binary(path: str) -> str:
    """The FFmpeg to use: ``path`` if given, else imageio-ffmpeg's bundled binary."""
    if path:
        found = shutil.which(path) or (path if Path(path).is_file() else None)
        if not found:
            raise CodecError(
                f"ffmpeg binary {path!r} not found; set vvc.ffmpeg to an FFmpeg with libvvenc, or leave it empty"
            )
        return found
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as exc:
        raise CodecError(f"no FFmpeg found ({exc}); `pip install imageio-ffmpeg>=0.6` or set vvc.ffmpeg") from exc


@functools.lru_cache(maxsize=8)
def ffmpeg_capabilities(exe: str) -> tuple[str, bool, bool]:
    """(version line, has libvvenc encoder, has vvc decoder) of an FFmpeg binary."""
    try:
        version = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, check=True).stdout
        encoders = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True).stdout
        decoders = subprocess.run([exe, "-hide_banner", "-decoders"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise CodecError(
            f"cannot run ffmpeg {exe!r} ({exc}); set vvc.ffmpeg to a working FFmpeg with libvvenc"
        ) from exc
    has_dec = any(line.split()[1:2] == ["vvc"] for line in decoders.splitlines() if len(line.split()) > 1)
    return version.splitlines()[0] if version else "ffmpeg (unknown version)", " libvvenc " in encoders, has_dec


QUIET = ["-hide_banner", "-nostdin", "-loglevel", "error"]
