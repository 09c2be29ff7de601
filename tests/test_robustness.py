"""Robustness of the real CLI (``python -m vcm_eval`` in a subprocess): random SIGKILLs, full or
unwritable disks, corrupt inputs and bad configs.

* A sweep killed with SIGKILL at several points (while features are cached, while bitstreams are
  written, at a seeded random time) and rerun ends with the table of an uninterrupted sweep, and
  no file in the results or the feature cache is left torn (tests/test_resume.py covers one kill
  of the image anchor and the run lock; this adds the feature cache, kept bitstreams and two
  workers). ``VCM_ROBUSTNESS_SEED=<n>`` replays another schedule.
* Every user error (config key, value, range, missing FFmpeg, wrong checkpoint, corrupt image or
  stored bitstream, unwritable/full disk) ends with exit status 2 and one stderr line
  ``error: ...`` naming the problem. The error cases run two at a time (two cores).
* Static checks: every ``torch.load`` passes ``weights_only=True``, no ``np.load`` allows pickles,
  no external program runs through a shell.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import compose_cfg, records_without_timings

from vcm_eval.data.config import SyntheticSpec
from vcm_eval.data.synthetic import folder_name, write_split
from vcm_eval.engine.run import run_single
from vcm_eval.pipelines.cache import BitstreamStore, FeatureCache
from vcm_eval.report.report import find_runs, load_runs

ROOT = Path(__file__).resolve().parent.parent
SPEC = SyntheticSpec(height=64, width=128)
IMAGES = 3
TINY = [
    "model.weights=null", "model.min_size=64", "model.max_size=128", "model.rpn_pre_nms_top_n_test=100",
    "model.rpn_post_nms_top_n_test=50", "model.detections_per_img=10", f"dataset.size={IMAGES}", "dataset.height=64",
    "dataset.width=128", "threads=1", "progress=false",
]  # fmt: skip
COMPARED = [
    "pipeline",
    "curve",
    "side_dtype",
    "bpp",
    "bpp_mean",
    "kbytes_per_image",
    "bbox_AP",
    "bbox_AP50",
    "segm_AP",
    "segm_AP50",
    "cityscapes_AP",
    "images",
    "records",
]


def cli(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vcm_eval", *args], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, **(env or {})}, preexec_fn=preexec, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``paths.data`` holding the tiny synthetic split the TINY overrides ask for."""
    root = tmp_path_factory.mktemp("data")
    write_split(root / folder_name(SPEC), SPEC, "val", IMAGES, progress=False)
    return root


def tiny(tmp: Path, data: Path) -> list[str]:
    return [
        *TINY,
        f"paths.data={data}",
        f"paths.cache={tmp / 'cache'}",
        f"hydra.run.dir={tmp / 'hydra'}",
        f"hydra.sweep.dir={tmp / 'sweep'}",
    ]


# --- SIGKILL at several points of a sweep ------------------------------------------------------


def sweep(results: Path, tmp: Path, data: Path) -> list[str]:
    """The 8-bit feature codec with two side-info types (large bitstreams: kills land in writes),
    two images in flight at once (workers=2)."""
    head = [
        sys.executable,
        "-m",
        "vcm_eval",
        "-m",
        "pipeline=quant8",
        "pipeline.side_dtype=float32,float16",
        "workers=2",
    ]
    return [*head, *tiny(tmp, data), f"paths.results={results}"]


