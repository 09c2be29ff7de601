"""Rate-accuracy plots (PNG + vector PDF) with matplotlib."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from vcm_eval.report.store import atomic_write  # noqa: E402

STYLE = {
    "image_anchor": ("tab:blue", "o", "--"),
    "feature_anchor": ("tab:orange", "s", "--"),
    "quant": ("tab:green", "^", "-"),
    "fusion_codec": ("tab:red", "D", "-"),
}


def rate_accuracy_plot(frame: pd.DataFrame, stem: Path, *, metric: str, log_rate: bool = False) -> list[Path]:
    """bpp vs ``metric`` (mAP %), one curve per pipeline, uncompressed as a horizontal line.

    Returns the written files (``stem``.png and ``stem``.pdf).
    """
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for name, group in frame.groupby("pipeline", sort=True):
        if name == "uncompressed":
            ax.axhline(float(group[metric].iloc[0]), color="black", lw=1, ls=":", label="uncompressed")
            continue
        colour, marker, line = STYLE.get(str(name), (None, "x", "-"))
        g = group.sort_values("bpp")
        ax.plot(g["bpp"], g[metric], marker=marker, ls=line, color=colour, label=str(name))
    if log_rate:
        ax.set_xscale("log")
    ax.set_xlabel("rate (bits per pixel)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    written = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=200)
        path = stem.with_suffix("." + ext)
        atomic_write(path, buf.getvalue())
        written.append(path)
    plt.close(fig)
    return written
