"""Reports of video runs: per-sequence and per-class tables in kbps, BD-rate over kbps per sequence and per
class, rate-accuracy figures per class, MPEG's CTTC CSV (``python -m vcm_eval.report.video``; docs/video.md).

Reads the folders ``vcm_eval.engine.video`` writes (``video.json``, ``config.yaml``, ``provenance.json``)
and never runs a network. As in the image report (``vcm_eval.report.report``), a *curve* is the runs of
one pipeline that differ only in a rate parameter; another encoder, VVC setting (``vvc.*``,
``vvc_sequence.*``), tracker setting, codec version, network, device or code revision is another curve
(``vcm_eval.report.identity``), and a *setup* is a dataset, model, weights, evaluation settings and
frame count: BD values only compare curves of one setup. Each run gives one row per sequence
(``kind=sequence``), per class (``kind=class``: the FCM template's length-weighted values, the pooled ones in
``*_pooled`` columns) and for the whole set (``kind=all``). BD-rate is computed over kbps, per sequence and
per class, with the image report's interpolation and policies (``vcm_eval.metrics.bdrate``); BD-mAP (or
BD-MOTA) is the accuracy difference in points at equal kbps.

Outputs (``report.output``): ``video_runs.csv`` (every row and column at full precision),
``video_sequences.md``, ``video_classes.md``, ``video_bd.csv`` / ``video_bd.md``, figures
``video_rate_<metric>_<class>.pdf/.png``, and with ``report.format=mpeg_cttc`` the CTTC CSV of each curve
``mpeg_cttc_<curve>.csv`` (rate ``bitrate (kbps)``, 4 points per sequence for ``report.cttc_mode=fcm``):
per-sequence rows, then one ``CLASS-<class>`` row per class and rate point.
"""

from __future__ import annotations

import glob
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from vcm_eval.errors import ConfigError, DataError
from vcm_eval.metrics.bdrate import DEFAULT_SETTINGS, BdSettings, bd_values
from vcm_eval.metrics.video import COMPLEXITY
from vcm_eval.report.identity import bind_rate_versions, identity_labels, run_identity, vvc_settings
from vcm_eval.report.mpeg_cttc import POINTS_PER_DATASET, RatePoint, write_mpeg_cttc
from vcm_eval.report.plots import FIGSIZE, FORMATS, PAPER_RC, curve_style, legend_entry, save_figure
from vcm_eval.report.report import setup_key
from vcm_eval.report.tables import DEFAULT_METRICS, GROUP, curve_label, format_rate, select_anchor, to_markdown
from vcm_eval.utils.atomic import atomic_write

RESULT = "video.json"
VIDEO_METRICS = ("bbox_AP", "MOTA")  # what BD values and figures compare by default
SHOWN = ("bbox_AP", "bbox_AP50", "MOTA", "IDF1")
NAMES = {"bbox_AP": "mAP", "bbox_AP50": "AP50", "MOTA": "MOTA", "IDF1": "IDF1", "bbox_AP_pooled": "mAP pooled",
         "MOTA_pooled": "MOTA pooled"}  # fmt: skip
KINDS = ("sequence", "class", "all")
# video.json keys that are not the pipeline's parameters
_NOT_PARAMS = {"pipeline", "rate_params", "sweep_params", "dataset", "model", "run_dir", "sequences", "classes", "all"}


def find_video_runs(runs: str | Sequence[str]) -> list[Path]:
    """Video run folders (holding ``video.json``) under the given folders / globs.

    Raises:
        DataError: a pattern matches nothing, or nothing matched holds a finished video run.
    """
    found: dict[Path, None] = {}
    for pattern in [runs] if isinstance(runs, str) else list(runs):
        matches = sorted(glob.glob(str(pattern), recursive=True))
        if not matches:
            raise DataError(f"report.runs: {pattern!r} matches no file or folder; give run folders or a glob")
        for match in map(Path, matches):
            for f in sorted((match.parent if match.is_file() else match).rglob(RESULT)):
                found[f.parent.resolve()] = None
    if not found:
        raise DataError(f"report.runs={runs!r} holds no finished video run (no {RESULT}); run a video pipeline first")
    return list(found)


def _encoder(codec_version: str, config: dict[str, Any]) -> str:
    """``VTM-23.13 LD`` / ``VVenC faster RA``: a video curve's encoder setting for legends ("" without VVC)."""
    structure = {"low_delay": "LD", "random_access": "RA"}.get(str((config.get("vvc_sequence") or {}).get("structure")))
    if codec_version.startswith("VTM-"):
        return f"{codec_version.split()[0]} {structure or ''}".strip()
    if "vvenc" in codec_version.lower():
        return f"VVenC {vvc_settings(config).get('preset', '')} {structure or ''}".strip()
    return ""


