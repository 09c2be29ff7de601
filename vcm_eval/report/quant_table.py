"""The quant method's table in the layout of the paper's Table 3: features, z, mAP, data-size ratio.

Input: run rows (the ``metrics.json`` dicts of ``uncompressed``, ``quant8`` and ``quant`` runs of one
dataset + model). The paper's data size of a run (ceil(log2 n) bits per value, or 8, or 32) comes
from the per-image ``raw_bits`` / ``values`` its codec recorded in ``<run_dir>/records.jsonl``.
Columns:

* ``features``: float32 features (the uncompressed reference), 8-bit features, n symbols;
* ``mAP``: the chosen accuracy metric (0-100);
* ``data_ratio``: the paper's data size / the 8-bit RGB input image (H * W * 3 bytes);
* ``coded_ratio`` and ``bpp``: the real bitstream (every byte) / the input image, and in bits per
  input pixel;
* ``paper_mAP``, ``paper_ratio``: the paper's Table 3 (Cityscapes, detectron2 Mask R-CNN R50-FPN;
  anchors/quant_table3_map.csv) for the same row, when ``paper=True`` - a reference, not the same
  data or network.

The report command (``python -m vcm_eval.report``) writes it as ``quant_table.csv`` /
``quant_table.md`` beside its other tables whenever quant runs are among the runs, for the
accuracy metric ``eval.primary_metric``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vcm_eval.errors import DataError
from vcm_eval.report.tables import format_rate
from vcm_eval.resources import ANCHORS_DIR
from vcm_eval.utils.atomic import atomic_write

PIPELINES = ("uncompressed", "quant8", "quant")
PAPER_TABLE3 = ANCHORS_DIR / "quant_table3_map.csv"
IMAGE_BITS_PER_PIXEL = 24  # 8-bit RGB input


def features_label(pipeline: str, n_symbols: int | None = None) -> str:
    """Row label as in the paper: 'float32 features', '8-bit features', '4 symbols (2 bit)'."""
    if pipeline == "uncompressed":
        return "float32 features"
    if pipeline == "quant8":
        return "8-bit features"
    n = int(n_symbols or 0)
    bits = max(1, math.ceil(math.log2(n))) if n > 1 else 0
    return "3 symbols (1-2 bit)" if n == 3 else f"{n} symbols ({bits} bit)"


def record_stats(run_dir: str | Path) -> dict[str, float]:
    """A run's paper bits per pixel (``raw_bpp``) and feature values per pixel, over its totals.

    Both are sums over the images divided by the sum of their pixels, as the run's ``bpp`` is
    (``vcm_eval.metrics.rate``): a per-image mean would weight a small image like a large one, and
    on a dataset of mixed sizes ``raw_bpp`` and ``bpp`` would then not be comparable.
    """
    path = Path(run_dir) / "records.jsonl"
    if not path.is_file():
        raise DataError(
            f"{path} is missing; the quant table needs the run's records (rerun it or pass rows with raw_bpp)"
        )
    raw = values = pixels = 0
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if "raw_bits" in rec:
                raw += rec["raw_bits"]
                values += rec["values"]
                pixels += rec["pixels"]
    if not pixels:
        return {}
    return {"raw_bpp": raw / pixels, "values_per_pixel": values / pixels}


def paper_table3(path: Path = PAPER_TABLE3) -> pd.DataFrame:
    """The paper's Table 3 anchor rows (features, n_symbols, z, mAP, ratio_min, ratio_max, ...)."""
    if not path.is_file():
        raise DataError(
            f"paper anchor table {path} is missing; restore anchors/ from the repository or pass paper=False"
        )
    return pd.read_csv(path)


