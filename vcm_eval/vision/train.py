"""Train a task network: the embedded default from scratch, or fine-tune a model-zoo network on a dataset.

    python -m vcm_eval.vision.train                       # the committed checkpoint's command
    python -m vcm_eval.vision.train train.iterations=300  # shorter
    python -m vcm_eval.vision.train dataset=cityscapes model=cityscapes_mask_rcnn_r50_fpn \\
        model.weights=<model_final.pkl> train.finetune=true train.train_size=0 train.output=<file>
    torchrun --nproc_per_node=4 -m vcm_eval.vision.train ...         # data-parallel (train.batch_size is global)

Samples come from the configured dataset's train split (``vcm_eval.data.train_images``): the
synthetic generator by index in memory (no disk), or the split's COCO-format instances (the json the
evaluation reads: COCO's own, Cityscapes' gtFine converted, Open Images' files converted). Sample
``k`` is image ``order[k % n]`` of a seeded permutation, flipped by a draw seeded with ``(seed, k)``,
so a resumed run sees the batches an uninterrupted one would. Dataset categories map to the
network's classes by name (``model.class_names``); others are left out. The shared loop
(``vcm_eval.utils.training.train_loop``) runs DDP, mixed precision on GPU, exact resume from
``<workdir>/last.pt`` and the CSV log; at the end rank 0 writes the fp16 weights to ``train.output``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from vcm_eval import config as _config  # noqa: F401 - registers the schemas
from vcm_eval.config import TrainTaskConfig
from vcm_eval.data.datasets import build_dataset
from vcm_eval.data.train_images import DetectionSamples, DetectionTarget, SyntheticImages
from vcm_eval.errors import ConfigError, DataError, VcmEvalError
from vcm_eval.resources import CONF_DIR
from vcm_eval.utils.distributed import Dist, broadcast_object, distributed
from vcm_eval.utils.training import LoopSettings, TrainParts, resolve_precision, train_loop
from vcm_eval.vision.torchvision_rcnn import RcnnConfig, build_rcnn, load_weights, resolve_weights, save_checkpoint

Batch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]


def network_input(image: np.ndarray, cfg: RcnnConfig) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> float [3, H, W] in the channel order and range the network expects."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    if cfg.input_format == "BGR":
        tensor = tensor.flip(0)
    return tensor.div_(255.0) if cfg.pixel_scale == 1.0 else tensor.mul_(cfg.pixel_scale / 255.0)


def target_dict(target: DetectionTarget, label_of: dict[str, int], *, with_masks: bool) -> dict[str, torch.Tensor]:
    """torchvision's training target: boxes xyxy, labels 1..K (by category name), uint8 masks."""
    keep = [i for i, name in enumerate(target.names) if name in label_of]
    out = {
        "boxes": torch.from_numpy(target.boxes[keep]).reshape(-1, 4),
        "labels": torch.tensor([label_of[target.names[i]] for i in keep], dtype=torch.int64),
    }
    if with_masks:
        if target.masks is None:
            raise DataError(
                "the task network has a mask head but the training split has no masks; use model.with_masks=false"
            )
        out["masks"] = torch.from_numpy(target.masks[keep])
    return out


class TrainStream(torch.utils.data.Dataset):
    """Sample number k of the run -> (network input, target); deterministic in (seed, k)."""

    def __init__(self, samples: DetectionSamples, cfg: TrainTaskConfig, model_cfg: RcnnConfig) -> None:
        self.samples, self.settings, self.model_cfg = samples, cfg.train, model_cfg
        self.order = np.random.default_rng(cfg.train.seed).permutation(len(samples))
        self.label_of = {name: k + 1 for k, name in enumerate(model_cfg.class_names)}

    def __len__(self) -> int:
        return self.settings.iterations * self.settings.batch_size

    def __getitem__(self, k: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image, target = self.samples.sample(int(self.order[k % len(self.order)]))
        if self.settings.hflip and bool(np.random.default_rng([self.settings.seed, k]).integers(2)):
            image, target = np.ascontiguousarray(image[:, ::-1]), target.flipped(image.shape[1])
        return network_input(image, self.model_cfg), target_dict(
            target, self.label_of, with_masks=self.model_cfg.with_masks
        )


class RankSamples(torch.utils.data.Sampler[int]):
    """Sample numbers of this rank from iteration ``start`` on: iteration ``it`` holds samples
    ``it*B .. it*B + B - 1`` of the global batch B, rank r of W takes ``r*B/W .. (r+1)*B/W - 1``."""

    def __init__(self, *, start: int, iterations: int, batch: int, ctx: Dist) -> None:
        self.start, self.iterations, self.batch, self.ctx = start, iterations, batch, ctx
        self.share = batch // ctx.world_size

    def __len__(self) -> int:
        return (self.iterations - self.start) * self.share

    def __iter__(self) -> Iterator[int]:
        lo = self.ctx.rank * self.share
        for it in range(self.start, self.iterations):
            yield from range(it * self.batch + lo, it * self.batch + lo + self.share)


class DetectionObjective(nn.Module):
    """The detector's training step: ``forward((images, targets))`` -> its losses and their sum ``loss``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        losses = self.model(*batch)
        return {"loss": sum(losses.values()), **losses}  # type: ignore[dict-item]


def lr_factor(it: int, *, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to zero."""
    if it < warmup:
        return (it + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (it - warmup) / max(1, total - warmup)))


