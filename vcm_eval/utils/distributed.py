"""Data-parallel training over processes and machines: ``torch.distributed`` set up from the launcher.

Both training commands run unchanged in one process or in many; the launcher decides:

* ``torchrun --nproc_per_node=G -m vcm_eval.codecs.fusion.train ...`` (one node), or
  ``torchrun --nnodes=N --nproc_per_node=G --rdzv_backend=c10d --rdzv_endpoint=<host>:<port> ...``
  (several): torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``;
* Hydra's submitit launcher on SLURM (``-m hydra/launcher=slurm hydra.launcher.nodes=N
  hydra.launcher.tasks_per_node=G hydra.launcher.gpus_per_node=G``): every SLURM task runs the
  command, and submitit's ``TorchDistributedEnvironment`` turns SLURM's variables into the same ones;
* neither: one process, no process group (world size 1).

The backend follows the device: NCCL on CUDA (process ``LOCAL_RANK`` takes GPU ``LOCAL_RANK``), gloo
on the CPU, so the tests run a real two-process job on a laptop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from vcm_eval.device import resolve_device
from vcm_eval.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """Where this process sits in a data-parallel job.

    Attributes:
        rank: 0..world_size-1 over every node; rank 0 logs, writes checkpoints and exports.
        world_size: number of processes (1 = no process group).
        local_rank: the process's index on its node (picks its GPU).
        device: the torch device this process trains on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """True on the process that logs and writes files."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when a process group joins several processes."""
        return self.world_size > 1


def launch_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) the launcher gave this process; (0, 1, 0) when started alone.

    Raises:
        ConfigError: the variables are inconsistent (a rank outside the world).
    """
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    elif os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        from submitit.helpers import TorchDistributedEnvironment

        env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        rank, world, local = env.rank, env.world_size, env.local_rank
    else:
        return 0, 1, 0
    if not 0 <= rank < world:
        raise ConfigError(
            f"RANK={rank} is outside WORLD_SIZE={world}; start the job with torchrun or the SLURM launcher"
        )
    return rank, world, local


def setup(device_spec: str, *, timeout_min: float = 60.0) -> Dist:
    """Join the launcher's process group (if any) and pick this process's device.

    Args:
        device_spec: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``vcm_eval.device``); under a
            multi-process launch a CUDA device becomes ``cuda:<LOCAL_RANK>``.
        timeout_min: how long a collective may wait for a slow rank (rank 0 extracting a
            feature cache holds the others at a barrier).

    Raises:
        ConfigError: a bad device, or more processes on a node than it has GPUs.
    """
    rank, world, local = launch_env()
    device = resolve_device(device_spec)
    if device.type == "cuda" and world > 1:
        count = torch.cuda.device_count()
        if local >= count > 1:  # one GPU seen per process (SLURM's binding): every process takes cuda:0
            raise ConfigError(
                f"LOCAL_RANK={local} but this node has {count} GPUs; start at most {count} processes per node"
            )
        device = torch.device("cuda", local % count)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(minutes=timeout_min))
    return Dist(rank=rank, world_size=world, local_rank=local, device=device)


def teardown(ctx: Dist) -> None:
    """Leave the process group (a no-op for one process)."""
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed(device_spec: str, *, timeout_min: float = 60.0) -> Iterator[Dist]:
    """``setup`` ... ``teardown`` around a training run, also when it raises."""
    ctx = setup(device_spec, timeout_min=timeout_min)
    try:
        yield ctx
    finally:
        teardown(ctx)


def barrier(ctx: Dist) -> None:
    """Wait for every rank (no-op for one process)."""
    if ctx.active:
        dist.barrier()


def mean_over_ranks(values: Mapping[str, torch.Tensor | float], ctx: Dist) -> dict[str, float]:
    """Every value averaged over the ranks: what the log shows for the whole (global) batch.

    Each rank holds the mean over its equal share of the batch, so the mean of the ranks' values is
    the mean over the global batch. Every rank must call it at the same iteration.
    """
    names = list(values)
    flat = torch.tensor([float(values[k]) for k in names], dtype=torch.float64, device=ctx.device)
    if ctx.active:
        dist.all_reduce(flat)
        flat /= ctx.world_size
    return dict(zip(names, flat.tolist()))


def gather_objects(obj: Any, ctx: Dist) -> list[Any]:
    """``obj`` of every rank, in rank order, on every rank (pickled: keep it small)."""
    if not ctx.active:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: Dist) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap_ddp(module: nn.Module, ctx: Dist, *, ignore: Sequence[str] = (), find_unused: bool = False) -> nn.Module:
    """``module`` in PyTorch's ``DistributedDataParallel`` (gradients averaged over ranks), or itself alone.

    Args:
        module: whose ``forward`` runs the training step (its gradients are synchronised).
        ctx: the job.
        ignore: parameter names DDP must leave alone: parameters every rank updates identically
            without communication (CompressAI's entropy-bottleneck quantiles, whose aux loss does not
            depend on the data).
        find_unused: let a step leave some parameters without gradients (a detector's mask head on
            a batch without masks).
    """
    if not ctx.active:
        return module
    if ignore:
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, list(ignore))
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=find_unused)
