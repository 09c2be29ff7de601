"""Train one rate point of the fusion codec on any configured dataset, in one process or data-parallel.

    python -m vcm_eval.codecs.fusion.train train.quality=4 train.lmbda=<l>       # docs/fusion_codec.md
    torchrun --nproc_per_node=8 -m vcm_eval.codecs.fusion.train train_fusion=lmsfc_oiv6 train.quality=3

1. Images: the first ``train.train_images`` of ``dataset``'s train split (``vcm_eval.data.train_images``:
   the synthetic generator in memory, or the split's image files), the last ``train.val_images`` held
   out for validation.
2. Features P2..P5 of the configured task model, from a bounded fp16 cache (``train.features=cache``,
   built once by rank 0) or computed per batch (``online``); aligned random crops, P2 ``c x c`` with
   the matching P3..P5 windows (``vcm_eval.data.train_stream``); the same batches either way.
3. ``RateDistortion`` (the objective): loss = bpp + lambda * weighted level MSE (+ P6, + the frozen
   RPN's output error); Adam, CompressAI's aux loss on the entropy-bottleneck quantiles, gradient
   clipping; all run by ``vcm_eval.utils.training.train_loop`` (DDP, mixed precision, exact resume
   from ``<workdir>/last.pt``, the CSV log).
4. The final weights (fp16, CDF tables left out) go to the zoo file of (task model, quality), by rank 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from vcm_eval import config as _config  # noqa: F401 - registers the schemas
from vcm_eval.codecs.fusion import zoo
from vcm_eval.codecs.fusion.config import FusionArchConfig
from vcm_eval.codecs.fusion.model import CODED_LEVELS, FusionCodecModel
from vcm_eval.config import TrainFusionConfig
from vcm_eval.data.train_images import SyntheticImages, train_images
from vcm_eval.data.train_stream import (
    CropBatch,
    CropStream,
    FeatureCache,
    FeatureSource,
    OnlineFeatures,
    cache_folder,
    feature_source,
    held_out,
)
from vcm_eval.errors import CheckpointError, ConfigError, DataError
from vcm_eval.resources import CONF_DIR
from vcm_eval.utils.distributed import Dist, distributed, mean_over_ranks
from vcm_eval.utils.training import AuxStep, LoopSettings, TrainParts, load_state, resolve_precision, train_loop
from vcm_eval.vision.base import TaskModel
from vcm_eval.vision.registry import build_task_model


def rpn_distortion(
    rpn_head: torch.nn.Module, decoded: list[torch.Tensor], original: list[torch.Tensor]
) -> torch.Tensor:
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
    terms = [F.mse_loss(a, b) for a, b in zip(logits, ref_logits)] + [
        F.mse_loss(a, b) for a, b in zip(deltas, ref_deltas)
    ]
    return torch.stack(terms).mean()


def codec_forward(model: FusionCodecModel, levels: list[torch.Tensor]) -> dict[str, Any]:
    """``model(levels)``; under autocast the entropy model runs in fp32.

    Likelihoods down to CompressAI's 1e-9 bound do not survive fp16 (its smallest normal number is
    6e-5), so only the transforms (``g_a``, ``g_s``) run in reduced precision.
    """
    device_type = levels[0].device.type
    if not torch.is_autocast_enabled(device_type):
        return model(levels)
    y = model.g_a(levels)
    with torch.autocast(device_type, enabled=False):
        out = model.latent_codec(y.float())
    return {"levels": [lv.float() for lv in model.g_s(out["y_hat"])], "likelihoods": out["likelihoods"]}


def rate_distortion(
    model: FusionCodecModel,
    levels: list[torch.Tensor],
    lmbda: float,
    level_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    *,
    rpn_head: torch.nn.Module | None = None,
    task_weight: float = 0.0,
    p6_weight: float = 0.0,
    valid: tuple[int, int] | None = None,
) -> dict[str, torch.Tensor]:
    """loss = bpp (per input-image pixel) + lambda * (weighted mean level MSE + task_weight * RPN-output MSE).

    ``mse`` (logged) stays the plain mean over P2..P5, comparable across weightings; ``distortion``
    is the weighted one the loss uses. Weighting P2 up spends the bits where this task network loses
    its accuracy (docs/fusion_codec.md: the decoded P2 alone costs 25 box AP points); the task
    term (``rpn_head`` given, ``task_weight`` > 0) measures the error through the frozen network.
    ``p6_weight`` > 0 adds the MSE of P6 = maxpool(P5, 1, stride 2) on both sides, weighted like a
    level (L-MSFC's loss). ``valid``: P2's unpadded (H, W) of a whole padded pyramid (batch 1): the
    distortion and the image pixels count only that region.
    """
    if len(level_weights) != len(levels) or min(level_weights) < 0 or sum(level_weights) <= 0:
        raise ConfigError(
            f"train.level_weights={list(level_weights)} must be {len(levels)} non-negative numbers (P2..P5), "
            "not all zero"
        )
    if p6_weight < 0:
        raise ConfigError(f"train.p6_weight={p6_weight} must be >= 0")
    out = codec_forward(model, levels)
    decoded = out["levels"]
    if valid is not None:
        h2, w2 = valid
        decoded = [d[..., : -(-h2 // 2**k), : -(-w2 // 2**k)] for k, d in enumerate(decoded)]
        levels = [lv[..., : -(-h2 // 2**k), : -(-w2 // 2**k)] for k, lv in enumerate(levels)]
    b, _, h2, w2 = levels[0].shape
    image_pixels = b * (4 * h2) * (4 * w2)
    bits = torch.stack([torch.log2(lk).sum() for lk in out["likelihoods"].values()]).sum()
    bpp = -bits / image_pixels
    per_level = torch.stack([torch.mean((a - b_) ** 2) for a, b_ in zip(decoded, levels)])
    weights = torch.tensor(list(level_weights), dtype=per_level.dtype, device=per_level.device)
    weighted, total = (weights * per_level).sum(), weights.sum()
    if p6_weight > 0:
        p6_error = torch.mean((F.max_pool2d(decoded[-1], 1, stride=2) - F.max_pool2d(levels[-1], 1, stride=2)) ** 2)
        weighted, total = weighted + p6_weight * p6_error, total + p6_weight
    distortion = weighted / total
    out_terms = {"bpp": bpp, "mse": per_level.mean()}
    if rpn_head is not None and task_weight > 0:
        task = rpn_distortion(rpn_head, decoded, levels)
        distortion = distortion + task_weight * task
        out_terms["task"] = task
    return {"loss": bpp + lmbda * distortion, **out_terms}


class RateDistortion(nn.Module):
    """The fusion codec's training objective: ``forward(batch)`` -> ``rate_distortion`` terms.

    What ``train_loop`` wraps in DDP; it holds the codec (trained, saved) and, for the task term,
    the task network's frozen RPN head.
    """

    def __init__(
        self,
        codec: FusionCodecModel,
        *,
        lmbda: float,
        level_weights: Sequence[float],
        p6_weight: float = 0.0,
        rpn_head: nn.Module | None = None,
        task_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.codec, self.rpn_head = codec, rpn_head
        self.lmbda, self.level_weights, self.p6_weight, self.task_weight = (
            lmbda,
            list(level_weights),
            p6_weight,
            task_weight,
        )

    def forward(self, batch: CropBatch) -> dict[str, torch.Tensor]:
        return rate_distortion(
            self.codec,
            batch.levels,
            self.lmbda,
            self.level_weights,
            rpn_head=self.rpn_head,
            task_weight=self.task_weight,
            p6_weight=self.p6_weight,
            valid=batch.valid,
        )


def frozen_rpn_head(task_model: TaskModel) -> torch.nn.Module:
    """The task network's RPN head with its weights frozen (gradients flow only to the codec)."""
    head = getattr(getattr(getattr(task_model, "model", None), "rpn", None), "head", None)
    if not isinstance(head, torch.nn.Module):
        raise ConfigError(
            f"train.task_weight > 0 needs the torchvision task model's RPN head; {type(task_model).__name__} has none "
            "(set train.task_weight=0)"
        )
    for p in head.parameters():
        p.requires_grad_(False)
    return head.eval()


def cached_train_features(model: TaskModel, cfg: Any, *, progress: bool) -> dict[str, np.ndarray]:
    """Memory-mapped fp16 arrays [N, C, H, W] of P2..P5 of synthetic train images 0..N-1 (the first data path).

    Kept for trainers that crop a fixed-size synthetic pyramid themselves (``vcm_eval.codecs.msfc.train``
    with ``random_crops``); it reads ``cfg.train.train_images``, ``cfg.dataset`` (synthetic, always its
    train split) and ``cfg.paths.cache``, and is the same ``FeatureCache`` ``train.features=cache`` uses.
    New trainers should take ``CropStream`` (any dataset, online or cached, DDP shares).
    """
    images = SyntheticImages(cfg.dataset, count=cfg.train.train_images, split="train")
    folder = cache_folder(Path(cfg.paths.cache), model.fingerprint, images)
    max_gb = float(getattr(cfg.train, "cache_max_gb", 4.0))
    FeatureCache.build(folder, images, model.features, CODED_LEVELS, max_bytes=int(max_gb * 2**30), progress=progress)
    cache = FeatureCache(folder, CODED_LEVELS)
    out = {}
    for k, name in enumerate(CODED_LEVELS):
        shapes = {tuple(s[k]) for s in cache.shapes}
        if len(shapes) != 1:
            raise DataError(
                f"cached {name} sizes differ ({sorted(shapes)[:3]}); use CropStream for images of several sizes"
            )
        out[name] = cache.flat[name][: len(cache) * int(np.prod(cache.shapes[0][k]))].reshape(
            len(cache), *cache.shapes[0][k]
        )
    return out


def random_crops(
    features: dict[str, np.ndarray], rng: np.random.Generator, *, batch: int, crop: int
) -> list[torch.Tensor]:
    """Aligned crops of P2..P5 of ``cached_train_features``: P2 offsets are multiples of 8, so every level aligns.

    ``CropStream`` draws exactly these crops (same generator calls) for a synthetic cache.
    """
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
        windows = [arr[i, :, y // s : y // s + c, x // s : x // s + c] for i, y, x in zip(idx, ys, xs)]
        out.append(torch.from_numpy(np.stack(windows).astype(np.float32)))
    return out


def _optimizers(
    model: FusionCodecModel, cfg: TrainFusionConfig
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer, Any]:
    t = cfg.train
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    net_params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    opt = torch.optim.Adam(net_params, lr=t.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=t.aux_lr)
    sched: Any
    if t.schedule == "plateau":
        if t.val_every <= 0 or t.val_images <= 0:
            raise ConfigError(
                "train.schedule=plateau steps on a held-out loss: set train.val_every > 0 and train.val_images > 0"
            )
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=t.plateau_factor, patience=t.plateau_patience
        )
    else:
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[int(t.lr_drop_at * t.iterations)], gamma=0.1)
    return opt, aux_opt, sched


def _validate(objective: RateDistortion, source: FeatureSource, indices: list[int], pad: int, ctx: Dist) -> float:
    total, count = 0.0, 0
    for batch in held_out(source, indices, pad, ctx, ctx.device):
        total += float(objective(batch)["loss"])
        count += 1
    means = mean_over_ranks({"total": total, "count": count}, ctx)
    return means["total"] / max(means["count"], 1e-12)


def _export(
    cfg: TrainFusionConfig, model: FusionCodecModel, arch: FusionArchConfig, task_model: TaskModel, done: int, ctx: Dist
) -> Path:
    t = cfg.train
    out = Path(t.output) if t.output else zoo.zoo_path(cfg.model.name, t.quality)
    meta = {
        "lmbda": t.lmbda,
        "level_weights": list(t.level_weights),
        "quality": t.quality,
        "task_model": cfg.model.name,
        "task_model_fingerprint": task_model.fingerprint,
        "train": OmegaConf.to_container(cfg.train, resolve=True, enum_to_str=True),
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True, enum_to_str=True),
        "processes": ctx.world_size,
        "iterations_done": done,
    }
    zoo.save(out, model.eval().cpu(), arch, meta=meta)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return out


