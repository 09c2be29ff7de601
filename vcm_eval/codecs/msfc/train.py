"""Train the MSFC modules (MSFF + SSFC + MSFR) for one task model, on the shared training loop.

    python -m vcm_eval.codecs.msfc.train          # conf/train_msfc.yaml: the shipped checkpoint's command

A thin adapter on ``vcm_eval.utils.training.train_loop`` (DDP, exact resume from
``<workdir>/last.pt``, the CSV loss log): it supplies the model, the loss and the batches.

* Data: the fusion codec's (``vcm_eval.data.train_stream``): P2..P5 of the first
  ``train.train_images`` images of the dataset's train split, from the fp16 cache both trainers
  share (built once by rank 0) or computed per batch (``train.features=online``), and aligned random
  crops consistent across the levels (P2 c x c, P3 c/2 x c/2, ...). Batch ``it`` is a function of
  the seed and the iteration only; under DDP each rank takes its share of it.
* Loss: the weighted mean over P2..P5 of the level MSE between the reconstruction and the input
  (+ ``task_weight`` x the MSE of the frozen RPN head's outputs, the fusion codec's task term).
  There is no rate term: the modules have no entropy model; VVC codes the code at the QP chosen at
  evaluation, so one module set serves every rate point. (MSFC, Zhang et al., ICME 2021, trains
  its modules with the quantizer outside the gradient too, as recalled; not verified.)
* ``train.init_from`` starts from a checkpoint of the same architecture (fine-tuning).
* ``train.noise`` > 0 perturbs the code by uniform noise of that many 10-bit min-max steps (a proxy
  of the quantization and VVC error the decoder will see; docs/msfc.md measures it).

The final fp16 weights go to the zoo file of the task model (``train.output`` overrides it), the
loss log beside it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from vcm_eval import config as _config  # noqa: F401 - registers the schemas
from vcm_eval.codecs.fusion.train import frozen_rpn_head, rpn_distortion
from vcm_eval.codecs.msfc import zoo
from vcm_eval.codecs.msfc.config import MsfcArchConfig, TrainMsfcConfig
from vcm_eval.codecs.msfc.model import CODED_LEVELS, MsfcModel
from vcm_eval.data.train_images import train_images
from vcm_eval.data.train_stream import CropBatch, CropStream, feature_source
from vcm_eval.errors import CheckpointError, ConfigError
from vcm_eval.resources import CONF_DIR
from vcm_eval.utils.distributed import Dist, barrier, distributed
from vcm_eval.utils.training import LoopSettings, TrainParts, resolve_precision, train_loop
from vcm_eval.vision.registry import build_task_model


class MsfcObjective(nn.Module):
    """``forward(levels) -> {"loss", "mse", "mse_p2".."mse_p5"[, "task"]}``: the training step's loss terms.

    Args:
        model: the MSFC modules being trained.
        level_weights: weights of P2..P5 in the loss (``mse`` is logged unweighted, comparable across weightings).
        noise: uniform noise on the code, in 10-bit min-max steps (0 = none).
        rpn_head: the task network's frozen RPN head, for the task term (None = no task term).
        task_weight: weight of the task term.
    """

    def __init__(
        self,
        model: MsfcModel,
        *,
        level_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        noise: float = 0.0,
        rpn_head: nn.Module | None = None,
        task_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if len(level_weights) != len(CODED_LEVELS) or min(level_weights) < 0 or sum(level_weights) <= 0:
            raise ConfigError(
                f"train.level_weights={list(level_weights)} must be {len(CODED_LEVELS)} non-negative numbers "
                "(P2..P5), not all zero"
            )
        if noise < 0 or task_weight < 0:
            raise ConfigError(f"train.noise={noise} and train.task_weight={task_weight} must be >= 0")
        self.model, self.noise, self.rpn_head, self.task_weight = model, noise, rpn_head, task_weight
        self.level_weights = [float(w) for w in level_weights]

    def forward(self, batch: CropBatch) -> dict[str, Tensor]:
        levels = batch.levels
        out = self.model(levels, noise=self.noise)
        decoded: list[Tensor] = out["levels"]  # type: ignore[assignment]
        if batch.valid is not None:  # a whole padded pyramid: only its valid region counts
            h2, w2 = batch.valid
            decoded = [d[..., : -(-h2 // 2**k), : -(-w2 // 2**k)] for k, d in enumerate(decoded)]
            levels = [lv[..., : -(-h2 // 2**k), : -(-w2 // 2**k)] for k, lv in enumerate(levels)]
        per_level = torch.stack([torch.mean((a.float() - b) ** 2) for a, b in zip(decoded, levels)])
        weights = torch.tensor(self.level_weights, dtype=per_level.dtype, device=per_level.device)
        loss = (weights * per_level).sum() / weights.sum()
        terms = {"mse": per_level.mean(), **{f"mse_{name}": v for name, v in zip(CODED_LEVELS, per_level)}}
        if self.rpn_head is not None and self.task_weight > 0:
            task = rpn_distortion(self.rpn_head, decoded, levels)
            loss = loss + self.task_weight * task
            terms["task"] = task
        return {"loss": loss, **terms}


class StepDrop(torch.optim.lr_scheduler.MultiStepLR):
    """lr x 0.1 from ``train.lr_drop_at`` of the run on; the milestone comes from the config, not the saved state.

    So a run resumed with a larger ``train.iterations`` follows the longer schedule, and ends with
    the weights a run of that length from the start would have (its first iterations are the same).
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        milestones = self.milestones
        super().load_state_dict(state_dict)
        self.milestones = milestones


