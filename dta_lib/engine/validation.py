"""Checks made before a model is built or data read: a checkpoint's fields, and whether a config's model fits
in memory. Errors name the file, the field and what was expected."""
from __future__ import annotations

import os
from typing import Any

import torch

from ..data.registry import MODEL_FIELDS
from .build import DataInfo, build_model, get_data_info
from .checkpoint import CheckpointError
from .config import TrainConfig

__all__ = ["validate_checkpoint_fields", "check_model_size"]


def validate_checkpoint_fields(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Check a checkpoint's fields before a model is built or data read; errors name the file and the field."""
    def bad(field_: str, why: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path}: field {field_!r} {why}")

    for name in ("epoch", "best_epoch"):
        v = state.get(name, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise bad(name, f"must be an integer >= 0, got {v!r}")
    if "best_acc" in state and (isinstance(state["best_acc"], bool) or not isinstance(state["best_acc"], (int, float))):
        raise bad("best_acc", f"must be a number, got {state['best_acc']!r}")
    if not isinstance(state.get("config"), dict):
        raise bad("config", f"must be a dict, got {type(state.get('config')).__name__}")
    try:
        cfg = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError) as e:
        raise bad("config", f"is invalid: {e}") from None
    if not isinstance(state.get("history", []), list):
        raise bad("history", "must be a list of per-epoch records")
    if "data_info" in state:
        di = state["data_info"]
        names = set(MODEL_FIELDS)
        if not isinstance(di, dict) or set(di) != names:
            got = sorted(di) if isinstance(di, dict) else type(di).__name__
            raise bad("data_info", f"must have exactly the keys {sorted(names)}, got {got}")
        for k in ("num_classes", "in_channels", "image_size", "default_time_steps"):
            if isinstance(di[k], bool) or not isinstance(di[k], int) or not 1 <= di[k] <= 1_000_000:
                raise bad(f"data_info.{k}", f"must be an integer in 1..1000000, got {di[k]!r}")
        info = DataInfo(**di)
    else:
        info = get_data_info(cfg.dataset)
    try:
        check_model_size(cfg, info)
    except ValueError as e:
        raise bad("config", str(e)) from None


def _memory_bytes() -> int:
    """The largest memory a run could use: the biggest CUDA device's, else this machine's physical RAM."""
    if torch.cuda.is_available():
        return max(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**40


def check_model_size(cfg: TrainConfig, info: DataInfo, budget: int | None = None) -> int:
    """Parameters of ``cfg``'s model, counted on the meta device (nothing is allocated); ``ValueError`` when its
    training state (weights + gradients + momentum, fp32) alone exceeds ``budget`` (default: the machine's RAM,
    or the largest GPU's memory)."""
    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in build_model(cfg, info).parameters())
    except RuntimeError as e:  # a size torch cannot even represent
        raise ValueError(f"width={cfg.width}, time_steps={cfg.time_steps} give a model too large to build "
                         f"({str(e).splitlines()[0][:120]}); choose a smaller --width or -T") from None
    need, have = 3 * 4 * n, budget if budget is not None else _memory_bytes()
    if need > have:
        raise ValueError(
            f"width={cfg.width}, time_steps={cfg.time_steps} give a model of {n:,} parameters: {need / 2**30:.1f} GiB "
            f"for weights, gradients and momentum alone, more than the {have / 2**30:.1f} GiB here. Choose a smaller "
            "--width or -T (T-NA's size grows with (T x channels)^2)"
        )
    return n
