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
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import CONF_DIR, compose_cfg
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from PIL import Image

from vcm_eval.engine.provenance import provenance
from vcm_eval.engine.run import run_dir_for
from vcm_eval.engine.store import RecordStore
from vcm_eval.errors import ConfigError, DataError
from vcm_eval.report.plots import curve_style
from vcm_eval.report.report import find_runs, load_runs, run_report
from vcm_eval.utils.atomic import atomic_write

ANCHOR_BPP = [0.1, 0.2, 0.4, 0.8]  # image_anchor at qp 37, 32, 27, 22
ANCHOR_QP = [37, 32, 27, 22]
PROVENANCE = provenance()
RATE_PARAMS = {"image_anchor": ("qp",), "feature_anchor": ("qp",), "fusion_codec": ("quality",), "quant": ("z",)}  # what each codec declares


def bbox_map(bpp: float, factor: float = 1.0) -> float:
    """Accuracy of the anchor at bpp / factor: 10 + 8 log2(bpp / (0.1 factor))."""
    return 10.0 + 8.0 * math.log2(bpp / (0.1 * factor))


def record_run(results: Path, base: dict[str, Any], pipeline: dict[str, Any], bpp: float, bbox: float, *, images: int = 3) -> Path:
    """One finished run as vcm_eval.engine.run writes it; ``base`` = a composed config as a dict."""
    cfg = OmegaConf.create({**base, "pipeline": pipeline, "paths": {**base["paths"], "results": str(results)}})
    params = {k: v for k, v in pipeline.items() if k != "name"}
    run_dir = run_dir_for(cfg)
    atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    atomic_write(run_dir / "provenance.json", json.dumps(PROVENANCE))
    with RecordStore(run_dir / "records.jsonl") as store:
        for i in range(images):
            store.append({"image_id": i, "bits": int(bpp * 512 * 256), "pixels": 512 * 256, "encode_s": 0.5, "decode_s": 0.1, "task_s": 1.0, "detections": []})
    knobs = {"rate_params": list(RATE_PARAMS.get(pipeline["name"], ())), "sweep_params": ["z"] if pipeline["name"] == "quant" else []}
    metrics = {"pipeline": pipeline["name"], **params, **(knobs if params else {}), "bbox_AP": bbox, "segm_AP": 0.9 * bbox, "bpp": bpp if bpp > 0 else float("nan"),
               "encode_s": 0.5, "decode_s": 0.1, "task_s": 1.0, "images": float(images), "run_dir": str(run_dir)}
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
        record_run(res, base, {"name": "fusion_codec", "quality": quality, "checkpoint": "", "arch": {"latent": 64, "widths": [96, 128]}}, 0.7 * bpp, bbox_map(bpp))
    for z, bpp in zip([2.0, 1.5, 1.0, 0.5], ANCHOR_BPP):
        record_run(res, base, {"name": "quant", "n_symbols": 3, "z": z}, 0.6 * bpp, bbox_map(bpp))
    for z, bpp, bbox in zip([2.0, 1.5, 1.0, 0.5], [0.08, 0.12, 0.2, 0.3], [31.0, 33.0, 30.0, 20.0]):
        record_run(res, base, {"name": "quant", "n_symbols": 4, "z": z}, bpp, bbox)
    return res


@pytest.fixture
def sweep(recorded: Path, tmp_path: Path, hydra_conf: None) -> Path:
    """A private copy of the recorded sweep (tests add or remove runs)."""
    return Path(shutil.copytree(recorded, tmp_path / "results"))


def report(results: Path, *overrides: str, plot: bool = False) -> Any:
    cfg = compose_cfg([f"paths.results={results}", "report=default", f"report.plot={plot}", *overrides])
    return run_report(cfg)