def kill_when(cmd: list[str], ready: Callable[[], bool], delay: float, deadline_s: float = 600) -> bool:
    """Start ``cmd``, SIGKILL its process group ``delay`` s after ``ready()``; False if it ended first."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        end = time.monotonic() + deadline_s
        while proc.poll() is None and not ready() and time.monotonic() < end:
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is not None:
            return False
        os.killpg(proc.pid, signal.SIGKILL)
        return True
    finally:
        proc.wait(timeout=60)


def assert_nothing_torn(results: Path, cache: Path) -> None:
    """No temp file anywhere, every JSON parses, records are whole lines with no repeats, every
    kept bitstream passes its checksum, every cached feature entry loads."""
    assert not [p for p in (*results.rglob("*.tmp"), *cache.rglob("*.tmp"))]
    for run_dir in (p.parent for p in results.rglob("records.jsonl")):
        for js in run_dir.rglob("*.json"):
            json.loads(js.read_text())
        raw = (run_dir / "records.jsonl").read_bytes()
        ids = [json.loads(line)["image_id"] for line in raw.splitlines()]
        assert raw.endswith(b"\n") and sorted(ids) == list(range(IMAGES))
        store = BitstreamStore(run_dir / "bitstreams")
        assert all(store.get(i) is not None for i in range(IMAGES)) and store.reused == IMAGES
    entries = list(cache.rglob("*.npz"))
    assert len(entries) == IMAGES and all(FeatureCache._read(e) is not None for e in entries)


def test_sweep_killed_at_random_points_ends_with_the_same_table(tmp_path: Path, data: Path) -> None:
    seed = int(os.environ.get("VCM_ROBUSTNESS_SEED", "8"))
    rng = random.Random(seed)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = subprocess.run(
        sweep(whole, tmp_path / "w", data), cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]

    cmd = sweep(cut, tmp_path / "c", data)
    cache = tmp_path / "c" / "cache"
    # (what must exist before the kill, extra random delay): while features are being cached,
    # while the first run's bitstreams and records are written, somewhere in the second run
    schedule: list[tuple[Callable[[], bool], float]] = [
        (lambda: any(cache.rglob("*.npz")), rng.uniform(0, 0.05)),
        (lambda: any(cut.rglob("bitstreams/*.bin")), rng.uniform(0, 0.05)),
        (lambda: sum(1 for _ in cut.rglob("metrics.json")) >= 1, rng.uniform(0, 1.0)),
    ]
    kills = sum(kill_when(cmd, ready, delay) for ready, delay in schedule)
    assert kills >= 2, f"seed {seed}: the sweep ended before most kills; the schedule needs a slower sweep"
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, f"seed {seed}: {again.stderr[-3000:]}"

    tables = [
        load_runs(find_runs(str(r))[0])[0][COMPARED].sort_values("side_dtype").reset_index(drop=True)
        for r in (whole, cut)
    ]
    assert len(tables[0]) == 2
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert records_without_timings(whole) == records_without_timings(cut), f"seed {seed}"
    assert_nothing_torn(cut, cache)


# --- one-line errors ------------------------------------------------------------------------


@dataclass
class Case:
    """One bad invocation: its arguments, the fragment its error line must hold, and which of
    the paths (data, cache, results, hydra) it points elsewhere."""

    args: list[str]
    expect: str
    paths: dict[str, Path] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    preexec: Callable[[], None] | None = None


def limit_file_size() -> None:
    """In the child: files stop growing at 64 KB (EFBIG), as on a nearly full quota."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def can_mount(tmp: Path) -> bool:
    probe = tmp / "probe"
    probe.mkdir()
    ok = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True, check=False
        ).returncode
        == 0
    )
    if ok:
        subprocess.run(["umount", str(probe)], check=False)
    return ok


def bad_checkpoints(tmp: Path) -> dict[str, Path]:
    """A task-model checkpoint of another architecture, a garbage file, a fusion checkpoint naming
    an architecture vcm_eval cannot build (random init: only the architecture check matters)."""
    import torch

    from vcm_eval.codecs.fusion import zoo
    from vcm_eval.codecs.fusion.config import FusionArchConfig
    from vcm_eval.vision.config import BackboneConfig, RcnnConfig
    from vcm_eval.vision.torchvision_rcnn import build_rcnn, save_checkpoint

    other = RcnnConfig(weights=None, backbone=BackboneConfig(widths=[16, 32, 64, 128]))
    out = {"task": tmp / "other_arch.pt", "junk": tmp / "junk.pt", "fusion": tmp / "fusion_other.pt"}
    save_checkpoint(out["task"], build_rcnn(other), other, meta={}, half=True)
    out["junk"].write_bytes(b"not a checkpoint" * 10)
    arch = FusionArchConfig(channels=16, latent_channels=16, hyper_channels=16)
    zoo.save(out["fusion"], zoo.build_model(arch), arch, meta={})
    payload = torch.load(out["fusion"], weights_only=True)
    payload["architecture"]["decoder"] = "spiral"  # an architecture this version cannot build
    torch.save(payload, out["fusion"])
    return out


