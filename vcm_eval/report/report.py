"""``python -m vcm_eval.report report.runs=<dirs or globs>``: a sweep's runs -> tables + figures.

The report only reads run folders (``metrics.json``, ``config.yaml``, ``provenance.json``,
``records.jsonl``; see ``vcm_eval.engine.run``); it never runs a network. A folder given (or matched by a
glob) is searched recursively, so ``report.runs=results/synthetic`` gathers every run under it.
Runs are grouped into *setups* - the same dataset, model and weights, evaluation settings and
evaluated image count - because BD values only compare curves measured on the same images by the
same network. Within a setup, runs form one curve only when nothing but a rate parameter differs:
another encoder, codec version, device or code is another curve (``vcm_eval.report.identity``),
and when the anchor pipeline has several curves the report asks which one instead of guessing.
Outputs (in ``report.output``):

* ``runs.csv`` (every column, full precision), ``runs.md``, ``runs.tex``: one row per run;
* ``bd.csv``, ``bd.md``, ``bd.tex``: BD-rate and BD-mAP of every curve against the anchor;
* ``rate_accuracy_<metric>.pdf/.png`` per accuracy metric, ``z_sweep_<metric>.pdf/.png`` when
  quant runs are present (a ``_<dataset>_<model>_<setup>`` suffix when there are several setups).
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, ListConfig, OmegaConf

from vcm_eval.errors import ConfigError, DataError
from vcm_eval.metrics.bdrate import DEFAULT_MIN_OVERLAP, DEFAULT_SETTINGS, BdSettings
from vcm_eval.report.identity import bind_rate_versions, identity_labels, run_identity, vvc_settings
from vcm_eval.report.mpeg_cttc import write_cttc_files
from vcm_eval.report.plots import FORMATS, comparison_figure, knob_sweep_plot, rate_accuracy_plot, z_sweep_with_paper
from vcm_eval.report.quant_table import paper_table3, write_quant_table
from vcm_eval.report.tables import (
    DEFAULT_METRICS,
    GROUP,
    anchor_rows,
    bd_display,
    bd_frame,
    curve_label,
    runs_display,
    to_latex,
    to_markdown,
)
from vcm_eval.utils.atomic import atomic_write
from vcm_eval.utils.construct import from_config

# Keys of the dataset group that never change a result (also left out of vcm_eval.engine.run's key).
_NOT_IN_SETUP = {"dataset": ("limit",)}


@dataclass
class ReportResult:
    """What a report produced: the tables (DataFrames), the files written, the runs it skipped."""

    runs: pd.DataFrame
    bd: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    incomplete: list[Path] = field(default_factory=list)
    text: str = ""


def _patterns(runs: Any) -> list[str]:
    if isinstance(runs, str):
        return [runs]
    if isinstance(runs, (list, tuple, ListConfig)) and all(isinstance(r, str) for r in runs) and len(runs) > 0:
        return [str(r) for r in runs]
    raise ConfigError(f"report.runs={runs!r} must be a folder or glob, or a list of them (report.runs='[a,b]')")


def find_runs(runs: str | Sequence[str]) -> tuple[list[Path], list[Path]]:
    """Run folders under the given folders / globs: (complete ones, interrupted ones).

    A run is complete when it has ``metrics.json``; a folder with ``records.jsonl`` but no metrics
    is an interrupted run (rerun its command to resume it).

    Raises:
        DataError: a pattern matches nothing, or nothing matched holds a run.
    """
    complete: dict[Path, None] = {}
    incomplete: dict[Path, None] = {}
    for pattern in _patterns(runs):
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            raise DataError(
                f"report.runs: {pattern!r} matches no file or folder; "
                "give run folders or a glob such as results/synthetic/**"
            )
        for match in map(Path, matches):
            if match.is_file():
                match = match.parent
            for f in sorted(match.rglob("metrics.json")):
                complete[f.parent.resolve()] = None
            for f in sorted(match.rglob("records.jsonl")):
                if not (f.parent / "metrics.json").is_file():
                    incomplete[f.parent.resolve()] = None
    if not complete:
        raise DataError(
            f"report.runs={runs!r} holds no finished run (no metrics.json); "
            "run a pipeline first, or point at its results folder"
        )
    return list(complete), list(incomplete)


def setup_key(config: dict[str, Any], images: float, weights: str = "") -> str:
    """Short hash of what must be equal for two runs to be compared: dataset, model, eval, images.

    ``weights`` is the fingerprint of the network's weights file (provenance ``model``): retrained
    weights under the same model name are another network, and BD values never mix networks.
    """
    parts: dict[str, Any] = {"images": images, **({"weights": weights} if weights else {})}
    for group in ("dataset", "model", "eval"):
        node = config.get(group) or {}
        parts[group] = {k: v for k, v in node.items() if k not in _NOT_IN_SETUP.get(group, ())}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _count_records(path: Path) -> int:
    """Distinct images with a complete line in ``records.jsonl`` (read only; torn lines ignored)."""
    if not path.is_file():
        return 0
    ids = set()
    for line in path.read_bytes().split(b"\n")[:-1]:
        try:
            ids.add(int(json.loads(line)["image_id"]))
        except (ValueError, KeyError, TypeError):
            continue
    return len(ids)


def _flat(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested pipeline settings as dotted scalar columns (``arch.latent_channels``); lists as text."""
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", (str(v) if isinstance(v, list) else v)


