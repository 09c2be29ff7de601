"""A researcher's own codec, kept outside vcm_eval (examples/my_codecs.py), runs like a built-in one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import compose_cfg

from vcm_eval.data.datasets import build_dataset
from vcm_eval.engine.run import run_single
from vcm_eval.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _example_codecs() -> Any:  # imported the way vcm_eval imports it: from PYTHONPATH
    sys.path.insert(0, str(EXAMPLES))
    try:
        import my_codecs
    finally:
        sys.path.remove(str(EXAMPLES))
    return my_codecs


def test_an_image_codec_outside_the_package_runs_from_the_command_line(tmp_path: Path, hydra_conf: None) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    job = [sys.executable, "-m", "vcm_eval", "pipeline=image_codec", "+pipeline.codec._target_=my_codecs.JpegCodec",
           "+pipeline.codec.quality=30", "dataset.limit=2", "progress=false", f"paths.results={tmp_path / 'results'}",
           f"paths.data={tmp_path / 'data'}", f"paths.cache={tmp_path / 'cache'}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES)}
    done = subprocess.run(job, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = next((tmp_path / "results").rglob("metrics.json")).parent
    assert run_dir.parent.name == "jpeg" and run_dir.name.startswith(
        "quality30-"
    )  # filed under the codec's name and knob
    row = json.loads((run_dir / "metrics.json").read_text())
    assert row["pipeline"] == "jpeg" and row["quality"] == 30 and row["rate_params"] == ["quality"]
    assert row["images"] == 2.0 and 0.0 < row["bbox_AP"] <= 100.0 and 0.0 < row["segm_AP"] <= 100.0
    # the rate is the codec's bytes, every one: encode the same two images with the same codec here
    jpeg = _example_codecs().JpegCodec(quality=30)
    dataset = build_dataset(compose_cfg(["dataset.limit=2"]).dataset, data_dir=tmp_path / "data", progress=False)
    samples = [dataset.load(e) for e in dataset.images]
    bits = sum(8 * len(jpeg.encode(s.image)) for s in samples)
    assert row["bpp"] == pytest.approx(bits / sum(s.height * s.width for s in samples), rel=1e-3)
    assert json.loads((run_dir / "provenance.json").read_text())["codec_version"] == jpeg.version()


def test_a_feature_codec_from_config_gives_records_rate_and_accuracy(tmp_path: Path, hydra_conf: None) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        common = [
            "pipeline=feature_codec",
            "+pipeline.codec._target_=my_codecs.UniformZlibCodec",
            "dataset.limit=2",
            "progress=false",
        ]
        paths = [
            f"paths.results={tmp_path / 'results'}",
            f"paths.data={tmp_path / 'data'}",
            f"paths.cache={tmp_path / 'cache'}",
        ]
        rows = {b: run_single(compose_cfg([*common, f"+pipeline.codec.bits={b}", *paths])) for b in (2, 8)}
        with pytest.raises(ConfigError, match="not a vcm_eval.codecs.base.FeatureCodec"):
            run_single(compose_cfg(["pipeline=feature_codec", "+pipeline.codec._target_=my_codecs.JpegCodec", *paths]))
        with pytest.raises(ConfigError, match="needs pipeline.codec._target_"):
            run_single(compose_cfg(["pipeline=feature_codec", *paths]))
    finally:
        sys.path.remove(str(EXAMPLES))
    assert {r["pipeline"] for r in rows.values()} == {"uniform_zlib"} and rows[2]["bits"] == 2
    assert rows[2]["bpp"] < rows[8]["bpp"]  # fewer bits per value, fewer bytes
    assert rows[8]["bbox_AP"] > rows[2]["bbox_AP"]  # and 8-bit features keep more of the accuracy
    records = [json.loads(line) for line in Path(rows[8]["run_dir"], "records.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["bits"] > 0 for r in records)
    # the learned-codec papers' measure beside bpp: coded bits / float32 bits of P2..P5
    # (256 x 10,880 values at 512 x 256)
    assert all(r["p2_p5_values"] == 256 * (64 * 128 + 32 * 64 + 16 * 32 + 8 * 16) for r in records)
    assert rows[8]["feature_ratio_pct"] == pytest.approx(
        100 * sum(r["bits"] for r in records) / (32 * 2 * 256 * 10_880)
    )
