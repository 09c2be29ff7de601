"""A sweep killed half way (SIGKILL, a real subprocess) and rerun ends with the same table as an
uninterrupted one; the rerun skips finished runs and resumes the interrupted one image by image."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import records_without_timings
from hydra import compose

from vcm_eval.engine.store import recorded_ids, run_lock
from vcm_eval.errors import VcmEvalError
from vcm_eval.report.report import find_runs, load_runs
from vcm_eval.utils.cli import missing_launcher

IMAGES = 4
# Small and fast: 128x256 images, random-init network (deterministic), few proposals.
SWEEP = [
    "pipeline=image_anchor", "pipeline.qp=32,42", "model.weights=null", "model.min_size=128", "model.max_size=256",
    "model.rpn_pre_nms_top_n_test=200", "model.rpn_post_nms_top_n_test=100", "model.detections_per_img=20",
    f"dataset.size={IMAGES}", "dataset.height=128", "dataset.width=256", "workers=1", "threads=1", "progress=false",
]  # fmt: skip
COMPARED = [
    "pipeline",
    "curve",
    "qp",
    "bpp",
    "bpp_mean",
    "kbytes_per_image",
    "bbox_AP",
    "bbox_AP50",
    "segm_AP",
    "segm_AP50",
    "cityscapes_AP",
    "cityscapes_AP50",
    "images",
    "records",
    "setup",
]


def sweep_cmd(results: Path, data: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vcm_eval",
        "-m",
        *SWEEP,
        f"paths.results={results}",
        f"paths.data={data}",
        f"hydra.sweep.dir={results}/hydra",
    ]


def complete_lines(path: Path) -> int:
    data = path.read_bytes() if path.is_file() else b""
    return data.count(b"\n")


def test_killed_sweep_resumes_to_the_same_table(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = subprocess.run(sweep_cmd(whole, data), capture_output=True, text=True, env=env, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    # the same sweep, killed (SIGKILL: no cleanup) once the second run has recorded an image
    proc = subprocess.Popen(
        sweep_cmd(cut, data), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    victim = None
    try:
        deadline = time.monotonic() + 900
        while victim is None and time.monotonic() < deadline and proc.poll() is None:
            files = list(cut.rglob("records.jsonl"))
            if any((f.parent / "metrics.json").exists() for f in files):  # the first run is done
                victim = next(
                    (f for f in files if not (f.parent / "metrics.json").exists() and complete_lines(f) >= 1), None
                )
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert victim is not None, "the sweep ended before it could be killed half way"
    assert proc.returncode == -signal.SIGKILL
    finished, interrupted = find_runs(str(cut))
    assert len(finished) == 1 and interrupted == [victim.parent.resolve()]
    kept = complete_lines(victim)
    assert 1 <= kept < IMAGES
    before = victim.read_bytes()[: victim.read_bytes().rfind(b"\n") + 1]
    with open(victim, "ab") as f:  # and a line torn by the kill, as a crash mid-write leaves it
        f.write(b'{"image_id": 3, "bits": 12')
    first_metrics = (finished[0] / "metrics.json").stat().st_mtime_ns

    again = subprocess.run(sweep_cmd(cut, data), capture_output=True, text=True, env=env, timeout=900, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"done already, skipped: {finished[0]}" in again.stdout
    assert (finished[0] / "metrics.json").stat().st_mtime_ns == first_metrics
    assert victim.read_bytes().startswith(before)  # recorded images kept, not recomputed
    assert complete_lines(victim) == IMAGES and recorded_ids(victim) == set(range(IMAGES))
    prov = json.loads((victim.parent / "provenance.json").read_text())
    assert (
        prov["records_at_start"] == kept and len(prov["history"]) == 1 and prov["history"][0]["records_at_start"] == 0
    )
    assert prov["libvvenc"] != "unknown" and prov["git_commit"]

    tables = [load_runs(find_runs(str(r))[0])[0][COMPARED].reset_index(drop=True) for r in (whole, cut)]
    assert len(tables[0]) == 2
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert records_without_timings(whole) == records_without_timings(cut)  # bits and every detection, image by image


HOLD_LOCK = """
import sys, time
from pathlib import Path
from vcm_eval.engine.store import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_run_folder_is_written_by_one_process_at_a_time(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(VcmEvalError, match="is being written by another process"), run_lock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path):  # released when its holder died
        pass


def test_parallel_runs_generate_the_synthetic_split_once(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from vcm_eval.data.synthetic import SyntheticSpec, write_split\n"
        "print(write_split(Path(sys.argv[1]), SyntheticSpec(height=64, width=128), 'val', 6, progress=False))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-1000:] for o in outs]
    coco = json.loads((tmp_path / "annotations" / "instances_val.json").read_text())
    assert [im["id"] for im in coco["images"]] == list(range(6))
    assert len(list((tmp_path / "leftImg8bit" / "val").rglob("*.png"))) == 6
    assert len(list((tmp_path / "gtFine" / "val").rglob("*.png"))) == 12
    assert not list(tmp_path.glob(".tmp-val-*"))  # no temporary folder left behind


def test_launcher_configs_compose(hydra_conf: None) -> None:
    cfg = compose("config", overrides=["hydra/launcher=parallel", "hydra.launcher.n_jobs=3"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert cfg.hydra.launcher.n_jobs == 3
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:  # the [cluster] extra is not installed: a one-line hint, not a traceback
        assert missing_launcher(["vcm_eval", "-m", "hydra/launcher=slurm"]) == (
            "hydra/launcher=slurm needs the submitit launcher: pip install 'vcm_eval[cluster]' "
            "(hydra-submitit-launcher)"
        )
        return
    cfg = compose(
        "config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=cpu"], return_hydra_config=True
    )
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.partition == "cpu"
    assert missing_launcher(["vcm_eval", "-m", "hydra/launcher=slurm"]) is None


@pytest.mark.slow
def test_submitit_local_sweep_with_a_killed_job_reruns_to_the_same_table(tmp_path: Path) -> None:
    """A real multi-process sweep through Hydra's submitit launcher (local executor): one job is
    SIGKILLed half way, the rerun completes it, and the table equals an uninterrupted sweep's."""
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def cmd(results: Path) -> list[str]:
        return [*sweep_cmd(results, data), "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=30"]

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = subprocess.run(cmd(whole), capture_output=True, text=True, env=env, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list((whole / "hydra" / ".submitit").iterdir()), "the jobs ran through submitit"
    proc = subprocess.Popen(
        cmd(cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    victim = None
    deadline = time.monotonic() + 900
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        victim = next(
            (
                f
                for f in cut.rglob("records.jsonl")
                if complete_lines(f) >= 1 and not (f.parent / "metrics.json").exists()
            ),
            None,
        )
        time.sleep(0.02)
    subprocess.run(
        ["pkill", "-9", "-f", str(cut)], check=False
    )  # the launcher and every job: their command lines name the sweep dir
    proc.wait(timeout=60)
    assert victim is not None, "the sweep ended before a job could be killed half way"
    assert complete_lines(victim) < IMAGES
    again = subprocess.run(cmd(cut), capture_output=True, text=True, env=env, timeout=900, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    tables = [load_runs(find_runs(str(r))[0])[0][COMPARED].reset_index(drop=True) for r in (whole, cut)]
    assert len(tables[0]) == 2
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert records_without_timings(whole) == records_without_timings(cut)