def encoder_label(codec_version: str, vvc: dict[str, Any]) -> str:
    """Short name of a VVC encoder setting for legends: ``VTM-23.13 AI``, ``VVenC medium``; else ``""``.

    Args:
        codec_version: the run's ``provenance.json`` ``codec_version``.
        vvc: its VVC settings (``identity.vvc_settings``: the ``vvc`` group, or ``codec`` before
            the rename).
    """
    if codec_version.startswith("VTM-"):
        return f"{codec_version.split()[0]} AI"
    if "libvvenc" in codec_version or "vvenc" in codec_version:
        return f"VVenC {vvc.get('preset', '')}".strip()
    return ""


def load_run(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """One run folder -> (table row, its parameter names).

    Raises:
        DataError: a file of the run is missing or unreadable.
    """
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        container = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=False)
        prov_path = run_dir / "provenance.json"
        prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise DataError(
            f"run folder {run_dir} is unreadable ({exc}); rerun its command, or leave it out of report.runs"
        ) from exc
    if not isinstance(container, dict) or "pipeline" not in container:
        raise DataError(f"{run_dir / 'config.yaml'} is not a vcm_eval run config; leave {run_dir} out of report.runs")
    config: dict[str, Any] = {str(k): v for k, v in container.items()}
    # Hydra's own keys (``_target_``: which class builds the codec) are not parameters of a curve
    pipeline_cfg = {k: v for k, v in config["pipeline"].items() if k != "name" and not str(k).startswith("_")}
    spec = pipeline_cfg.get("codec")
    if isinstance(spec, dict) and "_target_" in spec:  # a user's codec: its keyword arguments are the parameters
        pipeline_cfg = {k: v for k, v in spec.items() if not str(k).startswith("_")}
    params = dict(_flat(pipeline_cfg))
    pipeline = str(metrics.get("pipeline") or config["pipeline"]["name"])  # a user's codec runs under its own name
    identity = run_identity(config, prov, has_codec=bool(metrics.get("rate_params")))
    row: dict[str, Any] = {
        "dataset": config.get("dataset", {}).get("name", ""),
        "model": config.get("model", {}).get("name", ""),
        "setup": setup_key(config, metrics.get("images", float("nan")), identity["model_weights"]),
        "pipeline": pipeline,
        "curve": pipeline,  # set by load_runs from the parameters that vary
        **params,
    }
    row.update({k: v for k, v in metrics.items() if k not in row and k not in ("pipeline", "run_dir")})
    row["bpp"] = metrics.get("bpp", float("nan"))
    row["records"] = _count_records(run_dir / "records.jsonl")
    row["encoder"] = encoder_label(identity["codec_version"], vvc_settings(config))
    row["git_commit"] = prov.get("git_commit", "")
    row.update({k: v for k, v in identity.items() if k not in row})
    row["_identity"] = identity  # taken out by load_runs
    row["run_dir"] = str(run_dir)
    return row, list(params)


