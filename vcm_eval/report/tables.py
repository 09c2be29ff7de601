"""Run tables and BD tables: one row per run configuration, one BD row per curve x metric.

A *curve* is the set of runs of one pipeline that differ only in a rate parameter (``qp``, ``z``,
``quality`` ...: what the run's codec declares, ``Codec.rate_params``); any other parameter (``n_symbols``, ``levels``) starts a new
curve, labelled ``pipeline (n_symbols=4)``. BD values compare every curve of a setup (same
dataset, model, evaluation and image count) with the anchor curve, per accuracy metric.
Tables come out as a machine-readable CSV (raw column names, full precision) and as Markdown and
LaTeX (booktabs) for people, with units in the headers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from vcm_eval.errors import ConfigError
from vcm_eval.metrics.bdrate import DEFAULT_MIN_OVERLAP, bd_compare

LEAD = ["pipeline", "qp", "bpp", "bbox_AP", "segm_AP", "cityscapes_AP"]
DEFAULT_METRICS = ("bbox_AP", "segm_AP", "cityscapes_AP")
TIME_COLUMNS = ("encode_s", "decode_s", "task_s")
METRIC_NAMES = {
    "bbox_AP": "bbox mAP",
    "bbox_AP50": "bbox AP50",
    "segm_AP": "mask mAP",
    "segm_AP50": "mask AP50",
    "cityscapes_AP": "Cityscapes AP",
    "cityscapes_AP50": "Cityscapes AP50",
}
GROUP = ["dataset", "model", "setup"]


def summary_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with the usual columns first, sorted by pipeline then rate."""
    frame = pd.DataFrame(rows)
    lead = [c for c in LEAD if c in frame.columns]
    frame = frame[lead + [c for c in frame.columns if c not in lead]]
    return frame.sort_values(["pipeline", "bpp"], kind="stable").reset_index(drop=True)


def format_summary(frame: pd.DataFrame, *, markdown: bool) -> str:
    """The main job's printed table: pipeline, parameters, bpp and mAP (percent)."""
    cols = [c for c in frame.columns if c not in ("run_dir", "rate_params", "sweep_params") and not c.endswith(("_s", "AP50", "bpp_mean", "kbytes_per_image", "images"))]
    shown = frame[cols].copy()
    for c in shown.columns:
        if pd.api.types.is_float_dtype(shown[c]) and shown[c].dropna().apply(float.is_integer).all():
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else str(int(v)))
        elif c == "bpp":
            shown[c] = shown[c].map(lambda v: "-" if pd.isna(v) else f"{v:.4f}")
        elif c == "feature_ratio_pct":
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
        elif c.endswith("AP"):
            shown[c] = shown[c].map(lambda v: f"{v:.2f}")
    shown = shown.fillna("")
    if markdown:
        return to_markdown(shown)
    return shown.to_string(index=False)


def metric_name(metric: str) -> str:
    """Human name of a metric column (``segm_AP`` -> ``mask mAP``)."""
    return METRIC_NAMES.get(metric, metric.replace("_", " "))


def _value_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def curve_label(pipeline: str, params: dict[str, Any], rate_params: Sequence[str]) -> str:
    """``quant (n_symbols=4)``: the pipeline plus every non-rate parameter (sorted by name)."""
    fixed = {k: v for k, v in params.items() if k not in rate_params and v is not None and not (isinstance(v, float) and np.isnan(v))}
    if not fixed:
        return pipeline
    return f"{pipeline} ({', '.join(f'{k}={_value_text(v)}' for k, v in sorted(fixed.items()))})"


