"""``pipeline=suite``: several run configurations in one job, then one table and one plot.

Each entry of ``pipeline.runs`` is an override list exactly as typed on the command line
(``pipeline=image_anchor pipeline.qp=22,27,32``); comma lists expand like a Hydra ``-m`` sweep.
Every expanded entry is composed with Hydra's compose API on top of the job's own non-pipeline
overrides (dataset, model, codec, ...), so it runs exactly as its own command line would, in its
own results folder.
"""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
from hydra import compose
from omegaconf import DictConfig

from vcm_eval.engine.run import run_single
from vcm_eval.errors import ConfigError
from vcm_eval.report.report import suite_summary
from vcm_eval.report.tables import format_summary, summary_frame
from vcm_eval.utils.atomic import atomic_write


def expand_entry(entry: str) -> list[list[str]]:
    """``"a=1 b=2,3"`` -> ``[["a=1", "b=2"], ["a=1", "b=3"]]`` (cartesian product of comma lists)."""
    choices = []
    for token in shlex.split(entry):
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise ConfigError(f"suite entry {entry!r}: {token!r} is not key=value; write overrides as on the command line")
        if value.startswith(("[", "{")):
            choices.append([token])
        else:
            choices.append([f"{key}={v}" for v in value.split(",")])
    return [list(combo) for combo in itertools.product(*choices)]


def is_pipeline_override(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return key == "pipeline" or key.startswith("pipeline.")


def run_suite(cfg: DictConfig, *, base_overrides: list[str]) -> pd.DataFrame:
    """Run every entry of ``cfg.pipeline.runs``; write and return the summary table."""
    if not cfg.pipeline.runs:
        raise ConfigError("pipeline.runs is empty; list override strings such as 'pipeline=image_anchor pipeline.qp=32'")
    base = list(cfg.pipeline.overrides) + [o for o in base_overrides if not is_pipeline_override(o)]
    rows: list[dict[str, Any]] = []
    for entry in cfg.pipeline.runs:
        for overrides in expand_entry(entry):
            sub = compose(config_name="config", overrides=base + overrides)
            if sub.pipeline.name == "suite":
                raise ConfigError(f"suite entry {entry!r} is itself a suite; list single pipelines")
            timings: dict[str, float] = {}
            row = run_single(sub, timings=timings)
            rows.append({**row, "run_s": round(sum(timings.values()), 1)})  # 0 for a run found done already
    table = summary_frame(rows)
    out_dir = Path(cfg.paths.results) / cfg.dataset.name / cfg.model.name / "suite"
    atomic_write(out_dir / "summary.csv", table.to_csv(index=False))
    atomic_write(out_dir / "summary.md", format_summary(table, markdown=True))
    print(format_summary(table, markdown=False))
    bd_text, paths = suite_summary([Path(r["run_dir"]) for r in rows], out_dir, metrics=list(cfg.pipeline.metrics), anchors=list(cfg.pipeline.anchors), plot=cfg.pipeline.plot)
    print(bd_text)
    if paths:
        print("wrote: " + ", ".join(str(p) for p in paths))
    print(f"table: {out_dir / 'summary.csv'}")
    return table
