"""What made a result: git commit, package versions, platform (recorded with every run)."""

from __future__ import annotations

import functools
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "vcm_eval", "torch", "torchvision", "numpy", "scipy", "pillow", "pycocotools", "cityscapesscripts", "compressai",
    "hydra-core", "omegaconf", "imageio-ffmpeg", "pandas", "bjontegaard", "matplotlib",
)  # fmt: skip


def git_commit() -> str:
    """HEAD of the checkout vcm_eval runs from, with ``-dirty`` if it has uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        **(extra or {}),
    }


@functools.lru_cache(maxsize=8)
def libvvenc_version(ffmpeg: str) -> str:
    """The libvvenc an FFmpeg binary links (``1.15.0``), read from its log of a 64x64 encode.

    FFmpeg's ``-version`` names only itself; the encoder library that made the bitstreams is
    recorded too. Returns ``"unknown"`` when the binary does not report it.
    """
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "verbose", "-f", "lavfi", "-i", "color=size=64x64", "-frames:v", "1",
           "-c:v", "libvvenc", "-pix_fmt", "yuv420p10le", "-f", "null", "-"]  # fmt: skip
    try:
        log = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stderr
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = re.search(r"libvvenc version:\s*(\S+)", log)
    return found.group(1) if found else "unknown"


def resumed_history(previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Earlier sessions of a run folder, oldest first (each an earlier ``provenance.json``).

    A resumed run holds records made by every session; keeping each session's commit, packages
    and tools shows whether they were all made by the same code.
    """
    if not previous:
        return []
    earlier = [dict(h) for h in previous.get("history", [])]
    return [*earlier, {k: v for k, v in previous.items() if k != "history"}]

