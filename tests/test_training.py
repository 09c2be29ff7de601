"""Training on the shared loop (issues 28 and 31): the fusion codec and the task network learn, resume exactly,
run data-parallel under torchrun (gloo on the CPU) and train on a COCO-layout folder in bounded memory.

Configs are tiny (a 16-channel codec, 128 x 256 synthetic images, P2 crops of 32) so the default tests stay fast;
the measured 1- vs 2-process loss curves of the real default are in docs/fusion_codec.md.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_datasets_real import write_coco

from vcm_eval.codecs.fusion import train as fusion_train
from vcm_eval.codecs.fusion.model import CODED_LEVELS
from vcm_eval.data.config import SyntheticDatasetConfig
from vcm_eval.data.train_images import DetectionSamples, SyntheticImages, train_images
from vcm_eval.data.train_stream import CropStream, FeatureCache, OnlineFeatures, cache_folder, feature_source
from vcm_eval.errors import ConfigError, DataError
from vcm_eval.utils.distributed import Dist
from vcm_eval.vision import train as task_train
from vcm_eval.vision.config import RcnnConfig
from vcm_eval.vision.registry import build_task_model

ROOT = Path(__file__).resolve().parent.parent
SMALL_IMAGES = ["dataset.height=128", "dataset.width=256", "model.min_size=128", "model.max_size=256"]
TINY_CODEC = ["arch.channels=16", "arch.latent_channels=16", "arch.hyper_channels=16"]


def fusion_overrides(workdir: Path, *extra: str) -> list[str]:
    """A tiny rate point on 6 small synthetic images: P2 crops of 32 (128 x 128 image pixels), batch 4."""
    return [
        *SMALL_IMAGES,
        *TINY_CODEC,
        "train.quality=1",
        "train.lmbda=4",
        "train.train_images=6",
        "train.batch_size=4",
        "train.crop=32",
        "train.lr=1e-3",
        "train.log_every=1",
        "threads=1",
        "progress=false",
        f"train.workdir={workdir}",
        f"train.output={workdir / 'final.pt'}",
        *extra,
    ]


def log_rows(workdir: Path) -> list[dict[str, float]]:
    with open(workdir / "log.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_fusion_training_lowers_the_loss(hydra_conf: None, tmp_path: Path) -> None:
    cfg = compose(config_name="train_fusion", overrides=fusion_overrides(tmp_path, "train.iterations=30"))
    out = fusion_train.train(cfg)
    rows = log_rows(tmp_path)
    assert [r["iteration"] for r in rows] == list(range(1, 31))
    first, last = np.mean([r["loss"] for r in rows[:5]]), np.mean([r["loss"] for r in rows[-5:]])
    assert last < 0.8 * first, f"loss {first:.3f} -> {last:.3f}"
    meta = torch.load(out, weights_only=True)["meta"]
    assert meta["iterations_done"] == 30 and meta["processes"] == 1 and meta["dataset"]["split"] == "train"


def test_interrupted_fusion_training_resumes_to_the_same_weights(
    hydra_conf: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that dies after its checkpoint at 6 (in iteration 8) and is restarted ends bit-identical to one
    that never stopped: weights, both optimizers, scheduler and the entropy model's noise (torch RNG)."""
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    fusion_train.train(compose(config_name="train_fusion", overrides=fusion_overrides(straight, "train.iterations=10")))
    cfg = compose(
        config_name="train_fusion",
        overrides=fusion_overrides(broken, "train.iterations=10", "train.checkpoint_every=3"),
    )
    batch_at = CropStream.batch_at

    def dies_at_8(self: CropStream, it: int):  # type: ignore[no-untyped-def]
        if it == 7:
            raise KeyboardInterrupt("killed")
        return batch_at(self, it)

    monkeypatch.setattr(CropStream, "batch_at", dies_at_8)
    with pytest.raises(KeyboardInterrupt):
        fusion_train.train(cfg)
    assert torch.load(broken / "last.pt", weights_only=True)["iteration"] == 6
    assert [r["iteration"] for r in log_rows(broken)] == list(range(1, 8))  # 7 was logged, then lost
    monkeypatch.setattr(CropStream, "batch_at", batch_at)
    fusion_train.train(cfg)
    a, b = (torch.load(d / "last.pt", weights_only=True) for d in (straight, broken))
    assert a["iteration"] == b["iteration"] == 10 and a["samples"] == 40
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for key in ("optimizer", "aux_optimizer"):
        for pa, pb in zip(a[key]["state"].values(), b[key]["state"].values()):
            assert all(torch.equal(pa[s], pb[s]) for s in pa)
    assert a["scheduler"] == b["scheduler"] and torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    assert [r["iteration"] for r in log_rows(broken)] == list(range(1, 11))  # no repeated rows
    assert [r["loss"] for r in log_rows(broken)] == [r["loss"] for r in log_rows(straight)]


