"""Summary tables of runs: one row per run configuration (pipeline, parameters, rate, accuracy)."""

from __future__ import annotations

from typing import Any

import pandas as pd

LEAD = ["pipeline", "qp", "bpp", "bbox_AP", "segm_AP", "cityscapes_AP"]


def summary_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with the usual columns first, sorted by pipeline then rate."""
    frame = pd.DataFrame(rows)
    lead = [c for c in LEAD if c in frame.columns]
    frame = frame[lead + [c for c in frame.columns if c not in lead]]
    return frame.sort_values(["pipeline", "bpp"], kind="stable").reset_index(drop=True)


def format_summary(frame: pd.DataFrame, *, markdown: bool) -> str:
    """The main job's printed table: pipeline, parameters, bpp and mAP (percent)."""
    cols = [c for c in frame.columns if c not in ("run_dir",) and not c.endswith(("_s", "AP50", "bpp_mean", "kbytes_per_image", "images"))]
    shown = frame[cols].copy()
    for c in shown.columns:
        if pd.api.types.is_float_dtype(shown[c]) and shown[c].dropna().apply(float.is_integer).all():
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else str(int(v)))
        elif c == "bpp":
            shown[c] = shown[c].map(lambda v: "-" if pd.isna(v) else f"{v:.4f}")
        elif c.endswith("AP"):
            shown[c] = shown[c].map(lambda v: f"{v:.2f}")
    shown = shown.fillna("")
    if markdown:
        header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
        return header + "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in shown.itertuples(index=False))
    return shown.to_string(index=False)