def _fmt_number(value: Any, spec: str, *, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return format(float(value), ("+" if signed else "") + spec)


def runs_display(frame: pd.DataFrame, *, metrics: Sequence[str], params: Sequence[str]) -> pd.DataFrame:
    """The runs table for people: pipeline, parameters, bpp, mAP (%) per metric, seconds per image.

    Columns that hold one value for every row (dataset, model, setup) are left out: they belong
    in the caption.
    """
    out = pd.DataFrame(index=frame.index)
    for col in ("dataset", "model", "setup"):
        if col in frame and frame[col].nunique(dropna=False) > 1:
            out[col] = frame[col].astype(str)
    out["pipeline"] = frame["pipeline"].astype(str)
    for p in params:
        if p in frame:
            out[p] = frame[p].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else _value_text(v))
    out["rate (bpp)"] = frame["bpp"].map(lambda v: _fmt_number(v, ".4g"))
    if "feature_ratio_pct" in frame and frame["feature_ratio_pct"].notna().any():  # coded / float32 P2..P5 bits
        out["of float32 P2-P5 (%)"] = frame["feature_ratio_pct"].map(lambda v: _fmt_number(v, ".3g"))
    for m in metrics:
        if m in frame:
            out[f"{metric_name(m)} (%)"] = frame[m].map(lambda v: _fmt_number(v, ".2f"))
    for t in TIME_COLUMNS:
        if t in frame:
            out[t.replace("_s", " (s)")] = frame[t].map(lambda v: _fmt_number(v, ".3f"))
    if "images" in frame:
        out["images"] = frame["images"].map(lambda v: _fmt_number(v, ".0f"))
    return out.reset_index(drop=True)


def select_anchor(group: pd.DataFrame, anchor: str, anchor_params: dict[str, Any]) -> str | None:
    """The anchor curve's label in one setup, ``None`` when the setup has no such runs.

    Raises:
        ConfigError: several curves of the anchor pipeline match; ``report.anchor_params`` must
            pick one.
    """
    rows = group[(group["pipeline"] == anchor) & group["bpp"].notna()]
    for key, want in anchor_params.items():
        if key not in rows:
            raise ConfigError(f"report.anchor_params has {key!r}, which {anchor} runs do not have; valid: {sorted(c for c in group.columns if c in rows and rows[c].notna().any())}")
        rows = rows[rows[key].map(lambda v, w=want: _value_text(v) == _value_text(w))]
    curves = sorted(rows["curve"].unique())
    if len(curves) > 1:
        raise ConfigError(f"anchor {anchor!r} matches several curves {curves}; pick one with report.anchor_params={{key: value}}")
    return curves[0] if curves else None