def test_report_gives_the_expected_tables(sweep: Path) -> None:
    result = report(sweep)
    runs = pd.read_csv(sweep / "report" / "runs.csv")
    assert runs["curve"].tolist() == ["uncompressed"] + ["image_anchor"] * 4 + ["feature_anchor"] * 4 + ["fusion_codec"] * 4 + ["quant (n_symbols=3)"] * 4 + ["quant (n_symbols=4)"] * 4
    assert set(runs["levels"].dropna()) == {"p2-p5"} and set(runs["arch.latent"].dropna()) == {64} and set(runs["arch.widths"].dropna()) == {"[96, 128]"}
    anchor = runs[runs["pipeline"] == "image_anchor"]
    assert anchor["bpp"].tolist() == ANCHOR_BPP and anchor["qp"].tolist() == ANCHOR_QP
    assert anchor["bbox_AP"].tolist() == pytest.approx([10.0, 18.0, 26.0, 34.0])
    assert np.isnan(runs.loc[0, "bpp"]) and runs.loc[0, "bbox_AP"] == 40.0
    assert set(runs["records"]) == {3} and set(runs["images"]) == {3.0} and runs["setup"].nunique() == 1

    bd = pd.read_csv(sweep / "report" / "bd.csv").set_index(["curve", "metric"])
    assert bd.loc[("feature_anchor", "bbox_AP"), "bd_rate"] == pytest.approx(-20.0, abs=1e-9)
    assert bd.loc[("feature_anchor", "bbox_AP"), "bd_map"] == pytest.approx(-8 * math.log2(0.8), abs=1e-9)
    assert bd.loc[("feature_anchor", "segm_AP"), "bd_map"] == pytest.approx(-0.9 * 8 * math.log2(0.8), abs=1e-9)
    assert bd.loc[("quant (n_symbols=3)", "segm_AP"), "bd_rate"] == pytest.approx(-40.0, abs=1e-9)
    n4 = bd.loc[("quant (n_symbols=4)", "bbox_AP")]
    assert np.isnan(n4["bd_rate"]) and np.isnan(n4["bd_map"])  # 2 Pareto points, 8 % overlap
    assert n4["dropped_test"] == "0.2 bpp 30.00; 0.3 bpp 20.00" and "overlap in only 8.3% of their quality range" in n4["note"]
    assert bd.loc[("fusion_codec", "bbox_AP"), "bd_rate"] == pytest.approx(-30.0, abs=1e-9)
    assert set(bd["anchor"]) == {"image_anchor"} and len(bd) == 8
    assert result.bd.shape[0] == 8

    md = (sweep / "report" / "bd.md").read_text()
    cells = next(line for line in md.splitlines() if line.startswith("| feature_anchor | image_anchor |")).strip("| ").split(" | ")
    overlap = f"{bd.loc[('feature_anchor', 'bbox_AP'), 'rate_overlap']:.2f}"
    assert cells[2:] == ["-20.00", "+2.58", overlap, "-20.00", "+2.32", f"{bd.loc[('feature_anchor', 'segm_AP'), 'rate_overlap']:.2f}"]
    assert "| quant (n_symbols=4) | image_anchor | n/a[1][2] | n/a |" in md
    assert "[2] quant (n_symbols=4), bbox mAP: points dropped as dominated: anchor none, test 0.2 bpp 30.00; 0.3 bpp 20.00" in md
    tex = (sweep / "report" / "bd.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "feature\\_anchor & image\\_anchor & $-$20.00 & +2.58" in tex
    assert "quant (n\\_symbols=4) & image\\_anchor & n/a\\textsuperscript{1}\\textsuperscript{2} & n/a & 0.08 &" in tex
    assert "bbox mAP BD-rate (\\%)" in tex
    runs_md = (sweep / "report" / "runs.md").read_text()
    assert runs_md.splitlines()[2].startswith("| pipeline | qp | quality | n_symbols | z | rate (bpp) | bbox mAP (%) | mask mAP (%) | encode (s) |")
    assert "| image_anchor | 37 |  |  |  | 0.1 | 10.00 | 9.00 |" in runs_md  # constant settings (split, arch) only in runs.csv
    assert "| quant |  |  | 4 | 2 | 0.08 | 31.00 | 27.90 |" in runs_md


def test_figures_are_written_and_not_blank(sweep: Path) -> None:
    result = report(sweep, "report.log_rate=true", plot=True)
    names = sorted(p.name for p in result.files if p.suffix in (".png", ".pdf"))
    assert names == sorted(f"{kind}_{m}.{ext}" for kind in ("rate_accuracy", "z_sweep") for m in ("bbox_AP", "segm_AP") for ext in ("png", "pdf"))
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
    other = subprocess.run([sys.executable, "-c", "from vcm_eval.report.plots import curve_style; print(repr(curve_style('quant (n_symbols=4)')))"],
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert repr(curve_style("quant (n_symbols=4)")) == other
    assert curve_style("quant (n_symbols=4)") != curve_style("quant (n_symbols=3)")
    assert curve_style("image_anchor", anchor=True).linestyle == "--" and curve_style("quant").linestyle == "-"


def test_anchor_choice(sweep: Path) -> None:
    with pytest.raises(ConfigError, match=r"report.anchor='image_anchr' is not among the runs' pipelines \['feature_anchor', 'fusion_codec', 'image_anchor', 'quant', 'uncompressed'\]"):
        report(sweep, "report.anchor=image_anchr")
    with pytest.raises(ConfigError, match=r"matches several curves \['quant \(n_symbols=3\)', 'quant \(n_symbols=4\)'\]"):
        report(sweep, "report.anchor=quant")
    bd = report(sweep, "report.anchor=quant", "+report.anchor_params.n_symbols=3").bd.set_index(["curve", "metric"])
    assert bd.loc[("image_anchor", "bbox_AP"), "bd_rate"] == pytest.approx(100 * (1 / 0.6 - 1), abs=1e-9)


def test_setups_are_kept_apart_and_duplicates_refused(sweep: Path) -> None:
    base = base_config()
    for qp, bpp in zip(ANCHOR_QP, ANCHOR_BPP):  # the same sweep measured on 5 images
        record_run(sweep / "other", base, {"name": "image_anchor", "qp": qp}, bpp, bbox_map(bpp), images=5)
    runs, _ = load_runs(find_runs(str(sweep))[0])
    assert runs["setup"].nunique() == 2
    assert len(report(sweep).bd) == 8  # the 5-image anchor compares with nothing of the 3-image setup
    record_run(sweep / "again", base_config("codec.preset=medium"), {"name": "image_anchor", "qp": 32}, 0.21, 18.0)
    with pytest.raises(DataError, match="repeat one configuration"):
        report(sweep)


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
    proc = subprocess.run(
        [sys.executable, "-m", "vcm_eval", "report=default", f"report.runs={sweep}/synthetic/**", f"report.output={out}", "report.plot=false", f"paths.results={tmp_path}"],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| feature_anchor | image_anchor | -20.00 | +2.58 |" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["bd.csv", "bd.md", "bd.tex", "quant_table.csv", "quant_table.md", "runs.csv", "runs.md", "runs.tex"]


def test_bad_report_settings_are_one_line_errors(sweep: Path) -> None:
    from vcm_eval.metrics.bdrate import BdRateError

    with pytest.raises(BdRateError, match="method='spline' is unknown"):
        report(sweep, "report.method=spline")
    with pytest.raises(ConfigError, match="report.runs=3 must be a folder or glob"):
        report(sweep, "report.runs=3")
