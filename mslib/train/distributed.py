"""PyTorch DDP helpers: start from ``torchrun``'s environment, shard loaders, reduce numbers.

``torchrun --nproc_per_node=N -m mslib train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` for each process.
:func:`init_from_env` starts the process group from them (NCCL for CUDA, Gloo for the
CPU) and does nothing in a plain single process, so the same code runs both ways.
Everything else here is a no-op when no process group is running.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

__all__ = [
    "env_world",
    "init_from_env",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main",
    "barrier",
    "all_reduce_sum",
    "all_gather_object",
    "broadcast_buffers",
    "distributed_train_loader",
    "shard_loader",
    "cleanup",
]


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the environment (``(0, 1, 0)`` outside torchrun)."""
    try:
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (they are set by torchrun)") from exc
    return rank, world, local


def init_from_env(device: torch.device | str | None = None) -> bool:
    """Start the process group if launched by torchrun with ``WORLD_SIZE > 1``; return True if this call started it.

    The backend is NCCL when ``device`` is CUDA (or, with no device, when CUDA is
    available) and Gloo otherwise. On CUDA the process's device becomes ``cuda:LOCAL_RANK``.
    """
    rank, world, local = env_world()
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this PyTorch build")
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise RuntimeError("WORLD_SIZE > 1 but MASTER_ADDR/MASTER_PORT are not set; launch with torchrun")
    dev_type = (
        torch.device(device).type if device not in (None, "auto") else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    backend = "nccl" if dev_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that logs, shows progress and writes files."""
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` (any device) over all processes; returns a new tensor on the input's device."""
    if not is_distributed():
        return values.clone()
    t = values.detach().to(_collective_device(), torch.float64).clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.to(values.device, values.dtype if values.dtype.is_floating_point else torch.float64)


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj_rank0, obj_rank1, ...]`` (just ``[obj]`` in a single process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (e.g. BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the *start* of each forward, so after the last training step
    each rank's running statistics differ slightly; call this before evaluating or saving.
    """
    if not is_distributed():
        return
    for b in module.buffers():
        if b.is_floating_point() or b.dtype in (torch.int64, torch.int32):
            tmp = b.detach().to(_collective_device())
            dist.broadcast(tmp, src)
            b.data.copy_(tmp.to(b.device))


def _loader_kwargs(loader: DataLoader) -> dict:
    kw = dict(
        batch_size=loader.batch_size,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
    )
    if loader.num_workers > 0:
        kw.update(persistent_workers=loader.persistent_workers, prefetch_factor=loader.prefetch_factor)
    return kw


def distributed_train_loader(loader: DataLoader, seed: int = 0) -> DataLoader:
    """The same loader with a ``DistributedSampler`` (shuffling iff ``loader`` shuffled), unless it already has one.

    A loader with a custom batch sampler is sharded by ``batch_sampler.shard(rank, world)``.
    """
    if not is_distributed() or isinstance(loader.sampler, DistributedSampler):
        return loader
    if loader.batch_size is None:
        shard = getattr(loader.batch_sampler, "shard", None)
        if callable(shard):  # e.g. mslib.data.TwoStreamBatchSampler: each rank draws its own share of every batch
            kw = _loader_kwargs(loader)
            for k in ("batch_size", "drop_last"):
                kw.pop(k)
            return DataLoader(loader.dataset, batch_sampler=shard(get_rank(), get_world_size()), **kw)
        raise ValueError(
            "DDP needs a DataLoader built with batch_size, a custom batch_sampler with a "
            "shard(rank, world) method, or a DataLoader that already uses a DistributedSampler"
        )
    shuffle = isinstance(loader.sampler, RandomSampler)
    sampler = DistributedSampler(loader.dataset, shuffle=shuffle, seed=seed, drop_last=loader.drop_last)
    return DataLoader(loader.dataset, sampler=sampler, **_loader_kwargs(loader))


def shard_loader(loader: DataLoader) -> tuple[DataLoader, bool]:
    """``(loader, sharded)``: this rank's evaluation shard, items ``rank, rank + world, ...``.

    No padding, so every item counts exactly once once the per-rank sums are added up. A
    loader that already has a ``DistributedSampler`` is used as it is (its padding repeats
    a few items); one with a custom batch sampler is not sharded (``sharded=False``: every
    rank evaluates everything, which is correct, only slower).
    """
    if not is_distributed():
        return loader, False
    if isinstance(loader.sampler, DistributedSampler):
        return loader, True
    if loader.batch_size is None:
        return loader, False
    idx = list(range(get_rank(), len(loader.dataset), get_world_size()))
    kw = _loader_kwargs(loader)
    kw["drop_last"] = False
    return DataLoader(Subset(loader.dataset, idx), shuffle=False, **kw), True


def cleanup() -> None:
    """Destroy the process group if one is running."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