@dataclass
class VideoRun:
    """One video run folder read back: its result, config and provenance (empty when absent)."""

    result: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def read_video_run(run_dir: Path) -> VideoRun:
    """``video.json``, ``config.yaml`` and ``provenance.json`` of one run.

    Raises:
        DataError: a file is unreadable.
    """
    try:
        result = json.loads((run_dir / RESULT).read_text())
        config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=False)
        prov_path = run_dir / "provenance.json"
        prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise DataError(f"video run folder {run_dir} is unreadable ({exc}); rerun its command or leave it out") from exc
    return VideoRun(result, {str(k): v for k, v in config.items()} if isinstance(config, dict) else {}, prov)


def _scopes(result: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for row in result.get("sequences", []):
        yield {"kind": "sequence", "scope": row["sequence"], **row}
    for row in result.get("classes", []):
        yield {"kind": "class", "scope": row["seq_class"], **row}
    if result.get("all"):
        yield {"kind": "all", "scope": "all", **result["all"]}


def video_frame(runs: Sequence[VideoRun]) -> pd.DataFrame:
    """One row per run and scope (``KINDS``) with the curve label, its setup and identity (module docstring).

    A run that coded nothing (uncompressed) has no rate: kbps and bpp are NaN.
    """
    params_of = [{k: v for k, v in r.result.items() if k not in _NOT_PARAMS and not isinstance(v, (dict, list))}
                 for r in runs]  # fmt: skip
    knobs = [list(r.result.get("rate_params") or []) for r in runs]
    identities = [run_identity(r.config, r.provenance, has_codec=bool(k)) for r, k in zip(runs, knobs, strict=True)]
    pipelines = [str(r.result["pipeline"]) for r in runs]
    keys = [(p, tuple((n, str(v)) for n, v in sorted(ps.items()) if n not in own))
            for p, ps, own in zip(pipelines, params_of, knobs, strict=True)]  # fmt: skip
    points = [{n: ps.get(n) for n in own} for ps, own in zip(params_of, knobs, strict=True)]
    bind_rate_versions(identities, keys, points)
    encoders = [_encoder(i.get("codec_version", ""), r.config) for i, r in zip(identities, runs, strict=True)]
    variants = identity_labels(identities, pipelines, encoders)
    varying: dict[str, set[str]] = {}
    for p, ps, own in zip(pipelines, params_of, knobs, strict=True):
        for n in ps:
            values = {str(q.get(n)) for q, pp in zip(params_of, pipelines, strict=True) if pp == p}
            if n not in own and len(values) > 1:
                varying.setdefault(p, set()).add(n)
    rows = []
    for run, ps, own, ident, enc, variant in zip(runs, params_of, knobs, identities, encoders, variants, strict=True):
        frames = sum(float(s.get("frames", 0)) for s in run.result.get("sequences", []))
        base = {"dataset": run.result.get("dataset", ""), "model": run.result.get("model", ""),
                "setup": setup_key(run.config, frames, ident.get("model_weights", "")) if run.config else "",
                "pipeline": run.result["pipeline"],
                "curve": curve_label(run.result["pipeline"], {n: ps[n] for n in sorted(varying.get(
                    run.result["pipeline"], ()))}, own, variant),
                "rate_param": own[0] if own else "", "rate_value": ps.get(own[0]) if own else None,
                **ps, "encoder": enc, "variant": variant,
                "cttc_class": str((run.config.get("dataset") or {}).get("cttc_class", "CLASS-{}"))}  # fmt: skip
        for scope in _scopes(run.result):
            row = {**base, **scope, **{k: v for k, v in ident.items() if k not in base}}
            row["run_dir"] = run.result["run_dir"]
            if not float(row.get("bits") or 0):  # nothing coded (uncompressed): no rate
                row["kbps"] = row["bpp"] = math.nan
            rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame):  # rate points as given (QP 27, not 27.0: pandas makes a column with a None float)
        frame["rate_value"] = pd.Series([r["rate_value"] for r in rows], dtype=object)
    return frame


def load_video_runs(run_dirs: Sequence[Path]) -> pd.DataFrame:
    """``video_frame`` of the runs in these folders."""
    return video_frame([read_video_run(Path(d)) for d in run_dirs])