def test_resume_refuses_another_data_stream_or_job_shape(hydra_conf: None, tmp_path: Path) -> None:
    fusion_train.train(compose(config_name="train_fusion", overrides=fusion_overrides(tmp_path, "train.iterations=2")))
    more = fusion_overrides(tmp_path, "train.iterations=4", "train.batch_size=2")
    with pytest.raises(ConfigError, match="batch_size: saved 4, now 2"):
        fusion_train.train(compose(config_name="train_fusion", overrides=more))
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    state["world_size"] = 2
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(ConfigError, match="written by 2 processes, this run has 1"):
        fusion_train.train(
            compose(config_name="train_fusion", overrides=fusion_overrides(tmp_path, "train.iterations=4"))
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_two_processes_on_the_cpu_write_a_checkpoint(tmp_path: Path, own_cache: Path) -> None:
    """``torchrun --nproc_per_node=2 -m vcm_eval.codecs.fusion.train ... train.iterations=20``: gloo, DDP, last.pt."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
        "-m", "vcm_eval.codecs.fusion.train", *fusion_overrides(tmp_path, "train.iterations=20", "train.log_every=5"),
    ]  # fmt: skip
    env = {**os.environ, "VCM_EVAL_CACHE": str(own_cache), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["iteration"] == 20 and state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # each rank its own noise
    assert (tmp_path / "final.pt").is_file() and [r["iteration"] for r in log_rows(tmp_path)] == [5, 10, 15, 20]
    assert done.stdout.count("wrote ") == 1  # rank 0 alone exports


def _ctx(rank: int, world: int) -> Dist:
    return Dist(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))


def test_cache_and_online_give_the_same_batches_and_ranks_split_them(tmp_path: Path) -> None:
    """The bounded cache and the online path hand the codec the same fp16 crops; two ranks' shares are the
    one-process batch; the cache refuses to grow past its bound; whole pyramids come padded with their size."""
    images = SyntheticImages(SyntheticDatasetConfig(split="train", height=128, width=256), count=5)
    model = build_task_model(OmegaConf.structured(RcnnConfig(min_size=128, max_size=256)))
    folder = cache_folder(tmp_path, model.fingerprint, images)
    FeatureCache.build(folder, images, model.features, CODED_LEVELS, max_bytes=2**30, progress=False)
    cache, online = FeatureCache(folder, CODED_LEVELS), OnlineFeatures(images, model.features, CODED_LEVELS)
    kw = {"n": 5, "seed": 3, "batch": 4, "crop": 32, "crops_per_image": 1, "hflip": False, "pad_multiple": 32}
    for it in (0, 7):
        ref = CropStream(cache, ctx=_ctx(0, 1), **kw).batch_at(it).levels
        assert all(torch.equal(a, b) for a, b in zip(ref, CropStream(online, ctx=_ctx(0, 1), **kw).batch_at(it).levels))
        halves = [CropStream(cache, ctx=_ctx(r, 2), **kw).batch_at(it).levels for r in (0, 1)]
        assert all(torch.equal(torch.cat([h0, h1]), a) for h0, h1, a in zip(*halves, ref))
    assert ref[0].shape == (4, 256, 32, 32) and ref[3].shape == (4, 256, 4, 4)
    with pytest.raises(DataError, match="cache_max_gb"):
        FeatureCache.build(tmp_path / "small", images, model.features, CODED_LEVELS, max_bytes=10**6, progress=False)
    with pytest.raises(ConfigError, match="online"):
        CropStream(cache, ctx=_ctx(0, 1), **{**kw, "hflip": True}).batch_at(0)
    whole = CropStream(online, ctx=_ctx(0, 1), **{**kw, "crop": 0, "batch": 1}).batch_at(0)
    assert whole.valid == (32, 64) and whole.levels[0].shape == (1, 256, 32, 64)


def test_the_synthetic_default_draws_the_first_trainers_crops(hydra_conf: None) -> None:
    """The default recipe (cached synthetic features, batch 8 of 64 x 64 P2 crops) gives exactly the batches of the
    trainer that made the shipped zoo (its ``cached_train_features`` + ``random_crops``, kept verbatim)."""
    cfg = compose(config_name="train_fusion", overrides=["train.quality=6", "train.lmbda=2", "train.train_images=3"])
    model = build_task_model(cfg.model)
    images = train_images(cfg.dataset, count=3)
    source = feature_source(
        "cache", images, model.features, model.fingerprint, CODED_LEVELS,
        cache_root=Path(cfg.paths.cache), cache_max_gb=cfg.train.cache_max_gb, progress=False, ctx=_ctx(0, 1),
    )  # fmt: skip
    stream = CropStream(
        source, n=3, seed=0, batch=8, crop=64, crops_per_image=1, hflip=False, pad_multiple=32, ctx=_ctx(0, 1)
    )
    first = fusion_train.cached_train_features(model, cfg, progress=False)
    for it in (0, 1, 2999):
        old = fusion_train.random_crops(first, np.random.default_rng([0, it]), batch=8, crop=64)
        assert all(torch.equal(a, b) for a, b in zip(old, stream.batch_at(it).levels))


def test_task_training_lowers_the_loss(hydra_conf: None, tmp_path: Path) -> None:
    overrides = [
        "dataset.height=64", "dataset.width=128", "model.min_size=64", "model.max_size=128",
        "train.iterations=6", "train.batch_size=2", "train.warmup=1", "train.log_every=1",
        "train.loader_workers=0", "threads=1", "progress=false",
        f"train.workdir={tmp_path}", f"train.output={tmp_path / 'final.pt'}",
    ]  # fmt: skip
    out = task_train.train(compose(config_name="train_task", overrides=overrides))
    rows = log_rows(tmp_path)
    first, last = np.mean([r["loss"] for r in rows[:2]]), np.mean([r["loss"] for r in rows[-2:]])
    assert last < 0.8 * first, f"loss {first:.3f} -> {last:.3f}"
    assert torch.load(out, weights_only=True)["meta"]["processes"] == 1


def test_interrupted_task_training_resumes_to_the_same_weights(
    hydra_conf: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task network's trainer shares the loop's exact resume: killed in iteration 5 after its checkpoint at 3,
    restarted, it ends bit-identical to a run that never stopped (weights, optimizer, the sampler's RNG)."""

    def overrides(workdir: Path) -> list[str]:
        return [
            "dataset.height=64", "dataset.width=128", "model.min_size=64", "model.max_size=128",
            "train.iterations=6", "train.batch_size=2", "train.warmup=1", "train.log_every=1",
            "train.checkpoint_every=3", "train.loader_workers=0", "threads=1", "progress=false",
            f"train.workdir={workdir}", f"train.output={workdir / 'final.pt'}",
        ]  # fmt: skip

    straight, broken = tmp_path / "straight", tmp_path / "broken"
    task_train.train(compose(config_name="train_task", overrides=overrides(straight)))
    forward = task_train.DetectionObjective.forward
    calls = {"n": 0}

    def dies_in_5(self: task_train.DetectionObjective, batch: Any) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")
        return forward(self, batch)

    monkeypatch.setattr(task_train.DetectionObjective, "forward", dies_in_5)
    with pytest.raises(KeyboardInterrupt):
        task_train.train(compose(config_name="train_task", overrides=overrides(broken)))
    assert torch.load(broken / "last.pt", weights_only=True)["iteration"] == 3
    monkeypatch.setattr(task_train.DetectionObjective, "forward", forward)
    task_train.train(compose(config_name="train_task", overrides=overrides(broken)))
    a, b = (torch.load(d / "last.pt", weights_only=True) for d in (straight, broken))
    assert a["iteration"] == b["iteration"] == 6
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(pa[s], pb[s]) for s in pa)
    assert [r["loss"] for r in log_rows(broken)] == [r["loss"] for r in log_rows(straight)]