def detection_samples(cfg: TrainTaskConfig, ctx: Dist) -> DetectionSamples:
    """The train split's images and instances; rank 0 builds a derived annotation file first."""
    count = cfg.train.train_size
    if cfg.dataset.kind in ("synthetic", "synthetic_oid"):
        return DetectionSamples(synthetic=SyntheticImages(cfg.dataset, count=count))  # type: ignore[arg-type]
    error = None
    if ctx.main:
        try:
            build_dataset(cfg.dataset, data_dir=Path(cfg.paths.data), progress=cfg.progress)
        except VcmEvalError as exc:
            error = str(exc)
    error = broadcast_object(error, ctx)
    if error:
        raise DataError(error)
    dataset = build_dataset(cfg.dataset, data_dir=Path(cfg.paths.data), progress=False)
    return DetectionSamples(dataset, count=count)


def _collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[Any, ...]:
    return tuple(zip(*batch))


def build_model(model_cfg: RcnnConfig, cfg: TrainTaskConfig, ctx: Dist) -> nn.Module:
    """The network to train: random weights (seeded), or ``model.weights`` with ``train.finetune``."""
    torch.manual_seed(cfg.train.seed)
    model = build_rcnn(model_cfg)
    if cfg.train.finetune:
        if not model_cfg.weights:
            raise ConfigError(
                "train.finetune=true starts from model.weights; set it to a checkpoint (or train.finetune=false)"
            )
        model.load_state_dict(load_weights(resolve_weights(model_cfg.weights), model_cfg, model.state_dict()))
    if ctx.active and ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # batch statistics over the global batch
    return model.to(ctx.device)


def train(cfg: TrainTaskConfig) -> Path:
    """Train (or resume) and write the fp16 checkpoint; returns its path."""
    with distributed(cfg.device, timeout_min=cfg.dist_timeout_min) as ctx:
        return _train(cfg, ctx)


def _train(cfg: TrainTaskConfig, ctx: Dist) -> Path:
    torch.set_num_threads(cfg.threads)
    settings = cfg.train
    model_cfg: RcnnConfig = OmegaConf.to_object(cfg.model)  # type: ignore[assignment]
    if settings.batch_size <= 0 or settings.batch_size % ctx.world_size:
        raise ConfigError(
            f"train.batch_size={settings.batch_size} (the global batch) must be a positive multiple "
            f"of the {ctx.world_size} processes"
        )
    model = build_model(model_cfg, cfg, ctx)
    samples = detection_samples(cfg, ctx)
    unknown = sorted(set(samples.category_names) - set(model_cfg.class_names))
    if len(unknown) == len(set(samples.category_names)):
        raise ConfigError(
            f"none of the dataset's categories {samples.category_names[:10]} is a class of the network; "
            "set model.class_names"
        )
    if unknown and ctx.main:
        print(f"categories without a class in the network, left out: {unknown}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, warmup=settings.warmup, total=settings.iterations)
    )
    stream = TrainStream(samples, cfg, model_cfg)
    device = ctx.device

    def batches(start: int) -> Iterator[Batch]:
        sampler = RankSamples(start=start, iterations=settings.iterations, batch=settings.batch_size, ctx=ctx)
        # Its own generator: a loader draws a base seed when iterated, and from torch's global RNG that draw
        # would shift a resumed run's RNG (restored at ``start``) against an uninterrupted one's (drawn at 0).
        seeds = torch.Generator().manual_seed(settings.seed)
        loader = torch.utils.data.DataLoader(
            stream, batch_size=sampler.share, sampler=sampler, num_workers=settings.loader_workers,
            collate_fn=_collate, generator=seeds,
        )  # fmt: skip
        for images, targets in loader:
            yield [im.to(device) for im in images], [{k: v.to(device) for k, v in t.items()} for t in targets]

    parts = TrainParts(
        model=model, objective=DetectionObjective(model), optimizer=optimizer, scheduler=scheduler, find_unused=True
    )
    loop = LoopSettings(
        iterations=settings.iterations,
        checkpoint_every=settings.checkpoint_every,
        log_every=settings.log_every,
        grad_clip=settings.grad_clip,
        max_skipped=settings.max_skipped,
        precision=resolve_precision(str(settings.precision), device),
        desc="train task model",
        progress=cfg.progress,
    )
    identity = {
        "samples": samples.describe(),
        "seed": settings.seed,
        "batch_size": settings.batch_size,
        "hflip": settings.hflip,
    }
    train_loop(
        parts,
        batches,
        settings=loop,
        ctx=ctx,
        workdir=Path(settings.workdir),
        identity=identity,
        global_batch=settings.batch_size,
    )
    out = Path(settings.output)
    if ctx.main:
        meta = {
            "command": "python -m vcm_eval.vision.train " + " ".join(_overrides()),
            "train": OmegaConf.to_container(cfg.train, enum_to_str=True),
            "dataset": OmegaConf.to_container(cfg.dataset, enum_to_str=True),
            "processes": ctx.world_size,
        }
        save_checkpoint(out, model.eval().cpu(), model_cfg, meta=meta, half=True)  # type: ignore[arg-type]
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) after {settings.iterations} iterations")
    return out


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train_task")
def main(cfg: TrainTaskConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
