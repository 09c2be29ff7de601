"""MPEG's image test condition, offline: every image pipeline on ``dataset=synthetic_oid`` with the Challenge metric.

The synthetic images written in the Open Images layout stand in for MPEG's OpenImages V6 subset:
each pipeline reports ``oic_AP50`` (and ``oic_segm_AP50``: the default task model has masks), the
image anchor's rate is the VVC bitstream alone (as MPEG counts it) with the container's bytes
beside it, every run holds kMAC per pixel of its stages, and the report writes MPEG's CTTC CSV.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import compose_cfg
from hydra import compose

from vcm_eval.codecs.bitstream import BitstreamReader
from vcm_eval.engine.run import run_single
from vcm_eval.errors import ConfigError

PIPELINES = {
    "uncompressed": ["pipeline=uncompressed"],
    "image_anchor_vtm": ["pipeline=image_anchor", "vvc=vtm", "pipeline.qp=47"],
    "image_anchor_vvenc": ["pipeline=image_anchor", "vvc.preset=faster", "pipeline.qp=47"],
    "feature_anchor": ["pipeline=feature_anchor", "vvc.preset=faster", "pipeline.qp=37"],
    "quant": ["pipeline=quant"],
    "quant8": ["pipeline=quant8"],
    "fusion_codec": ["pipeline=fusion_codec", "pipeline.quality=3"],
}


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory, synth_root: Path) -> dict[str, dict]:
    from hydra import initialize_config_dir

    from vcm_eval.resources import CONF_DIR

    results = tmp_path_factory.mktemp("oid_results")
    data = tmp_path_factory.mktemp("oid_data")
    common = ["dataset=synthetic_oid", f"dataset.root={synth_root}", "dataset.size=6", "dataset.limit=2",
              "progress=false", f"paths.results={results}", f"paths.data={data}"]  # fmt: skip
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return {name: run_single(compose_cfg([*common, *extra])) for name, extra in PIPELINES.items()}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_image_pipeline_reports_the_challenge_metric(rows: dict[str, dict], name: str) -> None:
    row = rows[name]
    assert 0.0 <= row["oic_AP50"] <= 100.0 and 0.0 <= row["oic_segm_AP50"] <= 100.0
    assert row["images"] == 2.0
    assert row["kmac_per_pixel_nn_part_1"] > 0 and row["kmac_per_pixel_nn_part_2"] > 0
    assert ("kmac_per_pixel_encoder" in row) == (name == "fusion_codec")  # the only codec that is a network


def test_the_image_anchor_rate_is_the_vvc_bitstream_alone(rows: dict[str, dict]) -> None:
    for name in ("image_anchor_vtm", "image_anchor_vvenc"):
        run = Path(rows[name]["run_dir"])
        records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
        vvc_bytes, kept_bytes = 0, 0
        for rec in records:
            data = (run / "bitstreams" / f"{rec['image_id']}.bin").read_bytes()
            reader = BitstreamReader(data, "image_vvc")
            reader.uint(), reader.uint()
            stream = reader.blob()
            assert rec["bits"] == 8 * len(stream) and rec["header_bytes"] == len(data) - len(stream) > 0
            vvc_bytes, kept_bytes = vvc_bytes + len(stream), kept_bytes + len(data)
        pixels = sum(rec["pixels"] for rec in records)
        assert rows[name]["bpp"] == pytest.approx(8 * vvc_bytes / pixels, rel=1e-12)
        assert rows[name]["header_bytes_per_image"] == pytest.approx((kept_bytes - vvc_bytes) / len(records))


def test_feature_codecs_count_every_byte(rows: dict[str, dict]) -> None:
    run = Path(rows["quant"]["run_dir"])
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    for rec in records:
        assert rec["bits"] == 8 * (run / "bitstreams" / f"{rec['image_id']}.bin").stat().st_size
        assert "header_bytes" not in rec and len(rec["features_sha256"]) == 16


def test_the_report_writes_mpeg_cttc_and_refuses_a_missing_point(
    rows: dict[str, dict], tmp_path: Path, hydra_conf: None
) -> None:
    from vcm_eval.report.report import run_report

    results = Path(rows["uncompressed"]["run_dir"]).parents[3]
    out = tmp_path / "report"
    cfg = compose(config_name="report", overrides=[
        f"report.runs={results}", f"report.output={out}", "report.plot=false", "report.format=mpeg_cttc",
        "report.cttc_mode=fcm", "+report.anchor_params.vvc.backend=vtm", "report.cttc_dataset=mpeg-oiv6-detection",
        "report.metrics=[oic_AP50]"])  # fmt: skip
    with pytest.raises(ConfigError, match="rate point"):
        run_report(cfg)  # one QP per anchor curve: MPEG's template needs 4 (FCM) or 6 (VCM)
    assert not list(out.glob("mpeg_cttc_*.csv"))


def test_mpeg_cttc_csv_of_a_complete_curve(hydra_conf: None, tmp_path: Path, synth_root: Path) -> None:
    from vcm_eval.report.report import run_report

    common = ["dataset=synthetic_oid", f"dataset.root={synth_root}", "dataset.size=6", "dataset.limit=1",
              "progress=false", f"paths.results={tmp_path / 'results'}", f"paths.data={tmp_path / 'data'}",
              "pipeline=image_anchor", "vvc.preset=faster", "eval.complexity_images=0"]  # fmt: skip
    qps = (22, 27, 32, 37, 42, 47)
    rows = {qp: run_single(compose_cfg([*common, f"pipeline.qp={qp}"])) for qp in qps}
    cfg = compose(config_name="report", overrides=[
        f"report.runs={tmp_path / 'results'}", f"report.output={tmp_path / 'report'}", "report.plot=false",
        "report.format=mpeg_cttc", "report.cttc_dataset=mpeg-oiv6-detection", "report.metrics=[oic_AP50]"])  # fmt: skip
    run_report(cfg)
    with (tmp_path / "report" / "mpeg_cttc_image_anchor.csv").open() as f:
        table = list(csv.reader(f))
    assert table[0] == ["", "Dataset", "qp", "avg_bpp", "end_accuracy"]
    assert [int(r[2]) for r in table[1:]] == list(qps)
    for r in table[1:]:
        assert r[1] == "mpeg-oiv6-detection"
        assert float(r[3]) == rows[int(r[2])]["bpp"] and float(r[4]) == rows[int(r[2])]["oic_AP50"]
