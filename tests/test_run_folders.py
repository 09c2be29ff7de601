"""Run folders that cannot mix or hide: subsets get their own folder, safe names, normal permissions."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from conftest import compose_cfg

from vcm_eval.engine.run import params_tag, run_dir_for, run_single
from vcm_eval.utils.atomic import atomic_write

SMALL = [
    "pipeline=uncompressed", "model.weights=null", "model.min_size=128", "model.max_size=256",
    "model.detections_per_img=20", "dataset.size=3", "dataset.height=128", "dataset.width=256", "workers=1",
    "threads=1", "progress=false",
]  # fmt: skip


def test_a_subset_never_overwrites_the_full_run(hydra_conf: None, tmp_path: Path) -> None:
    base = [*SMALL, f"paths.results={tmp_path}", f"paths.data={tmp_path / 'data'}"]
    full = run_single(compose_cfg(base))
    subset = run_single(compose_cfg([*base, "dataset.limit=1"]))
    assert full["run_dir"] != subset["run_dir"]
    assert json.loads((Path(full["run_dir"]) / "metrics.json").read_text())["images"] == 3.0
    assert json.loads((Path(subset["run_dir"]) / "metrics.json").read_text())["images"] == 1.0


def test_written_files_get_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "metrics.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o644


def test_folder_names_hold_only_safe_characters(hydra_conf: None, tmp_path: Path) -> None:
    assert params_tag({"quality": 8, "checkpoint": "/data/ckpt/q8.pt"}) == "quality8-checkpoint_data_ckpt_q8.pt"
    assert params_tag({"checkpoint": "zoo:synthetic q8"}) == "checkpointzoo_synthetic_q8"
    long = params_tag({"checkpoint": "/very/long/path/to/some/checkpoint/file.pt"})
    assert long.startswith("checkpointh") and len(long) == len("checkpoint") + 9
    cfg = compose_cfg(["pipeline=quant", "pipeline.z=1.5", f"paths.results={tmp_path}"])
    name = run_dir_for(cfg).name
    assert "/" not in name and ":" not in name and " " not in name and name.startswith("n_symbols4-z1.5")
