"""A trainer's state as a checkpoint dict and back: what makes ``--resume`` continue a run exactly."""
from __future__ import annotations

from typing import Any

import torch

from .build import model_fields
from .checkpoint import CheckpointError, capture_rng_state, restore_rng_state
from .device import dtype_name

__all__ = ["trainer_state", "load_trainer_state"]


def trainer_state(trainer: Any, epoch: int) -> dict[str, Any]:
    """What ``last.pt`` holds after ``epoch`` (collective under DDP: every rank takes part)."""
    rng = capture_rng_state(trainer.loader_gen)
    rngs: list[Any] = [rng]
    if trainer.dist.enabled:
        rngs = [None] * trainer.dist.world_size
        torch.distributed.all_gather_object(rngs, rng)
    return {
        "epoch": epoch,
        "model": trainer.model.state_dict(),
        "optimizer": trainer.opt.state_dict(),
        "scheduler": trainer.sched.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "best_acc": trainer.best_acc,
        "best_epoch": trainer.best_epoch,
        "config": trainer.cfg.to_dict(),
        "history": trainer.history,
        "rng": rngs,
        "data_info": model_fields(trainer.info),
        "world_size": trainer.dist.world_size,
        "autocast_dtype": dtype_name(trainer.amp_dtype),
        "wall_seconds": trainer._wall(),
    }


def load_trainer_state(trainer: Any, state: dict[str, Any]) -> None:
    """Restore a :class:`~dta_lib.engine.trainer.Trainer` from its ``last.pt`` dict (model, optimizer, scheduler,
    scaler, best epoch, history, this rank's RNG streams)."""
    try:
        trainer.model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {trainer.out}/last.pt does not fit the model: {str(e)[:300]}") from None
    trainer.opt.load_state_dict(state["optimizer"])
    trainer.sched.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.start_epoch = int(state["epoch"]) + 1
    trainer.best_acc, trainer.best_epoch = float(state["best_acc"]), int(state["best_epoch"])
    trainer.history = list(state["history"])
    rngs = state["rng"]
    mine = rngs[trainer.dist.rank] if len(rngs) == trainer.dist.world_size else rngs[0]
    restore_rng_state(mine, trainer.loader_gen)
