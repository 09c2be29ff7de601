"""``python -m vcm_eval.anchors``: shipping anchor streams (resume, md5, coded QP) and writing anchor curves.

VTM is on no registry (CI has none), so ``make_anchors`` runs a stand-in for VTM's EncoderAppStatic:
a script with VTM's command line that writes a real VVC stream with VVenC (through the FFmpeg the
project ships) at the asked QP. What is tested is ``make_anchors`` itself: the manifest, its
resume after a failure, the md5 of every kept stream and the coded-QP check. The tests of VTM
itself (tests/test_anchors.py) run where ``VCM_EVAL_VTM_ENCODER`` points at a build.
"""

from __future__ import annotations

import csv
import hashlib
import stat
import sys
from pathlib import Path

import pytest
from conftest import compose_cfg
from hydra import compose

from vcm_eval.anchors import anchor_curves, make_anchors, read_manifest
from vcm_eval.codecs.vvc.external import ffmpeg_binary
from vcm_eval.codecs.vvc.headers import slice_qps
from vcm_eval.codecs.vvc.shipped import ShippedBitstreams
from vcm_eval.errors import CodecError, ConfigError

STANDIN = '''#!{python}
"""Stand-in for VTM's EncoderAppStatic: VTM's arguments, a real VVC stream from VVenC (FFmpeg)."""
import os, subprocess, sys
args = sys.argv[1:]
if "--help" in args:
    print("VTM Encoder Version 99.0 [stand-in]")
    sys.exit(0)
calls = os.environ["STANDIN_CALLS"]
with open(calls, "a") as f:
    f.write("x")
if len(open(calls).read()) == int(os.environ.get("STANDIN_FAIL_AT", "0")):
    sys.exit("stand-in: simulated crash")
get = lambda flag: args[args.index(flag) + 1]
qp = int(get("-q")) + int(os.environ.get("STANDIN_QP_OFFSET", "0"))
w, h = get("-wdt"), get("-hgt")
subprocess.run([{ffmpeg!r}, "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{{w}}x{{h}}",
                "-i", get("-i"), "-c:v", "libvvenc", "-qp", str(qp), "-qpa", "0", "-preset", "faster", "-vvenc-params",
                "IntraQPOffset=0", "-frames:v", "1", "-f", "vvc", "-y", get("-b")], check=True)
'''