def bd_frame(
    runs: pd.DataFrame,
    *,
    anchor: str = "image_anchor",
    anchor_params: dict[str, Any] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    method: str = "pchip",
    non_monotone: str = "pareto",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> pd.DataFrame:
    """BD-rate (%) and BD-mAP (points) of every curve against the anchor, per setup and metric.

    Args:
        runs: the runs table (``report.load_runs``): needs dataset, model, setup, pipeline, curve,
            bpp and the metric columns.
        anchor: the anchor pipeline; ``anchor_params`` narrows it to one curve.
        metrics: accuracy columns to compare (missing ones are skipped).

    Returns:
        One row per (setup, curve, metric): bd_rate, bd_map, overlaps, point counts, the points
        dropped by the non-monotone policy, and a note when a value was refused.
    """
    rows: list[dict[str, Any]] = []
    for key, group in runs.groupby(GROUP, sort=True, dropna=False):
        anchor_curve = select_anchor(group, anchor, anchor_params or {})
        if anchor_curve is None:
            continue
        coded = group[group["bpp"].notna()]
        ref = coded[coded["curve"] == anchor_curve]
        for curve, test in coded.groupby("curve", sort=True):
            if curve == anchor_curve:
                continue
            for metric in metrics:
                if metric not in group or test[metric].isna().all():
                    continue
                res = bd_compare(ref["bpp"], ref[metric], test["bpp"], test[metric], method, non_monotone=non_monotone, min_overlap=min_overlap)
                rows.append(
                    {
                        **dict(zip(GROUP, key)),
                        "anchor": anchor_curve,
                        "curve": curve,
                        "metric": metric,
                        "bd_rate": res.bd_rate,
                        "bd_map": res.bd_quality,
                        "rate_overlap": res.rate_overlap,
                        "map_overlap": res.quality_overlap,
                        "anchor_points": len(ref),
                        "test_points": len(test),
                        "dropped_anchor": "; ".join(f"{r:.6g} bpp {q:.2f}" for r, q in res.dropped_anchor),
                        "dropped_test": "; ".join(f"{r:.6g} bpp {q:.2f}" for r, q in res.dropped_test),
                        "method": method,
                        "note": " | ".join(res.notes),
                    }
                )
    columns = [*GROUP, "anchor", "curve", "metric", "bd_rate", "bd_map", "rate_overlap", "map_overlap", "anchor_points", "test_points", "dropped_anchor", "dropped_test", "method", "note"]
    return pd.DataFrame(rows, columns=columns)


def bd_display(bd: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Wide BD table for people (one row per curve, BD-rate and BD-mAP per metric) + its notes.

    Refused values show as ``-`` with a numbered note; dropped (dominated) points are noted too.
    """
    notes: list[str] = []
    table: dict[tuple[Any, ...], dict[str, str]] = {}
    many = bd[GROUP].drop_duplicates().shape[0] > 1
    for r in bd.itertuples(index=False):
        row = table.setdefault((r.dataset, r.model, r.setup, r.curve, r.anchor), {**({"setup": f"{r.dataset}/{r.model}/{r.setup}"} if many else {}), "curve": r.curve, "anchor": r.anchor})
        name = metric_name(r.metric)
        marks = ""
        for text in (r.note, f"points dropped as dominated: anchor {r.dropped_anchor or 'none'}, test {r.dropped_test or 'none'}" if (r.dropped_anchor or r.dropped_test) else ""):
            if text:
                entry = f"{r.curve}, {name}: {text}"
                if entry not in notes:
                    notes.append(entry)
                marks += f"[{notes.index(entry) + 1}]"
        row[f"{name} BD-rate (%)"] = ("n/a" if np.isnan(r.bd_rate) else _fmt_number(r.bd_rate, ".2f", signed=True)) + marks
        row[f"{name} BD-mAP"] = "n/a" if np.isnan(r.bd_map) else _fmt_number(r.bd_map, ".2f", signed=True)
        row[f"{name} overlap"] = _fmt_number(r.rate_overlap, ".2f")
    return pd.DataFrame(list(table.values())).fillna(""), notes


def to_markdown(frame: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    """A GitHub-flavoured Markdown table (text cells as given), then numbered notes."""
    cells = frame.astype(str).map(lambda s: s.replace("|", "\\|"))
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    body = "".join("| " + " | ".join(row) + " |\n" for row in cells.itertuples(index=False))
    return header + body + "".join(f"\n[{i}] {n}" for i, n in enumerate(notes, 1)) + ("\n" if notes else "")


def _latex_number(text: str) -> str:
    text = re.sub(r"\[(\d+)\]", r"\\textsuperscript{\1}", text)
    if re.match(r"-[0-9.]", text):
        return "$-$" + text[1:]
    return "--" + text[1:] if text.startswith("-") else text  # a refused value


def to_latex(frame: pd.DataFrame, notes: Sequence[str] = (), *, caption: str = "") -> str:
    """A booktabs ``tabular`` (``\\usepackage{booktabs}``): text escaped, numbers with a real minus.

    Columns whose cells all look numeric are right-aligned; notes become LaTeX comments above the
    table so a paper can turn them into footnotes.
    """
    numeric = [c for c in frame.columns if frame[c].astype(str).str.fullmatch(r"[+-]?[0-9.eE+-]*(\[\d+\])*|-|n/a(\[\d+\])*").all()]
    text = [c for c in frame.columns if c not in numeric]
    styler = frame.style.hide(axis="index")
    if text:
        styler = styler.format(escape="latex", subset=text)
    if numeric:
        styler = styler.format(_latex_number, subset=numeric)
    styler = styler.format_index(escape="latex", axis=1)
    spec = "".join("r" if c in numeric else "l" for c in frame.columns)
    head = "".join(f"% {line}\n" for line in ([caption] if caption else []) + [f"[{i}] {n}" for i, n in enumerate(notes, 1)])
    return head + styler.to_latex(hrules=True, column_format=spec)
