"""The training side of the library, top to bottom: the config (recipes, presets, the fields the CLI is generated
from), the device and precision policy, what a run records, building data and model, validation where input
enters, loaders, evaluation, the resumable trainer state, and the training loop itself (:func:`train`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import random
import re
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset, TensorDataset
from tqdm.auto import tqdm

from . import distributed as D
from .atomic import atomic_write_text
from .checkpoint import (
    CheckpointError, HOLDER_FILE, LOCK_FILE, METRICS_FILE, RunLock, capture_rng_state, check_out_path,
    check_run_folder, clean_temp_files, copy_checkpoint, load_checkpoint, repair, restore_rng_state, save_checkpoint,
    write_metrics,
)
from .data.registry import DatasetInfo, MODEL_FIELDS, RESOLVED_ROOTS, data_provenance, dataset_info
from .models import MSResNet, ms_resnet18, ms_resnet34
from .paths import CHECKOUT
from .snn.kernels import lif_backend_name
from .snn.neuron import LIF
from .snn.surrogate import SURROGATES

__all__ = [
    "TrainConfig",
    "RECIPES",
    "PRESETS",
    "SYNTHETIC_DATASETS",
    "ATTENTIONS",
    "PRECISIONS",
    "make_config",
    "RUN_FREE_FIELDS",
    "PROBE_FIELDS",
    "config_diff",
    "known_datasets",
    "seed_everything",
    "worker_init",
    "resolve_device",
    "resolve_precision",
    "cuda_autocast_dtype",
    "dtype_name",
    "trained_precision",
    "cpu_has_native_bf16",
    "compile_model",
    "run_metadata",
    "git",
    "git_commit",
    "git_dirty",
    "cpu_model",
    "DataInfo",
    "model_fields",
    "synthetic_datasets",
    "get_data_info",
    "build_data",
    "build_model",
    "infer_info",
    "validate_checkpoint_fields",
    "check_model_size",
    "make_loaders",
    "evaluate",
    "evaluate_model",
    "load_model",
    "layer_group",
    "trainer_state",
    "load_trainer_state",
    "NonFiniteLossError",
    "TrainResult",
    "Trainer",
    "train",
]


# ----------------------------------------------------------------------------------------------------
# config: Run configuration: the release's per-dataset training recipes and the size presets.
#
# A :class:`TrainConfig` is a flat, JSON-serialisable description of one training run.
# :func:`make_config` builds one from a named recipe (``cifar10``, ``cifar100``,
# ``imagenet``, ``cifar10-dvs``, ``fashion-mnist``, ``fashion-mnist-dvs``; the first four
# are the reference release's recipes, ``docs/reference.md`` "Training recipes") and a
# size preset:
#
# - ``paper``: the recipe unchanged (needs a GPU: full data, full width, 200-1000 epochs);
# - ``cpu``: a laptop-sized run (1,000 training images, width 1/8, 3 epochs; minutes on 2 cores);
# - ``smoke``: a CI-sized run (>= 3 epochs on a few hundred images, width 1/16);
# - ``study``: the full Fashion-MNIST (60,000 / 10,000), width 1/8, 8 epochs, fp32, no mixing: models that
#   learn (the headline DTA vs no-attention runs; about 1.5-2 hours per run on one core);
# - ``study-10k``: a fixed class-balanced 10,000-image training subset, the full 10,000-image test set, width 1/8,
#   3 epochs, fp32, no mixing: the multi-seed studies (ablation, time steps, surrogate width, DVS), sized so
#   that a variant's seed std is about a point (docs/experiments.md has the measured numbers).
#
# The two ``study`` presets turn CutMix / MixUp off: on schedules of a few epochs they only slow learning down.
# They train in fp32 with ``channels_last`` (fastest fp32 layout measured here) so that a study can be continued
# on any CPU (bf16 is emulated, ~10x slower, on CPUs without AVX512-BF16/AMX).
#
# Explicit keyword overrides win over the preset, which wins over the recipe.

ATTENTIONS = ("none", "txa", "tna", "dta")
#: largest learning rate accepted (SGD with momentum diverges far below this; 1e300 is a typo, not a recipe)
MAX_LR = 100.0
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ARCHS = ("ms_resnet18", "ms_resnet34")
#: datasets generated in memory by :func:`dta_lib.train.synthetic_datasets` (tests, CI, DDP checks)
SYNTHETIC_DATASETS = ("synthetic", "synthetic-dvs")

#: what identifies a run: every config field except these, which do not change what it computes (where the data
#: is read from, progress bars, loader workers and threads, the device request). A run may be resumed, and a
#: finished run reused, with them changed.
RUN_FREE_FIELDS = frozenset({"progress", "workers", "threads", "data_root", "download", "device"})
#: probes that add records to ``metrics.jsonl`` without changing the weights: a run's trained model answers for a
#: config that differs only in these (and :data:`RUN_FREE_FIELDS`)
PROBE_FIELDS = frozenset({"record_grad_norms", "record_firing_rates"})


def config_diff(saved: dict[str, Any], cfg: "TrainConfig", free: frozenset[str] = RUN_FREE_FIELDS) -> dict[str, tuple[Any, Any]]:
    """Fields of ``cfg`` (outside ``free``) where a recorded config dict differs: ``{name: (saved, now)}``."""
    now = cfg.to_dict()
    return {k: (saved.get(k), v) for k, v in now.items() if k not in free and saved.get(k) != v}


def _f(default: Any, help: str, group: str = "run", choices: tuple[str, ...] | None = None,
       flags: tuple[str, ...] | None = None) -> Any:
    """A config field with what the command line needs: its help, its group, its choices, its flags (default
    ``--name-with-dashes``; a flag for a field that defaults to True turns it off). ``python -m dta_lib train``
    generates its options from these (:func:`dta_lib.__main__.add_config_arguments`): a new field needs no other edit."""
    return dataclasses.field(default=default, metadata={"help": help, "group": group, "choices": choices,
                                                        "flags": flags})


@dataclass
class TrainConfig:
    """Everything that defines a training run (BPTT, SGD + cosine annealing, paper Sec. 4).

    ``time_steps`` is ``T`` (paper Eq. 1); ``surrogate_width`` is the triangle's
    half-width (paper Eq. 5, the summary's alpha; the release uses 1.0).
    ``subset`` / ``test_subset`` cap the number of training / test samples (a fixed,
    seed-independent class-balanced subset, so runs of different seeds see the same images).
    ``threads`` sets ``torch.set_num_threads`` for the run (``None``: leave it); on a busy
    2-core machine one thread is often faster for the small CPU-preset models.
    """

    dataset: str = _f("fashion-mnist", "dataset and its training recipe")
    preset: str = _f("paper", "size preset: smoke (CI), cpu (laptop), study / study-10k (hours), paper (GPU)")
    arch: str = _f("ms_resnet18", "backbone (the recipe's: ms_resnet34 for imagenet)", "model", ARCHS)
    attention: str = _f("dta", "attention after the stem", "model", ATTENTIONS)
    time_steps: int = _f(4, "time steps T (paper Eq. 1)", "model", flags=("--time-steps", "-T"))
    width: float = _f(1.0, "channel width multiplier (1.0 = the paper's)", "model")
    surrogate: str = _f("triangle", "surrogate gradient of the spike", "model", tuple(sorted(SURROGATES)))
    surrogate_width: float = _f(1.0, "surrogate width: the triangle's half-width gamma (paper Eq. 5; release 1.0)",
                                "model")
    epochs: int = _f(100, "epochs (cosine annealing of the learning rate to 0 over them)", "optimisation")
    batch_size: int = _f(64, "batch size per process", "optimisation")
    lr: float = _f(0.1, "initial SGD learning rate", "optimisation")
    momentum: float = _f(0.9, "SGD momentum", "optimisation")
    weight_decay: float = _f(5e-5, "SGD weight decay", "optimisation")
    label_smoothing: float = _f(0.0, "label smoothing of the cross-entropy", "optimisation")
    cutmix_alpha: float = _f(0.0, "CutMix Beta(alpha, alpha); 0 = off", "optimisation")
    mixup_alpha: float = _f(0.0, "MixUp Beta(alpha, alpha); 0 = off", "optimisation")
    mix_prob: float = _f(0.0, "probability that a batch is mixed", "optimisation")
    augment: bool = _f(True, "training augmentation (random crop and flip; the event op for event data)", "data")
    subset: int | None = _f(None, "training images (a fixed class-balanced subset; all when unset)", "data")
    test_subset: int | None = _f(None, "test images (a fixed class-balanced subset; all when unset)", "data")
    seed: int = _f(42, "random seed (Python, NumPy, torch, data order), 0..2**32-1")
    workers: int | None = _f(None, "DataLoader worker processes (unset: 0 on a CPU, up to 8 per rank on CUDA)", "data")
    threads: int | None = _f(None, "torch CPU threads for this run (unset: torch's)", "hardware")
    precision: str = _f("auto", "autocast precision. auto: on CUDA bf16 where the GPU has it (capability >= 8.0), else "
                        "fp16 + grad scaler; on a CPU bf16 autocast where it has bf16 instructions (AVX512-BF16 or "
                        "AMX), else fp32; fp32 on mps", "hardware", PRECISIONS)
    channels_last: bool = _f(False, "channels_last memory format", "hardware")
    compile: bool = _f(False, "torch.compile the model (static shapes)", "hardware")
    sync_bn: bool = _f(False, "SyncBatchNorm across DDP processes (CUDA)", "hardware")
    device: str = _f("auto", "auto, cpu, cuda, cuda:N or mps (Apple silicon, fp32)", "hardware")
    deterministic: bool = _f(True, "deterministic kernels on a CPU (--nondeterministic turns them off)", "hardware",
                             flags=("--nondeterministic",))
    data_root: str | None = _f(None, "dataset folder (else $DTA_DATA_ROOT, the offline copies, the download cache)",
                               "data")
    download: bool = _f(False, "allow downloading a missing dataset", "data")
    record_grad_norms: bool = _f(False, "per-layer gradient norms in metrics.jsonl", "recording")
    record_firing_rates: bool = _f(False, "per-LIF firing rates on the test set in metrics.jsonl", "recording")
    progress: bool | None = _f(None, "tqdm progress bars (unset: when stderr is a terminal)", "recording")

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field and what was expected."""
        if self.dataset not in known_datasets():
            raise ValueError(f"unknown dataset {self.dataset!r}; expected one of {sorted(known_datasets())}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; expected one of {sorted(PRESETS)}")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; expected one of {ARCHS}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        _int(self, "time_steps", 1)
        _int(self, "epochs", 1)
        _int(self, "batch_size", 1)
        if self.workers is not None:
            _int(self, "workers", 0)
        _int(self, "seed", 0)
        if self.seed >= 2**32:  # numpy and CUDA reduce seeds modulo 2**32: 2**32 would train exactly as seed 0
            raise ValueError(f"seed must be an integer in 0..{2**32 - 1} (the random generators use 32 bits), "
                             f"got {self.seed!r}")
        for name in ("subset", "test_subset", "threads"):
            if getattr(self, name) is not None:
                _int(self, name, 1)
        _num(self, "width", lo=0.0, lo_open=True)
        _num(self, "surrogate_width", lo=0.0, lo_open=True)
        _num(self, "lr", lo=0.0, lo_open=True, hi=MAX_LR)
        _num(self, "momentum", lo=0.0, hi=1.0)
        _num(self, "weight_decay", lo=0.0)
        _num(self, "label_smoothing", lo=0.0, hi=1.0, hi_open=True)
        _num(self, "cutmix_alpha", lo=0.0)
        _num(self, "mixup_alpha", lo=0.0)
        _num(self, "mix_prob", lo=0.0, hi=1.0)
        if self.mix_prob > 0 and self.cutmix_alpha == 0 and self.mixup_alpha == 0:
            raise ValueError(f"mix_prob={self.mix_prob} needs cutmix_alpha > 0 or mixup_alpha > 0")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", self.device)
        ):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; expected a subset of {sorted(names)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @property
    def mixing(self) -> bool:
        """True when CutMix / MixUp produce soft targets (soft-label cross-entropy)."""
        return self.mix_prob > 0 and (self.cutmix_alpha > 0 or self.mixup_alpha > 0)


def _int(cfg: TrainConfig, name: str, lo: int) -> None:
    v = getattr(cfg, name)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def _num(
    cfg: TrainConfig, name: str, lo: float | None = None, hi: float | None = None,
    lo_open: bool = False, hi_open: bool = False,
) -> None:
    v = getattr(cfg, name)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {v!r}")


_CIFAR = dict(
    arch="ms_resnet18", time_steps=6, epochs=250, batch_size=64, lr=0.1, weight_decay=5e-5,
    cutmix_alpha=1.0, mix_prob=0.5,
)
_DVS = dict(
    arch="ms_resnet18", time_steps=10, epochs=1000, batch_size=64, lr=0.05, weight_decay=0.0,
    mixup_alpha=0.5, mix_prob=0.5, label_smoothing=0.1,
)
#: Per-dataset recipes. cifar10 / cifar100 / imagenet / cifar10-dvs are the release's
#: (docs/reference.md); fashion-mnist(-dvs) are this project's offline stand-ins, using the
#: CIFAR / CIFAR10-DVS recipe with T=4 and fewer epochs (cifar10-emulated-dvs: emulated events of CIFAR10).
RECIPES: dict[str, dict[str, Any]] = {
    "cifar10": dict(_CIFAR),
    "cifar100": dict(_CIFAR),
    "imagenet": dict(
        arch="ms_resnet34", time_steps=6, epochs=200, batch_size=128, lr=0.1, weight_decay=1e-5,
    ),
    "cifar10-dvs": dict(_DVS),
    "fashion-mnist": dict(_CIFAR, time_steps=4, epochs=100),
    "fashion-mnist-dvs": dict(_DVS, epochs=200),
    "cifar10-emulated-dvs": dict(_DVS, epochs=200),
    # in-memory data for tests: no augmentation pipeline, no mixing
    "synthetic": dict(arch="ms_resnet18", time_steps=4, epochs=3, batch_size=32, lr=0.1, weight_decay=5e-5),
    "synthetic-dvs": dict(arch="ms_resnet18", time_steps=4, epochs=3, batch_size=32, lr=0.1, weight_decay=0.0),
}

_STUDY = dict(width=0.125, batch_size=64, mix_prob=0.0, cutmix_alpha=0.0, mixup_alpha=0.0,
              precision="fp32", channels_last=True)
#: Size presets applied on top of a recipe (``time_steps`` always stays the recipe's unless overridden).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(seed=42),
    # CI: a few hundred images, width 1/16, 3 epochs (well under 60 s on 2 cores)
    "smoke": dict(epochs=3, subset=256, test_subset=256, width=0.0625, batch_size=32),
    # laptop: 1,000 real images, width 1/8, 3 epochs of batch 25 (docs/training.md has timings)
    "cpu": dict(epochs=3, subset=1000, test_subset=1000, width=0.125, batch_size=25),
    # studies a researcher can read: models that learn (full data), and enough seeds to say something (10k)
    "study": dict(_STUDY, epochs=8, subset=None, test_subset=None),
    "study-10k": dict(_STUDY, epochs=3, subset=10_000, test_subset=None),
}