def train(cfg: TrainMsfcConfig) -> Path:
    """Train (or resume) and write the checkpoint and its loss log; returns the checkpoint's path."""
    with distributed(cfg.device, timeout_min=cfg.dist_timeout_min) as ctx:
        out = _train(cfg, ctx)
        barrier(ctx)
    return out


def _train(cfg: TrainMsfcConfig, ctx: Dist) -> Path:
    torch.set_num_threads(cfg.threads)
    t = cfg.train
    arch: MsfcArchConfig = OmegaConf.to_object(cfg.arch)  # type: ignore[assignment]
    task_model = build_task_model(cfg.model, device=str(ctx.device))  # type: ignore[arg-type]
    torch.manual_seed(t.seed)
    model = zoo.build_model(arch)
    if t.init_from:  # a fine-tuning start (a resumed run then loads last.pt over it)
        init, _ = zoo.load(zoo.resolve(t.init_from, task_model=cfg.model.name))
        if init.arch != arch.as_dict():
            raise CheckpointError(
                f"train.init_from={t.init_from} holds the architecture {init.arch}, not arch={arch.as_dict()}; "
                "set arch to the checkpoint's or start from random weights"
            )
        model.load_state_dict(init.state_dict())
    model.to(ctx.device)
    images = train_images(cfg.dataset, count=t.train_images)
    source = feature_source(
        cfg.train.features, images, task_model.features, task_model.fingerprint, CODED_LEVELS,
        cache_root=Path(cfg.paths.cache), cache_max_gb=cfg.train.cache_max_gb, progress=cfg.progress, ctx=ctx,
    )  # fmt: skip
    if ctx.main:
        print(f"training on {len(images)} images of {images.describe()} ({t.features}), {ctx.world_size} process(es)")
    # the crops' P2 offsets are multiples of 8 (P5 = P2 / 8); a crop must hold whole P5 cells
    stream = CropStream(
        source,
        n=len(images),
        seed=t.seed,
        batch=t.batch_size,
        crop=t.crop,
        crops_per_image=1,
        hflip=False,
        pad_multiple=8,
        ctx=ctx,
    )
    rpn_head = frozen_rpn_head(task_model) if t.task_weight > 0 else None
    objective = MsfcObjective(
        model, level_weights=list(t.level_weights), noise=t.noise, rpn_head=rpn_head, task_weight=t.task_weight
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
    scheduler = StepDrop(optimizer, milestones=[int(t.lr_drop_at * t.iterations)], gamma=0.1)
    settings = LoopSettings(
        iterations=t.iterations,
        checkpoint_every=t.checkpoint_every,
        log_every=t.log_every,
        grad_clip=t.grad_clip,
        precision=resolve_precision(str(t.precision), ctx.device),
        desc="msfc",
        progress=cfg.progress,
    )
    identity = {
        "images": images.describe(), "seed": t.seed, "batch_size": t.batch_size, "crop": t.crop,
        "task_model": task_model.fingerprint, "arch": arch.as_dict(),
    }  # fmt: skip
    workdir = Path(t.workdir)
    parts = TrainParts(model=model, objective=objective, optimizer=optimizer, scheduler=scheduler)

    def batches(start: int) -> Iterator[CropBatch]:
        return stream(start, ctx.device)

    result = train_loop(
        parts, batches, settings=settings, ctx=ctx, workdir=workdir, identity=identity, global_batch=t.batch_size
    )
    out = Path(t.output) if t.output else zoo.zoo_path(cfg.model.name)
    if ctx.main:
        meta = {
            "task_model": cfg.model.name,
            "task_model_fingerprint": task_model.fingerprint,
            "train": OmegaConf.to_container(cfg.train, resolve=True, enum_to_str=True),
            "dataset": OmegaConf.to_container(cfg.dataset, resolve=True, enum_to_str=True),
            "processes": ctx.world_size,
            "iterations_done": result.iteration,
        }
        zoo.save(out, model.eval().cpu(), arch, meta=meta)
        if (workdir / "log.csv").is_file():
            shutil.copyfile(workdir / "log.csv", zoo.log_path(out))
        print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and its loss log {zoo.log_path(out)}")
    return out


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train_msfc")
def main(cfg: TrainMsfcConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
