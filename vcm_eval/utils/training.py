"""What every trainer shares: one data-parallel training loop, exact resume, and the CSV loss log.

``train_loop`` runs any model whose training step is "forward a batch to a dict of scalar loss
terms holding ``loss``, back-propagate, step": the fusion codec (rate-distortion,
``vcm_eval.codecs.fusion.train``), the task network (detection losses, ``vcm_eval.vision.train``),
or another feature module, e.g. an MSFC-style fusion/reconstruction pair trained with a feature
MSE and no rate term. A trainer hands over ``TrainParts`` (the model it saves, the ``objective``
module whose ``forward(batch)`` returns the terms, optimizer, scheduler, an optional auxiliary
step) and a batch stream that is a pure function of the iteration; the loop does the rest:

* PyTorch DDP over the launcher's processes (``vcm_eval.utils.distributed``); every rank takes its
  share of each global batch, gradients are averaged, the log shows the global batch's mean;
* mixed precision on the GPU (``torch.autocast`` + ``GradScaler`` for fp16), off on the CPU;
* gradient clipping, and steps with a non-finite loss or gradient skipped (at most ``max_skipped``);
* ``<workdir>/last.pt`` every ``checkpoint_every`` iterations, written atomically by rank 0: model,
  optimizer, aux optimizer, scheduler, grad scaler, the iteration and samples seen (the data
  position: batches are a function of the iteration), what the data stream was (``identity``) and
  the RNG states of every rank (python, numpy, torch, CUDA). A restarted command resumes from it to
  the same weights, bit for bit on the CPU, as a run that was never stopped;
* rank 0 appends the terms to ``<workdir>/log.csv`` every ``log_every`` iterations (rows after the
  resumed iteration are dropped first, so a resumed log has no repeats) and shows a tqdm bar.
"""

from __future__ import annotations

import csv
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vcm_eval.errors import ConfigError
from vcm_eval.utils.distributed import Dist, gather_objects, mean_over_ranks, wrap_ddp

STATE_FORMAT = "vcm_eval.train_state/2"


def save_state(path: Path, **state: Any) -> None:
    """Write a training state atomically (a kill mid-write leaves the previous state intact)."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_state(path: Path) -> dict[str, Any] | None:
    """The saved state (weights-only unpickling), or None when there is none yet."""
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def append_log_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row to a CSV log, each value under its own column.

    Rows need not have the same columns (a validation row adds ``val_loss``): a new column
    rewrites the file once, atomically, with the wider header (earlier rows empty there); a
    missing one is left empty.
    """
    values = {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in row.items()}
    header: list[str] = []
    if path.is_file():
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    wider = header + [k for k in values if k not in header]
    if header and wider != header:
        with open(path, newline="") as f:
            old_rows = list(csv.DictReader(f))
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=wider)
            writer.writeheader()
            writer.writerows(old_rows)
        tmp.replace(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=wider)
        if not header:
            writer.writeheader()
        writer.writerow(values)


