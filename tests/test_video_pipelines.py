"""Video runs end to end on the synthetic video (2 sequences x 4 frames, a small network input): the image anchor
and the feature anchor (one VVC stream per sequence) and the 8-bit point (frame by frame); the kept streams,
their headers, the rate from the bytes, resuming a killed sequence, the run key, and the report's tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import compose_cfg
from omegaconf import DictConfig

from vcm_eval.codecs.vvc.headers import stream_structure
from vcm_eval.codecs.vvc.sequence import VvcSequenceCodec, access_units
from vcm_eval.engine.video import is_video, run_video, video_key_parts
from vcm_eval.errors import ConfigError
from vcm_eval.pipelines.video import kept_stream, video_reads
from vcm_eval.report.video import load_video_runs, scope_table

SEQUENCES = "dataset.sequences=[SynthStreet0_256x128_30,SynthStreet1_256x128_30]"
QP = 32


def _overrides(tmp: Path, *extra: str) -> list[str]:
    return ["dataset=synthetic_video", "dataset.limit=4", SEQUENCES, "model.min_size=128", "model.max_size=256",
            "vvc.preset=faster", "vvc_sequence.intra_period=2", f"paths.results={tmp / 'results'}",
            f"paths.data={tmp / 'data'}", "progress=false", "workers=1", *extra]  # fmt: skip


RUNS = {
    "image_anchor": ["pipeline=image_anchor", f"pipeline.qp={QP}"],
    "quant8": ["pipeline=quant8"],
    "feature_anchor": ["pipeline=feature_anchor", "pipeline.qp=27"],
}


def _run(tmp: Path, name: str) -> dict:
    from hydra import initialize_config_dir

    from vcm_eval.resources import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return run_video(compose_cfg(_overrides(tmp, *RUNS[name])))


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("video_runs")


@pytest.fixture(scope="module")
def runs(tmp: Path) -> dict[str, dict]:
    """The image anchor at QP 32 (low delay, intra period 2), the 8-bit point and the feature anchor at QP 27."""
    return {name: _run(tmp, name) for name in RUNS}


def _seq_dirs(result: dict) -> list[Path]:
    return sorted((Path(result["run_dir"]) / "sequences").iterdir())


def test_kept_stream_holds_every_frame_with_its_intra_period_and_qp(runs: dict[str, dict]) -> None:
    codec = VvcSequenceCodec()
    for folder in _seq_dirs(runs["image_anchor"]):
        kept = kept_stream(folder)
        assert kept is not None
        data, meta = kept
        s = stream_structure(data, codec.ffmpeg)
        assert s.count == access_units(data) == meta["frames"] == 4  # every frame of the (limited) sequence
        assert s.intra_pocs == [0, 2] and s.intra_period == 2  # vvc_sequence.intra_period, read from the headers
        assert s.intra_qps == [QP, QP]  # the configured QP is the intra slices' coded QP
        assert [p.poc for p in s.pictures] == [0, 1, 2, 3]  # low delay: no reordering


def test_rates_are_counted_from_the_bytes(runs: dict[str, dict]) -> None:
    for row, folder in zip(runs["image_anchor"]["sequences"], _seq_dirs(runs["image_anchor"]), strict=True):
        bits = 8 * (folder / "stream.bin").stat().st_size  # the image anchor: the VVC stream alone, as MPEG counts
        assert row["bits"] == bits and row["frames"] == 4 and row["fps"] == 30
        assert row["kbps"] == pytest.approx(bits / (4 / 30) / 1000)
        assert row["bpp"] == pytest.approx(bits / (4 * 256 * 128))
    for row, folder in zip(runs["feature_anchor"]["sequences"], _seq_dirs(runs["feature_anchor"]), strict=True):
        data, meta = kept_stream(folder) or (b"", {})
        assert row["bits"] == 8 * len(data) and meta["frames"] == 4  # every byte: header, ranges, VVC stream
        assert row["side_bytes"] == len(data) - meta["stream_bytes"] > 4 * 8  # 4 frames' (lo, hi) at least
    for row, folder in zip(runs["quant8"]["sequences"], _seq_dirs(runs["quant8"]), strict=True):
        kept = sorted((folder / "bitstreams").glob("*.bin"))
        assert len(kept) == 4
        bits = 8 * sum(p.stat().st_size for p in kept)  # every byte of every frame's stream
        assert row["bits"] == bits == sum(json.loads(line)["bits"] for line in (folder / "frames.jsonl").open())
        assert row["kbps"] == pytest.approx(bits / (4 / 30) / 1000)


def test_results_per_sequence_and_class(runs: dict[str, dict]) -> None:
    result = runs["image_anchor"]
    assert [r["sequence"] for r in result["sequences"]] == ["SynthStreet0_256x128_30", "SynthStreet1_256x128_30"]
    assert [c["seq_class"] for c in result["classes"]] == ["A", "B"] and result["all"]["sequences"] == 2
    for row in result["sequences"]:
        assert 0 <= row["bbox_AP"] <= 100 and row["MOTA"] <= 100 and row["GT"] > 0  # the synthetic video has tracks
        assert (Path(result["run_dir"]) / "sequences" / row["sequence"] / "tracks.txt").is_file()
    a = result["classes"][0]
    assert a["kbps"] == pytest.approx(result["sequences"][0]["kbps"])  # one sequence: its own values
    for run in runs.values():  # FCM's complexity per stage, on the first frame (eval.complexity_images=1)
        rows = run["sequences"]
        assert all(r["complexity_pixels"] == 256 * 128 and r["kmac_per_pixel_nn_part_1"] > 0 for r in rows)
        assert not any("kmac_per_pixel_encoder" in r for r in rows)  # VVC and the quantizers are not networks
        parts = [r["kmac_per_pixel_nn_part_2"] for r in rows]  # after the split: depends on the proposals
        assert run["all"]["kmac_per_pixel_nn_part_2"] == pytest.approx(sum(parts) / 2)  # equal sizes: the mean
    both = result["all"]
    assert both["kbps"] == pytest.approx(sum(r["bits"] for r in result["sequences"]) / (8 / 30) / 1000)
    frame = load_video_runs([Path(r["run_dir"]) for r in (runs["image_anchor"], runs["quant8"])])
    table = scope_table(frame, "class")
    assert list(table.columns[:5]) == ["curve", "point", "class", "sequences", "kbps"]
    assert set(table["curve"]) == {"image_anchor", "quant8"} and len(table) == 4  # 2 runs x classes A and B


def test_a_killed_sequence_resumes_from_its_kept_stream_and_records(
    runs: dict[str, dict], tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = runs["image_anchor"]
    run_dir = Path(before["run_dir"])
    folder = _seq_dirs(before)[1]
    lines = (folder / "frames.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "video.json").unlink()
    (folder / "sequence.json").unlink()
    (folder / "frames.jsonl").write_text("".join(lines[:2]) + lines[2][:20])  # killed while writing frame 3's line

    def no_encoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resumed sequence must decode its kept stream, not encode again")

    monkeypatch.setattr(VvcSequenceCodec, "encode", no_encoding)
    after = _run(tmp, "image_anchor")
    assert after["run_dir"] == before["run_dir"]
    resumed = (folder / "frames.jsonl").read_text().splitlines(keepends=True)
    assert resumed[:2] == lines[:2] and len(resumed) == 4  # the recorded frames are kept as they were
    strip = ("encode_s", "decode_s", "task_s", "features_s")
    for old, new in zip(lines, resumed[:2] + sorted(resumed[2:], key=lambda t: json.loads(t)["image_id"]), strict=True):
        assert {k: v for k, v in json.loads(old).items() if k not in strip} == \
            {k: v for k, v in json.loads(new).items() if k not in strip}  # fmt: skip
    untimed = [[{k: v for k, v in r.items() if not k.endswith("_s")} for r in x["sequences"]] for x in (before, after)]
    assert untimed[0] == untimed[1] and after["classes"] == before["classes"] and after["all"] == before["all"]


def test_the_run_key_covers_vvc_sequence_only_where_the_codec_reads_it(hydra_conf: None, tmp_path: Path) -> None:
    def parts(*extra: str) -> dict:
        cfg: DictConfig = compose_cfg(_overrides(tmp_path, *extra))
        assert is_video(cfg)
        return video_key_parts(cfg, video_reads(cfg), {})

    low, random = parts("pipeline=image_anchor"), parts("pipeline=image_anchor", "vvc_sequence=random_access")
    assert low["vvc_sequence"]["structure"] == "low_delay" and low != random
    assert parts("pipeline=feature_anchor") != parts("pipeline=feature_anchor", "vvc_sequence.intra_period=4")
    assert "vvc_sequence" not in parts("pipeline=quant8")  # a frame codec never reads it: no new folder
    assert parts("pipeline=quant8") == parts("pipeline=quant8", "vvc_sequence=random_access")
    assert parts("pipeline=quant8") != parts("pipeline=quant8", "tracker.max_age=3")  # MOTA depends on the tracker
    assert not is_video(compose_cfg(["pipeline=quant8"]))


def test_the_video_job_end_to_end(tmp_path: Path, own_cache: Path) -> None:
    """``python -m vcm_eval.suite suite=video`` cut to 2 sequences of 6 frames and 4 runs: the shipped VTM streams
    do not fit such sequences, so the job says so and codes the image anchor with VVenC at the same structure;
    every run reaches the tables (per class A and B and all), the BD table and the figures."""
    runs = '["pipeline=uncompressed","pipeline=image_anchor vvc=vtm pipeline.qp=32,42","pipeline=quant8"]'
    cmd = [sys.executable, "-m", "vcm_eval.suite", "suite=video", f"paths.results={tmp_path / 'r'}",
           f"paths.data={tmp_path / 'data'}", "progress=false", "dataset.sequence_count=2", "dataset.frames=6",
           f"suite.runs={runs}"]  # fmt: skip
    env = {**os.environ, "VCM_EVAL_CACHE": str(own_cache)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("the shipped VTM streams lack") == 2 and "running VVenC instead (vvc=vvc)" in done.stdout
    out = tmp_path / "r" / "synthetic_video" / "synthetic_maskrcnn_slim" / "suite"
    frame = pd.read_csv(out / "video_runs.csv")
    assert set(frame["scope"]) >= {"A", "B", "all"} and set(frame["curve"]) == {
        "uncompressed",
        "image_anchor",
        "quant8",
    }
    anchor = frame[(frame["curve"] == "image_anchor") & (frame["kind"] == "sequence")]
    assert len(anchor) == 4 and (anchor["kbps"] > 0).all() and (anchor["frames"] == 6).all()
    assert "VVenC" in " ".join(map(str, anchor["encoder"]))  # the fallback's encoder, named in the table
    assert all((out / name).is_file() for name in ("video_classes.md", "video_bd.md", "video_rate_MOTA_all.png"))


def test_test_condition_qps_per_sequence_in_one_run(runs: dict[str, dict], tmp: Path) -> None:
    """``vvc_sequence.rate_point=k`` codes each sequence at the k-th QP of its list (MPEG's ``-q``: the intra slices
    carry ``-q + IntraQPOffset``, -1 in VVenC's low delay); the runs of two points are one curve in the report,
    whose CTTC rows give each sequence's coded QP; a point a list lacks, or a frame codec, fails before writing."""
    from hydra import initialize_config_dir

    from vcm_eval.report.video import cttc_qp
    from vcm_eval.resources import CONF_DIR

    made = next((tmp / "data").glob("*/sfu/sequences.csv"))  # the synthetic video in SFU layout (made by `runs`)
    lines = made.read_text().splitlines()
    header = lines[1].split(",")
    rows = [line.split(",") for line in lines[2:] if line.split(",")[0] in SEQUENCES]
    for row, qps in zip(rows, ("30 35", "33 38"), strict=True):
        row[header.index("qps")] = qps
    listed = tmp / "with_qps.csv"
    listed.write_text("\n".join([lines[0], lines[1], *(",".join(r) for r in rows)]) + "\n")
    sfu = ["dataset=sfu", f"dataset.root={made.parent}", f"dataset.sequence_list={listed}", "pipeline=image_anchor"]

    def run(*extra: str) -> dict:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return run_video(compose_cfg(_overrides(tmp, *sfu, *extra)))

    second = run("vvc_sequence.rate_point=2")
    assert second["rate_params"] == ["rate_point"] and second["rate_point"] == 2 and "qp" not in second
    assert Path(second["run_dir"]).name.startswith("rate_point2-")
    codec = VvcSequenceCodec()
    for row, want in zip(second["sequences"], (34, 37), strict=True):
        data, meta = kept_stream(Path(second["run_dir"]) / "sequences" / row["sequence"]) or (b"", {})
        assert stream_structure(data, codec.ffmpeg).intra_qps == [want, want] and row["qp"] == meta["qp"] == want
    assert [c.get("qp") for c in second["classes"]] == [34, 37] and "qp" not in second["all"]
    first = run("vvc_sequence.rate_point=1")
    assert [r["qp"] for r in first["sequences"]] == [29, 32]
    frame = load_video_runs([Path(first["run_dir"]), Path(second["run_dir"])])
    assert set(frame["curve"]) == {"image_anchor"}  # two rate points of one curve
    assert "rate_point=2 (qp=37)" in set(scope_table(frame, "sequence")["point"])
    sequences = frame[frame["kind"] == "sequence"].to_dict("records")
    assert sorted(cttc_qp(r) for r in sequences) == [29, 32, 34, 37]  # the CTTC rows' qp: each sequence's own
    with pytest.raises(ConfigError, match="lists 2 test-condition QPs"):
        run("vvc_sequence.rate_point=3")
    assert not list((tmp / "results").rglob("rate_point3-*"))  # refused before anything was written
    with pytest.raises(ConfigError, match="rate_point=1 picks the image anchor"):
        run("pipeline=quant8", "vvc_sequence.rate_point=1")


def test_shards_split_the_sequences_by_cost_and_cover_each_once() -> None:
    from vcm_eval.data.video.sfu import read_sequence_list
    from vcm_eval.engine.video import shard_of

    class Seq:  # what shard_of reads of a sequence
        def __init__(self, name: str, frames: int, width: int, height: int) -> None:
            self.name, self.frame_count, self.width, self.height = name, frames, width, height

    sfu = [Seq(e.sequence, e.frames, e.width, e.height) for e in read_sequence_list()]  # MPEG's 14 SFU sequences
    shares = [shard_of(sfu, f"{k}/4") for k in range(1, 5)]  # type: ignore[arg-type]
    names = [s.name for share in shares for s in share]
    assert sorted(names) == sorted(s.name for s in sfu)  # every sequence in exactly one job
    loads = [sum(s.frame_count * s.width * s.height for s in share) for share in shares]
    assert max(loads) < 1.05 * sum(loads) / 4  # near-equal (measured 1.016; round robin in list order: 1.36)
    again = shard_of(sfu, "2/4")  # type: ignore[arg-type]
    assert [s.name for s in again] == [s.name for s in shares[1]]  # every job computes the same split
    assert shard_of(sfu, "") == sfu  # type: ignore[arg-type]
    for bad in ("0/4", "5/4", "2", "a/b"):
        with pytest.raises(ConfigError, match="must be k/n"):
            shard_of(sfu, bad)  # type: ignore[arg-type]


def test_two_jobs_share_one_run_and_the_last_writes_its_result(runs: dict[str, dict], tmp: Path) -> None:
    """``shard=1/2`` and ``shard=2/2`` started together (two cluster jobs): each codes one sequence under its lock,
    one ``video.json`` holds both, equal to the run made by one process (timings aside)."""
    shared = tmp / "shared"
    base = [o for o in _overrides(tmp, *RUNS["quant8"]) if not o.startswith("paths.results=")]
    jobs = [subprocess.Popen([sys.executable, "-m", "vcm_eval", *base, f"paths.results={shared}", f"shard={k}/2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (1, 2)]  # fmt: skip
    outs = [job.communicate(timeout=600) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], [err[-2000:] for _, err in outs]
    results = list(shared.rglob("video.json"))
    assert len(results) == 1 and Path(runs["quant8"]["run_dir"]).name == results[0].parent.name  # shard: not keyed
    together, alone = json.loads(results[0].read_text()), runs["quant8"]

    def untimed(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rows]

    assert untimed(together["sequences"]) == untimed(alone["sequences"])
    assert untimed(together["classes"]) == untimed(alone["classes"])
    assert any("mAP" in out for out, _ in outs)  # the job that finished last printed the tables


def test_an_image_run_refuses_a_shard(hydra_conf: None) -> None:
    from vcm_eval.engine.run import run_single

    with pytest.raises(ConfigError, match="an image run has none"):
        run_single(compose_cfg(["pipeline=quant8", "shard=1/2"]))
