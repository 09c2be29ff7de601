"""Train the embedded default task model on the synthetic train split.

    python -m vcm_eval.vision.train                       # the committed checkpoint's command
    python -m vcm_eval.vision.train train.iterations=300  # shorter

Images are drawn in memory from the synthetic generator by index (the train split is
``train.train_size`` images; the order is a seeded permutation), so the run needs no disk and a
resumed run sees the same batches. ``<workdir>/last.pt`` is written every
``train.checkpoint_every`` iterations (atomically) and picked up on restart. At the end the fp16
weights go to ``train.output``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from vcm_eval import config as _config  # noqa: F401 - registers the schemas
from vcm_eval.config import TrainTaskConfig
from vcm_eval.data.scene import Scene
from vcm_eval.data.synthetic import scene_for, synthetic_spec
from vcm_eval.device import resolve_device
from vcm_eval.resources import CONF_DIR
from vcm_eval.utils.training import append_log_row, load_state, save_state
from vcm_eval.vision.torchvision_rcnn import RcnnConfig, build_rcnn, save_checkpoint


def scene_target(scene: Scene, *, flip: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Image tensor [3, H, W] in 0..1 and torchvision's target dict (boxes xyxy, labels, masks)."""
    image = scene.image[:, ::-1] if flip else scene.image
    masks = np.stack([m[:, ::-1] if flip else m for m in scene.instance_masks]) if scene.instance_masks else np.zeros(
        (0, *scene.image.shape[:2]), bool
    )
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([c + 1 for c in scene.instance_classes], dtype=torch.int64),
        "masks": torch.from_numpy(masks.astype(np.uint8)),
    }
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0), target


class TrainStream(torch.utils.data.Dataset):
    """Sample number k of the run -> (image, target); deterministic in (seed, k)."""

    def __init__(self, cfg: TrainTaskConfig) -> None:
        self.spec = synthetic_spec(cfg.dataset)
        self.settings = cfg.train
        self.order = np.random.default_rng(cfg.train.seed).permutation(cfg.train.train_size)

    def __len__(self) -> int:
        return self.settings.iterations * self.settings.batch_size

    def __getitem__(self, k: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        index = int(self.order[k % len(self.order)])
        flip = self.settings.hflip and bool(np.random.default_rng([self.settings.seed, k]).integers(2))
        return scene_target(scene_for(self.spec, "train", index), flip=flip)


def lr_factor(it: int, *, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to zero."""
    if it < warmup:
        return (it + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (it - warmup) / max(1, total - warmup)))


def train(cfg: TrainTaskConfig) -> Path:
    """Train (or resume) and write the fp16 checkpoint; returns its path."""
    torch.set_num_threads(cfg.threads)
    settings = cfg.train
    model_cfg: RcnnConfig = OmegaConf.to_object(cfg.model)  # type: ignore[assignment]
    device = resolve_device(cfg.device)
    torch.manual_seed(settings.seed)
    model = build_rcnn(model_cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, warmup=settings.warmup, total=settings.iterations)
    )
    workdir = Path(settings.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    last = workdir / "last.pt"
    start = 0
    state = load_state(last)
    if state is not None:
        model.load_state_dict({k: v.to(device) for k, v in state["model"].items()})
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["iteration"])
        print(f"resuming from {last} at iteration {start}")
    stream = TrainStream(cfg)
    bs = settings.batch_size
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(stream, range(start * bs, len(stream))),
        batch_size=bs,
        num_workers=settings.loader_workers,
        collate_fn=lambda batch: tuple(zip(*batch)),
    )
    model.train()
    log_path = workdir / "log.csv"
    t0, skipped = time.time(), 0
    bar = tqdm(loader, initial=start, total=settings.iterations, desc="train task model", disable=not cfg.progress)
    for it, (images, targets) in enumerate(bar, start=start):
        images = [im.to(device) for im in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.autocast_bf16):
            losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        if torch.isfinite(loss) and torch.isfinite(grad_norm):  # type: ignore[arg-type]
            optimizer.step()
        else:  # one bad batch must not turn every weight into NaN
            skipped += 1
            if skipped > settings.max_skipped:
                raise RuntimeError(f"{skipped} non-finite losses/gradients by iteration {it}; lower train.lr")
        scheduler.step()
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        done = it + 1
        if done % 10 == 0:
            append_log_row(
                log_path,
                {"iteration": done, "seconds_this_session": round(time.time() - t0, 1), "skipped": skipped,
                 "lr": scheduler.get_last_lr()[0], "loss": loss.detach(), **{k: v.detach() for k, v in losses.items()}},
            )
        if done % settings.checkpoint_every == 0 or done == settings.iterations:
            save_state(
                last,
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                iteration=done,
            )
    model.eval().cpu()
    out = Path(settings.output)
    meta = {
        "command": "python -m vcm_eval.vision.train " + " ".join(_overrides()),
        "train": OmegaConf.to_container(cfg.train),  # type: ignore[dict-item]
        "dataset": OmegaConf.to_container(cfg.dataset),  # type: ignore[dict-item]
    }
    save_checkpoint(out, model, model_cfg, meta=meta, half=True)
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
