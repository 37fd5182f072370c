"""``torchrun`` + DDP helpers: :func:`detect` reads the environment, :func:`dta_lib.train.train` joins the process
group (``nccl`` on CUDA, ``gloo`` on CPU). Only rank 0 writes files; metrics are summed across ranks."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job (``enabled`` is False for a plain single-process run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and shows progress bars."""
        return self.rank == 0


def detect() -> DistInfo:
    """Read ``torchrun``'s environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, which defaults to ``RANK``)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo()
    env: dict[str, int] = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        try:
            env[name] = int(os.environ.get(name, os.environ["RANK"]))
        except ValueError:
            raise ValueError(f"environment variable {name} must be an integer, got {os.environ[name]!r}") from None
    rank, world = env["RANK"], env["WORLD_SIZE"]
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistInfo(rank, world, env["LOCAL_RANK"], enabled=world > 1)


def all_reduce_sum(values: Sequence[float], device: torch.device, info: DistInfo) -> list[float]:
    """Sum a few scalars over ranks (identity in a single process)."""
    if not info.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def param_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of the bare ``model`` (not DDP- or ``torch.compile``-wrapped; bytes, in
    state_dict order): equal iff bit-identical."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()