@pytest.fixture
def vtm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in encoder and a cfg file; ``STANDIN_CALLS`` counts its encodes."""
    exe = tmp_path / "EncoderAppStatic"
    exe.write_text(STANDIN.format(python=sys.executable, ffmpeg=ffmpeg_binary("")))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "encoder_intra_vtm.cfg").write_text("# stand-in cfg\n")
    monkeypatch.setenv("STANDIN_CALLS", str(tmp_path / "calls"))
    return exe


def _cfg(tmp_path: Path, vtm: Path, synth_root: Path, qps: str = "[47,52]") -> object:
    overrides = [
        f"dataset.root={synth_root}", "dataset.size=6", "dataset.limit=2", f"vvc.vtm_encoder={vtm}",
        f"vvc.vtm_cfg={vtm.parent / 'encoder_intra_vtm.cfg'}", f"qps={qps}", f"output={tmp_path / 'shipped'}",
        "workers=1", f"paths.data={tmp_path / 'data'}",
    ]  # fmt: skip
    return compose(config_name="make_anchors", overrides=overrides)


def _calls(tmp_path: Path) -> int:
    path = tmp_path / "calls"
    return len(path.read_text()) if path.exists() else 0


def test_a_crashed_run_resumes_where_it_stopped(
    hydra_conf: None, tmp_path: Path, vtm: Path, synth_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_FAIL_AT", "3")  # the third encode dies, as a killed VTM would
    with pytest.raises(CodecError, match="simulated crash"):
        make_anchors(_cfg(tmp_path, vtm, synth_root))  # type: ignore[arg-type]
    manifest = tmp_path / "shipped" / "manifest.csv"
    assert len(read_manifest(manifest)) == 3  # every stream but the crashed one is kept
    monkeypatch.delenv("STANDIN_FAIL_AT")
    make_anchors(_cfg(tmp_path, vtm, synth_root))  # type: ignore[arg-type]
    rows = read_manifest(manifest)
    assert sorted((int(r["qp"]), int(r["image_id"])) for r in rows) == [(47, 0), (47, 1), (52, 0), (52, 1)]
    assert _calls(tmp_path) == 4 + 1  # the rerun encoded only the missing stream
    for r in rows:
        data = (manifest.parent / r["bitstream"]).read_bytes()
        assert hashlib.md5(data).hexdigest() == r["md5"] and int(r["bytes"]) == len(data)
        assert slice_qps(data, ffmpeg_binary("")) == [int(r["qp"])]
        assert r["encoder"].startswith("VTM-99.0 encoder_intra_vtm.cfg md5:")
    make_anchors(_cfg(tmp_path, vtm, synth_root))  # type: ignore[arg-type]
    assert _calls(tmp_path) == 5  # complete: nothing encoded again


def test_a_stream_at_another_qp_is_never_shipped(
    hydra_conf: None, tmp_path: Path, vtm: Path, synth_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_QP_OFFSET", "-3")  # what VVenC's IntraQPOffset would do to a VTM-like run
    with pytest.raises(CodecError, match=r"slice QP \[44\], not 47: check vvc.vtm_cfg"):
        make_anchors(_cfg(tmp_path, vtm, synth_root, "[47]"))  # type: ignore[arg-type]
    assert read_manifest(tmp_path / "shipped" / "manifest.csv") == []


def test_a_shipped_stream_that_fails_its_md5_is_refused(
    hydra_conf: None, tmp_path: Path, vtm: Path, synth_root: Path
) -> None:
    make_anchors(_cfg(tmp_path, vtm, synth_root, "[47]"))  # type: ignore[arg-type]
    shipped = ShippedBitstreams(str(tmp_path / "shipped"))
    row = read_manifest(tmp_path / "shipped" / "manifest.csv")[0]
    stream = shipped.get(row["image_sha256"], 47, "mpeg", row["encoder"])
    assert stream is not None and shipped.read(stream)
    path = tmp_path / "shipped" / row["bitstream"]
    path.write_bytes(path.read_bytes()[:-1] + bytes([path.read_bytes()[-1] ^ 1]))
    with pytest.raises(CodecError, match="fails its md5 check"):
        shipped.read(stream)


def test_make_anchors_needs_qps_and_a_vtm_encoder(
    hydra_conf: None, tmp_path: Path, synth_root: Path, vtm: Path
) -> None:
    with pytest.raises(ConfigError, match="qps is empty"):
        make_anchors(_cfg(tmp_path, vtm, synth_root, "[]"))  # type: ignore[arg-type]
    cfg = compose(config_name="make_anchors", overrides=[f"dataset.root={synth_root}", "qps=[47]"])
    with pytest.raises(ConfigError, match="make_anchors runs VTM: set vvc.vtm_encoder"):
        make_anchors(cfg)  # type: ignore[arg-type]


def test_anchor_curves_one_row_per_qp_and_one_setup_only(hydra_conf: None, tmp_path: Path, synth_root: Path) -> None:
    from vcm_eval.engine.run import run_single

    common = [f"dataset.root={synth_root}", "dataset.size=6", "dataset.limit=2", "progress=false",
              f"paths.results={tmp_path / 'results'}", "pipeline=image_anchor", "vvc=vtm"]  # fmt: skip
    rows = {qp: run_single(compose_cfg([*common, f"pipeline.qp={qp}"])) for qp in (52, 57)}
    (path,) = anchor_curves(tmp_path / "results", tmp_path / "curves")
    assert path.name == "synthetic_image_anchor.csv"
    with path.open() as f:
        curve = list(csv.DictReader(f))
    assert [int(r["qp"]) for r in curve] == [52, 57]
    for r in curve:
        assert float(r["bpp"]) == pytest.approx(rows[int(r["qp"])]["bpp"], rel=1e-5)  # 6 significant digits
        assert r["encoder"] == "VTM-23.13 AI" and r["colour"] == "mpeg" and int(r["images"]) == 2
    run_single(compose_cfg([*common[:-1], "vvc.preset=faster", "pipeline.qp=47"]))  # another encoder, same folder
    with pytest.raises(ConfigError, match=r"2 image_anchor curves .*VTM-23.13.*VVenC"):
        anchor_curves(tmp_path / "results", tmp_path / "curves")