def trim_log(path: Path, upto: int) -> None:
    """Keep the header and the rows of iterations <= ``upto`` (what a resumed run has not redone)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if r and float(r[0]) <= upto]
    if len(kept) != len(rows):
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)
        tmp.replace(path)


def resolve_precision(setting: str, device: torch.device) -> str:
    """``auto`` -> ``fp16`` on CUDA (autocast + GradScaler), ``off`` on the CPU; others as given.

    Raises:
        ConfigError: ``fp16`` asked for on the CPU.
    """
    if setting == "auto":
        return "fp16" if device.type == "cuda" else "off"
    if setting == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision=fp16 needs a CUDA device; use bf16 or off (or auto) on the CPU")
    if setting not in ("off", "fp16", "bf16"):
        raise ConfigError(f"train.precision={setting!r} is unknown; use auto, off, fp16 or bf16")
    return setting


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states (python, numpy, torch CPU, CUDA) as weights-only-loadable values."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what ``rng_state`` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass
class LoopSettings:
    """How ``train_loop`` runs (each trainer fills it from its ``train`` settings).

    Attributes:
        iterations: total iterations (a resumed run continues up to it).
        checkpoint_every: iterations between ``last.pt`` writes (and at the end).
        log_every: iterations between log rows (terms averaged over the ranks).
        grad_clip: max global gradient norm (0 = no clipping).
        max_skipped: steps with a non-finite loss or gradient that may be skipped before the run
            fails (fp16's GradScaler skips overflowing steps itself; those are not counted).
        precision: ``off``, ``fp16`` or ``bf16`` (``resolve_precision``).
        val_every: iterations between validations (0 = none); a ``ReduceLROnPlateau`` scheduler
            steps on the validation loss, any other scheduler every iteration.
        min_lr: stop (and save) once the learning rate has fallen to this (0 = never).
        desc: progress bar title.
        progress: show the bar (rank 0 only).
    """

    iterations: int
    checkpoint_every: int
    log_every: int = 10
    grad_clip: float = 0.0
    max_skipped: int = 0
    precision: str = "off"
    val_every: int = 0
    min_lr: float = 0.0
    desc: str = "train"
    progress: bool = True


@dataclass
class AuxStep:
    """A second loss with its own optimizer, stepped after the main one (CompressAI's quantile loss)."""

    loss: Callable[[], torch.Tensor]
    optimizer: torch.optim.Optimizer


@dataclass
class TrainParts:
    """What a trainer hands to ``train_loop``.

    Attributes:
        model: the module that is trained and saved (its ``state_dict`` goes into ``last.pt``).
        objective: module whose ``forward(batch)`` returns ``{"loss": ..., other scalar terms}``; it
            holds ``model`` (and frozen helpers such as a task network's RPN head). DDP wraps it.
        optimizer: steps on the main loss.
        scheduler: a torch LR scheduler (stepped every iteration) or ``ReduceLROnPlateau`` (stepped
            with ``validate``'s loss); None for a constant rate.
        aux: an auxiliary loss and optimizer, or None.
        ddp_ignore: ``objective`` parameter names DDP leaves alone (updated identically on every
            rank without communication).
        find_unused: some parameters may get no gradient in a step (DDP then searches the graph).
        validate: called every ``val_every`` iterations on every rank; returns the validation loss
            (the same on every rank).
        clip_params: what ``grad_clip`` clips (default: the optimizer's parameters).
    """

    model: nn.Module
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any = None
    aux: AuxStep | None = None
    ddp_ignore: tuple[str, ...] = ()
    find_unused: bool = False
    validate: Callable[[], float] | None = None
    clip_params: list[torch.Tensor] | None = None


@dataclass
class LoopResult:
    """Where ``train_loop`` ended: the iteration reached and whether a ``min_lr`` stop ended it early."""

    iteration: int
    stopped_early: bool


def _plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _restore(
    state: dict[str, Any],
    parts: TrainParts,
    scaler: torch.amp.GradScaler,
    ctx: Dist,
    identity: dict[str, Any],
    path: Path,
) -> tuple[int, int, bool]:
    """Load a saved state into the parts; returns (iteration, skipped steps, stopped early)."""
    if state.get("format") != STATE_FORMAT:
        raise ConfigError(
            f"{path} was written by an older trainer (no RNG states or data position, so it cannot resume exactly); "
            "move it away to start afresh, or set train.workdir to a new folder"
        )
    if state["world_size"] != ctx.world_size:
        raise ConfigError(
            f"{path} was written by {state['world_size']} processes, this run has {ctx.world_size}; resume with "
            f"{state['world_size']} (the RNG states are per process), or set train.workdir to a new folder"
        )
    changed = {k: (state["identity"].get(k), v) for k, v in identity.items() if state["identity"].get(k) != v}
    if changed:
        detail = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in changed.items())
        raise ConfigError(
            f"{path} was trained on another data stream ({detail}); restore those settings or use a new train.workdir"
        )
    device = ctx.device
    parts.model.load_state_dict({k: v.to(device) for k, v in state["model"].items()})
    parts.optimizer.load_state_dict(state["optimizer"])
    if parts.aux is not None:
        parts.aux.optimizer.load_state_dict(state["aux_optimizer"])
    if parts.scheduler is not None:
        parts.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"][ctx.rank], device)
    return int(state["iteration"]), int(state["skipped"]), bool(state.get("stopped_early", False))


def train_loop(
    parts: TrainParts,
    batches: Callable[[int], Iterable[Any]],
    *,
    settings: LoopSettings,
    ctx: Dist,
    workdir: Path,
    identity: dict[str, Any],
    global_batch: int,
) -> LoopResult:
    """Train (or resume) up to ``settings.iterations``; see the module docstring.

    Args:
        parts: the model, its objective, optimizers and scheduler.
        batches: ``batches(start)`` yields this rank's batches of iterations ``start``,
            ``start + 1``, ... on ``ctx.device`` (a pure function of the iteration, so a resumed run
            sees the batches an uninterrupted one would).
        settings: the loop's knobs.
        ctx: this process's place in the job.
        workdir: holds ``last.pt`` and ``log.csv``.
        identity: what the data stream is (seed, global batch, images, ...); a resume with another
            stream is refused.
        global_batch: samples per iteration over all ranks (the data position is iteration x this).

    Raises:
        ConfigError: a saved state of another job shape or data stream.
        RuntimeError: more than ``max_skipped`` non-finite steps.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    last, log = workdir / "last.pt", workdir / "log.csv"
    device = ctx.device
    scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == "fp16")
    start, skipped, stopped = 0, 0, False
    state = load_state(last)
    if state is not None:
        start, skipped, stopped = _restore(state, parts, scaler, ctx, identity, last)
        if ctx.main:
            print(f"resuming {last} at iteration {start}")
            trim_log(log, start)
    objective = wrap_ddp(parts.objective, ctx, ignore=parts.ddp_ignore, find_unused=parts.find_unused)
    clip_params = parts.clip_params or [p for g in parts.optimizer.param_groups for p in g["params"]]
    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(settings.precision)
    end = start if stopped else settings.iterations
    bar = tqdm(
        total=settings.iterations, initial=start, desc=settings.desc, disable=not (settings.progress and ctx.main)
    )
    t0 = time.time()
    parts.model.train()
    done = start
    for it, batch in zip(range(start, end), batches(start)):
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            terms = objective(batch)
        loss = terms["loss"]
        parts.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(parts.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            clip_params, settings.grad_clip if settings.grad_clip > 0 else math.inf
        )
        if scaler.is_enabled():
            scaler.step(parts.optimizer)  # skips a step whose gradients overflowed, and lowers the scale
            scaler.update()
        elif bool(torch.isfinite(loss.detach())) and bool(torch.isfinite(grad_norm)):
            parts.optimizer.step()
        else:  # one bad batch must not turn every weight into NaN
            skipped += 1
            if skipped > settings.max_skipped:
                raise RuntimeError(
                    f"{skipped} non-finite losses/gradients by iteration {it}; lower train.lr, or check the inputs' "
                    "scale (a task network at random weights gives FPN features of std ~2300: give model.weights, "
                    "or scale model.image_std), or allow train.max_skipped"
                )
        logged = {k: v.detach() for k, v in terms.items()}
        if parts.aux is not None:
            aux_loss = parts.aux.loss()
            parts.aux.optimizer.zero_grad(set_to_none=True)
            aux_loss.backward()
            parts.aux.optimizer.step()
            logged["aux"] = aux_loss.detach()
        if parts.scheduler is not None and not _plateau(parts.scheduler):
            parts.scheduler.step()
        done = it + 1
        bar.update(1)
        row: dict[str, Any] = {}
        if done % settings.log_every == 0:
            means = mean_over_ranks(logged, ctx)
            row = {
                "iteration": done,
                "seconds_this_session": round(time.time() - t0, 1),
                "lr": _lr(parts.optimizer),
                **means,
            }
            bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()})
        if settings.val_every and done % settings.val_every == 0 and parts.validate is not None:
            parts.model.eval()
            with torch.no_grad():
                val_loss = parts.validate()
            parts.model.train()
            if _plateau(parts.scheduler):
                parts.scheduler.step(val_loss)
            row = row or {
                "iteration": done,
                "seconds_this_session": round(time.time() - t0, 1),
                "lr": _lr(parts.optimizer),
            }
            row["val_loss"] = val_loss
            stopped = settings.min_lr > 0 and _lr(parts.optimizer) <= settings.min_lr
        if row and ctx.main:
            append_log_row(log, {**row, "skipped": skipped})
        if done % settings.checkpoint_every == 0 or done == settings.iterations or stopped:
            rngs = gather_objects(rng_state(device), ctx)
            if ctx.main:
                save_state(
                    last,
                    format=STATE_FORMAT,
                    model=parts.model.state_dict(),
                    optimizer=parts.optimizer.state_dict(),
                    aux_optimizer=parts.aux.optimizer.state_dict() if parts.aux is not None else None,
                    scheduler=parts.scheduler.state_dict() if parts.scheduler is not None else None,
                    scaler=scaler.state_dict() if scaler.is_enabled() else None,
                    iteration=done,
                    samples=done * global_batch,
                    skipped=skipped,
                    stopped_early=stopped,
                    world_size=ctx.world_size,
                    identity=identity,
                    rng=rngs,
                )
        if stopped:
            if ctx.main:
                print(
                    f"learning rate {_lr(parts.optimizer):.3g} <= train.min_lr={settings.min_lr} "
                    f"at iteration {done}: stopping"
                )
            break
    bar.close()
    return LoopResult(iteration=done, stopped_early=stopped)
