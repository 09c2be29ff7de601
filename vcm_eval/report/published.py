"""Published BD values beside the ones measured here (a paper's comparison table, in kind).

A published file (``anchors/<name>.csv``: curve, anchor, metric, bd_rate_pct, task, dataset,
model, source, note) lists a paper's headline BD-rates. ``published_table`` sets each beside the
value this run measured for the same curve, anchor and metric, with a caption that says what
differs: the paper's numbers come from its data and network, these from the runs here, so the
two agree in kind (which codec saves how much), never in value.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from vcm_eval.errors import DataError

COLUMNS = ("curve", "anchor", "metric", "bd_rate_pct", "dataset", "model", "source")


def read_published(path: Path) -> list[dict[str, str]]:
    """The rows of a published-values CSV.

    Raises:
        DataError: the file is missing or lacks a column of ``COLUMNS``.
    """
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise DataError(f"published values {path} cannot be read ({exc.strerror}); restore it from git") from exc
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise DataError(f"published values {path} lack the columns {missing or list(COLUMNS)}; restore it from git")
    return rows


def _measured(bd: pd.DataFrame, curve: str, anchor: str, metric: str) -> str:
    found = bd[(bd["curve"].str.split(" \\(").str[0] == curve) & (bd["anchor"].str.split(" \\(").str[0] == anchor)]
    found = found[found["metric"] == metric]
    if found.empty or pd.isna(found.iloc[0]["bd_rate"]):
        note = found.iloc[0]["bd_rate_note"] if not found.empty else "no such curve in these runs"
        return f"n/a ({note})" if isinstance(note, str) and note else "n/a"
    return f"{float(found.iloc[0]['bd_rate']):+.2f}%"


def published_table(bd: pd.DataFrame, published: Path, *, dataset: str, model: str) -> str:
    """Markdown: every published BD-rate beside the one measured here, and the caption."""
    rows = read_published(published)
    lines = ["| curve vs anchor | metric | measured here | published | published on |", "|---|---|---|---|---|"]
    sources = []
    for r in rows:
        here = _measured(bd, r["curve"], r["anchor"], r["metric"])
        lines.append(
            f"| {r['curve']} vs {r['anchor']} | {r['metric']} | {here} | {float(r['bd_rate_pct']):+.2f}% | "
            f"{r['dataset']}, {r['model']} |"
        )
        sources.append(r["source"])
    caption = (
        f"Measured here on {dataset} with {model}; published on other data with another network "
        f"({'; '.join(dict.fromkeys(sources))}): compare in kind, not in value."
    )
    return "\n".join([*lines, "", caption])
