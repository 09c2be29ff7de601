"""Paper-ready figures with matplotlib: rate-accuracy curves and accuracy against a codec knob (z).

Every figure is written as a vector PDF (TrueType fonts embedded, as publishers ask) and a PNG.
Styles are a pure function of the curve label, so a curve looks the same in every figure of
every report: each pipeline has its colour and marker; parameter variants of one pipeline
(``quant (n_symbols=3)`` / ``(n_symbols=4)``) keep the pipeline's hue at another shade with
another marker. The anchor is dashed; the uncompressed accuracy is a dotted horizontal line.
"""

from __future__ import annotations

import io
import logging
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from vcm_eval.errors import ConfigError
from vcm_eval.report.tables import metric_name
from vcm_eval.utils.atomic import atomic_write

# pipeline -> (colour, marker); unknown pipelines get a colour from PALETTE by a stable hash.
STYLE = {
    "image_anchor": ("#1f77b4", "o"),
    "feature_anchor": ("#ff7f0e", "s"),
    "quant": ("#2ca02c", "^"),
    "fusion_codec": ("#d62728", "D"),
}
PALETTE = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
SHADES = (0.0, -0.3, 0.35, -0.55, 0.55)  # < 0 darker, > 0 lighter
FORMATS = ("pdf", "png")
KNOB_NAMES = {"z": "threshold z (standard deviations)", "qp": "QP"}  # axis labels of sweep figures
PAPER_RC: dict[Any, Any] = {  # Any keys: matplotlib types them as a Literal of every rc name
    "font.size": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "savefig.bbox": "tight",
}
FIGSIZE = (3.5, 2.6)  # inches: one column of a two-column paper
PANELS_FIGSIZE = (3.5, 5.0)  # two stacked panels and a legend below them, one column wide
PANEL_HEIGHT = 1.6  # inches each panel beyond two adds (the main job's four metrics: 8.2 in)
logging.getLogger("fontTools").setLevel(logging.WARNING)  # font subsetting chatter under Hydra's INFO logging


@dataclass(frozen=True)
class CurveStyle:
    colour: tuple[float, float, float]
    marker: str
    linestyle: str


def _shade(colour: str, amount: float) -> tuple[float, float, float]:
    r, g, b = to_rgb(colour)
    if amount >= 0:
        return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)
    return (r * (1 + amount), g * (1 + amount), b * (1 + amount))


def curve_style(label: str, *, anchor: bool = False) -> CurveStyle:
    """The style of a curve: a pure function of its label (``pipeline`` or ``pipeline (k=v)``)."""
    pipeline = label.split(" (", 1)[0]
    colour, marker = STYLE.get(pipeline, (PALETTE[zlib.crc32(pipeline.encode()) % len(PALETTE)], "o"))
    if label != pipeline:
        h = zlib.crc32(label.encode())
        shade = SHADES[1 + h % (len(SHADES) - 1)]
        marker = MARKERS[(MARKERS.index(marker) + 1 + (h >> 8) % (len(MARKERS) - 1)) % len(MARKERS)]
        return CurveStyle(_shade(colour, shade), marker, "--" if anchor else "-")
    return CurveStyle(to_rgb(colour), marker, "--" if anchor else "-")


def save_figure(fig: plt.Figure, stem: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``stem``.<format> for each format (atomically); returns the paths."""
    bad = [f for f in formats if f not in ("pdf", "png", "svg")]
    if bad:
        raise ConfigError(f"figure formats {bad} are not supported; use pdf, png or svg")
    written = []
    for ext in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=300)
        path = stem.with_suffix("." + ext)
        atomic_write(path, buf.getvalue())
        written.append(path)
    return written


def _uncompressed_line(ax: plt.Axes, frame: pd.DataFrame, metric: str) -> None:
    ref = frame[(frame["pipeline"] == "uncompressed") & frame[metric].notna()]
    if len(ref):
        value = float(ref[metric].iloc[0])
        ax.axhline(value, color="black", lw=0.9, ls=":", label=f"uncompressed ({value:.1f})", zorder=1)


def _finish(
    fig: Figure, ax: Axes, stem: Path, formats: Sequence[str], *, xlabel: str, metric: str, title: str
) -> list[Path]:
    """Label the axes (units), grid, legend; write every format and close the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric_name(metric)} (%)")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3, lw=0.5)
    ax.legend(frameon=False, loc="best")
    written = save_figure(fig, stem, formats)
    plt.close(fig)
    return written


