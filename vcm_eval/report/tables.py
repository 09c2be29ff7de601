"""Run tables and BD tables: one row per run configuration, one BD row per curve x metric.

A *curve* is the set of runs of one pipeline that differ only in a rate parameter (``qp``, ``z``,
``quality`` ...: what the run's codec declares, ``Codec.rate_params``); any other parameter
(``n_symbols``, ``levels``) or identity (encoder, codec version, weights, device, code:
``vcm_eval.report.identity``) starts a new curve, labelled ``pipeline (n_symbols=4)`` or
``image_anchor (VTM-23.13 AI)``. BD values compare every curve of a setup (same dataset, model
and weights, evaluation and image count) with the one anchor curve, per accuracy metric.
Tables come out as a machine-readable CSV (raw column names, full precision) and as Markdown and
LaTeX (booktabs) for people, with units in the headers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vcm_eval.errors import ConfigError
from vcm_eval.metrics.bdrate import DEFAULT_SETTINGS, BdSettings, bd_values

LEAD = ["pipeline", "qp", "bpp", "bbox_AP", "segm_AP", "cityscapes_AP", "oic_AP50", "oic_segm_AP50"]
DEFAULT_METRICS = ("bbox_AP", "segm_AP", "cityscapes_AP")
TIME_COLUMNS = ("encode_s", "decode_s", "task_s")
METRIC_NAMES = {
    "bbox_AP": "bbox mAP",
    "bbox_AP50": "bbox AP50",
    "segm_AP": "mask mAP",
    "segm_AP50": "mask AP50",
    "cityscapes_AP": "Cityscapes AP",
    "cityscapes_AP50": "Cityscapes AP50",
    "oic_AP50": "OIC box mAP50",
    "oic_segm_AP50": "OIC mask mAP50",
}
GROUP = ["dataset", "model", "setup"]
RATE_DIGITS = 4  # significant digits of a printed rate: 0.0004321 bpp keeps its digits, 170.5 stays short


def format_rate(value: Any) -> str:
    """A rate (bpp) for people: ``RATE_DIGITS`` significant digits, never an exponent; ``-`` when missing.

    Fixed decimals would print a feature codec's 0.0004 bpp as 0.0004 or 0.0000 and a float32
    reference's 680.1234 bpp with needless digits; significant digits keep both readable.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return np.format_float_positional(float(value), precision=RATE_DIGITS, unique=False, fractional=False, trim="-")


def summary_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with the usual columns first, sorted by pipeline then rate."""
    frame = pd.DataFrame(rows)
    lead = [c for c in LEAD if c in frame.columns]
    frame = frame[lead + [c for c in frame.columns if c not in lead]]
    return frame.sort_values(["pipeline", "bpp"], kind="stable").reset_index(drop=True)


def format_summary(frame: pd.DataFrame, *, markdown: bool) -> str:
    """The main job's printed table: pipeline, parameters, bpp and mAP (percent)."""
    cols = [
        c
        for c in frame.columns
        if c not in ("run_dir", "rate_params", "sweep_params")
        and not (c.endswith(("_s", "AP50", "bpp_mean", "kbytes_per_image", "images")) and not c.startswith("oic_"))
        and not (c == "decode_failures" and not frame[c].fillna(0).any())  # shown when some image failed
    ]
    shown = frame[cols].copy()
    for c in shown.columns:
        if pd.api.types.is_float_dtype(shown[c]) and shown[c].dropna().apply(float.is_integer).all():
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else str(int(v)))
        elif c == "bpp":
            shown[c] = shown[c].map(format_rate)
        elif c == "feature_ratio_pct":
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
        elif c.endswith(("AP", "AP50")):
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


def curve_label(pipeline: str, params: dict[str, Any], rate_params: Sequence[str], identity: str = "") -> str:
    """``quant (n_symbols=4)``: the pipeline, every non-rate parameter (sorted by name), then ``identity``.

    ``identity`` is the text naming what else sets this curve apart (``VTM-23.13 AI``, from
    ``vcm_eval.report.identity.identity_labels``), so runs that differ never share a label.
    """
    fixed = {
        k: v
        for k, v in params.items()
        if k not in rate_params and v is not None and not (isinstance(v, float) and np.isnan(v))
    }
    parts = [f"{k}={_value_text(v)}" for k, v in sorted(fixed.items())] + ([identity] if identity else [])
    return f"{pipeline} ({', '.join(parts)})" if parts else pipeline