def error_cases(tmp: Path, data: Path) -> dict[str, Case]:
    ckpt = bad_checkpoints(tmp)
    corrupt = tmp / "corrupt_data"
    shutil.copytree(data, corrupt)
    next(iter(sorted(corrupt.rglob("*_leftImg8bit.png")))).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp / "a_file").write_text("nothing can be written below a file")
    below_file = tmp / "a_file" / "x"
    cases = {
        "unknown key": Case(
            ["pipeline=image_anchor", "pipeline.qq=3"], "unknown config key 'pipeline.qq'; valid keys: name, qp"
        ),
        "unknown top-level key": Case(["pipeline=quant8", "treads=1"], "unknown config key 'treads'"),
        "wrong type": Case(["pipeline=quant", "pipeline.z=abc"], "bad value for pipeline.z"),
        "unknown option": Case(["pipeline=quantt"], "Could not find 'pipeline/quantt'; valid options: feature_anchor"),
        "override syntax": Case(["pipeline=quant", "pipeline.z=[1"], "cannot parse override 'pipeline.z=[1'"),
        "qp out of range": Case(["pipeline=image_anchor", "pipeline.qp=64"], "QP 64 is outside 0..63"),
        "z out of range": Case(["pipeline=quant", "pipeline.z=-1"], "z=-1.0 must be a finite threshold > 0"),
        "n_symbols out of range": Case(["pipeline=quant", "pipeline.n_symbols=1"], "n_symbols=1 is out of range"),
        "workers": Case(["pipeline=quant8", "workers=0"], "workers=0 must both be >= 1"),
        "missing ffmpeg": Case(["pipeline=image_anchor", f"vvc.ffmpeg={tmp / 'no-ffmpeg'}"], "ffmpeg binary"),
        "no bundled ffmpeg": Case(
            ["pipeline=feature_anchor"], "cannot run ffmpeg", env={"IMAGEIO_FFMPEG_EXE": str(tmp / "gone")}
        ),
        "wrong-architecture task checkpoint": Case(
            ["pipeline=quant8", f"model.weights={ckpt['task']}"], "does not match the configured model (backbone.widths"
        ),
        "garbage checkpoint": Case(
            ["pipeline=quant8", f"model.weights={ckpt['junk']}"], "cannot read task model checkpoint"
        ),
        "unknown-architecture fusion checkpoint": Case(
            ["pipeline=fusion_codec", f"pipeline.checkpoint={ckpt['fusion']}"],
            "names an architecture this vcm_eval cannot build (arch.decoder='spiral' is unknown",
        ),
        "corrupt image": Case(["pipeline=quant8"], "cannot read image", paths={"data": corrupt}),
        "results below a file": Case(["pipeline=quant8"], "(Not a directory)", paths={"results": below_file}),
        "hydra dir below a file": Case(["pipeline=quant8"], "(Not a directory)", paths={"hydra": below_file}),
        "uncreatable results": Case(
            ["pipeline=quant8"],
            "cannot write /proc/vcm_eval_results",
            paths={"results": Path("/proc/vcm_eval_results"), "hydra": Path("/proc/vcm_eval_results/hydra")},
        ),
        "missing vtm encoder": Case(
            ["pipeline=image_anchor", "vvc=vtm", f"vvc.vtm_encoder={tmp / 'EncoderAppStatic'}"], "vvc.vtm_encoder="
        ),
        "vtm without encoder or shipped streams": Case(
            ["pipeline=feature_anchor", "vvc=vtm"], "needs vvc.vtm_encoder and vvc.vtm_cfg"
        ),
        "file size limit": Case(["pipeline=quant8"], "(File too large); free disk space", preexec=limit_file_size),
    }
    return cases