def test_detection_samples_of_a_coco_split_map_categories_and_masks(tmp_path: Path) -> None:
    from vcm_eval.data.config import CocoDatasetConfig
    from vcm_eval.data.datasets import build_dataset

    write_coco(tmp_path, "train2017")
    ds = build_dataset(CocoDatasetConfig(root=str(tmp_path), split="train2017"), data_dir=tmp_path)
    samples = DetectionSamples(ds)
    image, target = samples.sample(1)  # image 285: one car, its crowd left out
    assert image.shape == (120, 160, 3) and target.names == ["car"] and target.masks is not None
    np.testing.assert_allclose(target.boxes, [[5, 20, 100, 70]])
    assert target.masks.shape == (1, 120, 160) and 0 < target.masks.sum() <= 95 * 50
    flipped = target.flipped(160)
    np.testing.assert_allclose(flipped.boxes, [[60, 20, 155, 70]])
    assert np.array_equal(flipped.masks, target.masks[:, :, ::-1])  # type: ignore[index]
    listed = train_images(CocoDatasetConfig(root=str(tmp_path), split="train2017"))
    assert len(listed) == 3 and listed.image(0).shape == (120, 160, 3)


def _peak_rss_mib(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``cmd`` under a wrapper that prints its own peak RSS (ru_maxrss) last."""
    wrapper = (
        "import resource, runpy, sys, atexit;"
        "atexit.register(lambda: print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss));"
        f"sys.argv = {cmd!r}; runpy.run_module({cmd[0]!r}, run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    peak = [ln for ln in done.stdout.splitlines() if ln.startswith("PEAK_RSS_KIB")]
    return done, float(peak[-1].split()[1]) / 1024 if peak else float("nan")


RSS_GROWTH_MIB = 150  # peak RSS measured 1104 MiB for both runs here (2 cores); CI machines measured up to 2.7 GiB


def _grow_coco(root: Path, split: str, copies: int) -> int:
    """Repeat the written COCO folder's images ``copies`` times (new ids and files, same pixels); returns the count."""
    path = root / "annotations" / f"instances_{split}.json"
    data = json.loads(path.read_text())
    images, anns = list(data["images"]), list(data["annotations"])
    for c in range(1, copies):
        for img in data["images"]:
            new_id = img["id"] + 1000 * c
            name = f"{new_id:012d}.jpg"
            (root / split / name).write_bytes((root / split / img["file_name"]).read_bytes())
            images.append({**img, "id": new_id, "file_name": name})
            anns += [
                {**a, "id": len(anns) + 1, "image_id": new_id}
                for a in data["annotations"]
                if a["image_id"] == img["id"]
            ]
    path.write_text(json.dumps({**data, "images": images, "annotations": anns}))
    return len(images)


def _train_coco_online(tmp_path: Path, own_cache: Path, name: str, copies: int, iterations: int) -> float:
    """Fusion training on a COCO-layout folder (``copies`` x 3 images) with online features; returns peak RSS."""
    root = tmp_path / name / "coco"
    write_coco(root, "train2017")
    count = _grow_coco(root, "train2017", copies)
    work = tmp_path / name / "work"
    cmd = [
        "vcm_eval.codecs.fusion.train", "dataset=coco", f"dataset.root={root}", "dataset.split=train2017",
        "model=coco_mask_rcnn_r50_fpn", "model.weights=null", "model.image_std=[1000,1000,1000]",
        "model.min_size=128", "model.max_size=256",
        *TINY_CODEC, "train.quality=1", "train.lmbda=1", f"train.iterations={iterations}", "train.train_images=0",
        "train.features=online", "train.batch_size=2", "train.crops_per_image=2", "train.crop=32", "train.log_every=5",
        "threads=1", "progress=false", f"train.workdir={work}", f"train.output={work / 'final.pt'}",
    ]  # fmt: skip
    done, peak = _peak_rss_mib(cmd, {**os.environ, "VCM_EVAL_CACHE": str(own_cache)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (work / "final.pt").is_file()
    assert torch.load(work / "last.pt", weights_only=True)["iteration"] == iterations
    assert f"'kind': 'coco', 'images': {count}" in done.stdout
    return peak


def test_fusion_training_on_a_coco_folder_with_the_r50_preset_in_bounded_memory(
    tmp_path: Path, own_cache: Path
) -> None:
    """dataset=coco (a COCO-layout train2017 folder), model=coco_mask_rcnn_r50_fpn at random weights, online
    features: 8x the images and 3x the iterations leave the peak RSS where it was (an absolute bound depends on
    the machine's allocator and core count; growth does not), and nothing is written to the feature cache.

    Random weights without trained normalisation give FPN features of std ~2300 (the codec's first step then
    overflows); ``model.image_std`` 1000x (the network is positively homogeneous) brings them to std ~2.
    """
    small = _train_coco_online(tmp_path, own_cache, "small", copies=1, iterations=20)
    large = _train_coco_online(tmp_path, own_cache, "large", copies=8, iterations=30)
    assert large < small + RSS_GROWTH_MIB, f"peak RSS {small:.0f} MiB (3 images) -> {large:.0f} MiB (24 images)"
    assert not any(own_cache.rglob("*.f16"))


def test_the_lmsfc_recipe_composes_with_its_lambdas(hydra_conf: None) -> None:
    got = {}
    for q in range(1, 7):
        cfg = compose(config_name="train_fusion", overrides=["train_fusion=lmsfc_oiv6", f"train.quality={q}"])
        got[q] = cfg.train.lmbda
    assert got == {1: 0.0125, 2: 0.025, 3: 0.125, 4: 0.25, 5: 0.375, 6: 0.2}  # as written: q6 < q5
    assert (cfg.dataset.kind, cfg.model.name, cfg.train.crop, cfg.train.batch_size) == (
        "oiv6",
        "coco_mask_rcnn_x101_fpn",
        0,
        1,
    )
    assert (cfg.train.schedule, cfg.train.features, cfg.train.p6_weight) == ("plateau", "online", 1.0)
    default = compose(config_name="train_fusion", overrides=["train.quality=6", "train.lmbda=2"])
    assert (default.dataset.kind, default.train.features, default.train.train_images) == ("synthetic", "cache", 400)
    assert json.dumps(dict(default.train.lambdas)) == "{}"


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", *cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
def test_a_sigkilled_fusion_training_resumes_bit_exact(tmp_path: Path, own_cache: Path) -> None:
    """SIGKILL a training process mid-run, restart the same command: it ends as a run never stopped."""
    env = {**os.environ, "VCM_EVAL_CACHE": str(own_cache), "OMP_NUM_THREADS": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run = ["vcm_eval.codecs.fusion.train", "train.iterations=40", "train.checkpoint_every=5"]
    assert _run([*run, *fusion_overrides(straight)], env).wait(timeout=900) == 0
    proc = _run([*run, *fusion_overrides(killed)], env)
    log = killed / "log.csv"
    while proc.poll() is None and not (log.is_file() and len(log.read_text().splitlines()) > 13):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert torch.load(killed / "last.pt", weights_only=True)["iteration"] < 40
    assert _run([*run, *fusion_overrides(killed)], env).wait(timeout=900) == 0
    a, b = (torch.load(d / "last.pt", weights_only=True) for d in (straight, killed))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r["loss"] for r in log_rows(killed)] == [r["loss"] for r in log_rows(straight)]


@pytest.mark.slow
def test_task_training_runs_data_parallel_under_torchrun(tmp_path: Path, own_cache: Path) -> None:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
        "-m", "vcm_eval.vision.train", "dataset.height=64", "dataset.width=128",
        "model.min_size=64", "model.max_size=128",
        "train.iterations=4", "train.batch_size=2", "train.warmup=1", "train.log_every=1", "train.loader_workers=0",
        "threads=1", "progress=false", f"train.workdir={tmp_path}", f"train.output={tmp_path / 'final.pt'}",
    ]  # fmt: skip
    env = {**os.environ, "VCM_EVAL_CACHE": str(own_cache), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and state["samples"] == 8 and (tmp_path / "final.pt").is_file()


@pytest.mark.slow
def test_finetuning_an_r50_checkpoint_on_a_coco_split(tmp_path: Path, own_cache: Path) -> None:
    """``train.finetune=true``: the network starts from ``model.weights`` and trains on the COCO split's instances."""
    from vcm_eval.vision.torchvision_rcnn import TorchvisionRcnn, save_checkpoint

    root = tmp_path / "coco"
    write_coco(root, "train2017")
    model_overrides = [
        "model=coco_mask_rcnn_r50_fpn", "model.image_std=[1000,1000,1000]", "model.min_size=128", "model.max_size=256",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train_task", overrides=[*model_overrides, "model.weights=null"])
    rcnn_cfg = OmegaConf.to_object(cfg.model)
    start = tmp_path / "start.pt"
    save_checkpoint(start, TorchvisionRcnn(rcnn_cfg).model, rcnn_cfg, meta={}, half=False)  # type: ignore[arg-type]
    work = tmp_path / "work"
    cmd = [
        sys.executable, "-m", "vcm_eval.vision.train",
        "dataset=coco", f"dataset.root={root}", "dataset.split=train2017",
        *model_overrides, f"model.weights={start}", "train.finetune=true", "train.train_size=0", "train.iterations=3",
        "train.batch_size=1", "train.warmup=1", "train.log_every=1", "train.loader_workers=0", "threads=2",
        "progress=false", f"train.workdir={work}", f"train.output={work / 'final.pt'}",
    ]  # fmt: skip
    env = {**os.environ, "VCM_EVAL_CACHE": str(own_cache), "VCM_EVAL_DATA": str(tmp_path / "data")}
    done = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(log_rows(work)) == 3
    before = torch.load(start, weights_only=True)["state_dict"]
    after = torch.load(work / "final.pt", weights_only=True)["state_dict"]
    key = "roi_heads.box_predictor.cls_score.weight"
    assert after[key].shape == before[key].shape and not torch.equal(
        after[key].float(), before[key].float().half().float()
    )


def test_autocast_runs_the_transforms_in_low_precision_and_the_entropy_model_in_fp32() -> None:
    """Under autocast (bf16 on the CPU here; fp16 on a GPU) the likelihoods stay fp32 and the loss finite."""
    from vcm_eval.codecs.fusion import zoo
    from vcm_eval.codecs.fusion.config import FusionArchConfig

    torch.manual_seed(0)
    model = zoo.build_model(FusionArchConfig(channels=16, latent_channels=16, hyper_channels=16))
    levels = [torch.randn(2, 256, 32 // 2**k, 32 // 2**k) for k in range(4)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fusion_train.codec_forward(model, levels)
        terms = fusion_train.rate_distortion(model, levels, 2.0, p6_weight=1.0)
    assert all(lk.dtype == torch.float32 for lk in out["likelihoods"].values())
    assert all(lv.dtype == torch.float32 for lv in out["levels"])
    assert torch.isfinite(terms["loss"]) and terms["loss"].dtype == torch.float32
    terms["loss"].backward()
    assert next(model.g_a.parameters()).grad is not None


def test_a_validation_row_gets_its_own_column_in_the_log(tmp_path: Path) -> None:
    """The recipe validates every val_every iterations: val_loss must land under val_loss, skipped under skipped."""
    from vcm_eval.utils.training import append_log_row, trim_log

    log = tmp_path / "log.csv"
    append_log_row(log, {"iteration": 1, "loss": torch.tensor(2.5), "skipped": 0})
    append_log_row(log, {"iteration": 2, "loss": 2.0, "val_loss": 1.75, "skipped": 1})
    append_log_row(log, {"iteration": 3, "loss": 1.5, "skipped": 1})
    rows = list(csv.DictReader(log.open()))
    assert list(rows[0]) == ["iteration", "loss", "skipped", "val_loss"]
    assert [(r["loss"], r["val_loss"], r["skipped"]) for r in rows] == [
        ("2.5", "", "0"), ("2.0", "1.75", "1"), ("1.5", "", "1")
    ]  # fmt: skip
    trim_log(log, 2)  # what a resumed run keeps
    assert [r["iteration"] for r in csv.DictReader(log.open())] == ["1", "2"]