def _num(value: Any, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(float(value), spec)


def scope_table(frame: pd.DataFrame, kind: str, metrics: Sequence[str] = SHOWN) -> pd.DataFrame:
    """The rows of one kind for people: curve, rate point, scope, kbps and bpp (4 significant digits), accuracy
    in % (2 decimals), kMAC per pixel of each stage that is a network; class rows add the pooled values and the
    sequence count."""
    rows = frame[frame["kind"] == kind].sort_values(["scope", "pipeline", "curve", "kbps"], kind="stable")
    shown = [m for m in metrics if m in rows and rows[m].notna().any()]
    if kind != "sequence":
        pooled = [f"{m}_pooled" for m in ("bbox_AP", "MOTA")]
        shown += [m for m in pooled if m in rows and rows[m].notna().any()]
    stages = sorted(
        (c for c in rows.columns if str(c).startswith(COMPLEXITY) and rows[c].notna().any()),
        key=lambda c: {"nn_part_1": 0, "nn_part_2": 2}.get(str(c)[len(COMPLEXITY) :], 1),
    )  # the split order
    out = []
    for r in rows.to_dict("records"):
        point = "" if r["rate_value"] is None or r["rate_param"] == "" else f"{r['rate_param']}={r['rate_value']}"
        if coded_qp(r) is not None:
            point += f" (qp={coded_qp(r)})"
        line = {"curve": r["curve"], "point": point, "class" if kind == "all" else kind: r["scope"]}
        if kind == "sequence":
            line["class"] = r.get("seq_class", "")
        else:
            line["sequences"] = _num(r.get("sequences"), ".0f")
        line.update({"kbps": format_rate(r["kbps"]), "bpp": format_rate(r["bpp"])})
        line.update({NAMES.get(m, m): _num(r.get(m), ".2f") for m in shown})
        line.update({f"kMAC/px {stage[len(COMPLEXITY) :]}": _num(r.get(stage), ".1f") for stage in stages})
        out.append(line)
    return pd.DataFrame(out)


def video_bd_frame(frame: pd.DataFrame, *, anchor: str = "image_anchor", metrics: Sequence[str] = VIDEO_METRICS,
                   settings: BdSettings = DEFAULT_SETTINGS, anchor_params: dict[str, Any] | None = None,
                   ) -> pd.DataFrame:  # fmt: skip
    """BD-rate over kbps (%) and BD-accuracy (points) of every curve against the anchor, per setup, scope
    (each sequence, each class, all) and metric. The anchor is one curve per setup (``select_anchor``: an
    ambiguous one is refused, listing the choices)."""
    out: list[dict[str, Any]] = []
    coded = frame.assign(bpp=frame["kbps"])  # select_anchor keeps the rows with a rate (its column is bpp)
    for key, group in coded.groupby([*GROUP, "kind", "scope"], sort=False, dropna=False):
        anchor_curve = select_anchor(group, anchor, anchor_params or {})
        if anchor_curve is None:
            continue
        rated = group[group["kbps"].notna()]
        ref = rated[rated["curve"] == anchor_curve]
        for curve, test in rated.groupby("curve", sort=True):
            if curve == anchor_curve:
                continue
            for metric in metrics:
                if metric not in group or test[metric].isna().all() or ref[metric].isna().all():
                    continue
                res = bd_values(ref["kbps"], ref[metric], test["kbps"], test[metric], settings)
                out.append({**dict(zip([*GROUP, "kind", "scope"], key, strict=True)), "anchor": anchor_curve,
                            "curve": curve, "metric": metric, "bd_rate": res.bd_rate, "bd_quality": res.bd_quality,
                            "map_overlap": res.rate_overlap, "rate_overlap": res.quality_overlap,
                            "anchor_points": len(ref), "test_points": len(test), "method": settings.method,
                            "bd_rate_note": res.bd_rate_note, "bd_quality_note": res.bd_quality_note,
                            "note": " | ".join(res.notes)})  # fmt: skip
    columns = [
        *GROUP,
        "kind",
        "scope",
        "anchor",
        "curve",
        "metric",
        "bd_rate",
        "bd_quality",
        "map_overlap",
        "rate_overlap",
        "anchor_points",
        "test_points",
        "method",
        "bd_rate_note",
        "bd_quality_note",
        "note",
    ]
    return pd.DataFrame(out, columns=columns)


def bd_table(bd: pd.DataFrame, kinds: Sequence[str] = KINDS) -> tuple[pd.DataFrame, list[str]]:
    """One row per scope (of ``kinds``) and curve: BD-rate (%, kbps) and BD-accuracy (points) per metric; a
    refused value is ``n/a`` with a numbered note."""
    notes: list[str] = []
    table: dict[tuple[Any, ...], dict[str, str]] = {}
    order = {k: i for i, k in enumerate(("class", "all", "sequence"))}
    rows = sorted((r for r in bd.to_dict("records") if r["kind"] in kinds), key=lambda r: order[r["kind"]])
    for r in rows:
        row = table.setdefault((r["kind"], r["scope"], r["curve"]),
                               {"scope": r["scope"] if r["kind"] != "class" else f"class {r['scope']}",
                                "curve": r["curve"], "anchor": r["anchor"]})  # fmt: skip
        name = NAMES.get(r["metric"], r["metric"])
        for col, value, note in ((f"{name} BD-rate (%)", r["bd_rate"], r["bd_rate_note"]),
                                 (f"BD-{name}", r["bd_quality"], r["bd_quality_note"])):  # fmt: skip
            mark = ""
            if note:
                if note not in notes:
                    notes.append(note)
                mark = f"[{notes.index(note) + 1}]"
            row[col] = ("n/a" if value is None or math.isnan(value) else f"{value:+.2f}") + mark
    return pd.DataFrame(list(table.values())).fillna(""), notes


def rate_figures(frame: pd.DataFrame, out_dir: Path, *, metrics: Sequence[str] = VIDEO_METRICS, anchor: str = "",
                 formats: Sequence[str] = FORMATS) -> list[Path]:  # fmt: skip
    """``video_rate_<metric>_<class>``: kbps (log) against the metric, one curve per label, per class and for
    the whole set (``all``); the uncompressed value a dotted line; the anchor dashed (``curve_style``)."""
    files: list[Path] = []
    scoped = frame[frame["kind"] != "sequence"]
    many = frame[GROUP].drop_duplicates().shape[0] > 1
    for key, group in scoped.groupby([*GROUP, "scope"], sort=True):
        for metric in metrics:
            if metric not in group or group[metric].isna().all():
                continue
            with plt.rc_context(PAPER_RC):
                fig, ax = plt.subplots(figsize=FIGSIZE)
                ref = group[group["kbps"].isna() & group[metric].notna()]
                if len(ref):
                    value = float(ref[metric].iloc[0])
                    ax.axhline(value, color="black", lw=0.9, ls=":", label=f"uncompressed ({value:.1f})", zorder=1)
                coded = group[group["kbps"].notna() & group[metric].notna()]
                for label, g in sorted(coded.groupby("curve"), key=lambda item: (anchor not in (item[0], str(
                        item[1]["pipeline"].iloc[0])), item[0])):  # fmt: skip
                    g = g.sort_values("kbps")
                    style = curve_style(str(label), anchor=anchor in (label, str(g["pipeline"].iloc[0])))
                    ax.plot(g["kbps"], g[metric], color=style.colour, marker=style.marker, ls=style.linestyle,
                            label=legend_entry(str(label), str(g["encoder"].iloc[0] or "")))  # fmt: skip
                ax.set_xscale("log")
                ax.set_xlabel("rate (kbps, log scale)")
                ax.set_ylabel(f"{NAMES.get(metric, metric)} (%)")
                scope = key[-1]
                ax.set_title(f"{key[0]}: {'all sequences' if scope == 'all' else f'class {scope}'}")
                ax.grid(True, alpha=0.3, lw=0.5)
                ax.legend(frameon=False, loc="best")
                suffix = f"_{key[2]}" if many else ""
                files += save_figure(fig, out_dir / f"video_rate_{metric}_{scope}{suffix}", formats)
                plt.close(fig)
    return files


def coded_qp(row: dict[str, Any]) -> int | None:
    """The QP a test-condition rate point coded this sequence (or every sequence of this class) at, else None."""
    qp = row.get("qp")
    if row.get("rate_param") != "rate_point" or qp is None or (isinstance(qp, float) and math.isnan(qp)):
        return None
    return int(qp)


def cttc_qp(row: dict[str, Any]) -> Any:
    """A CTTC row's ``qp``: the run's rate parameter, or at a test-condition rate point the QP it coded (the
    rate point itself for a class coded at several)."""
    qp = coded_qp(row)
    return row["rate_value"] if qp is None else qp


def class_points(rows: list[dict[str, Any]], metric: str) -> list[RatePoint]:
    """A curve's class rows as MPEG's ``gen_mpeg_cttc_csv.py`` writes them: the dataset's class name
    (``cttc_class``), ``qp`` the point's index 0..n-1 from the highest rate, the length-weighted rate, and
    the accuracy pooled over the class's frames (``<metric>_pooled``: its ``compute_per_class_mAP`` /
    ``compute_overall_mota``; the length-weighted value where a run has no pooled one)."""
    points = []
    for scope in dict.fromkeys(r["scope"] for r in rows):
        ranked = sorted((r for r in rows if r["scope"] == scope), key=lambda r: -float(r["kbps"]))
        for index, r in enumerate(ranked):
            pooled = r.get(f"{metric}_pooled")
            value = (
                pooled if pooled is not None and not (isinstance(pooled, float) and math.isnan(pooled)) else r[metric]
            )
            label = str(r.get("cttc_class") or "CLASS-{}").format(scope).upper()
            points.append(RatePoint(label, index, float(r["kbps"]), float(value)))
    return points


def write_video_cttc(frame: pd.DataFrame, out_dir: Path, *, metric: str, mode: str = "fcm") -> list[Path]:
    """``mpeg_cttc_<curve>.csv`` per coding curve: each sequence's rate points (Dataset = the sequence), then each
    class's (``class_points``: MPEG's names, indices and pooled accuracy), rate in kbps
    (``vcm_eval.report.mpeg_cttc``).

    Raises:
        ConfigError: ``metric`` is not a column, or a curve has another number of points than ``mode`` asks
            (nothing is written for it).
    """
    if metric not in frame:
        raise ConfigError(f"report.cttc_metric={metric!r} is not a metric of these video runs; valid: "
                          f"{[m for m in SHOWN if m in frame]}")  # fmt: skip
    files = []
    rows = frame[(frame["rate_param"] != "") & frame["kind"].isin(("sequence", "class"))]
    for curve, group in rows.groupby("curve", sort=True):
        records = group.to_dict("records")
        sequences = [RatePoint(r["scope"], cttc_qp(r), float(r["kbps"]), float(r[metric]))
                     for r in records if r["kind"] == "sequence"]  # fmt: skip
        classes = class_points([r for r in records if r["kind"] == "class"], metric)
        points = sequences + classes
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(curve))
        order = list(dict.fromkeys(p.dataset for p in sequences))
        order += sorted({p.dataset for p in classes})
        files.append(write_mpeg_cttc(out_dir / f"mpeg_cttc_{name}.csv", points, rate_unit="kbps", mode=mode,
                                     datasets=order))  # fmt: skip
    return files