Runs = dict[str, tuple[Case, subprocess.CompletedProcess[str]]]
# One case of each kind runs by default (each is a fresh interpreter importing torch: ~5 CPU s);
# the rest run with -m slow. Hydra's other error kinds are formatted in-process below.
NEEDS_TMPFS = ("full disk", "read-only results")  # added only where a tmpfs can be mounted
FAST = [
    "unknown key", "qp out of range", "missing ffmpeg", "wrong-architecture task checkpoint",
    "unknown-architecture fusion checkpoint", "corrupt image", "results below a file", "file size limit", "full disk",
    "missing vtm encoder",
]  # fmt: skip
SLOW = [
    "unknown top-level key", "wrong type", "unknown option", "override syntax", "z out of range",
    "n_symbols out of range", "workers", "no bundled ffmpeg", "garbage checkpoint", "hydra dir below a file",
    "read-only results", "uncreatable results", "vtm without encoder or shipped streams",
]  # fmt: skip


def run_cases(tmp: Path, data: Path, names: list[str]) -> Iterator[Runs]:
    """Run the named cases, two at a time; tmpfs mounts (read-only, nearly full) when permitted."""
    cases = error_cases(tmp, data)
    mounts = []
    if can_mount(tmp):  # root (as on this project's machines): a real read-only and a real full file system
        ro, full = tmp / "ro", tmp / "full"
        ro.mkdir()
        full.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
        mounts.append(ro)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(full)], check=True)
        mounts.append(full)
        st = os.statvfs(full)
        (full / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 96 * 1024))  # 96 KB left
        cases["read-only results"] = Case(["pipeline=quant8"], "(Read-only file system)", paths={"results": ro / "r"})
        cases["full disk"] = Case(
            ["pipeline=quant8"],
            "(No space left on device); free disk space",
            paths={"results": full / "r", "cache": full / "c"},
        )

    def run(i: int, case: Case) -> subprocess.CompletedProcess[str]:
        own = {
            "data": data,
            "cache": tmp / f"{i}" / "cache",
            "results": tmp / f"{i}" / "results",
            "hydra": tmp / f"{i}" / "hydra",
        } | case.paths
        paths = [
            f"paths.data={own['data']}",
            f"paths.cache={own['cache']}",
            f"paths.results={own['results']}",
            f"hydra.run.dir={own['hydra']}",
        ]
        return cli([*TINY, *case.args, *paths], env=case.env, preexec=case.preexec)  # the case's own values win

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {name: pool.submit(run, i, cases[name]) for i, name in enumerate(names) if name in cases}
            yield {name: (cases[name], fut.result()) for name, fut in futures.items()}
    finally:
        for m in mounts:
            subprocess.run(["umount", str(m)], check=False)


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Iterator[Runs]:
    yield from run_cases(tmp_path_factory.mktemp("errors"), data, FAST)


