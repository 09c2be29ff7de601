"""Atomic file writes: a reader never sees half a file and a crash never destroys the old one.

Every whole file the framework writes (configs, metrics, tables, figures, cached features,
kept bitstreams) goes through ``write_atomic``: written to a temp file beside the target,
fsynced, then renamed over it. A writer killed half way leaves only a ``.<name>.*.tmp`` file,
which ``remove_stale_temps`` deletes when the folder's owner next holds it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from vcm_eval.errors import VcmEvalError


def _umask_mode() -> int:
    """The mode ``open()`` gives a new file under the process umask (0644 under umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """``write(file)`` into a temp file beside ``path``, fsync, rename over ``path``.

    Raises:
        VcmEvalError: the folder is not writable or the disk is full (names the folder and the fix).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise VcmEvalError(
            f"cannot write to {path.parent} ({exc.strerror}); "
            "make it writable or choose another folder (paths.results, paths.cache)"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())  # mkstemp makes 0600; a shared results folder needs the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise VcmEvalError(
            f"cannot write {path} ({exc.strerror}); "
            "free disk space or choose another folder (paths.results, paths.cache)"
        ) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; see ``write_atomic``."""
    write_atomic(path, lambda f: f.write(data.encode() if isinstance(data, str) else data))


def remove_stale_temps(folder: Path, pattern: str = ".*.tmp") -> int:
    """Delete temp files a killed writer left in ``folder`` (call only while no one writes there)."""
    n = 0
    for tmp in folder.glob(pattern) if folder.is_dir() else ():
        tmp.unlink(missing_ok=True)
        n += 1
    return n
