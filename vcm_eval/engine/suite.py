"""``python -m vcm_eval.suite``: several run configurations in one job, then one table and one plot.

Each entry of ``suite.runs`` is an override list exactly as typed on the command line
(``pipeline=image_anchor pipeline.qp=22,27,32``); comma lists expand like a Hydra ``-m`` sweep.
Every expanded entry is composed with Hydra's compose API (the run command's conf/config.yaml)
on top of ``suite.overrides`` and the job's own overrides (dataset, model, vvc, ...), so it runs
exactly as its own command line would, in its own results folder.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from hydra import compose
from omegaconf import DictConfig

from vcm_eval.engine.run import run_single
from vcm_eval.errors import ConfigError
from vcm_eval.report.published import published_table
from vcm_eval.report.report import suite_summary
from vcm_eval.report.tables import format_summary, summary_frame
from vcm_eval.resources import ANCHORS_DIR
from vcm_eval.utils.atomic import atomic_write
from vcm_eval.utils.cli import modernize


def expand_entry(entry: str) -> list[list[str]]:
    """``"a=1 b=2,3"`` -> ``[["a=1", "b=2"], ["a=1", "b=3"]]`` (cartesian product of comma lists)."""
    choices = []
    for token in shlex.split(entry):
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"suite entry {entry!r}: {token!r} is not key=value; write overrides as on the command line"
            )
        if value.startswith(("[", "{")):
            choices.append([token])
        else:
            choices.append([f"{key}={v}" for v in value.split(",")])
    return [list(combo) for combo in itertools.product(*choices)]


def published_file(name: str) -> Path:
    """``suite.published``: a path, or a file name in the shipped anchors/ folder."""
    path = Path(name)
    return path if path.is_file() or path.is_absolute() else ANCHORS_DIR / name


def is_suite_override(override: str) -> bool:
    """Overrides of the suite itself (``suite=...``, ``suite.runs=...``), not passed to its entries."""
    key = override.lstrip("+~").split("=", 1)[0]
    return key in ("suite", "pipeline") or key.startswith(("suite.", "pipeline."))


def composed_entries(cfg: DictConfig, base_overrides: list[str]) -> Iterator[tuple[str, list[str], list[str]]]:
    """(entry, its expanded overrides, the overrides to compose) for every run of ``cfg.suite.runs``, in order.

    The overrides to compose are ``suite.overrides``, then the job's own (not the suite's), then the entry's in
    today's spellings (a note is printed for each old one): a run composed from them is the run its own command
    line would make.

    Raises:
        ConfigError: ``suite.runs`` is empty, or an entry is not ``key=value`` overrides.
    """
    if not cfg.suite.runs:
        raise ConfigError("suite.runs is empty; list override strings such as 'pipeline=image_anchor pipeline.qp=32'")
    base = list(cfg.suite.overrides) + [o for o in base_overrides if not is_suite_override(o)]
    for entry in cfg.suite.runs:
        for overrides in expand_entry(entry):
            modern, notes = modernize(overrides)
            for note in notes:
                print(f"warning: suite entry {entry!r}: {note}")
            yield entry, overrides, base + modern


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
