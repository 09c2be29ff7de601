"""The report on a small recorded sweep: the table, the BD values, the files and the figures.

The sweep is recorded the way ``vcm_eval.engine.run`` records runs (``config.yaml`` from the composed
config, ``metrics.json``, ``provenance.json``, ``records.jsonl`` in ``run_dir_for`` folders), with
rate-accuracy points chosen so the BD values are known exactly: mAP is linear in log2(bpp)
(8 points per doubling), which pchip reproduces, so a curve with every rate x f at the same mAP
has BD-rate (f - 1) x 100 % and BD-mAP -8 log2(f) points.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import CONF_DIR, compose_cfg, compose_suite
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from PIL import Image

from vcm_eval.engine.provenance import provenance
from vcm_eval.engine.run import run_dir_for
from vcm_eval.engine.store import RecordStore
from vcm_eval.engine.suite_entries import expand_entry, published_file
from vcm_eval.errors import ConfigError, DataError
from vcm_eval.metrics.bdrate import DEFAULT_SETTINGS, bd_values
from vcm_eval.report.plots import curve_style
from vcm_eval.report.published import published_table
from vcm_eval.report.quant_table import format_table, record_stats
from vcm_eval.report.report import (
    find_runs,
    load_runs,
    run_report,
    suite_summary,
    write_quant_tables,
    write_report,
)
from vcm_eval.report.tables import bd_display, bd_frame, format_summary, summary_frame
from vcm_eval.utils.atomic import atomic_write

ANCHOR_BPP = [0.1, 0.2, 0.4, 0.8]  # image_anchor at qp 37, 32, 27, 22
ANCHOR_QP = [37, 32, 27, 22]
PROVENANCE = provenance()
VVC_GROUP = (
    "vvc" if (Path(CONF_DIR) / "vvc").is_dir() else "codec"
)  # the VVC settings' group, named codec before its rename
RATE_PARAMS = {
    "image_anchor": ("qp",),
    "feature_anchor": ("qp",),
    "fusion_codec": ("quality",),
    "quant": ("z",),
}  # what each codec declares


def bbox_map(bpp: float, factor: float = 1.0) -> float:
    """Accuracy of the anchor at bpp / factor: 10 + 8 log2(bpp / (0.1 factor))."""
    return 10.0 + 8.0 * math.log2(bpp / (0.1 * factor))


def record_run(
    results: Path, base: dict[str, Any], pipeline: dict[str, Any], bpp: float, bbox: float, *, images: int = 3
) -> Path:
    """One finished run as vcm_eval.engine.run writes it; ``base`` = a composed config as a dict."""
    cfg = OmegaConf.create({**base, "pipeline": pipeline, "paths": {**base["paths"], "results": str(results)}})
    params = {k: v for k, v in pipeline.items() if k != "name"}
    run_dir = run_dir_for(cfg)
    atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    atomic_write(run_dir / "provenance.json", json.dumps(PROVENANCE))
    with RecordStore(run_dir / "records.jsonl") as store:
        for i in range(images):
            store.append(
                {
                    "image_id": i,
                    "bits": int(bpp * 512 * 256),
                    "pixels": 512 * 256,
                    "encode_s": 0.5,
                    "decode_s": 0.1,
                    "task_s": 1.0,
                    "detections": [],
                }
            )
    knobs = {
        "rate_params": list(RATE_PARAMS.get(pipeline["name"], ())),
        "sweep_params": ["z"] if pipeline["name"] == "quant" else [],
    }
    metrics = {
        "pipeline": pipeline["name"],
        **params,
        **(knobs if params else {}),
        "bbox_AP": bbox,
        "segm_AP": 0.9 * bbox,
        "bpp": bpp if bpp > 0 else float("nan"),
        "encode_s": 0.5,
        "decode_s": 0.1,
        "task_s": 1.0,
        "images": float(images),
        "run_dir": str(run_dir),
    }
    atomic_write(run_dir / "metrics.json", json.dumps(metrics))
    return run_dir


def base_config(*overrides: str) -> dict[str, Any]:
    if GlobalHydra.instance().is_initialized():
        container = OmegaConf.to_container(compose_cfg(["pipeline=image_anchor", *overrides]), resolve=True)
    else:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            container = OmegaConf.to_container(compose_cfg(["pipeline=image_anchor", *overrides]), resolve=True)
    assert isinstance(container, dict)
    return {str(k): v for k, v in container.items()}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """uncompressed; image_anchor (4 QPs); feature_anchor at 0.8x rate; quant n=3 at 0.6x rate
    and n=4 whose z sweep is not monotone (the paper's shape: accuracy peaks at z = 1.5)."""
    res = tmp_path_factory.mktemp("recorded") / "results"
    base = base_config()
    record_run(res, base, {"name": "uncompressed"}, 0.0, 40.0)
    for qp, bpp in zip(ANCHOR_QP, ANCHOR_BPP):
        record_run(res, base, {"name": "image_anchor", "qp": qp}, bpp, bbox_map(bpp))
        record_run(res, base, {"name": "feature_anchor", "qp": qp, "levels": "p2-p5"}, 0.8 * bpp, bbox_map(bpp))
    for quality, bpp in enumerate(ANCHOR_BPP, 1):  # a nested setting (arch) like the fusion codec's
        record_run(
            res,
            base,
            {"name": "fusion_codec", "quality": quality, "checkpoint": "", "arch": {"latent": 64, "widths": [96, 128]}},
            0.7 * bpp,
            bbox_map(bpp),
        )
    for z, bpp in zip([2.0, 1.5, 1.0, 0.5], ANCHOR_BPP):
        record_run(res, base, {"name": "quant", "n_symbols": 3, "z": z}, 0.6 * bpp, bbox_map(bpp))
    for z, bpp, bbox in zip([2.0, 1.5, 1.0, 0.5], [0.08, 0.12, 0.2, 0.3], [31.0, 33.0, 30.0, 20.0]):
        record_run(res, base, {"name": "quant", "n_symbols": 4, "z": z}, bpp, bbox)
    return res


@pytest.fixture
def sweep(recorded: Path, tmp_path: Path, hydra_conf: None) -> Path:
    """A private copy of the recorded sweep (tests add or remove runs)."""
    return Path(shutil.copytree(recorded, tmp_path / "results"))


# The report's own config (conf/report.yaml, ``python -m vcm_eval.report``), or the ``report=default`` option of the
# run config in checkouts from before it had one.
OWN_REPORT_CONFIG = (Path(CONF_DIR) / "report.yaml").is_file()


def report(results: Path, *overrides: str, plot: bool = False) -> Any:
    common = [f"paths.results={results}", f"report.plot={plot}", *overrides]
    cfg = (
        compose(config_name="report", overrides=common)
        if OWN_REPORT_CONFIG
        else compose_cfg(["report=default", *common])
    )
    return run_report(cfg)


def test_report_gives_the_expected_tables(sweep: Path) -> None:
    result = report(sweep)
    runs = pd.read_csv(sweep / "report" / "runs.csv")
    assert (
        runs["curve"].tolist()
        == ["uncompressed"]
        + ["image_anchor"] * 4
        + ["feature_anchor"] * 4
        + ["fusion_codec"] * 4
        + ["quant (n_symbols=3)"] * 4
        + ["quant (n_symbols=4)"] * 4
    )
    assert (
        set(runs["levels"].dropna()) == {"p2-p5"}
        and set(runs["arch.latent"].dropna()) == {64}
        and set(runs["arch.widths"].dropna()) == {"[96, 128]"}
    )
    anchor = runs[runs["pipeline"] == "image_anchor"]
    assert anchor["bpp"].tolist() == ANCHOR_BPP and anchor["qp"].tolist() == ANCHOR_QP
    assert anchor["bbox_AP"].tolist() == pytest.approx([10.0, 18.0, 26.0, 34.0])
    assert np.isnan(runs.loc[0, "bpp"]) and runs.loc[0, "bbox_AP"] == 40.0
    assert set(runs["records"]) == {3} and set(runs["images"]) == {3.0} and runs["setup"].nunique() == 1

    bd = pd.read_csv(sweep / "report" / "bd.csv").set_index(["curve", "metric"])
    assert bd.loc[("feature_anchor", "bbox_AP"), "bd_rate"] == pytest.approx(-20.0, abs=1e-9)
    assert bd.loc[("feature_anchor", "bbox_AP"), "bd_map"] == pytest.approx(-8 * math.log2(0.8), abs=1e-9)
    assert bd.loc[("feature_anchor", "segm_AP"), "bd_map"] == pytest.approx(-0.9 * 8 * math.log2(0.8), abs=1e-9)
    # overlaps by axis: the same mAP range; rates x0.8 share log10(0.64 / 0.1) of the log10(0.8 / 0.08) union
    assert bd.loc[("feature_anchor", "bbox_AP"), "map_overlap"] == 1.0
    assert bd.loc[("feature_anchor", "bbox_AP"), "rate_overlap"] == pytest.approx(math.log10(6.4), abs=1e-12)
    assert bd.loc[("quant (n_symbols=3)", "segm_AP"), "bd_rate"] == pytest.approx(-40.0, abs=1e-9)
    n4 = bd.loc[("quant (n_symbols=4)", "bbox_AP")]
    assert np.isnan(n4["bd_rate"]) and np.isnan(n4["bd_map"])  # 2 Pareto points, 8 % overlap
    assert (
        n4["dropped_test"] == "0.2 bpp 30.00; 0.3 bpp 20.00"
        and "overlap in only 8.3% of their quality range" in n4["note"]
    )
    assert bd.loc[("fusion_codec", "bbox_AP"), "bd_rate"] == pytest.approx(-30.0, abs=1e-9)
    assert set(bd["anchor"]) == {"image_anchor"} and len(bd) == 8
    assert result.bd.shape[0] == 8

    md = (sweep / "report" / "bd.md").read_text()
    cells = (
        next(line for line in md.splitlines() if line.startswith("| feature_anchor | image_anchor |"))
        .strip("| ")
        .split(" | ")
    )
    assert cells[2:] == [
        "-20.00",
        "+2.58",
        "1.00 / 0.81",
        "-20.00",
        "+2.32",
        "1.00 / 0.81",
    ]  # the overlaps BD-rate and BD-mAP rest on: of the mAP ranges, of the log-rate ranges (log 6.4 / log 10)
    # BD-rate's note [1] (mAP ranges), BD-mAP's own note [3] (log-rate ranges), the dropped points [2] on both
    assert "| quant (n_symbols=4) | image_anchor | n/a[1][2] | n/a[3][2] |" in md
    assert (
        "[2] quant (n_symbols=4), bbox mAP: points dropped as dominated: anchor none, test 0.2 bpp 30.00; 0.3 bpp 20.00"
        in md
    )
    assert "[3] quant (n_symbols=4), bbox mAP: the curves overlap in only 7.9% of their log-rate range" in md
    tex = (sweep / "report" / "bd.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "feature\\_anchor & image\\_anchor & $-$20.00 & +2.58" in tex
    marks = "\\textsuperscript{1}\\textsuperscript{2} & n/a\\textsuperscript{3}\\textsuperscript{2}"
    assert f"quant (n\\_symbols=4) & image\\_anchor & n/a{marks} & 0.08 / 0.08 &" in tex
    assert "bbox mAP BD-rate (\\%)" in tex
    runs_md = (sweep / "report" / "runs.md").read_text()
    assert runs_md.splitlines()[2].startswith(
        "| pipeline | qp | quality | n_symbols | z | rate (bpp) | bbox mAP (%) | mask mAP (%) | encode (s) |"
    )
    assert (
        "| image_anchor | 37 |  |  |  | 0.1 | 10.00 | 9.00 |" in runs_md
    )  # constant settings (split, arch) only in runs.csv
    assert "| quant |  |  | 4 | 2 | 0.08 | 31.00 | 27.90 |" in runs_md


def test_figures_are_written_and_not_blank(sweep: Path) -> None:
    result = report(sweep, "report.log_rate=true", plot=True)
    names = sorted(p.name for p in result.files if p.suffix in (".png", ".pdf"))
    assert names == sorted(
        f"{kind}_{m}.{ext}"
        for kind in ("rate_accuracy", "z_sweep")
        for m in ("bbox_AP", "segm_AP")
        for ext in ("png", "pdf")
    )
    for path in result.files:
        if path.suffix == ".png":
            pixels = np.asarray(Image.open(path).convert("L"))
            assert pixels.shape[1] > 600 and pixels.std() > 10  # 300 dpi, something drawn
        elif path.suffix == ".pdf":
            data = path.read_bytes()
            assert data.startswith(b"%PDF") and b"/FontFile2" in data  # TrueType embedded
            assert b"/Subtype /Image" not in data  # vector, no raster inside


def test_styles_are_a_function_of_the_label() -> None:
    import subprocess
    import sys

    # the same label gets the same style in another process (no hash randomization, no state)
    code = "from vcm_eval.report.plots import curve_style; print(repr(curve_style('quant (n_symbols=4)')))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert repr(curve_style("quant (n_symbols=4)")) == other
    assert curve_style("quant (n_symbols=4)") != curve_style("quant (n_symbols=3)")
    assert curve_style("image_anchor", anchor=True).linestyle == "--" and curve_style("quant").linestyle == "-"


def test_anchor_choice(sweep: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"report.anchor='image_anchr' is not among the runs' pipelines "
        r"\['feature_anchor', 'fusion_codec', 'image_anchor', 'quant', 'uncompressed'\]",
    ):
        report(sweep, "report.anchor=image_anchr")
    with pytest.raises(
        ConfigError, match=r"matches 2 curves \['quant \(n_symbols=3\)', 'quant \(n_symbols=4\)'\].*does not guess"
    ):
        report(sweep, "report.anchor=quant")
    by_label = report(sweep, "report.anchor='quant (n_symbols=3)'").bd.set_index(["curve", "metric"])  # a curve's label
    assert set(by_label["anchor"]) == {"quant (n_symbols=3)"}
    bd = report(sweep, "report.anchor=quant", "+report.anchor_params.n_symbols=3").bd.set_index(["curve", "metric"])
    assert bd.loc[("image_anchor", "bbox_AP"), "bd_rate"] == pytest.approx(100 * (1 / 0.6 - 1), abs=1e-9)


def test_setups_are_kept_apart_and_duplicates_refused(sweep: Path) -> None:
    base = base_config()
    for qp, bpp in zip(ANCHOR_QP, ANCHOR_BPP):  # the same sweep measured on 5 images
        record_run(sweep / "other", base, {"name": "image_anchor", "qp": qp}, bpp, bbox_map(bpp), images=5)
    runs, _ = load_runs(find_runs(str(sweep))[0])
    assert runs["setup"].nunique() == 2
    assert len(report(sweep).bd) == 8  # the 5-image anchor compares with nothing of the 3-image setup
    record_run(
        sweep / "again", base_config(f"{VVC_GROUP}.preset=medium"), {"name": "image_anchor", "qp": 32}, 0.21, 18.0
    )
    with pytest.raises(DataError, match="agree in configuration and identity"):
        report(sweep)


def test_a_curve_whose_setup_has_no_anchor_is_listed_with_the_reason(sweep: Path) -> None:
    base = base_config()
    for z, bpp in ((1.0, 0.3), (1.5, 0.2)):  # quant measured on 5 images: no anchor was run on those
        record_run(sweep / "other", base, {"name": "quant", "n_symbols": 2, "z": z}, bpp, bbox_map(bpp), images=5)
    result = report(sweep)
    alone = result.bd[result.bd["anchor_points"] == 0]
    assert len(alone) == 2 and alone["bd_rate"].isna().all() and alone["bd_map"].isna().all()
    assert alone["bd_rate_note"].str.contains("no image_anchor runs in this setup").all()
    text = (sweep / "report" / "bd.md").read_text()
    assert "no image_anchor runs in this setup" in text and "(no curve besides the anchor)" not in text


def test_interrupted_runs_are_listed_not_reported(sweep: Path) -> None:
    run_dir = next(p for p in find_runs(str(sweep))[0] if "n_symbols4-z1.5" in p.name)
    (run_dir / "metrics.json").unlink()
    result = report(sweep)
    assert result.incomplete == [run_dir.resolve()] and len(result.runs) == 20
    with pytest.raises(DataError, match="matches no file or folder"):
        report(sweep, f"report.runs={sweep}/nothing*")


def test_a_run_without_its_codecs_rate_parameters_is_refused(sweep: Path) -> None:
    """Curves come from what each codec declared; a run that recorded nothing is not guessed at."""
    run_dir = next(p for p in find_runs(str(sweep))[0] if p.name.startswith("qp32"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    atomic_write(run_dir / "metrics.json", json.dumps({k: v for k, v in metrics.items() if k != "rate_params"}))
    with pytest.raises(DataError, match="rate parameters.*rerun its command"):
        report(sweep)


def test_report_command_line(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "paper"
    command = ["-m", "vcm_eval.report"] if OWN_REPORT_CONFIG else ["-m", "vcm_eval", "report=default"]
    proc = subprocess.run(
        [
            sys.executable,
            *command,
            f"report.runs={sweep}/synthetic/**",
            f"report.output={out}",
            "report.plot=false",
            f"paths.results={tmp_path}",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| feature_anchor | image_anchor | -20.00 | +2.58 |" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "bd.csv",
        "bd.md",
        "bd.tex",
        "quant_table.csv",
        "quant_table.md",
        "runs.csv",
        "runs.md",
        "runs.tex",
    ]


def test_bad_report_settings_are_one_line_errors(sweep: Path) -> None:
    from hydra.errors import ConfigCompositionException

    from vcm_eval.metrics.bdrate import BdSettingsError

    # refused by the config schema when it lists the methods, else by BdSettings; either way naming the valid ones
    with pytest.raises((ConfigCompositionException, BdSettingsError)) as info:
        report(sweep, "report.method=spline")
    assert re.search(r"'spline'.*pchip.*cubic.*akima", f"{info.value} {info.value.__cause__}")
    with pytest.raises(ConfigError, match="report.runs=3 must be a folder or glob"):
        report(sweep, "report.runs=3")


def test_a_refused_bd_map_marks_its_own_cell() -> None:
    """Same mAP range, rates 10x the anchor's: BD-rate is +900 %, BD-mAP is refused (no common rate)."""
    runs = pd.DataFrame(
        {"dataset": "d", "model": "m", "setup": "s", "pipeline": p, "curve": p, "bpp": b * f, "bbox_AP": bbox_map(b)}
        for p, f in (("image_anchor", 1.0), ("quant", 10.0))
        for b in ANCHOR_BPP
    )
    view, notes = bd_display(bd_frame(runs, metrics=["bbox_AP"]))
    row = view.set_index("curve").loc["quant"]
    assert row["bbox mAP BD-rate (%)"] == "+900.00" and row["bbox mAP BD-mAP"] == "n/a[1]"
    assert len(notes) == 1 and notes[0].startswith("quant, bbox mAP: the curves do not overlap in log-rate")


def test_rates_are_printed_with_four_significant_digits() -> None:
    rows = [
        {"pipeline": "fusion_codec", "bpp": 0.00043217, "bbox_AP": 5.25},
        {"pipeline": "quant8", "bpp": 170.54321, "bbox_AP": 69.5},
    ]
    printed = format_summary(summary_frame(rows), markdown=True)
    assert "| fusion_codec | 0.0004322 | 5.25 |" in printed and "| quant8 | 170.5 | 69.50 |" in printed
    shown = format_table(pd.DataFrame([{"n_symbols": 4.0, "z": 1.0, "bpp": 0.00043217, "raw_bpp": 0.00123456}]))
    assert shown.loc[0, "bpp"] == "0.0004322" and shown.loc[0, "raw_bpp"] == "0.001235"


def test_quant_table_rates_are_over_totals(tmp_path: Path) -> None:
    """Images of 100 and 300 pixels: raw_bpp = all bits / all pixels (as bpp), not the mean of per-image ratios."""
    with RecordStore(tmp_path / "records.jsonl") as store:
        store.append({"image_id": 0, "pixels": 100, "raw_bits": 200, "values": 60, "bits": 100})
        store.append({"image_id": 1, "pixels": 300, "raw_bits": 300, "values": 150, "bits": 100})
    assert record_stats(tmp_path) == {"raw_bpp": 500 / 400, "values_per_pixel": 210 / 400}  # per-image means: 1.5, 0.55


VTM = "VTM-23.13 encoder_intra_vtm.cfg md5:8289282d982f colour:mpeg (ffmpeg version 4.2.2-static)"
VVENC = "ffmpeg version n9.0.2-17-g2a571b6068 / libvvenc colour:mpeg (ffmpeg version 4.2.2-static)"
VVC_SETTINGS = {
    "backend": "ffmpeg",
    "ffmpeg": "",
    "preset": "medium",
    "threads": 1,
    "qpa": False,
    "extra_params": "",
    "colour": "mpeg",
}


def write_run(
    results: Path,
    name: str,
    pipeline: dict[str, Any],
    bpp: float,
    bbox: float,
    *,
    group: str = "codec",
    vvc: dict[str, Any] | None = None,
    **prov: Any,
) -> Path:
    """A finished run folder written by hand: the config groups the report reads, the given provenance."""
    run_dir = results / pipeline["name"] / name
    config = {
        "pipeline": pipeline,
        "dataset": {"name": "synthetic", "limit": 2},
        "model": {"name": "slim", "weights": "zoo:slim.pt"},
        "eval": {"evaluators": ["coco"]},
        group: {**VVC_SETTINGS, **(vvc or {})},
    }
    params = {k: v for k, v in pipeline.items() if k != "name"}
    knobs = {"rate_params": list(RATE_PARAMS.get(pipeline["name"], ())), "sweep_params": []} if params else {}
    metrics = {
        "pipeline": pipeline["name"],
        **params,
        **knobs,
        "bbox_AP": bbox,
        "bpp": bpp if bpp > 0 else float("nan"),
        "images": 2.0,
    }
    atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))
    atomic_write(
        run_dir / "provenance.json",
        json.dumps({"git_commit": "a" * 40, "model": "405128a4b46d5652", "device": "cpu", **prov}),
    )
    atomic_write(run_dir / "metrics.json", json.dumps(metrics))
    return run_dir


def test_every_identity_difference_is_its_own_labelled_curve(tmp_path: Path) -> None:
    """Runs that differ in anything but a rate parameter never share a curve; labels name what differs."""
    res = tmp_path / "results"
    for qp, bpp in ((42, 0.09), (47, 0.06)):  # VVenC, recorded before the rename of the VVC group (``codec``)
        write_run(res, f"vvenc{qp}", {"name": "image_anchor", "qp": qp}, bpp, bbox_map(bpp), codec_version=VVENC)
    for qp, bpp in ((52, 0.03), (57, 0.017)):  # VTM, recorded after it (``vvc``)
        write_run(
            res,
            f"vtm{qp}",
            {"name": "image_anchor", "qp": qp},
            bpp,
            bbox_map(bpp, 0.5),
            group="vvc",
            vvc={"backend": "vtm"},
            codec_version=VTM,
        )
    for q, bpp in ((2, 0.024), (4, 0.058)):  # one checkpoint per quality: one curve
        write_run(
            res,
            f"q{q}",
            {"name": "fusion_codec", "quality": q, "checkpoint": ""},
            bpp,
            bbox_map(bpp, 0.7),
            codec_version=f"fusion checkpoint slim_q{q}.pt sha256:{q}f0e{q}c7b9a1d2e3f",
        )
    for device in ("cpu", "cuda:0"):
        for z, bpp in ((1.5, 13.5), (1.0, 17.0)):
            write_run(
                res,
                f"{device[:3]}{z}",
                {"name": "quant", "n_symbols": 4, "z": z},
                bpp,
                60 + z,
                device=device,
                codec_version="format 3",
            )
    for commit in ("1" * 40, "2" * 40 + "-dirty"):
        for qp, bpp in ((32, 2.1), (37, 0.9)):
            write_run(
                res,
                f"c{commit[0]}{qp}",
                {"name": "feature_anchor", "qp": qp},
                bpp,
                40.0 - qp / 2,
                git_commit=commit,
                codec_version=VVENC,
            )
    for qp, bpp in ((42, 0.1), (47, 0.07)):  # the VVenC preset alone
        write_run(
            res,
            f"slow{qp}",
            {"name": "image_anchor", "qp": qp},
            bpp,
            bbox_map(bpp, 0.9),
            vvc={"preset": "slow"},
            codec_version=VVENC,
        )
    runs, _ = load_runs(find_runs(str(res))[0])
    curves = runs.groupby("curve")["bpp"].count().to_dict()
    assert curves == {
        "image_anchor (VTM-23.13 AI)": 2,
        "image_anchor (VVenC medium)": 2,
        "image_anchor (VVenC slow)": 2,
        "fusion_codec": 2,
        "quant (device=cpu)": 2,
        "quant (device=cuda)": 2,
        "feature_anchor (commit=1111111)": 2,
        "feature_anchor (commit=2222222-dirty)": 2,
    }
    assert runs["setup"].nunique() == 1 and set(runs.loc[runs["pipeline"] == "image_anchor", "vvc.backend"]) == {
        "ffmpeg",
        "vtm",
    }
    with pytest.raises(
        ConfigError,
        match=r"report.anchor='image_anchor' matches 3 curves .*\"report.anchor='image_anchor \(VTM-23.13 AI\)'\"",
    ):
        write_report(runs, [], tmp_path / "out", metrics=["bbox_AP"], plot=False)
    bd = write_report(
        runs, [], tmp_path / "out", anchor="image_anchor (VTM-23.13 AI)", metrics=["bbox_AP"], plot=False
    ).bd.set_index("curve")
    assert set(bd["anchor"]) == {"image_anchor (VTM-23.13 AI)"} and bd.loc["fusion_codec", "test_points"] == 2
    narrowed = write_report(
        runs,
        [],
        tmp_path / "out",
        anchor="image_anchor",
        anchor_params={"vvc": {"backend": "vtm"}},
        metrics=["bbox_AP"],
        plot=False,
    )
    assert narrowed.bd.equals(
        write_report(
            runs, [], tmp_path / "out", anchor="image_anchor (VTM-23.13 AI)", metrics=["bbox_AP"], plot=False
        ).bd
    )


def test_other_weights_under_one_model_name_are_another_setup(tmp_path: Path) -> None:
    res = tmp_path / "results"
    for weights in ("405128a4b46d5652", "9f3e0c1d2b4a6e8f"):
        for qp, bpp in ((42, 0.09), (47, 0.06)):
            write_run(
                res,
                f"{weights[:2]}{qp}",
                {"name": "image_anchor", "qp": qp},
                bpp,
                bbox_map(bpp),
                model=weights,
                codec_version=VVENC,
            )
        for q, bpp in ((2, 0.05), (4, 0.08)):
            write_run(
                res,
                f"{weights[:2]}q{q}",
                {"name": "fusion_codec", "quality": q, "checkpoint": ""},
                bpp,
                bbox_map(bpp, 0.8),
                model=weights,
                codec_version=f"fusion checkpoint slim_q{q}.pt sha256:{q}0000000",
            )
    runs, _ = load_runs(find_runs(str(res))[0])
    assert runs["setup"].nunique() == 2  # BD values never compare two networks
    assert set(runs["curve"]) == {
        f"{p} (weights={w})" for p in ("image_anchor", "fusion_codec") for w in ("405128a4", "9f3e0c1d")
    }
    bd = write_report(runs, [], tmp_path / "out", metrics=["bbox_AP"], plot=False).bd
    assert sorted(zip(bd["anchor"], bd["curve"])) == [
        ("image_anchor (weights=405128a4)", "fusion_codec (weights=405128a4)"),
        ("image_anchor (weights=9f3e0c1d)", "fusion_codec (weights=9f3e0c1d)"),
    ]
    assert bd["bd_rate"].tolist() == pytest.approx([-20.0, -20.0], abs=1e-9)


def test_vvenc_and_vtm_runs_in_one_folder_are_two_labelled_anchor_curves(
    hydra_conf: None, synth_root: Path, tmp_path: Path
) -> None:
    """The reported case, run for real: image-anchor runs with VVenC at QP 42 and 47 and with VTM at QP 52 and 57,
    fusion q2 and q4, in one results folder. The report draws two labelled anchor curves, asks which one is the
    anchor, and compares with the one named; it never draws one curve through all four points."""
    from vcm_eval.engine.run import run_single

    results = tmp_path / "results"
    common = [
        f"dataset.root={synth_root}",
        "dataset.size=6",
        "dataset.limit=2",
        f"paths.results={results}",
        f"paths.cache={tmp_path / 'cache'}",
        "progress=false",
    ]
    for encoder, qp in (("vvc", 42), ("vvc", 47), ("vtm", 52), ("vtm", 57)):
        run_single(compose_cfg(["pipeline=image_anchor", f"{VVC_GROUP}={encoder}", f"pipeline.qp={qp}", *common]))
    for quality in (2, 4):
        run_single(compose_cfg(["pipeline=fusion_codec", f"pipeline.quality={quality}", *common]))
    runs, params = load_runs(find_runs(str(results))[0])
    anchor = runs[runs["pipeline"] == "image_anchor"]
    assert anchor.groupby("curve")["qp"].apply(sorted).to_dict() == {
        "image_anchor (VTM-23.13 AI)": [52, 57],
        "image_anchor (VVenC medium)": [42, 47],
    }
    assert runs.loc[runs["pipeline"] == "fusion_codec", "curve"].tolist() == [
        "fusion_codec",
        "fusion_codec",
    ]  # one checkpoint per quality
    choices = (
        r"matches 2 curves \['image_anchor \(VTM-23.13 AI\)', 'image_anchor \(VVenC medium\)'\]"
        r".*choose one: \"report.anchor='image_anchor"
    )
    with pytest.raises(ConfigError, match=choices):
        write_report(runs, params, tmp_path / "report", plot=False)
    bd = write_report(runs, params, tmp_path / "report", anchor="image_anchor (VTM-23.13 AI)", plot=False).bd
    assert set(bd["anchor"]) == {"image_anchor (VTM-23.13 AI)"} and set(bd["curve"]) == {
        "fusion_codec",
        "image_anchor (VVenC medium)",
    }
    assert set(bd["anchor_points"]) == {2} and set(bd["test_points"]) == {2}
    vtm = anchor[anchor["curve"] == "image_anchor (VTM-23.13 AI)"]
    fusion = runs[runs["pipeline"] == "fusion_codec"]
    for metric in ("bbox_AP", "segm_AP"):  # against the VTM points alone, never a VVenC/VTM hybrid
        alone = bd_values(vtm["bpp"], vtm[metric], fusion["bpp"], fusion[metric], DEFAULT_SETTINGS)
        got = bd[(bd["curve"] == "fusion_codec") & (bd["metric"] == metric)].iloc[0]
        assert got["bd_rate"] == pytest.approx(alone.bd_rate, nan_ok=True)
        assert got["bd_map"] == pytest.approx(alone.bd_quality, nan_ok=True)
    text, _ = suite_summary(find_runs(str(results))[0], tmp_path / "suite", anchors=("image_anchor",), plot=False)
    assert text.startswith(
        "BD-rate against image_anchor refused: report.anchor='image_anchor' matches 2 curves"
    )  # the main job too


def test_the_recorded_key_decides_what_identifies_a_curve(tmp_path: Path) -> None:
    """Runs that record their key (provenance ``key``): the groups the codec read and the code revisions count,
    settings the codec never read (the VVC preset of a fusion run) do not."""
    res = tmp_path / "results"

    def key(codec_version: str, evaluators: int = 1, **groups: Any) -> dict[str, Any]:
        return {
            "pipeline": {},
            **groups,
            "identity": {
                "evaluators": evaluators,
                "model": "405128a4b46d5652",
                "device": "cpu",
                "codec_version": codec_version,
            },
        }

    for q, bpp, preset in ((2, 0.024, "medium"), (4, 0.058, "slow")):
        version = f"fusion checkpoint slim_q{q}.pt sha256:{q}f0e{q}c7b9a1d2e3f"
        write_run(
            res,
            f"q{q}",
            {"name": "fusion_codec", "quality": q, "checkpoint": ""},
            bpp,
            bbox_map(bpp, 0.7),
            group="vvc",
            vvc={"preset": preset},
            codec_version=version,
            key=key(version),
        )
    for evaluators in (1, 2):
        for z, bpp in ((1.5, 13.5), (1.0, 17.0)):
            write_run(
                res,
                f"e{evaluators}{z}",
                {"name": "quant", "n_symbols": 4, "z": z},
                bpp,
                60 + z,
                key=key("quant/3.1", evaluators),
            )
    for preset in ("medium", "faster"):
        for qp, bpp in ((32, 2.1), (37, 0.9)):
            settings = {**VVC_SETTINGS, "preset": preset}
            write_run(
                res,
                f"{preset}{qp}",
                {"name": "feature_anchor", "qp": qp},
                bpp,
                40.0 - qp / 2,
                group="vvc",
                vvc=settings,
                codec_version=VVENC,
                key=key(VVENC, vvc=settings),
            )
    runs, _ = load_runs(find_runs(str(res))[0])
    assert runs.groupby("curve")["bpp"].count().to_dict() == {
        "fusion_codec": 2,
        "quant (evaluators=1)": 2,
        "quant (evaluators=2)": 2,
        "feature_anchor (VVenC faster)": 2,
        "feature_anchor (VVenC medium)": 2,
    }


def test_the_msfc_suite_sets_the_measured_bd_rates_beside_the_papers(hydra_conf: None, tmp_path: Path) -> None:
    """suite=msfc: every entry composes as its command line would; the published table puts each measured
    BD-rate beside the paper's, says n/a (and why) where none was measured, and captions the difference."""
    cfg = compose_suite(["suite=msfc"])
    assert (cfg.suite.name, list(cfg.suite.anchors)) == ("msfc", ["msfc"])
    pipelines = set()
    for entry in cfg.suite.runs:
        for overrides in expand_entry(entry):
            pipelines.add(compose_cfg(list(cfg.suite.overrides) + overrides).pipeline.name)
    assert pipelines == {"uncompressed", "msfc", "fusion_codec"}
    assert "oic_AP50" in cfg.suite.metrics and "oic_segm_AP50" in cfg.suite.metrics  # the paper's metric
    bd = pd.DataFrame(
        {
            "curve": ["fusion_codec"],
            "anchor": ["msfc"],
            "metric": ["oic_AP50"],
            "bd_rate": [-41.5],
            "bd_rate_note": [""],
        }
    )
    text = published_table(bd, published_file(cfg.suite.published), dataset="synthetic", model="slim")
    assert "| fusion_codec vs msfc | oic_AP50 | -41.50% | -52.23% |" in text
    assert "| fusion_codec vs msfc | oic_segm_AP50 | n/a (no such curve in these runs) | -84.58% |" in text
    assert "Measured here on synthetic with slim; published on other data" in text
    with pytest.raises(DataError, match="cannot be read"):
        published_table(bd, tmp_path / "absent.csv", dataset="synthetic", model="slim")


def test_quant_runs_of_two_devices_get_a_table_each(tmp_path: Path) -> None:
    """Quant runs that differ in more than a parameter (here the device) never share one Table 3 layout."""
    res = tmp_path / "results"
    for device in ("cpu", "cuda"):
        write_run(res, f"ref-{device}", {"name": "uncompressed"}, 0.0, 60.0, device=device)
        for z, bpp in ((1.0, 12.0), (1.5, 9.0)):
            run = write_run(res, f"q{z}-{device}", {"name": "quant", "n_symbols": 4, "z": z}, bpp, 50.0 + z,
                            device=device)  # fmt: skip
            record = {"image_id": 0, "bits": 8, "pixels": 64, "raw_bits": 128, "values": 64}
            atomic_write(run / "records.jsonl", json.dumps(record) + "\n")
    runs, _ = load_runs(find_runs(str(res))[0])
    write_quant_tables(runs, tmp_path / "out", metric="bbox_AP")
    tables = sorted((tmp_path / "out").glob("quant_table*.md"))
    assert [t.name for t in tables] == ["quant_table_1.md", "quant_table_2.md"]
    titles = [t.read_text().splitlines()[0] for t in tables]
    assert any("cpu" in t for t in titles) and any("cuda" in t for t in titles), titles