@pytest.fixture(scope="module")
def slow_error_runs(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Iterator[Runs]:
    yield from run_cases(tmp_path_factory.mktemp("slow_errors"), data, SLOW)


def check_one_line(name: str, runs: Runs) -> None:
    if name not in runs:
        assert name in NEEDS_TMPFS, f"no error case named {name!r}"
        pytest.skip("needs permission to mount a tmpfs (root)")
    case, proc = runs[name]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert case.expect in lines[0], lines[0]


@pytest.mark.parametrize("name", FAST)
def test_user_errors_are_one_line_and_exit_2(name: str, error_runs: Runs) -> None:
    check_one_line(name, error_runs)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_more_user_errors_are_one_line_and_exit_2(name: str, slow_error_runs: Runs) -> None:
    check_one_line(name, slow_error_runs)


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            ["pipeline=image_anchor", "pipeline.qq=3"],
            "unknown config key 'pipeline.qq'; valid keys: name, qp (check the spelling)",
        ),
        (
            ["model.backbone.widthz=[1]"],
            "unknown config key 'model.backbone.widthz'; valid keys: arch, widths, blocks,",
        ),
        (
            ["pipeline=quant", "pipeline.z=abc"],
            "bad value for pipeline.z: Value 'abc' of type 'str' could not be converted to Float",
        ),
        (
            ["pipeline=quantt"],
            (
                "In 'config': Could not find 'pipeline/quantt'; valid options: feature_anchor, feature_codec, "
                "fusion_codec, image_anchor, image_codec, msfc, quant,"
            ),
        ),
        (
            ["dataset=citiscapes"],
            (
                "In 'config': Could not find 'dataset/citiscapes'; valid options: cityscapes, coco, hieve, mot, oiv6, "
                "sfu, synthetic, synthetic_oid, synthetic_video, tvd"
            ),
        ),
        (
            ["pipeline.qp=[1"],
            "cannot parse override 'pipeline.qp=[1': no viable alternative at input '[1'; write overrides as key=value",
        ),
    ],
)
def test_hydra_errors_become_one_line(overrides: list[str], line: str, hydra_conf: None) -> None:
    """What ``python -m vcm_eval`` prints for Hydra's own errors (the CLI plumbing is checked above)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from vcm_eval.utils.cli import config_error_line

    with pytest.raises((HydraException, OmegaConfBaseException)) as info:
        compose_cfg(overrides)
    text = config_error_line(info.value)
    assert "\n" not in text and text.startswith(line), text


def test_corrupt_kept_bitstream_is_an_error_and_deleting_it_re_encodes(
    tmp_path: Path, data: Path, hydra_conf: None
) -> None:
    """The good runs run in-process (``run_single``, what the CLI calls); the failing one through the CLI."""
    args = [
        "pipeline=image_anchor",
        "pipeline.qp=37",
        *tiny(tmp_path, data),
        f"paths.results={tmp_path / 'r'}",
        "workers=1",
    ]
    run_single(compose_cfg(args))
    (run_dir,) = {p.parent for p in (tmp_path / "r").rglob("records.jsonl")}
    before = records_without_timings(tmp_path / "r")
    kept = run_dir / "bitstreams" / "1.bin"
    whole = kept.read_bytes()
    record = before[(run_dir.name, 1)]
    assert 8 * (len(whole) - record["header_bytes"]) == record["bits"]  # the VVC stream alone, as MPEG counts it
    kept.write_bytes(whole[:-3])  # truncated on disk
    (run_dir / "records.jsonl").unlink()
    (run_dir / "metrics.json").unlink()
    bad = cli(args)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1, bad.stderr[-3000:]
    assert (
        lines[0].startswith(f"error: stored bitstream {kept} is corrupt")
        and "delete it and 1.json to re-encode" in lines[0]
    )
    kept.unlink()
    (run_dir / "bitstreams" / "1.json").unlink()
    run_single(compose_cfg(args))
    assert kept.read_bytes() == whole and records_without_timings(tmp_path / "r") == before  # VVenC is deterministic


def test_a_stream_that_does_not_decode_is_a_recorded_failure_not_a_crash(
    tmp_path: Path, data: Path, hydra_conf: None
) -> None:
    """A kept stream with a valid checksum whose payload the decoder refuses (as one from another encoder
    or a filled-up disk would be): that image is a record without detections, counted in metrics.json
    and in the mAP; the sweep's other run still runs; the command exits with status 3."""
    results = tmp_path / "r"
    args = ["pipeline=quant", *tiny(tmp_path, data), f"paths.results={results}", "workers=1"]
    run_single(compose_cfg([*args, "pipeline.z=1.0"]))
    (run_dir,) = {p.parent for p in results.rglob("records.jsonl")}
    good = json.loads((run_dir / "metrics.json").read_text())
    assert good["decode_failures"] == 0 and "failed_images" not in good
    kept, meta_path = run_dir / "bitstreams" / "1.bin", run_dir / "bitstreams" / "1.json"
    cut = kept.read_bytes()[:-5]  # truncated, then stored as if whole: only the decoder can tell
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "bytes": len(cut), "sha256": hashlib.sha256(cut).hexdigest()}))
    kept.write_bytes(cut)
    (run_dir / "records.jsonl").unlink()
    (run_dir / "metrics.json").unlink()
    proc = cli([*args, "-m", "pipeline.z=1.0,1.5"])
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "1 image(s) did not decode" in proc.stderr and "(1;" in proc.stderr
    failed = json.loads((run_dir / "metrics.json").read_text())
    assert failed["decode_failures"] == 1 and failed["failed_images"] == [1] and failed["images"] == good["images"]
    assert failed["bbox_AP"] <= good["bbox_AP"]  # the image is scored with no detections, not left out
    records = {r["image_id"]: r for r in map(json.loads, (run_dir / "records.jsonl").read_text().splitlines())}
    assert "truncated" in records[1]["decode_error"] or "short" in records[1]["decode_error"], records[1]
    assert records[1]["detections"] == [] and records[1]["bits"] == 8 * len(cut)
    assert len({p.parent for p in results.rglob("metrics.json")}) == 2  # z=1.5 ran after the failure
    again = cli([*args, "pipeline.z=1.0"])  # done already: still reported, still status 3
    assert again.returncode == 3 and "done already" in again.stdout, again.stderr[-2000:]


