"""The manifests of shipped streams (``anchors/*/manifest.csv``): read as written, rewritten in a stable order.

A make-anchors command adds rows as streams finish and rewrites the whole file atomically after each, so a
rerun (or a resumed one) writes the same bytes for the same streams: the rows are sorted by a key the
caller names (QP, then image or sequence).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def read_manifest(path: Path) -> list[dict[str, str]]:
    """The manifest's rows as written (empty when there is none yet)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def manifest_text(
    rows: list[dict[str, Any]], fields: Sequence[str], order: Callable[[dict[str, Any]], tuple[int, int | str]]
) -> str:
    """The manifest as CSV with ``fields`` as its header, rows sorted by ``order``."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    ordered = sorted(rows, key=order)
    writer.writerows(ordered)
    return out.getvalue()