def rate_accuracy_plot(
    frame: pd.DataFrame,
    stem: Path,
    *,
    metric: str,
    log_rate: bool = False,
    anchor: str | None = "image_anchor",
    formats: Sequence[str] = FORMATS,
    title: str = "",
) -> list[Path]:
    """bpp vs ``metric`` (mAP %), one curve per ``curve`` label (or per pipeline without one).

    Args:
        frame: runs table with pipeline, bpp, ``metric`` and optionally ``curve`` columns; rows
            without a rate (uncompressed) become the horizontal reference line.
        stem: output path without suffix.
        metric: accuracy column (percent).
        log_rate: logarithmic rate axis (rates spanning decades: feature codecs vs images).
        anchor: pipeline drawn dashed (every curve of it), or one curve's label (that curve).

    Returns:
        The written files (``stem``.pdf, ``stem``.png by default).
    """
    if metric not in frame:
        raise ConfigError(
            f"metric {metric!r} is not among the run columns {sorted(map(str, frame.columns))}; "
            "choose another eval metric"
        )
    labels = frame["curve"] if "curve" in frame else frame["pipeline"]
    with plt.rc_context(PAPER_RC):
        fig, ax = plt.subplots(figsize=FIGSIZE)
        _uncompressed_line(ax, frame, metric)
        coded = frame.assign(_curve=labels)[frame["bpp"].notna() & frame[metric].notna()]
        order = sorted(coded["_curve"].unique(), key=lambda c: (anchor not in (c, c.split(" (")[0]), c))
        for label in order:
            g = coded[coded["_curve"] == label].sort_values("bpp")
            style = curve_style(label, anchor=anchor in (label, str(g["pipeline"].iloc[0])))
            ax.plot(g["bpp"], g[metric], color=style.colour, marker=style.marker, ls=style.linestyle, label=label)
        if log_rate:
            ax.set_xscale("log")
        return _finish(
            fig,
            ax,
            stem,
            formats,
            xlabel="rate (bpp, log scale)" if log_rate else "rate (bpp)",
            metric=metric,
            title=title,
        )


def knob_sweep_plot(
    frame: pd.DataFrame, stem: Path, *, knob: str, metric: str, formats: Sequence[str] = FORMATS, title: str = ""
) -> list[Path]:
    """Accuracy against one codec knob (the 2-bit method's z), one line per curve whose codec asked for it.

    The rows are those whose ``sweep_params`` name ``knob``; lines follow the ``curve`` column (one
    per setting of every non-rate parameter), so they share colour and marker with the
    rate-accuracy figure. Returns the written files, or ``[]`` when no row has the knob.
    """
    if not {knob, metric, "curve", "sweep_params"} <= set(frame.columns):
        return []
    asked = frame["sweep_params"].fillna("").map(lambda text: knob in str(text).split(","))
    rows = frame[asked & frame[knob].notna() & frame[metric].notna()]
    if rows.empty:
        return []
    with plt.rc_context(PAPER_RC):
        fig, ax = plt.subplots(figsize=FIGSIZE)
        _uncompressed_line(ax, frame, metric)
        for label, g in rows.groupby("curve", sort=True):
            style = curve_style(str(label))
            g = g.sort_values(knob)
            ax.plot(g[knob], g[metric], color=style.colour, marker=style.marker, ls=style.linestyle, label=str(label))
        return _finish(fig, ax, stem, formats, xlabel=KNOB_NAMES.get(knob, knob), metric=metric, title=title)


def _rate_ticks(ax: Axes) -> None:
    """Log rate axis labelled as plain numbers, as densely as a 3.5-inch axis allows.

    matplotlib labels minor log ticks (2x10^-2, 3x10^-2 ...) when an axis spans less than about
    a decade, and they print on top of each other. Here the labelled ticks are 1, 2 and 5 x each
    decade over up to 2 decades, 1 and 3 x each decade up to 3.5, and the decades alone beyond
    (tested for overlap); the other ticks stay as unlabelled minor ticks.
    """
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    decades = math.log10(high / low) if low > 0 and high > low else 1.0
    subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0, 3.0) if decades <= 3.5 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
    ax.xaxis.set_minor_formatter(NullFormatter())


def legend_entry(curve: str, encoder: str) -> str:
    """``image_anchor, VTM-23.13 AI``: a curve's legend text, naming its encoder setting when it has one.

    A label that already names the encoder (``image_anchor (VTM-23.13 AI)``: curves that differ by
    encoder) is left as it is.
    """
    return f"{curve}, {encoder}" if encoder and encoder not in curve else curve


