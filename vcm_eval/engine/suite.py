"""``python -m vcm_eval.suite``: several run configurations in one job, then one table and one plot.

Each entry of ``suite.runs`` is an override list exactly as typed on the command line
(``pipeline=image_anchor pipeline.qp=22,27,32``); comma lists expand like a Hydra ``-m`` sweep.
Every expanded entry is composed with Hydra's compose API (the run command's conf/config.yaml)
on top of ``suite.overrides`` and the job's own overrides (dataset, model, vvc, ...), so it runs
exactly as its own command line would, in its own results folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from hydra import compose
from omegaconf import DictConfig

from vcm_eval.engine.run import run_single
from vcm_eval.engine.suite_entries import composed_entries, published_file
from vcm_eval.report.published import published_table
from vcm_eval.report.report import suite_summary
from vcm_eval.report.tables import format_summary, summary_frame
from vcm_eval.utils.atomic import atomic_write


def run_suite(cfg: DictConfig, *, base_overrides: list[str]) -> pd.DataFrame:
    """Run every entry of ``cfg.suite.runs``; write and return the summary table."""
    from vcm_eval.engine.video import is_video

    if is_video(cfg):  # a video dataset (suite=video): sequences, kbps, per-class results (docs/video.md)
        from vcm_eval.engine.video_suite import run_video_suite

        return run_video_suite(cfg, base_overrides=base_overrides)
    rows: list[dict[str, Any]] = []
    for _, _, composed in composed_entries(cfg, base_overrides):
        timings: dict[str, float] = {}
        row = run_single(compose(config_name="config", overrides=composed), timings=timings)
        rows.append({**row, "run_s": round(sum(timings.values()), 1)})  # 0 for a run found done already
    table = summary_frame(rows)
    folder = "suite" if cfg.suite.name == "main" else f"suite_{cfg.suite.name}"
    out_dir = Path(cfg.paths.results) / cfg.dataset.name / cfg.model.name / folder
    atomic_write(out_dir / "summary.csv", table.to_csv(index=False))
    atomic_write(out_dir / "summary.md", format_summary(table, markdown=True))
    print(format_summary(table, markdown=False))
    bd_text, paths = suite_summary(
        [Path(r["run_dir"]) for r in rows],
        out_dir,
        metrics=list(cfg.suite.metrics),
        anchors=list(cfg.suite.anchors),
        plot=cfg.suite.plot,
    )
    print(bd_text)
    if cfg.suite.published:
        text = published_table(
            pd.read_csv(out_dir / "bd.csv"),
            published_file(cfg.suite.published),
            dataset=cfg.dataset.name,
            model=cfg.model.name,
        )
        atomic_write(out_dir / "published.md", text + "\n")
        print(text)
    if paths:
        print("wrote: " + ", ".join(str(p) for p in paths))
    print(f"table: {out_dir / 'summary.csv'}")
    return table
