"""Where and in which precision a run computes: seeding, device choice, autocast dtype, and which CPUs
run bf16 natively."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import distributed as D
from .checkpoint import CheckpointError
from .config import TrainConfig

__all__ = ["seed_everything", "worker_init", "resolve_device", "resolve_precision", "cuda_autocast_dtype", "dtype_name",
           "trained_precision",
           "cpu_has_native_bf16", "compile_model"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init(worker_id: int) -> None:
    s = torch.initial_seed() % 2**32  # distinct per worker, derived from the loader's generator
    random.seed(s)
    np.random.seed(s)


def resolve_device(cfg: TrainConfig, info: D.DistInfo | None = None) -> torch.device:
    if cfg.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", info.local_rank if info and info.enabled else torch.cuda.current_device())
        return torch.device("cpu")
    dev = torch.device(cfg.device)
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' requested but this machine has no Apple-silicon GPU (torch.backends.mps); "
                         "use 'cpu'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={cfg.device!r} requested but CUDA is not available on this machine")
    if dev.type == "cuda" and info is not None and info.enabled and info.world_size > 1 and dev.index is not None:
        raise ValueError(f"device={cfg.device!r} under torchrun would put all {info.world_size} processes on GPU "
                         f"{dev.index}; pass --device cuda (each process takes the GPU of its LOCAL_RANK) and choose "
                         "the GPUs with CUDA_VISIBLE_DEVICES")
    if dev.type == "cuda" and info is not None and info.enabled and dev.index is None:
        dev = torch.device("cuda", info.local_rank)
    return dev


def resolve_precision(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype (``None`` = fp32).

    ``auto``: on CUDA bf16 when supported, else fp16; on a CPU bf16 only when it has bf16 instructions
    (:func:`cpu_has_native_bf16`; elsewhere bf16 is emulated and slower), else fp32; on ``mps`` (Apple silicon)
    fp32 (mixed precision is not offered there; the LIF runs the fused PyTorch path, not a compiled kernel).
    The recorded ``precision`` study (notebook 11) checks that bf16 keeps fp32's accuracy.
    """
    p = cfg.precision
    if p == "auto":
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_native_bf16() else None
        if device.type != "cuda":
            return None
        return cuda_autocast_dtype(device)
    if device.type == "mps" and p in ("bf16", "fp16"):
        raise ValueError(f"precision={p!r} on 'mps' is not supported here: Apple-silicon GPUs train in fp32 "
                         "(precision='fp32' or 'auto')")
    if p == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
    if p == "bf16" and device.type == "cuda" and cuda_autocast_dtype(device) != torch.bfloat16:
        cc = ".".join(map(str, torch.cuda.get_device_capability(device)))
        raise ValueError(f"precision='bf16' is not native on this GPU (compute capability {cc} < 8.0: torch would "
                         "emulate it, slowly, and Triton cannot compile bf16 for it); use 'fp16' or 'auto'")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]


def cuda_autocast_dtype(device: torch.device) -> torch.dtype:
    """``precision="auto"`` on a CUDA device: bf16 where the GPU computes it natively (compute capability >= 8.0:
    Ampere, Ada, Hopper, ...), else fp16 with a GradScaler (Volta, Turing). ``torch.cuda.is_bf16_supported()``
    also counts emulation, which would give a V100 or T4 slow bf16 that Triton cannot compile."""
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16


#: ``run.json`` / checkpoint ``autocast_dtype`` -> the ``precision`` value that reproduces it
_DTYPE_TO_PRECISION = {"fp32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def dtype_name(dtype: torch.dtype | None) -> str:
    """How a run records its resolved autocast dtype: ``fp32`` (no autocast), ``bfloat16`` or ``float16``."""
    return "fp32" if dtype is None else str(dtype).replace("torch.", "")


def trained_precision(checkpoint: str | os.PathLike[str], state: dict[str, Any]) -> str:
    """The ``precision`` a checkpoint's run actually trained with (``fp32`` / ``bf16`` / ``fp16``).

    Read from the checkpoint's ``autocast_dtype``; for older checkpoints from the ``run.json`` beside
    it; else the config's explicit precision; else (``auto`` with no record) ``auto`` resolved here.
    """
    recorded = state.get("autocast_dtype")
    if recorded is None:
        try:
            recorded = json.loads((Path(checkpoint).parent / "run.json").read_text()).get("autocast_dtype")
        except (OSError, ValueError, AttributeError):
            recorded = None
    if recorded is not None:
        if recorded not in _DTYPE_TO_PRECISION:
            raise CheckpointError(
                f"checkpoint {checkpoint}: autocast_dtype={recorded!r}; expected one of {sorted(_DTYPE_TO_PRECISION)}"
            )
        return _DTYPE_TO_PRECISION[recorded]
    saved = state["config"].get("precision", "auto")
    return saved if saved in _DTYPE_TO_PRECISION.values() else "auto"



def compile_model(net: nn.Module) -> nn.Module:
    """``torch.compile`` for training with static shapes.

    The last, smaller batch recompiles once instead of tracing symbolic sizes (dynamic shapes fail on CPU in the
    LIF loop: "cannot determine truth value of Relational"). Every layer's LIF call has its own shape, one compiled
    entry each: dynamo's limit of 8 entries per frame is lifted so that no layer falls back to eager.
    """
    import torch._dynamo.config as dynamo_config

    name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"  # older torch
    setattr(dynamo_config, name, max(getattr(dynamo_config, name), 64))
    return torch.compile(net, dynamic=False)  # type: ignore[return-value]


#: oneDNN ISA limits (``ONEDNN_MAX_CPU_ISA``) under which its kernels still use bf16 instructions
_BF16_ISAS = frozenset({"ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                        "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2"})


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 arithmetic (AVX512-BF16 or AMX tiles), as PyTorch detects it, and oneDNN may use
    it: a ``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA`` below ``AVX512_CORE_BF16`` makes oneDNN emulate bf16."""
    limit = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    if limit and limit not in _BF16_ISAS:
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence the getattr fallback
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