def comparison_figure(
    frame: pd.DataFrame,
    stem: Path,
    *,
    metrics: Sequence[str] = ("bbox_AP", "segm_AP"),
    anchors: Sequence[str] = ("image_anchor", "feature_anchor"),
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """The main job's figure: rate (bpp, log) against each metric in stacked panels, one legend.

    Every curve has its own colour and marker (``curve_style``); anchor curves are dashed and
    their legend entry names the encoder setting (the ``encoder`` column, when present); the
    uncompressed accuracy is the dotted reference line of each panel.
    """
    labels = frame["curve"] if "curve" in frame else frame["pipeline"]
    encoders = frame["encoder"] if "encoder" in frame else pd.Series("", index=frame.index)
    coded = frame.assign(_curve=labels, _encoder=encoders.fillna(""))[frame["bpp"].notna()]
    order = sorted(
        coded["_curve"].unique(),
        key=lambda c: (
            c.split(" (")[0] not in anchors,
            anchors.index(c.split(" (")[0]) if c.split(" (")[0] in anchors else 0,
            c,
        ),
    )
    with plt.rc_context(PAPER_RC):
        size = (PANELS_FIGSIZE[0], PANELS_FIGSIZE[1] + PANEL_HEIGHT * (len(metrics) - 2))  # taller per panel
        fig, axes = plt.subplots(len(metrics), 1, figsize=size, sharex=True, squeeze=False)
        axes = axes[:, 0]
        for ax, metric in zip(list(axes), metrics, strict=True):
            _uncompressed_line(ax, frame, metric)
            for label in order:
                g = coded[(coded["_curve"] == label) & coded[metric].notna()].sort_values("bpp")
                if g.empty:
                    continue
                is_anchor = str(g["pipeline"].iloc[0]) in anchors
                style = curve_style(label, anchor=is_anchor)
                ax.plot(
                    g["bpp"],
                    g[metric],
                    color=style.colour,
                    marker=style.marker,
                    ls=style.linestyle,
                    label=legend_entry(label, str(g["_encoder"].iloc[0])),
                )
            ax.set_ylabel(f"{metric_name(metric)} (%)")
            ax.grid(True, which="major", alpha=0.3, lw=0.5)
            _rate_ticks(ax)
        axes[-1].set_xlabel("rate (bits per pixel, log scale)")
        handles, names = axes[0].get_legend_handles_labels()
        names = [
            "uncompressed" if n.startswith("uncompressed (") else n for n in names
        ]  # one line for both panels' values
        rows = math.ceil(len(names) / 2)
        fig.legend(
            handles,
            names,
            loc="lower center",
            ncol=2,
            frameon=False,
            bbox_to_anchor=(0.5, 0.0),
            columnspacing=1.0,
            handlelength=2.2,
        )
        fig.tight_layout(rect=(0.0, (0.15 * rows + 0.1) / size[1], 1.0, 1.0))
        written = save_figure(fig, stem, formats)
        plt.close(fig)
    return written


def z_sweep_with_paper(
    frame: pd.DataFrame,
    paper: pd.DataFrame,
    stem: Path,
    *,
    metric: str,
    pipeline: str = "quant",
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """The 2-bit method's accuracy against z for each n (top) beside the paper's Table 3 (bottom).

    ``paper`` has columns n_symbols, z, mAP (anchors/quant_table3_map.csv). The two panels have
    their own y axes: the paper's numbers are Cityscapes val with detectron2's Mask R-CNN R50-FPN,
    not comparable in absolute value with this run. Returns ``[]`` when there are no such runs.
    """
    rows = frame[(frame["pipeline"] == pipeline)] if "z" in frame and "n_symbols" in frame else frame.iloc[0:0]
    rows = rows[rows["z"].notna() & rows["n_symbols"].notna() & rows[metric].notna()] if len(rows) else rows
    if rows.empty:
        return []
    with plt.rc_context(PAPER_RC):
        fig, (ours, theirs) = plt.subplots(2, 1, figsize=(3.5, 4.6), sharex=True)
        _uncompressed_line(ours, frame, metric)
        for n, g in rows.groupby("n_symbols", sort=True):
            style = curve_style(f"{pipeline} (n_symbols={int(n)})")
            g = g.sort_values("z")
            ours.plot(g["z"], g[metric], color=style.colour, marker=style.marker, label=f"n = {int(n)}")
        ours.set_ylabel(f"{metric_name(metric)} (%)")
        ours.set_title("this job", fontsize=8)
        sym = paper[paper["n_symbols"].notna()]
        for n, g in sym.groupby("n_symbols", sort=True):
            style = curve_style(f"{pipeline} (n_symbols={int(n)})")
            g = g.sort_values("z")
            theirs.plot(g["z"], g["mAP"], color=style.colour, marker=style.marker, ls="--", label=f"n = {int(n)}")
        ref = paper[paper["kind"] == "float32"]
        if len(ref):
            theirs.axhline(
                float(ref["mAP"].iloc[0]),
                color="black",
                lw=0.9,
                ls=":",
                label=f"uncompressed ({float(ref['mAP'].iloc[0]):.1f})",
            )
        theirs.set_ylabel("mask mAP (%)")
        theirs.set_title(
            "the 2-bit paper, Table 3: Cityscapes val, Mask R-CNN R50-FPN\n"
            "(another dataset and network: not comparable in absolute value)",
            fontsize=7,
        )
        theirs.set_xlabel("threshold z (standard deviations)")
        for ax in (ours, theirs):
            ax.grid(True, alpha=0.3, lw=0.5)
            ax.legend(frameon=False, loc="best")
        fig.tight_layout()
        written = save_figure(fig, stem, formats)
        plt.close(fig)
    return written
