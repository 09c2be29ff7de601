"""What made a result: git commit, package versions, platform (recorded with every run)."""

from __future__ import annotations

import platform
import subprocess
import sys
from collections.abc import Sequence
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
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` ("not installed" for those absent)."""
    out = {}
    for name in names:
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


def resumed_history(previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Earlier sessions of a run folder, oldest first (each an earlier ``provenance.json``).

    A resumed run holds records made by every session; keeping each session's commit, packages
    and tools shows whether they were all made by the same code.
    """
    if not previous:
        return []
    earlier = [dict(h) for h in previous.get("history", [])]
    return [*earlier, {k: v for k, v in previous.items() if k != "history"}]