@dataclass
class VideoReport:
    """What a video report wrote and its printable text."""

    frame: pd.DataFrame
    bd: pd.DataFrame
    text: str
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def video_text(results: Sequence[dict[str, Any]]) -> str:
    """The per-sequence and per-class tables of finished runs' results (what ``python -m vcm_eval`` prints)."""
    frame = video_frame([VideoRun(r) for r in results])
    return _tables_text(frame)


def _tables_text(frame: pd.DataFrame) -> str:
    parts = [
        "Per sequence (rate in kbps at the sequence's frame rate; mAP = COCO bbox AP, %):\n\n"
        + to_markdown(scope_table(frame, "sequence")),
        "Per class (MPEG's FCM template: averages weighted by the sequences' durations; pooled = one evaluation "
        "of the class's detections / tracks, as CompressAI-Vision's CTTC script):\n\n"
        + to_markdown(pd.concat([scope_table(frame, "class"), scope_table(frame, "all")]).fillna("")),
    ]
    return "\n".join(parts)


def write_video_report(run_dirs: Sequence[Path], out_dir: Path, *, anchor: str | Sequence[str] = "image_anchor",
                       anchor_params: dict[str, Any] | None = None, metrics: Sequence[str] = VIDEO_METRICS,
                       settings: BdSettings = DEFAULT_SETTINGS, plot: bool = True, formats: Sequence[str] = FORMATS,
                       cttc_metric: str = "", cttc_mode: str = "fcm") -> VideoReport:  # fmt: skip
    """Tables, BD values against each anchor that ran, figures and (``cttc_metric`` set) CTTC CSVs of the runs.

    ``anchor``: a pipeline or curve label, or several (one BD table each, concatenated).
    """
    frame = load_video_runs(run_dirs)
    metrics = [m for m in metrics if m in frame and frame[m].notna().any()]
    anchors = [anchor] if isinstance(anchor, str) else list(anchor)
    present = [a for a in anchors if ((frame["pipeline"] == a) | (frame["curve"] == a)).any()]
    bds = [video_bd_frame(frame, anchor=a, metrics=metrics, settings=settings, anchor_params=anchor_params)
           for a in present]  # fmt: skip
    bd = pd.concat(bds, ignore_index=True) if bds else video_bd_frame(frame.iloc[:0], metrics=metrics)
    text = _tables_text(frame)
    files: list[Path] = []
    for name, data in (("video_runs.csv", frame.to_csv(index=False)), ("video_bd.csv", bd.to_csv(index=False)),
                       ("video_sequences.md", to_markdown(scope_table(frame, "sequence"))),
                       ("video_classes.md", to_markdown(scope_table(frame, "class")))):  # fmt: skip
        atomic_write(out_dir / name, data)
        files.append(out_dir / name)
    if len(bd):
        head = (f"BD-rate over kbps (%, negative = fewer bits at equal accuracy) and BD-accuracy (points at equal "
                f"kbps) against {', '.join(sorted(set(bd['anchor'])))}, {settings.method}")  # fmt: skip
        atomic_write(out_dir / "video_bd.md", f"{head}, per class, all sequences and per sequence:\n\n"
                     + to_markdown(*bd_table(bd)))  # fmt: skip
        bd_text = f"{head}, per class and all sequences (per sequence: video_bd.md):\n\n" + to_markdown(
            *bd_table(bd, ("class", "all"))
        )
    else:
        bd_text = f"BD-rate: none of the anchors {anchors} ran" if not present else "BD-rate: no curve to compare"
        atomic_write(out_dir / "video_bd.md", bd_text + "\n")
    files.append(out_dir / "video_bd.md")
    if plot:
        files += rate_figures(frame, out_dir, metrics=metrics, anchor=anchors[0], formats=formats)
    notes = []
    if cttc_metric:
        skipped = []
        for curve in sorted(set(frame.loc[frame["rate_param"] != "", "curve"])):
            rows = frame[frame["curve"] == curve]
            points = rows[rows["kind"] == "sequence"].groupby("scope").size()
            if set(points) != {POINTS_PER_DATASET[cttc_mode]}:
                skipped.append(f"{curve} ({'/'.join(str(n) for n in sorted(set(points)))})")
                continue
            files += write_video_cttc(rows, out_dir, metric=cttc_metric, mode=cttc_mode)
        if skipped:
            notes.append(f"CTTC CSV ({cttc_mode}: {POINTS_PER_DATASET[cttc_mode]} rate points per sequence) not "
                         f"written for the curves with another count: {', '.join(skipped)}")  # fmt: skip
    return VideoReport(frame, bd, "\n".join([text, bd_text, *notes]), files, notes)


