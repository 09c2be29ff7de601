"""Results store: one JSON line per (image, configuration), appended durably; atomic file writes.

A run folder holds ``records.jsonl``: each line is one image's record (rate, times, detections),
written with flush + fsync, so a run killed at any point loses at most the line being written.
On reopening, a torn last line is cut off and the images already recorded are skipped: an
interrupted sweep resumes where it stopped and ends with the same table as an uninterrupted one.
Whole files (config, metrics, tables) go through ``vcm_eval.utils.atomic.atomic_write``: written beside the target and
renamed over it, so a reader never sees half a file and a crash never destroys the old one.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from vcm_eval.errors import VcmEvalError


def recorded_ids(path: Path) -> set[int]:
    """Image ids with a complete line in a ``records.jsonl`` (read only: a torn tail is skipped)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise VcmEvalError(f"cannot read {path} ({exc.strerror}); check the results folder's permissions") from exc
    ids = set()
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        if line.strip():
            ids.add(int(json.loads(line)["image_id"]))
    return ids


@contextmanager
def run_lock(run_dir: Path, *, wait: float = 0.0) -> Iterator[None]:
    """Hold ``run_dir/.lock`` while a run writes there, so two processes (a requeued cluster job,
    a repeated command) never append to one ``records.jsonl`` at once. The OS releases the lock
    when its process dies, so a killed run never blocks its resumption.

    Args:
        run_dir: the folder (created if missing).
        wait: seconds to wait for another process's lock (0: fail at once); for the short writes that
            the jobs sharing one video run take turns at.

    Raises:
        VcmEvalError: another live process holds the lock (after ``wait``).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / ".lock"), timeout=wait)
    try:
        lock.acquire()
    except Timeout as exc:
        raise VcmEvalError(
            f"{run_dir} is being written by another process; wait for it to finish, then rerun to reuse its records"
        ) from exc
    try:
        yield
    finally:
        lock.release()


class RecordStore:
    """Append-only per-image records of one run configuration.

    Args:
        path: the ``records.jsonl`` file (created if absent).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.records: dict[int, dict[str, Any]] = {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                self._load()
            self._file = open(path, "ab")  # noqa: SIM115 - held open for appends, closed by close()
        except OSError as exc:
            raise VcmEvalError(f"cannot open {path} ({exc.strerror}); choose a writable paths.results") from exc

    def _load(self) -> None:
        data = self.path.read_bytes()
        good_end = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
        for line in data[:good_end].splitlines():
            if line.strip():
                rec = json.loads(line)
                self.records[int(rec["image_id"])] = rec
        if good_end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def __contains__(self, image_id: int) -> bool:
        return image_id in self.records

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                self._file.write(line)
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                raise VcmEvalError(
                    f"cannot append to {self.path} ({exc.strerror}); free disk space and rerun to resume"
                ) from exc
            self.records[int(record["image_id"])] = record

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordStore:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A run folder's JSON file (metrics, provenance, a sequence's result) as a dict; None when absent or unreadable.

    A half-written or damaged file reads as absent, so the run it belongs to is redone, never trusted.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
