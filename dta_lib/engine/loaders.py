"""The training and test loaders of a run: one shuffling generator (checkpointed, so a resumed run sees the same
order), per-rank shards under DDP, and a full last training batch unless the set is smaller than one batch."""
from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Subset,
)

from . import distributed as D
from .config import TrainConfig
from .device import worker_init

__all__ = ["make_loaders"]


def make_loaders(cfg: TrainConfig, train_ds: Dataset, test_ds: Dataset, dist: D.DistInfo, device: torch.device,
                 generator: torch.Generator) -> tuple[Any, DataLoader, DataLoader]:
    """``(train_sampler, train_loader, test_loader)``; the test batch is twice the training batch.

    ``cfg.workers=None`` (the default) means 0 on a CPU (the cores train) and, on CUDA, up to 8 worker processes
    per rank (the CPU cores shared among the ranks), with pinned memory. Workers are started anew each epoch: a
    persistent pool would draw its seeds from the shuffling generator once per process, so a resumed run would
    see another data order than the uninterrupted one."""
    pin = device.type == "cuda"
    workers = cfg.workers
    if workers is None:
        workers = min(8, max(1, (os.cpu_count() or 2) // max(dist.world_size, 1) - 1)) if pin else 0
    if dist.enabled:
        sampler: Any = DistributedSampler(train_ds, dist.world_size, dist.rank, shuffle=True, seed=cfg.seed,
                                          drop_last=True)
    else:
        sampler = RandomSampler(train_ds, generator=generator)  # type: ignore[arg-type]
    n_train = len(train_ds) // dist.world_size  # type: ignore[arg-type]
    train_loader = DataLoader(
        train_ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers,
        pin_memory=pin, drop_last=n_train > cfg.batch_size, worker_init_fn=worker_init, generator=generator,
    )
    eval_ds = Subset(test_ds, D.shard_indices(len(test_ds), dist)) if dist.enabled else test_ds  # type: ignore[arg-type]
    test_loader = DataLoader(
        eval_ds, batch_size=cfg.batch_size * 2, shuffle=False, num_workers=workers, pin_memory=pin,
        worker_init_fn=worker_init,
    )
    return sampler, train_loader, test_loader
