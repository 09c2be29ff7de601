"""Train one rate point of the fusion codec on cached features of the synthetic train split.

    python -m vcm_eval.codecs.fusion.train train.quality=4 train.lmbda=<l>   # docs/fusion_codec.md

1. Features P2..P5 of ``train.train_images`` synthetic train images are extracted once with the
   configured task model and cached as fp16 ``.npy`` files under
   ``<paths.cache>/features/<model fingerprint>/train-<n>/`` (written to a temp folder, renamed
   when complete).
2. Training on aligned random crops (P2 crop c x c, P3 c/2 x c/2, ...): loss = bpp + lambda * mean
   level MSE, Adam, with CompressAI's aux loss on the entropy bottleneck quantiles. ``last.pt`` in
   the work dir every ``checkpoint_every`` iterations (atomic); a restart resumes from it.
3. The final weights (fp16, CDF tables left out) go to the zoo file of (task model, quality).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from tqdm import tqdm

from vcm_eval import config as _config  # noqa: F401 - registers the schemas
from vcm_eval.codecs.fusion import zoo
from vcm_eval.codecs.fusion.config import FusionArchConfig
from vcm_eval.codecs.fusion.model import CODED_LEVELS, FusionCodecModel
from vcm_eval.config import TrainFusionConfig
from vcm_eval.data.synthetic import folder_name, scene_for, synthetic_spec
from vcm_eval.device import resolve_device
from vcm_eval.errors import ConfigError
from vcm_eval.resources import CONF_DIR
from vcm_eval.utils.training import append_log_row, load_state, save_state
from vcm_eval.vision.base import TaskModel
from vcm_eval.vision.registry import build_task_model


def cached_train_features(model: TaskModel, cfg: TrainFusionConfig, *, progress: bool) -> dict[str, np.ndarray]:
    """Memory-mapped fp16 arrays [N, C, H, W] of P2..P5 for synthetic train images 0..N-1."""
    n = cfg.train.train_images
    spec = synthetic_spec(cfg.dataset)
    folder = Path(cfg.paths.cache) / "features" / model.fingerprint / f"train-{folder_name(spec)}-{n}"
    if not (folder / "complete").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".tmp-", ignore_cleanup_errors=True) as tmp:
            arrays: dict[str, np.ndarray] = {}
            for i in tqdm(range(n), desc="extract train features", disable=not progress):
                feats = model.features(scene_for(spec, "train", i).image)
                for name in CODED_LEVELS:
                    level = feats[name].numpy()
                    if name not in arrays:
                        arrays[name] = np.lib.format.open_memmap(Path(tmp) / f"{name}.npy", mode="w+", dtype=np.float16, shape=(n, *level.shape))
                    arrays[name][i] = level
            for arr in arrays.values():
                arr.flush()  # type: ignore[attr-defined]
            del arrays
            Path(tmp, "complete").write_text(f"{n} images\n")
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in CODED_LEVELS}


def random_crops(features: dict[str, np.ndarray], rng: np.random.Generator, *, batch: int, crop: int) -> list[torch.Tensor]:
    """Aligned crops of P2..P5: P2 offsets are multiples of 8 so every coarser level aligns too."""
    n, _, h2, w2 = features["p2"].shape
    if crop % 64 or crop > min(h2, w2):
        raise ConfigError(f"train.crop={crop} must be a multiple of 64 and at most P2's size {h2}x{w2}")
    idx = rng.integers(0, n, size=batch)
    ys = rng.integers(0, (h2 - crop) // 8 + 1, size=batch) * 8
    xs = rng.integers(0, (w2 - crop) // 8 + 1, size=batch) * 8
    out = []
    for k, name in enumerate(CODED_LEVELS):
        s, c = 2**k, crop // 2**k
        arr = features[name]
        out.append(torch.from_numpy(np.stack([arr[i, :, y // s : y // s + c, x // s : x // s + c] for i, y, x in zip(idx, ys, xs)]).astype(np.float32)))
    return out


def rpn_distortion(rpn_head: torch.nn.Module, decoded: list[torch.Tensor], original: list[torch.Tensor]) -> torch.Tensor:
    """Task-aware distortion: MSE between the frozen task network's RPN outputs on decoded and original P2..P6.

    The RPN head (objectness logits and box deltas at every anchor) sees each level through a
    3x3 convolution: it weighs feature errors by how much they move proposals, which a plain
    feature MSE cannot. P6 is max-pooled from P5 as the network's FPN does.
    """

    def with_p6(levels: list[torch.Tensor]) -> list[torch.Tensor]:
        return [*levels, F.max_pool2d(levels[-1], 1, stride=2)]

    with torch.no_grad():
        ref_logits, ref_deltas = rpn_head(with_p6(original))
    logits, deltas = rpn_head(with_p6(decoded))
    terms = [F.mse_loss(a, b) for a, b in zip(logits, ref_logits)] + [F.mse_loss(a, b) for a, b in zip(deltas, ref_deltas)]
    return torch.stack(terms).mean()


def rate_distortion(
    model: FusionCodecModel,
    levels: list[torch.Tensor],
    lmbda: float,
    level_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    *,
    rpn_head: torch.nn.Module | None = None,
    task_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """loss = bpp (per input-image pixel) + lambda * (weighted mean level MSE + task_weight * RPN-output MSE).

    ``mse`` (logged) stays the plain mean, comparable across weightings; ``distortion`` is the
    weighted one the loss uses. Weighting P2 up spends the bits where this task network loses
    its accuracy (docs/fusion_codec.md: the decoded P2 alone costs 25 box AP points); the task
    term (``rpn_head`` given, ``task_weight`` > 0) measures the error through the frozen network.
    """
    if len(level_weights) != len(levels) or min(level_weights) < 0 or sum(level_weights) <= 0:
        raise ConfigError(f"train.level_weights={list(level_weights)} must be {len(levels)} non-negative numbers (P2..P5), not all zero")
    out = model(levels)
    b, _, h2, w2 = levels[0].shape
    image_pixels = b * (4 * h2) * (4 * w2)
    bits = torch.stack([torch.log2(lk).sum() for lk in out["likelihoods"].values()]).sum()
    bpp = -bits / image_pixels
    per_level = torch.stack([torch.mean((a - b_) ** 2) for a, b_ in zip(out["levels"], levels)])
    weights = torch.tensor(list(level_weights), dtype=per_level.dtype, device=per_level.device)
    distortion = (weights * per_level).sum() / weights.sum()
    out_terms = {"bpp": bpp, "mse": per_level.mean()}
    if rpn_head is not None and task_weight > 0:
        task = rpn_distortion(rpn_head, out["levels"], levels)
        distortion = distortion + task_weight * task
        out_terms["task"] = task
    return {"loss": bpp + lmbda * distortion, **out_terms}


def frozen_rpn_head(task_model: TaskModel) -> torch.nn.Module:
    """The task network's RPN head with its weights frozen (gradients flow only to the codec)."""
    head = getattr(getattr(getattr(task_model, "model", None), "rpn", None), "head", None)
    if not isinstance(head, torch.nn.Module):
        raise ConfigError(f"train.task_weight > 0 needs the torchvision task model's RPN head; {type(task_model).__name__} has none (set train.task_weight=0)")
    for p in head.parameters():
        p.requires_grad_(False)
    return head.eval()