# --- static checks -------------------------------------------------------------------------


def python_files() -> list[Path]:
    return sorted([*(ROOT / "vcm_eval").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")])


def calls(tree: ast.AST) -> Iterator[tuple[str, ast.Call]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield ast.unparse(node.func), node


def kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_checkpoints_load_weights_only_and_programs_run_without_a_shell() -> None:
    problems, loads, runs = [], 0, 0
    for path in python_files():
        for name, call in calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{call.lineno} {name}"
            if name == "torch.load":
                loads += 1
                value = kw(call, "weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{where} without weights_only=True")
            if (
                name in ("np.load", "numpy.load")
                and isinstance(kw(call, "allow_pickle"), ast.Constant)
                and kw(call, "allow_pickle").value
            ):  # type: ignore[union-attr]
                problems.append(f"{where} allows pickles")
            if name in ("pickle.load", "pickle.loads"):
                problems.append(f"{where}: unrestricted unpickling")
            if name.startswith("subprocess.") or name in ("os.system", "os.popen", "os.execl", "os.spawnl"):
                runs += 1
                shell = kw(call, "shell")
                if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"):
                    problems.append(f"{where} always uses a shell")
                elif isinstance(shell, ast.Constant) and shell.value:
                    problems.append(f"{where} with shell=True")
                elif call.args and isinstance(call.args[0], (ast.Constant, ast.JoinedStr)):
                    problems.append(f"{where} with a command string, not an argument list")
    assert not problems, problems
    assert loads >= 3 and runs >= 3  # the scan does see the project's loads and program runs


# --- fast paths give exactly the slow paths' results ------------------------------------------


def test_mask_rle_is_pycocotools_own() -> None:
    """Records hold the RLE pycocotools would write, byte for byte (edges, empty, full, random)."""
    from pycocotools import mask as mask_utils

    from vcm_eval.metrics.coco_eval import mask_to_rle

    rng = np.random.default_rng(1)
    masks = [np.zeros((5, 7), bool), np.ones((5, 7), bool)]
    for y, x in ((0, 0), (-1, -1), (slice(None), 0), (slice(None), -1), (0, slice(None))):
        m = np.zeros((6, 9), bool)
        m[y, x] = True
        masks.append(m)
    masks += [rng.random(tuple(rng.integers(1, 40, 2))) < rng.random() ** 2 for _ in range(200)]
    big = np.zeros((1024, 2048), bool)
    big[300:420, 700:1100] = rng.random((120, 400)) < 0.8
    masks.append(big)
    for m in masks:
        ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert mask_to_rle(m) == {"size": [int(v) for v in ref["size"]], "counts": ref["counts"].decode("ascii")}


def test_an_image_anchor_stream_whose_container_is_damaged_is_a_recorded_failure(hydra_conf: None) -> None:
    """The image anchor's rate parses its container (MPEG counts the VVC stream alone); a container that cannot
    be parsed counts every byte and fails in decode, as a recorded failure, not a crash."""
    from vcm_eval.codecs.base import ImageCodec
    from vcm_eval.data.sample import Sample
    from vcm_eval.pipelines.base import ImageCodingPipeline
    from vcm_eval.pipelines.build import build_codec
    from vcm_eval.pipelines.cache import StoredBitstream

    codec = build_codec(compose_cfg(["pipeline=image_anchor", "pipeline.qp=47"]))
    assert isinstance(codec, ImageCodec)
    image = np.full((32, 48, 3), 128, np.uint8)
    whole = codec.encode(image)
    damaged = whole[:3]  # the tag and the first size: the stream's length is cut off

    class Kept:  # a run's kept bitstreams holding the damaged one
        def get(self, image_id: int) -> StoredBitstream:
            return StoredBitstream(damaged, 0.1)

    result = ImageCodingPipeline(model=object(), codec=codec, name="image_anchor", params={}).process(  # type: ignore[arg-type]
        Sample(0, image, Path("x.png")),
        bitstreams=Kept(),  # type: ignore[arg-type]
    )
    assert result.bits == 8 * len(damaged) and len(result.instances) == 0
    assert "truncated" in result.extra["decode_error"] and "header_bytes" not in result.extra


def test_decode_limits_are_settings_a_run_passes_to_its_codec(tmp_path: Path, data: Path, hydra_conf: None) -> None:
    """``decode.max_pixels`` below the images' size: every stream is refused before anything is allocated, each
    image a recorded failure (not a crash); the researcher's example codec gets the limit it declares."""
    from examples.my_codecs import JpegCodec
    from vcm_eval.pipelines.base import decode_limits

    limits = {"max_pixels": 1000, "max_memory": 2**20}
    assert decode_limits(JpegCodec(quality=50), limits) == {"max_pixels": 1000}  # it takes max_pixels only
    args = ["pipeline=quant", *tiny(tmp_path, data), f"paths.results={tmp_path / 'r'}", "workers=1"]
    proc = cli([*args, "decode.max_pixels=1000"])
    assert proc.returncode == 3, proc.stderr[-2000:]
    (metrics,) = (json.loads(p.read_text()) for p in (tmp_path / "r").rglob("metrics.json"))
    assert metrics["decode_failures"] == metrics["images"] > 0
    records = [json.loads(line) for p in (tmp_path / "r").rglob("records.jsonl") for line in p.read_text().splitlines()]
    assert all("max_pixels" in r["decode_error"] and r["detections"] == [] for r in records), records[0]


def test_previous_release_spellings_still_work_with_a_warning() -> None:
    """``codec=`` / ``codec.<vvc setting>`` (now ``vvc``) and ``model.backend``: rewritten for one release, each
    with a warning; ``pipeline.codec`` (a researcher's codec) is not a VVC setting and stays as it is."""
    from vcm_eval.utils.cli import modernize

    args, notes = modernize(["codec=vtm", "+codec.preset=slow", "pipeline.codec=x", "codec.unknown=1"])
    assert args == ["vvc=vtm", "+vvc.preset=slow", "pipeline.codec=x", "codec.unknown=1"] and len(notes) == 2
    assert all("deprecated" in n for n in notes)
    proc = cli(["pipeline=quant", "codec.preset=slow", "codec=vtm", "--cfg", "job"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'codec.preset=slow' is deprecated" in proc.stderr and "write 'vvc.preset=slow'" in proc.stderr
    shown = yaml.safe_load(proc.stdout)
    assert shown["vvc"]["preset"] == "slow" and shown["vvc"]["backend"] == "vtm"
    suite = subprocess.run([sys.executable, "-m", "vcm_eval", "pipeline=suite", "--cfg", "job"], capture_output=True,
                           text=True, cwd=ROOT, check=False, timeout=120)  # fmt: skip
    assert suite.returncode == 0 and "'pipeline=suite' is deprecated" in suite.stderr, suite.stderr[-2000:]
    assert "runs" in yaml.safe_load(suite.stdout)["suite"]
