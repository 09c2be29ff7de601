"""A real package: the wheel carries conf/ and anchors/, and ``vcm-eval`` runs a job from any folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_outside_the_tree_and_runs_a_two_image_job(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(wheels.glob("vcm_eval-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "vcm_eval/conf/config.yaml",
        "vcm_eval/conf/vvc/vtm.yaml",
        "vcm_eval/conf/suite.yaml",
        "vcm_eval/conf/report.yaml",
        "vcm_eval/anchors/vtm_image_anchor/manifest.csv",
    } <= names
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # before site-packages: the installed copy, not the checkout
    where = subprocess.run(
        [sys.executable, "-c", "import vcm_eval.resources as r; print(r.CONF_DIR)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip() == str(site / "vcm_eval" / "conf")
    help_text = subprocess.run(
        [str(site / "bin" / "vcm-eval"), "--help"], cwd=elsewhere, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "vvc: base_vvc, vtm, vvc" in help_text and "== Configuration groups ==" in help_text
    job = [str(site / "bin" / "vcm-eval"), "pipeline=uncompressed", "dataset.limit=2", "progress=false",
           f"paths.results={elsewhere / 'results'}", f"paths.data={elsewhere / 'data'}",
           f"paths.cache={elsewhere / 'cache'}"]  # fmt: skip
    done = subprocess.run(job, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = next((elsewhere / "results").rglob("metrics.json"))
    assert json.loads(metrics.read_text())["images"] == 2.0