def quant_table(rows: Sequence[Mapping[str, Any]], *, metric: str = "segm_AP", paper: bool = True) -> pd.DataFrame:
    """Rows of uncompressed / quant8 / quant runs -> the paper's Table 3 layout (one row per run).

    Args:
        rows: ``metrics.json`` dicts (``pipeline``, its parameters, metrics, ``run_dir``); rows of
            other pipelines are ignored. A row may carry ``raw_bpp`` / ``values_per_pixel`` itself,
            otherwise they are read from its ``run_dir``.
        metric: accuracy column shown as ``mAP`` (e.g. ``segm_AP``, ``cityscapes_AP``), 0-100.
        paper: add the paper's mAP and data ratio for the same row (``paper_mAP``, ``paper_ratio``).

    Returns:
        Columns features, n_symbols, z, mAP, data_ratio, coded_ratio, bpp, raw_bpp, then any
        quant parameter that differs between rows, then the paper's columns.
    """
    kept = [dict(r) for r in rows if r.get("pipeline") in PIPELINES]
    for r in kept:
        if r["pipeline"] != "uncompressed" and "raw_bpp" not in r:
            r.update(record_stats(r["run_dir"]))
    per_pixel = [r["values_per_pixel"] for r in kept if "values_per_pixel" in r]
    out = []
    for r in kept:
        raw_bpp = r.get("raw_bpp", float("nan"))
        if r["pipeline"] == "uncompressed":  # float32 features: 32 bits per value, nothing coded
            raw_bpp = 32 * float(np.mean(per_pixel)) if per_pixel else float("nan")
        bpp = float(r.get("bpp", float("nan")))
        out.append(
            {
                "features": features_label(r["pipeline"], r.get("n_symbols")),
                "n_symbols": r.get("n_symbols"),
                "z": r.get("z"),
                "mAP": r.get(metric, float("nan")),
                "data_ratio": raw_bpp / IMAGE_BITS_PER_PIXEL,
                "coded_ratio": bpp / IMAGE_BITS_PER_PIXEL,
                "bpp": bpp,
                "raw_bpp": raw_bpp,
                "_order": (PIPELINES.index(r["pipeline"]), -(r.get("n_symbols") or 0), r.get("z") or 0.0),
                **{k: r.get(k) for k in ("levels", "entropy_model", "centroids", "side_dtype")},
            }
        )
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table = table.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
    quant = table[table["n_symbols"].notna()]
    for col in ("levels", "entropy_model", "centroids", "side_dtype"):
        if quant[col].nunique(dropna=True) <= 1:
            table = table.drop(columns=col)
    if paper:
        table = _with_paper(table, paper_table3())
    return table


def _with_paper(table: pd.DataFrame, anchors: pd.DataFrame) -> pd.DataFrame:
    def lookup(row: pd.Series) -> pd.Series:
        kind = (
            "float32"
            if row["features"].startswith("float32")
            else "8bit"
            if row["features"].startswith("8-bit")
            else "symbols"
        )
        hit = anchors[anchors["kind"] == kind]
        if kind == "symbols":
            hit = hit[(hit["n_symbols"] == row["n_symbols"]) & np.isclose(hit["z"], float(row["z"]))]
        if hit.empty:
            return pd.Series({"paper_mAP": float("nan"), "paper_ratio": ""})
        a = hit.iloc[0]
        ratio = (
            f"{a['ratio_min']:.2f}"
            if a["ratio_min"] == a["ratio_max"]
            else f"{a['ratio_min']:.2f}-{a['ratio_max']:.2f}"
        )
        return pd.Series({"paper_mAP": float(a["mAP"]), "paper_ratio": ratio})

    return pd.concat([table, table.apply(lookup, axis=1)], axis=1)


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Display strings: mAP 2 decimals, ratios 2 decimals, rates 4 significant digits, '-' where nothing applies."""

    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)

    shown = table.copy()
    shown["n_symbols"] = [fmt(v, ".0f") for v in shown["n_symbols"]]
    shown["z"] = ["-" if v is None or (isinstance(v, float) and math.isnan(v)) else str(float(v)) for v in shown["z"]]
    for col, spec in {"mAP": ".2f", "data_ratio": ".2f", "coded_ratio": ".2f", "paper_mAP": ".4f"}.items():
        if col in shown:
            shown[col] = [fmt(v, spec) for v in shown[col]]
    for col in ("bpp", "raw_bpp"):  # significant digits, as every printed rate
        if col in shown:
            shown[col] = [format_rate(v) for v in shown[col]]
    return shown.fillna("-")


def to_markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return header + "".join("| " + " | ".join(map(str, row)) + " |\n" for row in frame.itertuples(index=False))


def write_quant_table(
    rows: Sequence[Mapping[str, Any]],
    out_dir: Path,
    *,
    metric: str = "segm_AP",
    paper: bool = True,
    stem: str = "quant_table",
    title: str = "",
) -> list[Path]:
    """Build the table and write ``<stem>.csv`` (full precision) and ``<stem>.md`` (``title`` above it)."""
    table = quant_table(rows, metric=metric, paper=paper)
    if table.empty:
        raise DataError(f"no uncompressed/quant8/quant runs among {len(rows)} rows; run pipeline=quant first")
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    atomic_write(csv_path, table.to_csv(index=False))
    note = (
        f"\nmAP = {metric} (0-100). data_ratio: the paper's data size (fixed bits per value, no side information) / "
        "the 8-bit RGB input image; coded_ratio: the real bitstream (every byte) / the input image; "
        "bpp: real bits per input pixel.\n"
    )
    if paper:
        note += (
            "paper_*: the paper's Table 3 (Cityscapes val, detectron2 Mask R-CNN R50-FPN) - "
            "a reference, not this run's data.\n"
        )
    atomic_write(md_path, (f"{title}\n\n" if title else "") + to_markdown(format_table(table)) + note)
    return [csv_path, md_path]