def _fmt_number(value: Any, spec: str, *, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return format(float(value), ("+" if signed else "") + spec)


def runs_display(frame: pd.DataFrame, *, metrics: Sequence[str], params: Sequence[str]) -> pd.DataFrame:
    """The runs table for people: pipeline, parameters, bpp, mAP (%) per metric, seconds per image.

    Columns that hold one value for every row (dataset, model, setup) are left out: they belong
    in the caption. A ``variant`` column names what else sets a run's curve apart (encoder, codec
    version, weights, device, code) when some run has such a difference, so two rows with equal
    parameters never look alike.
    """
    out = pd.DataFrame(index=frame.index)
    for col in ("dataset", "model", "setup"):
        if col in frame and frame[col].nunique(dropna=False) > 1:
            out[col] = frame[col].astype(str)
    out["pipeline"] = frame["pipeline"].astype(str)
    if "variant" in frame and frame["variant"].fillna("").astype(bool).any():
        out["variant"] = frame["variant"].fillna("").astype(str)
    for p in params:
        if p in frame:
            out[p] = frame[p].map(
                lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else _value_text(v)
            )
    out["rate (bpp)"] = frame["bpp"].map(format_rate)
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


def _dotted(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted columns: ``+report.anchor_params.vvc.backend=vtm`` arrives nested."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        out.update(_dotted(dict(v), f"{prefix}{k}.") if isinstance(v, Mapping) else {f"{prefix}{k}": v})
    return out


def anchor_rows(runs: pd.DataFrame, anchor: str) -> pd.Series:
    """Which rows ``report.anchor`` names: a pipeline (every curve of it) or one curve's label."""
    return (runs["pipeline"] == anchor) | (runs["curve"] == anchor)


def select_anchor(group: pd.DataFrame, anchor: str, anchor_params: dict[str, Any]) -> str | None:
    """The anchor curve's label in one setup, ``None`` when the setup has no such runs.

    Args:
        group: the runs of one setup.
        anchor: a pipeline or a curve label (``report.anchor``).
        anchor_params: column -> value that the anchor runs must have (``report.anchor_params``):
            a parameter or an identity column such as ``vvc.backend``.

    Raises:
        ConfigError: ``anchor_params`` names a column the anchor runs lack, or several curves
            remain: the report never guesses which one is the anchor, the message lists the
            choices as ``report.anchor=...`` values.
    """
    rows = group[anchor_rows(group, anchor) & group["bpp"].notna()]
    for key, want in _dotted(anchor_params).items():
        if key not in rows:
            valid = sorted(c for c in group.columns if c in rows and rows[c].notna().any())
            raise ConfigError(f"report.anchor_params has {key!r}, which {anchor} runs do not have; valid: {valid}")
        rows = rows[rows[key].map(lambda v, w=want: _value_text(v) == _value_text(w))]
    curves = sorted(rows["curve"].unique())
    if len(curves) > 1:
        choices = " or ".join(f'"report.anchor={c!r}"' if " " in c else f"report.anchor={c}" for c in curves)
        raise ConfigError(
            f"report.anchor={anchor!r} matches {len(curves)} curves {curves} (their runs differ in more than a rate "
            f"parameter) and the report does not guess which is the anchor; choose one: {choices}, or narrow it with "
            "+report.anchor_params.<column>=<value> (a parameter or a runs.csv column such as vvc.backend)"
        )
    return curves[0] if curves else None


def bd_frame(
    runs: pd.DataFrame,
    *,
    anchor: str = "image_anchor",
    anchor_params: dict[str, Any] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    settings: BdSettings = DEFAULT_SETTINGS,
) -> pd.DataFrame:
    """BD-rate (%) and BD-mAP (points) of every curve against the anchor, per setup and metric.

    Args:
        runs: the runs table (``report.load_runs``): needs dataset, model, setup, pipeline, curve,
            bpp and the metric columns.
        anchor: the anchor pipeline or curve label; ``anchor_params`` narrows it to one curve.
        metrics: accuracy columns to compare (missing ones are skipped).
        settings: interpolation, non-monotone policy and minimum overlap (``BdSettings``).

    Returns:
        One row per (setup, curve, metric): bd_rate, bd_map, the overlaps by axis (``map_overlap``:
        of the two mAP ranges, what BD-rate averages over; ``rate_overlap``: of the two log-rate
        ranges, BD-mAP's), point counts, the points dropped by the non-monotone policy, and why a
        value was refused (``bd_rate_note``, ``bd_map_note``; ``note`` holds both, each once).

    Raises:
        ConfigError: the anchor is ambiguous in a setup (``select_anchor``).
    """
    rows: list[dict[str, Any]] = []
    for key, group in runs.groupby(GROUP, sort=True, dropna=False):
        anchor_curve = select_anchor(group, anchor, anchor_params or {})
        coded = group[group["bpp"].notna()]
        ref = coded[coded["curve"] == anchor_curve]
        for curve, test in coded.groupby("curve", sort=True):
            if curve == anchor_curve:
                continue
            for metric in metrics:
                if metric not in group or test[metric].isna().all():
                    continue
                if anchor_curve is None:  # listed, never silently left out of the table
                    rows.append(_no_anchor_row(dict(zip(GROUP, key)), str(curve), metric, anchor, len(test), settings))
                    continue
                res = bd_values(ref["bpp"], ref[metric], test["bpp"], test[metric], settings)
                rows.append(
                    {
                        **dict(zip(GROUP, key)),
                        "anchor": anchor_curve,
                        "curve": curve,
                        "metric": metric,
                        "bd_rate": res.bd_rate,
                        "bd_map": res.bd_quality,
                        "rate_overlap": res.quality_overlap,  # BdResult names overlaps by the value they serve
                        "map_overlap": res.rate_overlap,
                        "anchor_points": len(ref),
                        "test_points": len(test),
                        "dropped_anchor": "; ".join(f"{r:.6g} bpp {q:.2f}" for r, q in res.dropped_anchor),
                        "dropped_test": "; ".join(f"{r:.6g} bpp {q:.2f}" for r, q in res.dropped_test),
                        "method": settings.method,
                        "note": " | ".join(res.notes),
                        "bd_rate_note": res.bd_rate_note,
                        "bd_map_note": res.bd_quality_note,
                    }
                )
    return pd.DataFrame(rows, columns=BD_COLUMNS)


BD_COLUMNS = [
    *GROUP, "anchor", "curve", "metric", "bd_rate", "bd_map", "rate_overlap", "map_overlap", "anchor_points",
    "test_points", "dropped_anchor", "dropped_test", "method", "note", "bd_rate_note", "bd_map_note",
]  # fmt: skip


def _no_anchor_row(
    setup: dict[str, Any], curve: str, metric: str, anchor: str, points: int, settings: BdSettings
) -> dict[str, Any]:
    """A curve whose setup has no anchor runs: both values refused, with the reason and the fix."""
    note = (
        f"no {anchor} runs in this setup ({setup['dataset']}/{setup['model']}, setup {setup['setup']}): setups "
        "differ in the dataset, model or eval settings, the image count or the network's weights (runs.csv's "
        "setup column); run the anchor with this curve's settings"
    )
    return {
        **setup, "anchor": "", "curve": curve, "metric": metric, "bd_rate": np.nan, "bd_map": np.nan,
        "rate_overlap": np.nan, "map_overlap": np.nan, "anchor_points": 0, "test_points": points,
        "dropped_anchor": "", "dropped_test": "", "method": settings.method, "note": note, "bd_rate_note": note,
        "bd_map_note": note,
    }  # fmt: skip


def bd_display(bd: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Wide BD table for people (one row per curve, BD-rate and BD-mAP per metric) + its notes.

    A refused value shows as ``n/a`` with a numbered note attached to its own cell (a refused
    BD-mAP never marks the BD-rate beside it); dominated points dropped from a curve are noted on
    both cells, since both values rest on the reduced curves. The overlap column gives both: of the
    two mAP ranges (what BD-rate rests on) and of the two log-rate ranges (BD-mAP's).
    """
    notes: list[str] = []
    table: dict[tuple[Any, ...], dict[str, str]] = {}
    many = bd[GROUP].drop_duplicates().shape[0] > 1

    def marks(curve: str, name: str, texts: Sequence[str]) -> str:
        out = ""
        for text in texts:
            if text:
                entry = f"{curve}, {name}: {text}"
                if entry not in notes:
                    notes.append(entry)
                out += f"[{notes.index(entry) + 1}]"
        return out

    for r in bd.itertuples(index=False):
        first = {
            **({"setup": f"{r.dataset}/{r.model}/{r.setup}"} if many else {}),
            "curve": r.curve,
            "anchor": r.anchor,
        }
        row = table.setdefault((r.dataset, r.model, r.setup, r.curve, r.anchor), first)
        name = metric_name(r.metric)
        dropped = ""
        if r.dropped_anchor or r.dropped_test:
            dropped = (
                f"points dropped as dominated: anchor {r.dropped_anchor or 'none'}, test {r.dropped_test or 'none'}"
            )
        rate_marks = marks(r.curve, name, [str(r.bd_rate_note or ""), dropped])
        map_marks = marks(r.curve, name, [str(r.bd_map_note or ""), dropped])
        row[f"{name} BD-rate (%)"] = (
            "n/a" if np.isnan(r.bd_rate) else _fmt_number(r.bd_rate, ".2f", signed=True)
        ) + rate_marks
        row[f"{name} BD-mAP"] = ("n/a" if np.isnan(r.bd_map) else _fmt_number(r.bd_map, ".2f", signed=True)) + map_marks
        overlaps = f"{_fmt_number(r.map_overlap, '.2f')} / {_fmt_number(r.rate_overlap, '.2f')}"
        row[f"{name} overlap (mAP / log-rate)"] = overlaps  # what BD-rate and BD-mAP each rest on
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
    numeric = [
        c
        for c in frame.columns
        if frame[c].astype(str).str.fullmatch(r"[+-]?[0-9.eE+-]*(\[\d+\])*|-|n/a(\[\d+\])*").all()
    ]
    text = [c for c in frame.columns if c not in numeric]
    styler = frame.style.hide(axis="index")
    if text:
        styler = styler.format(escape="latex", subset=text)
    if numeric:
        styler = styler.format(_latex_number, subset=numeric)
    styler = styler.format_index(escape="latex", axis=1)
    spec = "".join("r" if c in numeric else "l" for c in frame.columns)
    head = "".join(
        f"% {line}\n" for line in ([caption] if caption else []) + [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    )
    return head + styler.to_latex(hrules=True, column_format=spec)
