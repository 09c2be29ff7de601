"""What both training commands share: resumable state files and a CSV loss log."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch


def save_state(path: Path, **state: Any) -> None:
    """Write a training state atomically (a kill mid-write leaves the previous state intact)."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_state(path: Path) -> dict[str, Any] | None:
    """The saved state (weights-only unpickling), or None when there is none yet."""
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def append_log_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row to a CSV log; the header is written with the first row."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(list(row))
        writer.writerow([float(v) if isinstance(v, torch.Tensor) else v for v in row.values()])