def load_runs(run_dirs: Sequence[Path], *, anchor: str = "image_anchor") -> tuple[pd.DataFrame, list[str]]:
    """Many run folders -> (runs table sorted by setup, pipeline and rate, parameters to show).

    The ``curve`` label names the pipeline and those of its non-rate parameters that take more
    than one value among the runs (``quant (n_symbols=4)``), then what else sets the curve apart
    (``variant``: encoder, codec version, weights, device, code; ``vcm_eval.report.identity``),
    so labels stay short and runs that differ in more than a rate parameter never share a curve.
    A run's rate parameters are the ones its codec declared (``rate_params`` in metrics.json),
    its sweep figures' knobs likewise (``sweep_params``, kept as a comma-joined column).
    The parameters to show are the rate parameters and those varying ones; the table keeps every
    parameter (nested settings as dotted columns).

    Raises:
        DataError: two runs of one setup agree in pipeline, parameters and identity (one run read
            twice, e.g. a copied results folder): narrow ``report.runs``; or a run with parameters
            did not record its codec's rate parameters (made by an older vcm_eval): rerun it.
    """
    rows: list[tuple[dict[str, Any], list[str]]] = []
    params: list[str] = []
    for d in run_dirs:
        row, names = load_run(Path(d))
        if names and not isinstance(row.get("rate_params"), list):
            raise DataError(
                f"{d}/metrics.json does not name its codec's rate parameters (a run of an older vcm_eval); "
                "rerun its command (its records are reused) or leave it out of report.runs"
            )
        row["sweep_params"] = ",".join(row.get("sweep_params") or [])
        rows.append((row, names))
        params.extend(n for n in names if n not in params)
    knobs = [list(r.pop("rate_params", None) or []) for r, _ in rows]
    identities = [r.pop("_identity") for r, _ in rows]
    curve_keys = [
        (r["pipeline"], tuple((n, str(r.get(n))) for n in names if n not in own))
        for (r, names), own in zip(rows, knobs)
    ]
    bind_rate_versions(identities, curve_keys, [{n: r.get(n) for n in own} for (r, _), own in zip(rows, knobs)])
    variants = identity_labels(identities, [r["pipeline"] for r, _ in rows], [r["encoder"] for r, _ in rows])
    varying: dict[str, list[str]] = {}
    for (row, names), own in zip(rows, knobs):
        for n in names:
            if n not in own and n not in varying.setdefault(row["pipeline"], []):
                values = {str(r.get(n)) for r, _ in rows if r["pipeline"] == row["pipeline"]}
                if len(values) > 1:
                    varying[row["pipeline"]].append(n)
    for (row, _), own, variant in zip(rows, knobs, variants):
        row["variant"] = variant
        row["rate_param"] = own[0] if own else ""  # the knob along the curve (MPEG's CSV calls it qp)
        row["curve"] = curve_label(
            row["pipeline"], {n: row.get(n) for n in varying.get(row["pipeline"], [])}, own, variant
        )
    frame = pd.DataFrame([row for row, _ in rows])
    key = [*GROUP, "curve", *params]  # the label tells pipelines, non-rate parameters and identities apart
    dup = frame[frame.astype({c: str for c in key}).duplicated(subset=key, keep=False)]
    if len(dup):
        raise DataError(
            f"runs {dup['run_dir'].tolist()} agree in configuration and identity (one run read twice, "
            "e.g. a copied results folder); narrow report.runs so each run is read once"
        )
    order = (frame["pipeline"] == "uncompressed").map({True: 0, False: 2}) - anchor_rows(frame, anchor).astype(int)
    frame = (
        frame.assign(_order=order)
        .sort_values([*GROUP, "_order", "pipeline", "curve", "bpp"], kind="stable")
        .drop(columns="_order")
    )
    lead = [*GROUP, "pipeline", "curve", *params, "bpp"]
    frame = frame[lead + [c for c in frame.columns if c not in lead]]
    shown = [p for p in params if any(p in own for own in knobs) or any(p in v for v in varying.values())]
    return frame.reset_index(drop=True), shown