def known_datasets() -> set[str]:
    """Names accepted as ``TrainConfig.dataset``: the recipe names."""
    return set(RECIPES)


def make_config(dataset: str, preset: str = "paper", **overrides: Any) -> TrainConfig:
    """Config from ``RECIPES[dataset]``, then ``PRESETS[preset]``, then ``overrides`` (``None`` values ignored).

    >>> make_config("cifar10", "paper").lr
    0.1
    """
    if dataset not in RECIPES:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(RECIPES)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    names = {f.name for f in fields(TrainConfig)}
    bad = sorted(k for k in overrides if k not in names)
    if bad:
        raise ValueError(f"unknown config options {bad}; expected a subset of {sorted(names)}")
    values: dict[str, Any] = {"dataset": dataset, "preset": preset}
    values.update(RECIPES[dataset])
    values.update(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


# ----------------------------------------------------------------------------------------------------
# device: Where and in which precision a run computes: seeding, device choice, autocast dtype, and which CPUs
# run bf16 natively.

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


# ----------------------------------------------------------------------------------------------------
# provenance: What a run records about where it ran (``run.json``'s ``hardware``): CPU, GPU, versions, git commit.

def git(*args: str) -> str | None:
    """``git <args>`` run in the checkout ``dta_lib`` is imported from: stdout, or ``None`` on failure or for an
    installed copy (whose folder may sit inside some unrelated repository)."""
    if CHECKOUT is None:
        return None
    try:
        out = subprocess.run(["git", *args], cwd=CHECKOUT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> str:
    """The commit of the checkout ``dta_lib`` is imported from, ``"unknown"`` for an installed copy."""
    return git("rev-parse", "HEAD") or "unknown"


def git_dirty() -> bool | None:
    """Whether ``dta_lib/`` has uncommitted changes (``None`` outside a checkout)."""
    status = git("status", "--porcelain", "--", "dta_lib")
    return None if status is None else bool(status)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_metadata(device: torch.device, world_size: int) -> dict[str, Any]:
    """Hardware and software of this run (recorded in ``run.json``)."""
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the ATen kernels this run used
        "native_bf16": cpu_has_native_bf16(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "device": str(device),
        "world_size": world_size,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "hostname": platform.node(),
        "command": " ".join(sys.argv),
    }


# ----------------------------------------------------------------------------------------------------
# build: What the engine trains on: dataset metadata for the model, the built-in synthetic sets, and the
# ``(train, test)`` pair a :class:`~dta_lib.train.TrainConfig` names; the model it builds.

#: dataset metadata: the same type as :class:`dta_lib.data.DatasetInfo` (one definition)
DataInfo = DatasetInfo


def model_fields(info: DatasetInfo) -> dict[str, Any]:
    """The fields of ``info`` a model is built from (what a checkpoint records as ``data_info``)."""
    return {k: getattr(info, k) for k in MODEL_FIELDS}


_SYNTH = dict(num_classes=4, image_size=16, n_train=512, n_test=256)


def synthetic_datasets(
    name: str = "synthetic", time_steps: int = 4, n_train: int = _SYNTH["n_train"], n_test: int = _SYNTH["n_test"],
    seed: int = 0,
) -> tuple[TensorDataset, TensorDataset]:
    """Small learnable in-memory datasets for tests and CI (no files, no downloads).

    ``synthetic``: 1x16x16 images, 4 classes, each a fixed random prototype plus noise.
    ``synthetic-dvs``: ``[T, 2, 16, 16]`` 0/1 event frames whose firing probability
    follows a per-class pattern. Fixed by ``seed`` (not the training seed).
    """
    if name not in SYNTHETIC_DATASETS:
        raise ValueError(f"unknown synthetic dataset {name!r}; expected one of {SYNTHETIC_DATASETS}")
    g = torch.Generator().manual_seed(seed)
    k, s = _SYNTH["num_classes"], _SYNTH["image_size"]

    def make(n: int) -> TensorDataset:
        y = torch.arange(n) % k
        y = y[torch.randperm(n, generator=g)]
        if name == "synthetic":
            x = protos[y] + 0.8 * torch.randn(n, 1, s, s, generator=g)
        else:
            p = protos[y].unsqueeze(1).expand(n, time_steps, 2, s, s)
            x = (torch.rand(n, time_steps, 2, s, s, generator=g) < p).float()
        return TensorDataset(x, y)

    if name == "synthetic":
        protos = torch.randn(k, 1, s, s, generator=g)
    else:
        protos = 0.05 + 0.5 * torch.rand(k, 2, s, s, generator=g)
    return make(n_train), make(n_test)


def get_data_info(name: str) -> DataInfo:
    """Dataset metadata: built in for the synthetic sets (identity normalisation), else ``dta_lib.data.dataset_info``."""
    if name in SYNTHETIC_DATASETS:
        channels = 1 if name == "synthetic" else 2
        return DataInfo(name, _SYNTH["num_classes"], channels, _SYNTH["image_size"], 4, name != "synthetic",
                        (0.0,) * channels, (1.0,) * channels)
    return dataset_info(name)


def _first(ds: Dataset, n: int | None) -> Dataset:
    """The first ``n`` samples (synthetic sets are already shuffled and class-balanced)."""
    return ds if n is None or n >= len(ds) else Subset(ds, range(n))  # type: ignore[arg-type]


def build_data(cfg: TrainConfig, train: bool = True) -> tuple[Dataset | None, Dataset, DataInfo]:
    """``(train_ds, test_ds, info)`` for ``cfg``, with ``subset`` / ``test_subset`` applied
    (class-balanced, seed-independent: every seed and variant sees the same images).

    ``train=False`` drops the training set (returns ``None`` for it)."""
    info = get_data_info(cfg.dataset)
    if cfg.dataset in SYNTHETIC_DATASETS:
        train_ds, test_ds = synthetic_datasets(cfg.dataset, cfg.time_steps)
        train_ds, test_ds = _first(train_ds, cfg.subset), _first(test_ds, cfg.test_subset)
    else:
        from .data import build_datasets

        train_ds, test_ds = build_datasets(
            cfg.dataset, root=cfg.data_root, time_steps=cfg.time_steps if info.is_event else None,
            download=cfg.download, train_transform=cfg.augment, subset=cfg.subset, test_subset=cfg.test_subset,
        )
    return (train_ds if train else None), test_ds, info


def build_model(cfg: TrainConfig, info: DataInfo) -> MSResNet:
    """MS-ResNet-18 (or -34 for ImageNet) with ``cfg.attention`` after the stem."""
    builder = ms_resnet34 if cfg.arch == "ms_resnet34" else ms_resnet18
    return builder(
        num_classes=info.num_classes, time_steps=cfg.time_steps, attention=cfg.attention,
        in_channels=info.in_channels, width=cfg.width, surrogate=cfg.surrogate,
        surrogate_width=cfg.surrogate_width,
    )


def infer_info(cfg: TrainConfig, ds: Dataset) -> DataInfo:
    """DataInfo for user-supplied datasets: shape from a sample, classes from the labels."""
    x, _ = ds[0]
    if isinstance(ds, TensorDataset):
        labels = ds.tensors[1].tolist()
    elif hasattr(ds, "targets"):
        labels = [int(t) for t in ds.targets]  # type: ignore[attr-defined]
    else:
        labels = [int(ds[i][1]) for i in range(len(ds))]  # type: ignore[arg-type]
    event = x.dim() == 4
    channels = int(x.shape[-3])
    return DataInfo("custom", max(labels) + 1, channels, int(x.shape[-1]), cfg.time_steps, event, (0.0,) * channels,
                    (1.0,) * channels)


# ----------------------------------------------------------------------------------------------------
# validation: Checks made before a model is built or data read: a checkpoint's fields, and whether a config's model fits
# in memory. Errors name the file, the field and what was expected.

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


# ----------------------------------------------------------------------------------------------------
# loaders: The training and test loaders of a run: one shuffling generator (checkpointed, so a resumed run sees the same
# order), per-rank shards under DDP, and a full last training batch unless the set is smaller than one batch.

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


# ----------------------------------------------------------------------------------------------------
# evaluation: Evaluation: accuracy and loss of the time-averaged logits, of a model in memory or of a checkpoint.

def layer_group(name: str) -> str:
    """Parameter name -> layer label: ``stem``, ``dta``, ``layer2.1`` (block), ``fc``."""
    parts = name.split(".")
    if parts[0].startswith("stem"):
        return "stem"
    if parts[0].startswith("layer") and len(parts) > 2:
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


class _FiringProbe:
    """Mean firing rate of every LIF module (spikes per neuron per step) over a pass."""

    def __init__(self, model: nn.Module) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.handles = [
            m.register_forward_hook(self._hook(name)) for name, m in model.named_modules() if isinstance(m, LIF)
        ]

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _inp: Any, out: Tensor) -> None:
            self.sums[name] = self.sums.get(name, 0.0) + float(out.detach().float().sum())
            self.counts[name] = self.counts.get(name, 0) + out.numel()

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def evaluate_model(
    model: nn.Module, loader: DataLoader, device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    dist_info: D.DistInfo | None = None, probe_model: nn.Module | None = None,
    progress: Callable[[Any, int], Any] | None = None,
) -> dict[str, Any]:
    """Top-1 accuracy (percent) and mean cross-entropy of the time-averaged logits.

    Samples whose input or logits hold NaN or inf are counted: the LIF's threshold compare turns NaN into "no
    spike", so such inputs give finite, confident logits. When there are any, the record has ``nonfinite_samples``
    and a :class:`UserWarning` names the count (the accuracy still counts them, as predicted)."""
    info = dist_info or D.DistInfo()
    model.eval()
    probe = _FiringProbe(probe_model) if probe_model is not None else None
    loss_sum, correct, n, bad = 0.0, 0.0, 0, 0.0
    try:
        it: Iterator[Any] = progress(loader, len(loader)) if progress else iter(loader)
        for x, y in it:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast():
                logits = model(x).float().mean(1)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += float((logits.argmax(1) == y).sum())
            bad += float((~torch.isfinite(x.flatten(1)).all(1) | ~torch.isfinite(logits).all(1)).sum())
            n += y.shape[0]
    finally:
        if probe is not None:
            probe.close()
    loss_sum, correct, total, bad = D.all_reduce_sum([loss_sum, correct, n, bad], device, info)
    rec: dict[str, Any] = {"test_loss": loss_sum / max(total, 1), "test_acc": 100.0 * correct / max(total, 1),
                           "test_samples": int(total)}
    if bad:
        rec["nonfinite_samples"] = int(bad)
        warnings.warn(f"{int(bad)} of {int(total)} test samples have NaN or inf in their input or logits; the "
                      "accuracy counts them as predicted (a NaN input drives no spikes): check the data", stacklevel=2)
    if probe is not None:
        names = sorted(probe.sums)
        vals = D.all_reduce_sum([probe.sums[k] for k in names] + [probe.counts[k] for k in names], device, info)
        rec["firing_rates"] = {k: vals[i] / max(vals[len(names) + i], 1) for i, k in enumerate(names)}
    return rec


def load_model(checkpoint: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[MSResNet, dict[str, Any]]:
    """Rebuild the model of a dta_lib checkpoint and load its weights: ``(model, checkpoint_dict)``."""
    state = load_checkpoint(checkpoint)
    validate_checkpoint_fields(checkpoint, state)
    try:
        cfg = TrainConfig.from_dict(state["config"])
        info = DataInfo(**state["data_info"]) if "data_info" in state else get_data_info(cfg.dataset)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {checkpoint} holds an invalid config: {e}") from None
    model = build_model(cfg, info)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {checkpoint}: weights do not fit the model it describes: {str(e)[:300]}") from None
    return model.to(device).eval(), state


def evaluate(
    checkpoint: str | os.PathLike[str],
    dataset: str | None = None,
    data_root: str | None = None,
    batch_size: int | None = None,
    subset: int | None = None,
    device: str = "auto",
    precision: str | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Test accuracy (percent) of a checkpoint on ``dataset`` (default: the one it was trained on).

    ``precision`` defaults to the one the run trained with (:func:`trained_precision`: a run trained
    with ``precision="auto"`` on a CPU with bf16 instructions evaluates in bf16), so the result equals
    ``metrics.jsonl``; an explicit value wins. A recorded fp16 (CUDA) run evaluated on a CPU uses fp32.

    ``subset`` defaults to the run's ``test_subset`` (``None`` there = the full test set).
    ``batch_size`` defaults to the one the training loop evaluated with (2x the training batch):
    spiking thresholds make the last bits of a convolution matter, so the same batching gives
    the same accuracy as ``metrics.jsonl``. Raises ``ValueError`` when the dataset's classes /
    input channels / kind differ from what the checkpoint was trained for.
    """
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    state = load_checkpoint(checkpoint)
    validate_checkpoint_fields(checkpoint, state)
    cfg = TrainConfig.from_dict(state["config"])
    name = dataset or cfg.dataset
    explicit = precision is not None
    if precision is None:
        precision = trained_precision(checkpoint, state)
    elif precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS} or None, got {precision!r}")
    if not explicit and precision == "fp16" and resolve_device(cfg.replace(device=device)).type != "cuda":
        precision = "fp32"  # fp16 autocast needs CUDA; the closest on a CPU
    cfg = cfg.replace(dataset=name, data_root=data_root, device=device, precision=precision, progress=progress,
                      test_subset=subset if subset is not None else cfg.test_subset)
    trained = DataInfo(**state["data_info"]) if "data_info" in state else get_data_info(state["config"]["dataset"])
    now = get_data_info(name)
    for attr in ("num_classes", "in_channels", "is_event"):
        if getattr(trained, attr) != getattr(now, attr):
            raise ValueError(
                f"checkpoint {checkpoint} was trained on {trained.name!r} ({attr}={getattr(trained, attr)}); "
                f"dataset {name!r} has {attr}={getattr(now, attr)}"
            )
    model, _ = load_model(checkpoint)
    dev = resolve_device(cfg)
    amp = resolve_precision(cfg, dev)
    _, test_ds, _ = build_data(cfg, train=False)
    loader = DataLoader(test_ds, batch_size=batch_size or cfg.batch_size * 2, shuffle=False, pin_memory=dev.type == "cuda")
    show = progress if progress is not None else sys.stderr.isatty()
    rec = evaluate_model(
        model.to(dev), loader, dev,
        (lambda: torch.autocast(dev.type, dtype=amp)) if amp is not None else contextlib.nullcontext,
        progress=lambda it, n: tqdm(it, desc="evaluate", total=n, leave=False, disable=not show),
    )
    return {"checkpoint": str(checkpoint), "dataset": name, "epoch": int(state["epoch"]), "precision": precision, **rec}


# ----------------------------------------------------------------------------------------------------
# state: A trainer's state as a checkpoint dict and back: what makes ``--resume`` continue a run exactly.

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
    """Restore a :class:`~dta_lib.train.Trainer` from its ``last.pt`` dict (model, optimizer, scheduler,
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


# ----------------------------------------------------------------------------------------------------
# results: What a training run returns (:class:`TrainResult`) and the error it stops with when the loss stops being finite.

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


# ----------------------------------------------------------------------------------------------------
# trainer: Training engine: BPTT with SGD + cosine annealing (paper Sec. 4, the release's recipe).
#
# The loss is cross-entropy on the time-averaged logits
# :math:`\bar{o} = \frac{1}{T}\sum_t o_t` of the MS-ResNet (soft-label cross-entropy when
# CutMix / MixUp mix the batch); gradients flow through every time step and every LIF
# site via the surrogate derivative (paper Eq. 5), i.e. backpropagation through time.
#
# Use :func:`train` (or :class:`Trainer`) with a :class:`~dta_lib.train.TrainConfig`; with
# an ``out`` folder each epoch writes ``metrics.jsonl``, ``last.pt`` / ``best.pt`` (atomic),
# beside ``config.json`` and ``run.json`` (hardware, versions, git commit, wall time).

# ---------------------------------------------------------------------------- trainer
#: on a GPU the non-finite checks are read on the host every this many steps (and at the end of each epoch)
CHECK_EVERY = 25
#: fp16: consecutive steps with a non-finite loss (each skipped by GradScaler) after which the run stops
MAX_SKIPPED_STEPS = 100

class Trainer:
    """One training run (BPTT, SGD momentum, cosine annealing to 0 over ``cfg.epochs``).

    Args:
        config: the run.
        out: run folder (created); ``None`` writes nothing.
        resume: continue from ``out/last.pt`` exactly (model, optimizer, scheduler, scaler,
            RNG states, history); the config must match the checkpoint's.
        datasets: ``(train_ds, test_ds)`` to use instead of ``cfg.dataset``'s (tests,
            notebooks); ``info`` then describes them (inferred from a sample if omitted).
    """

    def __init__(
        self,
        config: TrainConfig,
        out: str | os.PathLike[str] | None = None,
        resume: bool = False,
        datasets: tuple[Dataset, Dataset] | None = None,
        info: DataInfo | None = None,
        on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        config.validate()
        self.cfg = config
        self.out = check_out_path(out) if out is not None else None
        self.resume = resume
        self._datasets = datasets
        self._info = info
        self.on_epoch = on_epoch
        self._lock: RunLock | None = None
        self._created_out = False
        self.repaired: list[str] = []
        self.data_provenance: dict[str, Any] = {}
        if self.out is None and resume:
            raise ValueError("resume=True needs an out folder holding last.pt")
        if self.out is not None:
            self.resume = check_run_folder(self.out, resume)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg = self.cfg
        self.dist = D.detect()
        self.device = resolve_device(cfg, self.dist)
        if (cfg.preset == "paper" and self.device.type == "cpu" and cfg.device == "auto"
                and cfg.dataset not in SYNTHETIC_DATASETS):
            raise ValueError(
                f"preset 'paper' trains the full {cfg.dataset} recipe ({cfg.epochs} epochs at width {cfg.width}): days "
                "on a CPU, and no CUDA GPU is visible. Use --preset cpu, or pass --device cpu to insist"
            )
        self.amp_dtype = resolve_precision(cfg, self.device)
        if cfg.sync_bn and self.device.type != "cuda":
            raise ValueError("sync_bn=True (--sync-bn) needs CUDA devices: torch's SyncBatchNorm does not run on CPU")
        self.resume_state: dict[str, Any] | None = None
        if self.resume:
            assert self.out is not None
            self._lock_out()
            self.resume_state = load_checkpoint(self.out / "last.pt")
            validate_checkpoint_fields(self.out / "last.pt", self.resume_state)
            self._check_resume_config(self.resume_state)
        # data first (may raise for missing files) so that nothing is written on bad input
        RESOLVED_ROOTS.clear()
        if self._datasets is not None:
            train_ds, test_ds = self._datasets
            info = self._info or infer_info(cfg, train_ds)
        else:
            train_ds, test_ds, info = build_data(cfg)
        self.data_provenance = {n: data_provenance(n) for n in sorted(RESOLVED_ROOTS)}
        assert train_ds is not None
        if len(train_ds) == 0 or len(test_ds) == 0:  # type: ignore[arg-type]
            raise ValueError(f"empty dataset: {len(train_ds)} training / {len(test_ds)} test samples")  # type: ignore[arg-type]
        for split, ds in (("training", train_ds), ("test", test_ds)):  # a corrupt file fails here, before any write
            try:
                ds[0]
            except (ValueError, OSError, RuntimeError) as e:
                raise ValueError(f"cannot read the first {split} sample of {cfg.dataset}: {e}") from None
        self.info = info
        check_model_size(cfg, info)  # before anything is allocated: a huge width or T fails here, naming it
        self.dist = D.setup(self.device)
        self.is_main = self.dist.is_main
        if self.out is not None and self.is_main:
            self._created_out = not self.out.exists()
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock_out()
            if not self.resume and ((self.out / METRICS_FILE).exists() or (self.out / "last.pt").exists()):
                raise ValueError(f"out={str(self.out)!r} already holds a run (another process started it meanwhile)")

        seed_everything(cfg.seed)  # identical initial weights on every rank
        model = build_model(cfg, info).to(self.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.net: nn.Module = D.wrap_model(model, self.dist, self.device, cfg.sync_bn)
        if cfg.compile:
            self.net = compile_model(self.net)
        self.opt = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=cfg.epochs, eta_min=0.0)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda"
        )
        self._pending: dict[str, Tensor] = {}  # non-finite flags not yet read on the host (see _check_finite)
        self._skips = torch.zeros((), dtype=torch.int64, device=self.device)  # fp16: consecutive skipped steps
        self.mixer = None
        if cfg.mixing:
            from .data import BatchMix

            self.mixer = BatchMix(
                info.num_classes, cutmix_alpha=cfg.cutmix_alpha, mixup_alpha=cfg.mixup_alpha, p=cfg.mix_prob,
                label_smoothing=cfg.label_smoothing,
            )

        seed_everything(cfg.seed + self.dist.rank)  # per-rank augmentation streams
        self.loader_gen = torch.Generator().manual_seed(cfg.seed)
        self.train_sampler, self.train_loader, self.test_loader = make_loaders(
            cfg, train_ds, test_ds, self.dist, self.device, self.loader_gen)

        self.start_epoch = 1
        self.best_acc, self.best_epoch = -1.0, 0
        self.history: list[dict[str, Any]] = []
        if self.resume_state is not None:
            load_trainer_state(self, self.resume_state)
            if self.out is not None and self.is_main:
                self.repaired = repair(self.out, self.resume_state, load_checkpoint)

    def _lock_out(self) -> None:
        """Take the run folder's lock (once) and remove temp files that killed writes left behind."""
        if self._lock is not None or self.out is None or not D.detect().is_main:
            return
        self._lock = RunLock(self.out).acquire()
        clean_temp_files(self.out)

    def _check_resume_config(self, state: dict[str, Any]) -> None:
        saved, now = int(state.get("world_size", 1)), self.dist.world_size
        if saved != now:  # each rank's data order and RNG streams belong to its process: no exact continuation
            raise ValueError(f"cannot resume {self.out / 'last.pt'}: it was trained by {saved} process(es) and this "  # type: ignore[operator]
                             f"run has {now}; resume with the same number (torchrun --nproc_per_node {saved})")
        was, now_dtype = state.get("autocast_dtype"), dtype_name(self.amp_dtype)
        if was is not None and was != now_dtype:  # e.g. precision=auto: an fp16 (V100) run resumed on an A100
            raise ValueError(f"cannot resume {self.out / 'last.pt'}: it trained in {was} and this run would train in "  # type: ignore[operator]
                             f"{now_dtype} on {self.device}; pass the --precision (and --device) it trained with")
        diff = config_diff(state["config"], self.cfg)
        if diff:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"cannot resume {self.out / 'last.pt'}: the config differs ({detail})")  # type: ignore[operator]

    # ------------------------------------------------------------------ epochs
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _inputs(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.cfg.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _progress(self, it: Any, desc: str, total: int) -> Any:
        show = self.cfg.progress if self.cfg.progress is not None else sys.stderr.isatty()
        return tqdm(it, desc=desc, total=total, leave=False, dynamic_ncols=True, disable=not (show and self.is_main))

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        self.net.train()
        if isinstance(self.train_sampler, DistributedSampler):
            self.train_sampler.set_epoch(epoch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        grad_sq: dict[str, float] = {}
        steps = 0
        bar = self._progress(self.train_loader, f"epoch {epoch}/{cfg.epochs} train", len(self.train_loader))
        for step, (x, y) in enumerate(bar, start=1):
            x, y = self._inputs(x), y.to(self.device, non_blocking=True)
            if self.mixer is not None:
                x, target = self.mixer(x, y)
                hard = target.argmax(1)
            else:
                target, hard = y, y
            with self._autocast():
                logits = self.net(x).float().mean(1)  # time-averaged logits [B, classes]
            if self.mixer is not None:
                from .data import soft_cross_entropy

                loss = soft_cross_entropy(logits, target)
            else:
                loss = F.cross_entropy(logits, target, label_smoothing=cfg.label_smoothing)
            last = step == len(self.train_loader)
            if self.scaler.is_enabled():  # fp16: GradScaler skips the step of a non-finite loss and lowers its scale
                self._count_skips(loss, epoch, step, last)
            else:
                self._check_finite(loss, epoch, step, "training loss", last)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if not self.scaler.is_enabled():
                # spikes swallow NaN (NaN > threshold is False), so a NaN input or weight can leave the
                # loss finite: check the gradient too (fp16 runs leave inf gradients to the grad scaler)
                gnorm = torch.nn.utils.get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None])
                self._check_finite(gnorm, epoch, step, "gradient norm", last)
            if cfg.record_grad_norms:
                self.scaler.unscale_(self.opt)
                for name, p in self.model.named_parameters():
                    if p.grad is not None:
                        g = layer_group(name)
                        grad_sq[g] = grad_sq.get(g, 0.0) + float(p.grad.detach().float().pow(2).sum())
                steps += 1
            self.scaler.step(self.opt)
            self.scaler.update()
            b = y.shape[0]
            loss_sum += torch.nan_to_num(loss.detach().double(), nan=0.0, posinf=0.0) * b  # fp16: skipped steps add 0
            correct += (logits.detach().argmax(1) == hard).sum()
            seen += b
            if bar.disable is False and step % 10 == 0:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}")
        tot_loss, tot_correct, tot_seen = D.all_reduce_sum([float(loss_sum), float(correct), seen], self.device, self.dist)
        rec: dict[str, Any] = {
            "train_loss": tot_loss / max(tot_seen, 1),
            "train_acc": 100.0 * tot_correct / max(tot_seen, 1),
            "train_samples": int(tot_seen),
        }
        if cfg.record_grad_norms:
            # per-step norm of each layer's gradient, averaged in quadrature over the epoch (rank 0's)
            rec["grad_norms"] = {k: math.sqrt(v / max(steps, 1)) for k, v in grad_sq.items()}
        return rec

    def _check_finite(self, value: Tensor, epoch: int, step: int, what: str, last: bool = True) -> None:
        """Stop the run (all ranks) with :class:`NonFiniteLossError` once ``value`` was NaN or inf.

        On a CPU every step is checked (reading a scalar costs nothing there); on a GPU the flags stay on the device
        and are read every :data:`CHECK_EVERY` steps and at the end of the epoch, so the step never waits for the host.
        """
        flag = ~torch.isfinite(value.detach())
        prev = self._pending.get(what)
        self._pending[what] = flag if prev is None else prev | flag
        if self.device.type != "cpu" and step % CHECK_EVERY and not last:
            return
        bad = float(self._pending.pop(what))
        if self.dist.enabled:
            bad = D.all_reduce_sum([bad], self.device, self.dist)[0]
        if bad:
            keep = f"; the last good checkpoint {self.out / 'last.pt'} (epoch {epoch - 1}) is kept" if (
                self.out is not None and epoch > 1) else ""
            when = (f"is {float(value)} at epoch {epoch}, step {step}" if self.device.type == "cpu"
                    else f"became NaN or inf at epoch {epoch}, by step {step}")
            raise NonFiniteLossError(
                f"{what} {when} (lr={self.opt.param_groups[0]['lr']:.4g}); the run stopped{keep}. Lower the learning "
                "rate, use fp32, or check the input data for NaN/inf."
            )

    def _count_skips(self, loss: Tensor, epoch: int, step: int, last: bool) -> None:
        """fp16: count consecutive steps with a non-finite loss (GradScaler skips them); stop after
        :data:`MAX_SKIPPED_STEPS` in a row. Read on the host every :data:`CHECK_EVERY` steps."""
        bad = (~torch.isfinite(loss.detach())).to(torch.int64)
        if self.dist.enabled:  # GradScaler skips the step on every rank when one rank's loss is not finite
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        self._skips = torch.where(bad > 0, self._skips + 1, torch.zeros_like(self._skips))
        if step % CHECK_EVERY and not last:
            return
        skips = int(self._skips)
        if skips >= MAX_SKIPPED_STEPS:
            raise NonFiniteLossError(
                f"fp16: the training loss was NaN or inf in {skips} consecutive steps up to epoch {epoch}, step {step} "
                f"(GradScaler skipped them; scale now {self.scaler.get_scale():.3g}); the run stopped. Use bf16 on a "
                "GPU that has it, fp32, a lower learning rate, or check the input data."
            )

    @torch.no_grad()
    def _evaluate(self) -> dict[str, Any]:
        return evaluate_model(
            self.net, self.test_loader, self.device, self._autocast, self.dist,
            probe_model=self.model if self.cfg.record_firing_rates else None,
            progress=lambda it, n: self._progress(it, "test", n),
        )

    # ------------------------------------------------------------------ files
    def _write_metadata(self, status: str, extra: dict[str, Any] | None = None) -> None:
        if self.out is None or not self.is_main:
            return
        meta = dict(self.meta, status=status, **(extra or {}))
        atomic_write_text(self.out / "run.json", json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")

    def _write_epoch(self, epoch: int, improved: bool) -> None:
        state = trainer_state(self, epoch)  # collective under DDP: every rank takes part
        if self.out is None or not self.is_main:
            return
        # last.pt is the commit point: it carries the history and the best epoch, so whatever a kill interrupts
        # after it (best.pt, metrics.jsonl) is rebuilt from it on --resume (dta_lib.checkpoint.repair)
        save_checkpoint(self.out / "last.pt", state)
        if improved:
            copy_checkpoint(self.out / "last.pt", self.out / "best.pt")
        write_metrics(self.out, self.history)

    # ------------------------------------------------------------------ main loop
    def fit(self) -> TrainResult:
        """Run the remaining epochs; returns a :class:`TrainResult`."""
        cfg = self.cfg
        prev_det = torch.are_deterministic_algorithms_enabled()
        prev_threads = torch.get_num_threads()
        t_start = time.perf_counter()
        try:
            if cfg.threads is not None:
                torch.set_num_threads(cfg.threads)
            self._setup()
            if self.device.type == "cpu" and cfg.deterministic:
                torch.use_deterministic_algorithms(True)
            elif self.device.type == "cuda":
                torch.backends.cudnn.benchmark = True  # speed; bit-reproducibility is promised on CPU only
            prior_wall = float(self.resume_state.get("wall_seconds", 0.0)) if self.resume_state else 0.0
            self._wall = lambda: prior_wall + time.perf_counter() - t_start  # training wall time so far, all sessions
            self.resume_state = None
            self.meta = {
                "config": cfg.to_dict(),
                "data_info": model_fields(self.info),
                "hardware": run_metadata(self.device, self.dist.world_size),
                "autocast_dtype": dtype_name(self.amp_dtype),
                "lif_backend": lif_backend_name(self.device, cfg.compile),
                "cudnn_benchmark": self.device.type == "cuda",
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "resumed_from_epoch": self.start_epoch - 1 if self.resume else None,
                "data": self.data_provenance,
                "repaired_on_resume": self.repaired,
            }
            if self.out is not None and self.is_main:
                atomic_write_text(self.out / "config.json", cfg.to_json() + "\n")
                self._write_metadata("running")
            for epoch in range(self.start_epoch, cfg.epochs + 1):
                t0 = time.perf_counter()
                lr = self.opt.param_groups[0]["lr"]
                rec = self._train_epoch(epoch)
                self.sched.step()
                rec.update(self._evaluate())
                improved = rec["test_acc"] > self.best_acc
                if improved:
                    self.best_acc, self.best_epoch = rec["test_acc"], epoch
                secs = time.perf_counter() - t0
                rec = {"epoch": epoch, "lr": lr, **rec, "best_test_acc": self.best_acc, "seconds": secs,
                       "images_per_s": rec["train_samples"] / secs if secs > 0 else None}
                self.history.append(rec)
                self._write_epoch(epoch, improved)
                if self.on_epoch is not None and self.is_main:  # after the epoch's files: an interrupt here loses nothing
                    self.on_epoch(list(self.history))
            digests = D.gather_digests(self.net, self.dist)
            wall = prior_wall + time.perf_counter() - t_start
            self._write_metadata("completed", {
                "lif_backend": lif_backend_name(self.device, cfg.compile),  # a kernel that failed shows its fallback
                "wall_seconds": wall, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "best_test_acc": self.best_acc, "best_epoch": self.best_epoch,
                "final_test_acc": self.history[-1]["test_acc"] if self.history else None,
                "param_digests": digests, "ranks_in_sync": len(set(digests)) == 1,
            })
            D.barrier(self.dist)
            return TrainResult(
                best_acc=self.best_acc, best_epoch=self.best_epoch,
                final_acc=self.history[-1]["test_acc"] if self.history else float("nan"),
                epochs=cfg.epochs, history=list(self.history), wall_seconds=wall, out=self.out, config=cfg,
                param_digests=digests,
            )
        except BaseException as e:
            self._record_failure(e)
            raise
        finally:
            torch.use_deterministic_algorithms(prev_det)
            torch.set_num_threads(prev_threads)
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            D.cleanup()

    def _record_failure(self, e: BaseException) -> None:
        """``run.json`` says ``interrupted`` (SIGINT/SIGTERM) or ``failed`` with the error, never ``running``; a
        folder this run created and never wrote a file into is removed again."""
        if self.out is None or self._lock is None:
            return  # nothing of ours in the folder (or another process holds it)
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        if getattr(self, "meta", None) is not None:
            try:
                self._write_metadata(status, {"error": f"{type(e).__name__}: {e}"[:2000],
                                              "stopped": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            except OSError:
                pass  # e.g. the disk is full: run.json keeps its last state
        elif self._created_out:
            clean_temp_files(self.out)
            if {p.name for p in self.out.iterdir()} <= {LOCK_FILE, HOLDER_FILE}:
                self._lock.release()
                self._lock = None
                with contextlib.suppress(OSError):
                    self.out.rmdir()


def train(
    config: TrainConfig,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    datasets: tuple[Dataset, Dataset] | None = None,
    info: DataInfo | None = None,
    on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
) -> TrainResult:
    """Train one run; see :class:`Trainer`. ``on_epoch(history)`` is called (rank 0) after each epoch's files are
    written, with every epoch's record so far: live curves in a notebook, early stopping by raising. Under torchrun
    only rank 0 calls it: raising there leaves the other ranks waiting in their next collective (stop a DDP run
    with a signal instead)."""
    return Trainer(config, out, resume, datasets, info, on_epoch).fit()