def run_video_report(cfg: DictConfig) -> VideoReport:
    """``python -m vcm_eval.report.video``: the report config's runs, anchor, BD settings, figures and CTTC CSVs
    (``report.format=mpeg_cttc``; ``report.cttc_metric`` default ``bbox_AP``, ``report.cttc_mode`` fcm for video)."""
    from vcm_eval.utils.construct import from_config

    rc = cfg.report
    chosen = [m for m in rc.metrics if m in SHOWN]
    metrics = chosen if chosen and list(rc.metrics) != list(DEFAULT_METRICS) else list(VIDEO_METRICS)
    cttc = (rc.cttc_metric or "bbox_AP") if str(rc.format) == "mpeg_cttc" else ""
    return write_video_report(find_video_runs(rc.runs), Path(rc.output), anchor=rc.anchor,
                              anchor_params=dict(rc.anchor_params), metrics=metrics,
                              settings=from_config(BdSettings, rc), plot=rc.plot, formats=list(rc.formats),
                              cttc_metric=cttc, cttc_mode=str(rc.cttc_mode))  # fmt: skip


def main() -> None:
    """The command (conf/report.yaml, as ``python -m vcm_eval.report``)."""
    import hydra

    from vcm_eval import config as _config  # noqa: F401 - registers the config schemas
    from vcm_eval.resources import CONF_DIR
    from vcm_eval.utils.cli import guarded, run_command

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="report")
    def entry(cfg: DictConfig) -> None:
        def go() -> None:
            result = run_video_report(cfg)
            print(result.text)
            print("wrote: " + ", ".join(str(p) for p in result.files))

        guarded(go)

    run_command(entry)


if __name__ == "__main__":
    main()