def _group_suffix(frame: pd.DataFrame, key: tuple[Any, ...]) -> str:
    return "" if frame[GROUP].drop_duplicates().shape[0] == 1 else "_" + "_".join(str(k) for k in key)


def sweep_knobs(runs: pd.DataFrame) -> list[str]:
    """The knobs some run's codec wants a sweep figure of (``sweep_params``), in first-seen order."""
    column = runs["sweep_params"] if "sweep_params" in runs else pd.Series(dtype=str)
    return list(dict.fromkeys(k for text in column.dropna() for k in str(text).split(",") if k))


def write_figures(
    runs: pd.DataFrame,
    out_dir: Path,
    *,
    metrics: Sequence[str],
    anchor: str,
    log_rate: bool,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Rate-accuracy figure per setup and metric, plus accuracy against each knob a codec asks a sweep figure for.

    (The knobs are ``Codec.sweep_params``, recorded in each run's metrics.json.)
    """
    files: list[Path] = []
    for key, group in runs.groupby(GROUP, sort=True):
        suffix = _group_suffix(runs, key)
        title = f"{key[0]}, {key[1]}" if suffix else ""
        for metric in metrics:
            if metric not in group or group[metric].isna().all():
                continue
            files += rate_accuracy_plot(
                group,
                out_dir / f"rate_accuracy_{metric}{suffix}",
                metric=metric,
                log_rate=log_rate,
                anchor=anchor,
                formats=formats,
                title=title,
            )
            for knob in sweep_knobs(group):
                files += knob_sweep_plot(
                    group,
                    out_dir / f"{knob}_sweep_{metric}{suffix}",
                    knob=knob,
                    metric=metric,
                    formats=formats,
                    title=title,
                )
    return files


def write_quant_tables(runs: pd.DataFrame, out_dir: Path, *, metric: str) -> list[Path]:
    """The 2-bit method's table in the paper's Table 3 layout (``quant_table.csv/.md``), per setup with quant runs."""
    files: list[Path] = []
    for key, group in runs.groupby(GROUP, sort=True):
        if "quant" not in set(group["pipeline"]) or metric not in group:
            continue
        variants = group["variant"].fillna("").astype(str) if "variant" in group else pd.Series("", group.index)
        names = sorted(set(variants))  # runs that differ in more than a parameter (device, threads): own tables
        for k, variant in enumerate(names, 1):
            part = group[variants == variant]
            rows = [{c: v for c, v in r.items() if not (isinstance(v, float) and np.isnan(v))}
                    for r in part.to_dict("records")]  # fmt: skip
            stem = f"quant_table{_group_suffix(runs, key)}" + (f"_{k}" if len(names) > 1 else "")
            title = f"Runs {variant or 'without a differing setting'}" if len(names) > 1 else ""
            if "quant" in set(part["pipeline"]):
                files += write_quant_table(rows, out_dir, metric=metric, stem=stem, title=title)
    return files


def _caption(runs: pd.DataFrame) -> str:
    groups = runs[[*GROUP, "images"]].drop_duplicates() if "images" in runs else runs[GROUP].drop_duplicates()
    parts = []
    for g in groups.itertuples(index=False):
        images = f", {int(g.images)} images" if "images" in groups and not np.isnan(g.images) else ""
        parts.append(f"{g.dataset} / {g.model}{images} (setup {g.setup})")
    return "; ".join(parts)


def write_report(
    runs: pd.DataFrame,
    params: Sequence[str],
    out_dir: Path,
    *,
    anchor: str = "image_anchor",
    anchor_params: dict[str, Any] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    settings: BdSettings = DEFAULT_SETTINGS,
    plot: bool = True,
    log_rate: bool = False,
    formats: Sequence[str] = FORMATS,
) -> ReportResult:
    """Write the runs and BD tables (CSV, Markdown, LaTeX) and the figures into ``out_dir``.

    Args:
        anchor: a pipeline, or one curve's label (``image_anchor (VTM-23.13 AI)``) when the
            pipeline has several; ``anchor_params`` narrows it by column values.
        settings: how BD values are computed (``BdSettings``: method, non-monotone policy,
            minimum overlap), passed as one object down to the integral.

    Raises:
        ConfigError: ``anchor`` names no pipeline or curve among the runs, or matches several
            curves of one setup (the messages list the choices).
    """
    if not anchor_rows(runs, anchor).any():
        raise ConfigError(
            f"report.anchor={anchor!r} is not among the runs' pipelines {sorted(set(runs['pipeline']))} "
            "or curves; choose one of them"
        )
    metrics = [m for m in metrics if m in runs and runs[m].notna().any()]
    bd = bd_frame(runs, anchor=anchor, anchor_params=anchor_params, metrics=metrics, settings=settings)
    caption = _caption(runs)
    runs_view = runs_display(runs, metrics=metrics, params=params)
    bd_view, notes = bd_display(bd)
    bd_caption = (
        "BD-rate (%, negative = fewer bits at equal mAP) and BD-mAP (points at equal rate) against "
        f"{', '.join(sorted(set(bd['anchor']) - {''})) or anchor}, {settings.method} interpolation; "
        f"overlap = intersection over union of the two curves' mAP ranges / log-rate ranges; {caption}"
    )
    files = []
    for name, data in (
        ("runs.csv", runs.to_csv(index=False)),
        ("runs.md", f"Runs: {caption}\n\n" + to_markdown(runs_view)),
        ("runs.tex", to_latex(runs_view, caption=f"Runs: {caption}")),
        ("bd.csv", bd.to_csv(index=False)),
        (
            "bd.md",
            f"{bd_caption}\n\n" + (to_markdown(bd_view, notes) if len(bd_view) else "(no curve besides the anchor)\n"),
        ),
        (
            "bd.tex",
            to_latex(bd_view, notes, caption=bd_caption)
            if len(bd_view)
            else f"% {bd_caption}\n% (no curve besides the anchor)\n",
        ),
    ):
        atomic_write(out_dir / name, data)
        files.append(out_dir / name)
    if plot:
        files += write_figures(runs, out_dir, metrics=metrics, anchor=anchor, log_rate=log_rate, formats=formats)
    text = f"Runs: {caption}\n\n{to_markdown(runs_view)}\n{bd_caption}\n\n" + (
        to_markdown(bd_view, notes) if len(bd_view) else "(no curve besides the anchor)\n"
    )
    return ReportResult(runs=runs, bd=bd, files=files, text=text)


def run_report(cfg: DictConfig) -> ReportResult:
    """The report command: ``cfg.report`` (``ReportConfig``) -> files in ``cfg.report.output``."""
    rc = cfg.report
    run_dirs, incomplete = find_runs(rc.runs)
    runs, params = load_runs(run_dirs, anchor=rc.anchor)
    result = write_report(
        runs,
        params,
        Path(rc.output),
        anchor=rc.anchor,
        anchor_params=dict(rc.anchor_params),
        metrics=list(rc.metrics),
        settings=from_config(BdSettings, rc),
        plot=rc.plot,
        log_rate=rc.log_rate,
        formats=list(rc.formats),
    )
    metric = cfg.eval.primary_metric if "eval" in cfg else "segm_AP"
    result.files += write_quant_tables(runs, Path(rc.output), metric=metric)
    if rc.format == "mpeg_cttc":
        metric = rc.cttc_metric or cttc_default_metric(runs, list(rc.metrics), str(rc.cttc_dataset))
        result.files += write_cttc_files(
            runs, Path(rc.output), metric=metric, dataset=rc.cttc_dataset, mode=str(rc.cttc_mode)
        )
    result.incomplete = incomplete
    return result


def cttc_default_metric(runs: pd.DataFrame, metrics: Sequence[str], dataset: str) -> str:
    """The CTTC CSV's accuracy when ``report.cttc_metric`` is empty: MPEG's metric where the runs have it (the
    Open Images Challenge mAP@0.5: ``oic_segm_AP50`` for a ``*segmentation*`` sheet, else ``oic_AP50``), else the
    first of ``metrics`` the runs have."""
    oic = "oic_segm_AP50" if "segmentation" in dataset else "oic_AP50"
    return next((m for m in (oic, *metrics) if m in runs and runs[m].notna().any()), "")


def suite_summary(
    run_dirs: Sequence[Path],
    out_dir: Path,
    *,
    metrics: Sequence[str] = ("bbox_AP", "segm_AP"),
    anchors: Sequence[str] = ("image_anchor", "feature_anchor"),
    plot: bool = True,
    formats: Sequence[str] = FORMATS,
) -> tuple[str, list[Path]]:
    """The main job's closing summary: BD-rate of every curve against each anchor, and figures.

    Writes ``bd.csv`` (every value with its overlaps and notes) and ``bd.md`` (one row per curve and
    anchor; n/a with a numbered reason where the curves overlap too little) into ``out_dir``, the
    comparison figure (``comparison.pdf/.png``: rate vs each metric, stacked panels) and, when
    quant runs are present, the z figure beside the paper's Table 3 (``z_sweep.pdf/.png``).

    An anchor whose runs form several curves (say, made by two encoders or two code revisions) gets
    no BD values; the text says why instead of comparing with a curve drawn through both.

    Returns the printable BD table and the files written.
    """
    runs, _ = load_runs(run_dirs, anchor=anchors[0])
    metrics = [m for m in metrics if m in runs and runs[m].notna().any()]
    present = [a for a in anchors if a in set(runs["pipeline"])]
    frames, refused = [], []
    for a in present:
        try:
            frames.append(bd_frame(runs, anchor=a, metrics=metrics))
        except ConfigError as exc:  # an anchor with several curves: say so, keep the job's other results
            refused.append(f"BD-rate against {a} refused: {exc} (in the report command over these runs)")
    bd = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    files: list[Path] = []
    if len(bd):
        view, notes = bd_display(bd)
        caption = (
            "BD-rate (%, negative = fewer bits at equal mAP) and BD-mAP (points at equal rate) of every curve "
            "against each anchor, pchip; overlap = intersection over union of the two curves' mAP ranges / "
            f"log-rate ranges (BD-rate / BD-mAP is n/a below {DEFAULT_MIN_OVERLAP}); {_caption(runs)}"
        )
        text = f"{caption}\n\n{to_markdown(view, notes)}"
        for name, data in (("bd.csv", bd.to_csv(index=False)), ("bd.md", text)):
            atomic_write(out_dir / name, data)
            files.append(out_dir / name)
    else:
        text = f"BD-rate: none of the anchors {list(anchors)} ran in this suite" if not refused else ""
    text = "\n".join([*refused, text]).strip()
    if plot:
        files += comparison_figure(runs, out_dir / "comparison", metrics=metrics, anchors=anchors, formats=formats)
        if metrics:
            files += z_sweep_with_paper(runs, paper_table3(), out_dir / "z_sweep", metric=metrics[-1], formats=formats)
    return text, files
