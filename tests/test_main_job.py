"""The main job (``python -m vcm_eval.suite``): every method on the same images, one BD table, paper figures."""

from __future__ import annotations

import csv
import math
import re
from itertools import combinations
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from conftest import compose_suite

from vcm_eval.report.plots import PAPER_RC, _rate_ticks, comparison_figure, legend_entry


def pdf_font_subtypes(pdf: Path) -> set[str]:
    """The ``/Subtype`` of every font dictionary in a PDF (matplotlib writes them uncompressed)."""
    return set(re.findall(rb"/Type\s*/Font\s*/Subtype\s*/(\w+)", pdf.read_bytes())) | set(
        re.findall(rb"/Subtype\s*/(\w+)\s*/Type\s*/Font", pdf.read_bytes())
    )


def test_main_job_runs_all_five_methods_on_the_same_images(
    hydra_conf: None, synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vcm_eval.engine.suite import run_suite

    overrides = [
        f"dataset.root={synth_root}",
        "dataset.size=6",
        f"paths.results={tmp_path}",
        "progress=false",
        "suite.overrides=['dataset=synthetic_oid','dataset.limit=2']",
    ]
    cfg = compose_suite(overrides)
    table = run_suite(cfg, base_overrides=overrides)
    counts = table["pipeline"].value_counts().to_dict()
    assert counts == {
        "uncompressed": 1,
        "image_anchor": 5,
        "feature_anchor": 3,
        "quant": 3,
        "quant8": 1,
        "fusion_codec": 6,
    }
    assert set(table["images"]) == {2.0}  # every method measured on the same two images
    assert table[["oic_AP50", "oic_segm_AP50", "cityscapes_AP"]].notna().all().all()  # synthetic_oid: all three
    out = tmp_path / "synthetic_oid" / "synthetic_maskrcnn_slim" / "suite"
    with (out / "bd.csv").open() as f:
        bd = list(csv.DictReader(f))
    assert {r["anchor"].split(" (")[0] for r in bd} == {"image_anchor", "feature_anchor"}
    assert {r["metric"] for r in bd} == {"bbox_AP", "segm_AP", "oic_AP50", "oic_segm_AP50"}
    assert {r["curve"].split(" (")[0] for r in bd} >= {
        "quant",
        "quant8",
        "fusion_codec",
        "feature_anchor",
        "image_anchor",
    }
    bd_rate = {(r["anchor"], r["curve"], r["metric"]): float(r["bd_rate"] or "nan") for r in bd}  # NaN is written as ""
    pairs = (("image_anchor", "fusion_codec"), ("image_anchor", "feature_anchor"), ("feature_anchor", "image_anchor"),
             ("feature_anchor", "fusion_codec"))  # fmt: skip
    readme = [(a, c, m) for a, c in pairs for m in ("bbox_AP", "segm_AP")]  # the BD values the README shows
    assert all(math.isfinite(bd_rate.get(k, math.nan)) for k in readme), {k: bd_rate.get(k) for k in readme}
    for stem in ("comparison", "z_sweep"):
        assert (out / f"{stem}.png").stat().st_size > 10_000
        fonts = pdf_font_subtypes(out / f"{stem}.pdf")
        assert fonts and b"Type3" not in fonts, fonts
    printed = capsys.readouterr().out
    assert "BD-rate" in printed and "feature_anchor" in printed


@pytest.mark.parametrize("rates", [(0.017, 0.051), (0.05, 0.9), (0.012, 4.0), (0.017, 170.0), (0.001, 500.0)])
def test_log_rate_tick_labels_never_overlap(rates: tuple[float, float], tmp_path: Path) -> None:
    with plt.rc_context(PAPER_RC):
        fig, ax = plt.subplots(figsize=(3.5, 2.6))
        ax.plot(rates, (10, 60))
        _rate_ticks(ax)
        fig.canvas.draw()
        boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
        boxes = [
            b for b in boxes if ax.get_window_extent().x0 - 1 <= (b.x0 + b.x1) / 2 <= ax.get_window_extent().x1 + 1
        ]
        plt.close(fig)
    assert len(boxes) >= 2, "a readable axis labels at least two rates"
    assert not any(a.overlaps(b) for a, b in combinations(boxes, 2))


def test_comparison_figure_names_the_anchor_encoders(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        [
            {
                "pipeline": "uncompressed",
                "curve": "uncompressed",
                "bpp": float("nan"),
                "bbox_AP": 70.0,
                "segm_AP": 64.0,
                "encoder": "",
            },
            *(
                {
                    "pipeline": "image_anchor",
                    "curve": "image_anchor",
                    "bpp": b,
                    "bbox_AP": a,
                    "segm_AP": a - 5,
                    "encoder": "VTM-23.13 AI",
                }
                for b, a in ((0.02, 40), (0.1, 66))
            ),
            *(
                {
                    "pipeline": "fusion_codec",
                    "curve": "fusion_codec",
                    "bpp": b,
                    "bbox_AP": a,
                    "segm_AP": a - 5,
                    "encoder": "",
                }
                for b, a in ((0.02, 30), (0.05, 50))
            ),
        ]
    )
    assert (
        legend_entry("image_anchor", "VTM-23.13 AI") == "image_anchor, VTM-23.13 AI"
        and legend_entry("fusion_codec", "") == "fusion_codec"
    )
    files = comparison_figure(frame, tmp_path / "fig", metrics=("bbox_AP", "segm_AP"))
    assert {f.suffix for f in files} == {".pdf", ".png"}
    text = (tmp_path / "fig.pdf").read_bytes()
    assert b"Type3" not in b"".join(pdf_font_subtypes(tmp_path / "fig.pdf")) and len(text) > 5000