def train(cfg: TrainFusionConfig) -> Path:
    torch.set_num_threads(cfg.threads)
    t = cfg.train
    arch: FusionArchConfig = OmegaConf.to_object(cfg.arch)  # type: ignore[assignment]
    device = resolve_device(cfg.device)
    task_model = build_task_model(cfg.model, device=str(device))  # type: ignore[arg-type]
    features = cached_train_features(task_model, cfg, progress=cfg.progress)
    rpn_head = frozen_rpn_head(task_model) if t.task_weight > 0 else None
    torch.manual_seed(t.seed)
    model = zoo.build_model(arch)
    if t.init_from:
        init, _ = zoo.load(zoo.resolve(t.init_from, task_model=cfg.model.name, quality=t.quality), arch)
        model.load_state_dict(init.state_dict(), strict=False)
    model.to(device)
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    net_params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    opt = torch.optim.Adam(net_params, lr=t.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=t.aux_lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[int(t.lr_drop_at * t.iterations)], gamma=0.1)
    workdir = Path(t.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    last, start = workdir / "last.pt", 0
    state = load_state(last)
    if state is not None:
        torch.nn.Module.load_state_dict(model, {k: v.to(device) for k, v in state["model"].items()})
        opt.load_state_dict(state["opt"])
        aux_opt.load_state_dict(state["aux_opt"])
        sched.load_state_dict(state["sched"])
        start = int(state["iteration"])
        print(f"resuming {last} at iteration {start}")
    if t.export_only:
        if state is None:
            raise ConfigError(f"train.export_only=true needs {last}; train the point first")
        print(f"exporting iteration {start} of {last} (no training)")
    model.train()
    log = workdir / "log.csv"
    t0 = time.time()
    end = start if t.export_only else t.iterations
    bar = tqdm(range(start, end), initial=start, total=t.iterations, desc=f"fusion q{t.quality}", disable=not cfg.progress)
    for it in bar:
        rng = np.random.default_rng([t.seed, it])  # batch `it` is the same whether resumed or not
        levels = [lv.to(device) for lv in random_crops(features, rng, batch=t.batch_size, crop=t.crop)]
        rd = rate_distortion(model, levels, t.lmbda, list(t.level_weights), rpn_head=rpn_head, task_weight=t.task_weight)
        opt.zero_grad(set_to_none=True)
        rd["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net_params, 1.0)
        opt.step()
        aux_loss = model.aux_loss()
        aux_opt.zero_grad(set_to_none=True)
        aux_loss.backward()
        aux_opt.step()
        sched.step()
        bar.set_postfix(bpp=f"{float(rd['bpp'].detach()):.4f}", mse=f"{float(rd['mse'].detach()):.4f}")
        done = it + 1
        if done % 10 == 0:
            append_log_row(log, {"iteration": done, "seconds_this_session": round(time.time() - t0, 1), **{k: v.detach() for k, v in rd.items()}, "aux": aux_loss.detach()})
        if done % t.checkpoint_every == 0 or done == t.iterations:
            save_state(last, model=model.state_dict(), opt=opt.state_dict(), aux_opt=aux_opt.state_dict(), sched=sched.state_dict(), iteration=done)
    out = Path(t.output) if t.output else zoo.zoo_path(cfg.model.name, t.quality)
    meta = {
        "lmbda": t.lmbda,
        "level_weights": list(t.level_weights),
        "quality": t.quality,
        "task_model": cfg.model.name,
        "task_model_fingerprint": task_model.fingerprint,
        "train": OmegaConf.to_container(cfg.train, resolve=True),
        "iterations_done": start if t.export_only else t.iterations,
    }
    zoo.save(out, model.eval().cpu(), arch, meta=meta)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return out


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train_fusion")
def main(cfg: TrainFusionConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