def train(cfg: TrainFusionConfig) -> Path:
    """Train (or resume, or export with ``train.export_only``) one rate point; returns the zoo file."""
    with distributed(cfg.device, timeout_min=cfg.dist_timeout_min) as ctx:
        return _train(cfg, ctx)


def _train(cfg: TrainFusionConfig, ctx: Dist) -> Path:
    torch.set_num_threads(cfg.threads)
    t = cfg.train
    arch: FusionArchConfig = OmegaConf.to_object(cfg.arch)  # type: ignore[assignment]
    task_model = build_task_model(cfg.model, device=str(ctx.device))  # type: ignore[arg-type]
    torch.manual_seed(t.seed)
    model = zoo.build_model(arch)
    if t.init_from:
        init, _ = zoo.load(zoo.resolve(t.init_from, task_model=cfg.model.name, quality=t.quality), arch)
        model.load_state_dict(init.state_dict(), strict=False)
    model.to(ctx.device)
    workdir = Path(t.workdir)
    if t.export_only:
        state = load_state(workdir / "last.pt")
        if state is None:
            raise CheckpointError(f"train.export_only=true needs {workdir / 'last.pt'}; train the point first")
        torch.nn.Module.load_state_dict(model, state["model"])
        print(f"exporting iteration {state['iteration']} of {workdir / 'last.pt'} (no training)")
        return _export(cfg, model, arch, task_model, int(state["iteration"]), ctx) if ctx.main else Path()
    if ctx.rank > 0:  # the entropy model's noise differs per rank; rank 0 keeps the single-process stream
        torch.manual_seed(t.seed * 1_000_003 + ctx.rank)
    images = train_images(cfg.dataset, count=t.train_images)
    if t.val_images < 0 or t.val_images >= len(images):
        raise ConfigError(f"train.val_images={t.val_images} must be >= 0 and below the {len(images)} training images")
    n_train = len(images) - t.val_images
    source = feature_source(
        cfg.train.features, images.head(n_train), task_model.features, task_model.fingerprint, CODED_LEVELS,
        cache_root=Path(cfg.paths.cache), cache_max_gb=cfg.train.cache_max_gb, progress=cfg.progress, ctx=ctx,
    )  # fmt: skip
    if ctx.main:
        print(f"training on {n_train} images of {images.describe()} ({t.features}), {ctx.world_size} process(es)")
    stream = CropStream(
        source,
        n=n_train,
        seed=t.seed,
        batch=t.batch_size,
        crop=t.crop,
        crops_per_image=t.crops_per_image,
        hflip=t.hflip,
        pad_multiple=model.pad_multiple_p2,
        ctx=ctx,
    )
    rpn_head = frozen_rpn_head(task_model) if t.task_weight > 0 else None
    objective = RateDistortion(
        model,
        lmbda=t.lmbda,
        level_weights=t.level_weights,
        p6_weight=t.p6_weight,
        rpn_head=rpn_head,
        task_weight=t.task_weight,
    )
    opt, aux_opt, sched = _optimizers(model, cfg)
    val_source = OnlineFeatures(images, task_model.features, CODED_LEVELS)
    val_indices = list(range(n_train, len(images)))
    parts = TrainParts(
        model=model,
        objective=objective,
        optimizer=opt,
        scheduler=sched,
        aux=AuxStep(loss=model.aux_loss, optimizer=aux_opt),
        ddp_ignore=tuple(f"codec.{n}" for n, _ in model.named_parameters() if n.endswith(".quantiles")),
        validate=(lambda: _validate(objective, val_source, val_indices, model.pad_multiple_p2, ctx))
        if val_indices
        else None,
    )
    settings = LoopSettings(
        iterations=t.iterations,
        checkpoint_every=t.checkpoint_every,
        log_every=t.log_every,
        grad_clip=t.grad_clip,
        max_skipped=t.max_skipped,
        precision=resolve_precision(str(t.precision), ctx.device),
        val_every=t.val_every,
        min_lr=t.min_lr,
        desc=f"fusion q{t.quality}",
        progress=cfg.progress,
    )
    identity = {
        "images": images.describe(),
        "val_images": t.val_images,
        "seed": t.seed,
        "batch_size": t.batch_size,
        "crop": t.crop,
        "crops_per_image": t.crops_per_image,
        "hflip": t.hflip,
    }

    def batches(start: int) -> Iterator[CropBatch]:
        return stream(start, ctx.device)

    result = train_loop(
        parts, batches, settings=settings, ctx=ctx, workdir=workdir, identity=identity, global_batch=t.batch_size
    )
    return _export(cfg, model, arch, task_model, result.iteration, ctx) if ctx.main else Path()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train_fusion")
def main(cfg: TrainFusionConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
