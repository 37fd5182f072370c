"""What a training run returns (:class:`TrainResult`) and the error it stops with when the loss stops being finite."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import TrainConfig

__all__ = [
    "NonFiniteLossError",
    "TrainResult",
]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """Outcome of a run: accuracies in percent, the per-epoch history and where files went."""

    best_acc: float
    best_epoch: int
    final_acc: float
    epochs: int
    history: list[dict[str, Any]]
    wall_seconds: float
    out: Path | None
    config: TrainConfig
    param_digests: list[str] = field(default_factory=list)
