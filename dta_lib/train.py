"""Training, top to bottom: config (recipes, presets, CLI fields), device and precision, provenance, data and model,
checkpoints and evaluation, the loop (:func:`train`). Input is validated once, where it enters (docs/training.md).
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import functools
import json
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset, TensorDataset
from tqdm.auto import tqdm

from . import distributed as D
from .atomic import atomic_write, atomic_write_text
from .checkpoint import (
    CheckpointError, METRICS_FILE, RunLock, capture_rng_state, check_run_folder, load_checkpoint,
    repair, restore_rng_state, save_checkpoint, write_metrics,
)
from .data.augment import BatchMix, soft_cross_entropy
from .data.datasets import build_datasets
from .data.registry import DatasetInfo, MODEL_FIELDS, RESOLVED_ROOTS, data_provenance, dataset_info
from .models.ms_resnet import MSResNet, ms_resnet18, ms_resnet34
from .paths import CHECKOUT, now
from .snn.kernels import lif_backend_name
from .snn.neuron import LIF
from .snn.surrogate import SURROGATES


# config: a flat, JSON-serialisable TrainConfig, made by make_config from a recipe, a preset and overrides.

ATTENTIONS = ("none", "txa", "tna", "dta")
#: largest learning rate accepted (SGD with momentum diverges far below this; 1e300 is a typo, not a recipe)
MAX_LR = 100.0
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ARCHS = ("ms_resnet18", "ms_resnet34")
#: datasets generated in memory by :func:`dta_lib.train.synthetic_datasets` (tests, CI, DDP checks)
SYNTHETIC_DATASETS = ("synthetic", "synthetic-dvs")

#: fields that do not change what a run computes: a run may be resumed, and a finished run reused, with them changed
RUN_FREE_FIELDS = frozenset({"progress", "workers", "threads", "data_root", "download", "device"})
#: probes that add records to ``metrics.jsonl`` without changing the weights: a run's trained model answers for a
#: config that differs only in these (and :data:`RUN_FREE_FIELDS`)
PROBE_FIELDS = frozenset({"record_grad_norms", "record_firing_rates"})


def config_diff(saved: dict[str, Any], cfg: "TrainConfig", free: frozenset[str] = RUN_FREE_FIELDS) -> dict[str, tuple[Any, Any]]:
    """Fields of ``cfg`` (outside ``free``) where a recorded config dict differs: ``{name: (saved, now)}``."""
    return {k: (saved.get(k), v) for k, v in cfg.to_dict().items() if k not in free and saved.get(k) != v}


def is_int(v: Any, lo: int = 0, hi: float = math.inf) -> bool:
    """``v`` is an integer (not a bool) in ``lo..hi``."""
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _f(default: Any, help: str, group: str = "run", choices: tuple[str, ...] | None = None,
       flags: tuple[str, ...] | None = None) -> Any:
    """A config field with its CLI help, group, choices and flags (:func:`dta_lib.__main__.add_config_arguments`)."""
    return dataclasses.field(default=default, metadata={"help": help, "group": group, "choices": choices,
                                                        "flags": flags})


@dataclass
class TrainConfig:
    """Everything that defines a training run (BPTT, SGD + cosine annealing, paper Sec. 4); each field's help says
    what it means. ``subset`` / ``test_subset`` are seed-independent, so runs of different seeds see the same images."""

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
        """Raise ``ValueError`` naming the first bad field and what was expected (change a config with
        :meth:`replace`, which checks again; assigning a field does not)."""
        choices = {"dataset": RECIPES, "preset": PRESETS, **{f.name: f.metadata["choices"] for f in fields(self)
                                                             if f.metadata.get("choices")}}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; expected one of {sorted(allowed)}")
        ints = {"time_steps": 1, "epochs": 1, "batch_size": 1, "seed": 0}
        ints.update((k, lo) for k, lo in (("workers", 0), ("subset", 1), ("test_subset", 1), ("threads", 1))
                    if getattr(self, k) is not None)
        for name, lo in ints.items():
            v = getattr(self, name)
            if not is_int(v, lo):
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if self.seed >= 2**32:  # numpy and CUDA reduce seeds modulo 2**32: 2**32 would train exactly as seed 0
            raise ValueError(f"seed must be an integer in 0..{2**32 - 1} (the random generators use 32 bits), "
                             f"got {self.seed!r}")
        for name, lo_open, hi, hi_open in (  # every lower bound is 0.0
                ("width", True, None, False), ("surrogate_width", True, None, False), ("lr", True, MAX_LR, False),
                ("momentum", False, 1.0, False), ("weight_decay", False, None, False),
                ("label_smoothing", False, 1.0, True), ("cutmix_alpha", False, None, False),
                ("mixup_alpha", False, None, False), ("mix_prob", False, 1.0, False)):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
            if v < 0.0 or (lo_open and v == 0.0):
                raise ValueError(f"{name} must be {'>' if lo_open else '>='} 0.0, got {v!r}")
            if hi is not None and (v > hi or (hi_open and v == hi)):
                raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {v!r}")
        if self.mix_prob > 0 and self.cutmix_alpha == 0 and self.mixup_alpha == 0:
            raise ValueError(f"mix_prob={self.mix_prob} needs cutmix_alpha > 0 or mixup_alpha > 0")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", self.device)
        ):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        if unknown := sorted(set(d) - names):
            raise ValueError(f"unknown TrainConfig fields {unknown}; expected a subset of {sorted(names)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


_CIFAR = dict(arch="ms_resnet18", time_steps=6, epochs=250, batch_size=64, lr=0.1, weight_decay=5e-5, cutmix_alpha=1.0,
              mix_prob=0.5)
_DVS = dict(arch="ms_resnet18", time_steps=10, epochs=1000, batch_size=64, lr=0.05, weight_decay=0.0, mixup_alpha=0.5,
            mix_prob=0.5, label_smoothing=0.1)
#: Per-dataset recipes: cifar10 / cifar100 / imagenet / cifar10-dvs are the release's (docs/reference.md); the
#: fashion-mnist and emulated sets are offline stand-ins on the CIFAR / CIFAR10-DVS recipe with fewer epochs
#: (docs/training.md, "Recipes").
RECIPES: dict[str, dict[str, Any]] = {
    "cifar10": dict(_CIFAR),
    "cifar100": dict(_CIFAR),
    "imagenet": dict(arch="ms_resnet34", time_steps=6, epochs=200, batch_size=128, lr=0.1, weight_decay=1e-5),
    "cifar10-dvs": dict(_DVS),
    "fashion-mnist": dict(_CIFAR, time_steps=4, epochs=100),
    "fashion-mnist-dvs": dict(_DVS, epochs=200),
    "cifar10-emulated-dvs": dict(_DVS, epochs=200),
    # in-memory data for tests: no augmentation pipeline, no mixing
    "synthetic": dict(arch="ms_resnet18", time_steps=4, epochs=3, batch_size=32, lr=0.1, weight_decay=5e-5),
    "synthetic-dvs": dict(arch="ms_resnet18", time_steps=4, epochs=3, batch_size=32, lr=0.1, weight_decay=0.0),
}

# study presets: no CutMix / MixUp (they slow a few-epoch schedule down), fp32 + channels_last (fastest fp32 here,
# and any CPU can continue a study: bf16 is emulated, ~10x slower, without AVX512-BF16/AMX)
_STUDY = dict(width=0.125, batch_size=64, mix_prob=0.0, cutmix_alpha=0.0, mixup_alpha=0.0,
              precision="fp32", channels_last=True)
#: Size presets applied on top of a recipe (``time_steps`` always stays the recipe's unless overridden).
PRESETS: dict[str, dict[str, Any]] = {
    # the recipe unchanged: needs a GPU (full data, full width, 200-1000 epochs)
    "paper": dict(seed=42),
    # CI: a few hundred images, width 1/16, 3 epochs (well under 60 s on 2 cores)
    "smoke": dict(epochs=3, subset=256, test_subset=256, width=0.0625, batch_size=32),
    # laptop: 1,000 real images, width 1/8, 3 epochs of batch 25 (docs/training.md has timings)
    "cpu": dict(epochs=3, subset=1000, test_subset=1000, width=0.125, batch_size=25),
    # models that learn: the full Fashion-MNIST (60,000 / 10,000), 8 epochs (the headline DTA vs no-attention runs)
    "study": dict(_STUDY, epochs=8, subset=None, test_subset=None),
    # multi-seed studies: 10,000 class-balanced training images, full test set, 3 epochs (seed std ~1 point)
    "study-10k": dict(_STUDY, epochs=3, subset=10_000, test_subset=None),
}


def make_config(dataset: str, preset: str = "paper", **overrides: Any) -> TrainConfig:
    """Config from ``RECIPES[dataset]``, then ``PRESETS[preset]``, then ``overrides`` (``None`` values ignored)."""
    names = {f.name for f in fields(TrainConfig)}  # an unknown name is refused even when None (from_dict says so)
    return TrainConfig.from_dict({"dataset": dataset, "preset": preset, **RECIPES.get(dataset, {}),
                                  **PRESETS.get(preset, {}),
                                  **{k: v for k, v in overrides.items() if v is not None or k not in names}})


# device: where and in which precision a run computes.

def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
    if dev.type == "cuda" and info is not None and info.enabled:
        if dev.index is not None:
            raise ValueError(f"device={cfg.device!r} under torchrun would put all {info.world_size} processes on GPU "
                             f"{dev.index}; pass --device cuda (each process takes the GPU of its LOCAL_RANK) and "
                             "choose the GPUs with CUDA_VISIBLE_DEVICES")
        dev = torch.device("cuda", info.local_rank)
    return dev


def resolve_precision(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype (``None`` = fp32); ``auto`` as the ``precision`` field's help says (fp32 on ``mps``)."""
    p = cfg.precision
    if p == "auto":
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_native_bf16() else None
        return cuda_autocast_dtype(device) if device.type == "cuda" else None
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
    """bf16 where the GPU computes it natively (compute capability >= 8.0), else fp16 with a GradScaler; not
    ``torch.cuda.is_bf16_supported()``, which counts emulation (slow on a V100 or T4, and Triton cannot compile it)."""
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16


#: ``run.json`` / checkpoint ``autocast_dtype`` -> the ``precision`` value that reproduces it
_DTYPE_TO_PRECISION = {"fp32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def dtype_name(dtype: torch.dtype | None) -> str:
    """How a run records its resolved autocast dtype: ``fp32`` (no autocast), ``bfloat16`` or ``float16``."""
    return "fp32" if dtype is None else str(dtype).replace("torch.", "")


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    return functools.partial(torch.autocast, device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext


def compile_model(net: nn.Module) -> nn.Module:
    """``torch.compile`` with static shapes (dynamic ones fail on CPU in the LIF loop), dynamo's recompile limit
    raised to at least 64 (process-wide): every layer's LIF call has its own shape and would otherwise run eager."""
    import torch._dynamo.config as dynamo_config

    name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"  # older torch
    setattr(dynamo_config, name, max(getattr(dynamo_config, name), 64))
    return torch.compile(net, dynamic=False)  # type: ignore[return-value]


def keep_freed_memory() -> bool:
    """glibc keeps freed memory for reuse (``M_MMAP_THRESHOLD`` 32 MiB, ``M_TRIM_THRESHOLD`` max; process-wide, for
    good: the resident memory stays at the peak) instead of handing it back and faulting every page in again on the
    next step (docs/performance.md). True: glibc's ``mallopt`` took both settings. False, and nothing done: off Linux,
    without ``mallopt`` (musl), or when a ``MALLOC_*`` variable or ``GLIBC_TUNABLES`` is set (the user's choice)."""
    users_choice = "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") for k in os.environ)
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if sys.platform == "linux" and not users_choice else None
    return bool(mallopt and mallopt(-3, 32 << 20) and mallopt(-1, 2**31 - 1))  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


#: oneDNN ISA limits (``ONEDNN_MAX_CPU_ISA``) under which its kernels still use bf16 instructions
_BF16_ISAS = frozenset({"ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                        "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2"})


def cpu_has_native_bf16() -> bool:
    """This CPU has bf16 arithmetic (AVX512-BF16 or AMX) and oneDNN may use it (no ``ONEDNN_MAX_CPU_ISA`` /
    ``DNNL_MAX_CPU_ISA`` below ``AVX512_CORE_BF16``)."""
    limit = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    if limit and limit not in _BF16_ISAS:
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence the getattr fallback
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


# provenance: what a run records about where it ran (``run.json``'s ``hardware``).

def git(*args: str) -> str | None:
    """Stdout of ``git <args>`` in the checkout ``dta_lib`` is imported from; ``None`` on failure or when installed."""
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


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# build: the data a config names (or the built-in synthetic sets) and the model it trains.

_SYNTH = dict(num_classes=4, image_size=16, n_train=512, n_test=256)


def synthetic_datasets(name: str = "synthetic", time_steps: int = 4, n_train: int = _SYNTH["n_train"],
                       n_test: int = _SYNTH["n_test"], seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Small learnable in-memory datasets for tests and CI, fixed by ``seed`` (not the training seed): ``synthetic``:
    ``[1, 16, 16]`` images, 4 classes, a prototype plus noise; ``synthetic-dvs``: ``[T, 2, 16, 16]`` 0/1 events."""
    g = torch.Generator().manual_seed(seed)
    k, s, event = _SYNTH["num_classes"], _SYNTH["image_size"], name == "synthetic-dvs"
    protos = 0.05 + 0.5 * torch.rand(k, 2, s, s, generator=g) if event else torch.randn(k, 1, s, s, generator=g)

    def make(n: int) -> TensorDataset:
        y = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
        if event:  # firing probability per class, pixel and polarity, the same at every step
            return TensorDataset((torch.rand(n, time_steps, 2, s, s, generator=g) < protos[y].unsqueeze(1)).float(), y)
        return TensorDataset(protos[y] + 0.8 * torch.randn(n, 1, s, s, generator=g), y)

    return make(n_train), make(n_test)


def get_data_info(name: str) -> DatasetInfo:
    """Dataset metadata: built in for the synthetic sets (identity normalisation), else ``dta_lib.data.registry.dataset_info``."""
    if name in SYNTHETIC_DATASETS:
        return DatasetInfo(name, _SYNTH["num_classes"], 1 if name == "synthetic" else 2, _SYNTH["image_size"], 4,
                           name != "synthetic")
    return dataset_info(name)


def build_data(cfg: TrainConfig, train: bool = True) -> tuple[Dataset | None, Dataset, DatasetInfo]:
    """``(train_ds, test_ds, info)`` for ``cfg``, with ``subset`` / ``test_subset`` applied (class-balanced,
    seed-independent); ``train=False``: ``None`` for the training set."""
    info = get_data_info(cfg.dataset)
    if cfg.dataset in SYNTHETIC_DATASETS:  # already shuffled and class-balanced: the first n samples
        sets = synthetic_datasets(cfg.dataset, cfg.time_steps)
        train_ds, test_ds = (Subset(d, range(n)) if n is not None and n < len(d) else d  # type: ignore[misc]
                             for d, n in zip(sets, (cfg.subset, cfg.test_subset)))
    else:
        train_ds, test_ds = build_datasets(cfg.dataset, root=cfg.data_root, download=cfg.download,
                                           time_steps=cfg.time_steps if info.is_event else None,
                                           train_transform=cfg.augment, subset=cfg.subset, test_subset=cfg.test_subset)
    return (train_ds if train else None), test_ds, info


def build_model(cfg: TrainConfig, info: DatasetInfo) -> MSResNet:
    """MS-ResNet-18 (or -34 for ImageNet) with ``cfg.attention`` after the stem."""
    return (ms_resnet34 if cfg.arch == "ms_resnet34" else ms_resnet18)(
        num_classes=info.num_classes, time_steps=cfg.time_steps, attention=cfg.attention, in_channels=info.in_channels,
        width=cfg.width, surrogate=cfg.surrogate, surrogate_width=cfg.surrogate_width)


def check_model_size(cfg: TrainConfig, info: DatasetInfo) -> int:
    """Parameters of ``cfg``'s model, counted on the meta device; ``ValueError`` when weights + gradients + momentum
    (fp32) alone exceed the memory here (the largest GPU's, else the RAM)."""
    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in build_model(cfg, info).parameters())
    except RuntimeError as e:  # a size torch cannot even represent
        raise ValueError(f"width={cfg.width}, time_steps={cfg.time_steps} give a model too large to build "
                         f"({str(e).splitlines()[0][:120]}); choose a smaller --width or -T") from None
    if torch.cuda.is_available():
        have = max(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    else:
        try:
            have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            have = 2**40
    need = 3 * 4 * n
    if need > have:
        raise ValueError(
            f"width={cfg.width}, time_steps={cfg.time_steps} give a model of {n:,} parameters: {need / 2**30:.1f} GiB "
            f"for weights, gradients and momentum alone, more than the {have / 2**30:.1f} GiB here. Choose a smaller "
            "--width or -T (T-NA's size grows with (T x channels)^2)")
    return n


# checkpoints and evaluation: a checkpoint is checked once, when read, before a model is built or data read.

def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], TrainConfig, DatasetInfo]:
    """``(state, config, data_info)`` of a training checkpoint (:func:`~dta_lib.checkpoint.load_checkpoint`), its
    fields checked: :class:`~dta_lib.checkpoint.CheckpointError` names the file and the field."""
    state = load_checkpoint(path)

    def need(ok: bool, name: str, why: str) -> None:  # checked in this order: the first bad field is named
        if not ok:
            raise CheckpointError(f"checkpoint {path}: field {name!r} {why}") from None

    for name in ("epoch", "best_epoch"):
        need(is_int(state[name]), name, f"must be an integer >= 0, got {state[name]!r}")
    acc, di = state["best_acc"], state["data_info"]
    need(isinstance(acc, (int, float)) and not isinstance(acc, bool), "best_acc", f"must be a number, got {acc!r}")
    need(isinstance(state["config"], dict), "config", f"must be a dict, got {type(state['config']).__name__}")
    try:
        cfg = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: field 'config' is invalid: {e}") from None
    need(isinstance(state["history"], list), "history", "must be a list of per-epoch records")
    need(state["autocast_dtype"] in _DTYPE_TO_PRECISION, "autocast_dtype",
         f"must be one of {sorted(_DTYPE_TO_PRECISION)}, got {state['autocast_dtype']!r}")
    need(isinstance(di, dict) and set(di) == set(MODEL_FIELDS), "data_info", f"must have exactly the keys "
         f"{sorted(MODEL_FIELDS)}, got {sorted(di) if isinstance(di, dict) else type(di).__name__}")
    for k in ("num_classes", "in_channels", "image_size", "default_time_steps"):
        need(is_int(di[k], 1, 1_000_000), f"data_info.{k}", f"must be an integer in 1..1000000, got {di[k]!r}")
    info = DatasetInfo(**di)
    try:
        check_model_size(cfg, info)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: field 'config' {e}") from None
    return state, cfg, info


@torch.no_grad()
def evaluate_model(
    model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    dist_info: D.DistInfo | None = None, probe_model: nn.Module | None = None,
) -> dict[str, Any]:
    """Top-1 accuracy (percent) and mean cross-entropy of the time-averaged logits; with ``probe_model``, the mean
    firing rate of each of its LIF modules (spikes per neuron per step). Samples with NaN or inf in input or logits
    (a NaN input spikes nowhere, giving finite logits) are counted as predicted, reported as ``nonfinite_samples``
    (the key only when there are any) with a :class:`UserWarning`."""
    info = dist_info or D.DistInfo()
    model.eval()
    fired: dict[str, list[float]] = {}  # LIF name -> [spikes, neuron-steps]

    def count(name: str, _m: nn.Module, _inp: Any, out: Tensor) -> None:
        s = fired.setdefault(name, [0.0, 0])
        s[0] += float(out.detach().float().sum())
        s[1] += out.numel()

    hooks = [m.register_forward_hook(functools.partial(count, name)) for name, m in probe_model.named_modules()
             if isinstance(m, LIF)] if probe_model is not None else []
    loss_sum, correct, n, bad = 0.0, 0.0, 0, 0.0
    try:
        for x, y in loader:  # batches (x, y): a DataLoader, a tqdm bar over one, a generator
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast():
                logits = model(x).float().mean(1)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += float((logits.argmax(1) == y).sum())
            bad += float((~torch.isfinite(x.flatten(1)).all(1) | ~torch.isfinite(logits).all(1)).sum())
            n += y.shape[0]
    finally:
        for h in hooks:
            h.remove()
    loss_sum, correct, total, bad = D.all_reduce_sum([loss_sum, correct, n, bad], device, info)
    rec: dict[str, Any] = {"test_loss": loss_sum / max(total, 1), "test_acc": 100.0 * correct / max(total, 1),
                           "test_samples": int(total)}
    if bad:
        rec["nonfinite_samples"] = int(bad)
        warnings.warn(f"{int(bad)} of {int(total)} test samples have NaN or inf in their input or logits; the "
                      "accuracy counts them as predicted (a NaN input drives no spikes): check the data", stacklevel=2)
    if probe_model is not None:
        names = sorted(fired)
        vals = D.all_reduce_sum([fired[k][0] for k in names] + [fired[k][1] for k in names], device, info)
        rec["firing_rates"] = {k: vals[i] / max(vals[len(names) + i], 1) for i, k in enumerate(names)}
    return rec


def load_model(checkpoint: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[MSResNet, dict[str, Any]]:
    """Rebuild the model of a dta_lib checkpoint and load its weights: ``(model, checkpoint_dict)``."""
    state, cfg, info = read_checkpoint(checkpoint)
    return load_weights(build_model(cfg, info), state, checkpoint).to(device).eval(), state


def load_weights(model: MSResNet, state: dict[str, Any], checkpoint: str | os.PathLike[str]) -> MSResNet:
    """``model`` with ``state``'s weights; :class:`~dta_lib.checkpoint.CheckpointError` naming ``checkpoint`` when
    they do not fit."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {checkpoint}: weights do not fit the model it describes: "
                              f"{str(e)[:300]}") from None
    return model


def evaluate(checkpoint: str | os.PathLike[str], dataset: str | None = None, data_root: str | None = None,
             batch_size: int | None = None, subset: int | None = None, device: str = "auto",
             precision: str | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Test accuracy (percent) of a checkpoint on ``dataset`` (default: the one it was trained on).

    ``precision``, ``subset`` and ``batch_size`` default to the training loop's evaluation (the checkpoint's autocast
    dtype, fp32 for fp16 off CUDA; its ``test_subset``; 2x the training batch: spike thresholds make a convolution's
    last bits matter), so the result equals ``metrics.jsonl``. ``ValueError`` when classes / channels / kind differ.
    """
    state, trained_cfg, trained = read_checkpoint(checkpoint)
    name, dev = dataset or trained_cfg.dataset, resolve_device(trained_cfg.replace(device=device))
    if precision is None:  # fp16 autocast needs CUDA; the closest on a CPU is fp32
        precision = _DTYPE_TO_PRECISION[state["autocast_dtype"]]
        precision = "fp32" if precision == "fp16" and dev.type != "cuda" else precision
    cfg = trained_cfg.replace(  # checks the arguments; batch_size: the evaluation's
        dataset=name, data_root=data_root, device=device, precision=precision, progress=progress,
        batch_size=batch_size if batch_size is not None else 2 * trained_cfg.batch_size,
        test_subset=subset if subset is not None else trained_cfg.test_subset)
    amp = resolve_precision(cfg, dev)
    now = get_data_info(name)
    for attr in ("num_classes", "in_channels", "is_event"):
        if getattr(trained, attr) != getattr(now, attr):
            raise ValueError(f"checkpoint {checkpoint} was trained on {trained.name!r} ({attr}="
                             f"{getattr(trained, attr)}); dataset {name!r} has {attr}={getattr(now, attr)}")
    model = load_weights(build_model(trained_cfg, trained), state, checkpoint).eval()
    _, test_ds, _ = build_data(cfg, train=False)
    loader = DataLoader(test_ds, batch_size=cfg.batch_size, shuffle=False, pin_memory=dev.type == "cuda")
    show = progress if progress is not None else sys.stderr.isatty()
    rec = evaluate_model(model.to(dev), tqdm(loader, desc="evaluate", leave=False, disable=not show), dev,
                         _autocast(dev, amp))
    return {"checkpoint": str(checkpoint), "dataset": name, "epoch": int(state["epoch"]), "precision": precision, **rec}


# trainer: BPTT with SGD + cosine annealing (paper Sec. 4): cross-entropy (soft-label when CutMix / MixUp mix the
# batch) on the time-averaged logits, gradients through every time step via the surrogate derivative (paper Eq. 5).

#: on a GPU the non-finite checks are read on the host every this many steps (and at the end of each epoch)
CHECK_EVERY = 25
#: fp16: consecutive steps with a non-finite loss (each skipped by GradScaler) after which the run stops
MAX_SKIPPED_STEPS = 100


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


def count_skips(skips: Tensor, loss: Tensor, scaler: torch.amp.GradScaler, dist: D.DistInfo, epoch: int, step: int,
                last: bool) -> Tensor:
    """fp16: ``skips`` (consecutive non-finite losses, skipped by GradScaler) updated by ``loss``; stops the run after
    :data:`MAX_SKIPPED_STEPS`, read on the host every :data:`CHECK_EVERY` steps and at the epoch's end (``last``)."""
    bad = (~torch.isfinite(loss.detach())).to(torch.int64)
    if dist.enabled:  # GradScaler skips the step on every rank when one rank's loss is not finite
        torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
    skips = torch.where(bad > 0, skips + 1, torch.zeros_like(skips))
    if (step % CHECK_EVERY == 0 or last) and int(skips) >= MAX_SKIPPED_STEPS:
        raise NonFiniteLossError(
            f"fp16: the training loss was NaN or inf in {int(skips)} consecutive steps up to epoch {epoch}, "
            f"step {step} (GradScaler skipped them; scale now {scaler.get_scale():.3g}); the run stopped. "
            "Use bf16 on a GPU that has it, fp32, a lower learning rate, or check the input data.")
    return skips


def write_run_json(out: Path, meta: dict[str, Any], status: str, **extra: Any) -> None:
    """``run.json``: the run's metadata, its ``status`` and ``extra`` fields."""
    atomic_write_text(out / "run.json", json.dumps(dict(meta, status=status, **extra), indent=2, sort_keys=True,
                                                   default=str) + "\n")


def train(config: TrainConfig, out: str | os.PathLike[str] | None = None, resume: bool = False,
          datasets: tuple[Dataset, Dataset] | None = None, info: DatasetInfo | None = None,
          on_epoch: Callable[[list[dict[str, Any]]], None] | None = None) -> TrainResult:
    """One training run of ``config`` into the run folder ``out`` (created; ``None`` writes nothing). ``resume``
    continues from ``out/last.pt`` exactly (the config must match). ``datasets``: ``(train_ds, test_ds)`` instead of
    ``cfg.dataset``'s, described by ``info`` (else inferred). ``on_epoch(history)`` (every epoch's record so far)
    runs on rank 0 after each epoch's files are written (live curves; raising stops the run, but under DDP leaves
    other ranks waiting: use a signal). On a CPU it calls :func:`keep_freed_memory` (process-wide, for good)."""
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    if out is None and resume:
        raise ValueError("resume=True needs an out folder holding last.pt")
    out, resume = check_run_folder(out, resume) if out is not None else (None, False)
    cfg, lock, meta = config, None, None
    prev_det, prev_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    t_start = time.perf_counter()
    try:
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        dist = D.detect()
        device = resolve_device(cfg, dist)
        if (cfg.preset == "paper" and device.type == "cpu" and cfg.device == "auto"
                and cfg.dataset not in SYNTHETIC_DATASETS):
            raise ValueError(
                f"preset 'paper' trains the full {cfg.dataset} recipe ({cfg.epochs} epochs at width {cfg.width}): days "
                "on a CPU, and no CUDA GPU is visible. Use --preset cpu, or pass --device cpu to insist")
        amp_dtype = resolve_precision(cfg, device)
        if cfg.sync_bn and device.type != "cuda":
            raise ValueError("sync_bn=True (--sync-bn) needs CUDA devices: torch's SyncBatchNorm does not run on CPU")
        state = None
        if resume:
            lock = RunLock(out).acquire() if dist.is_main else None  # type: ignore[arg-type]
            state, _, _ = read_checkpoint(out / "last.pt")  # type: ignore[operator]
            ws, amp, diff = state["world_size"], state["autocast_dtype"], config_diff(state["config"], cfg)
            for bad, why in (  # each rank's data order and RNG streams are its own; auto: an fp16 (V100) run on an A100
                    (ws != dist.world_size, f"it was trained by {ws} process(es) and this run has "
                     f"{dist.world_size}; resume with the same number (torchrun --nproc_per_node {ws})"),
                    (amp != dtype_name(amp_dtype), f"it trained in {amp} and this run would train in "
                     f"{dtype_name(amp_dtype)} on {device}; pass the --precision (and --device) it trained with"),
                    (diff, "the config differs ({})".format(", ".join(
                        f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))))):
                if bad:
                    raise ValueError(f"cannot resume {out / 'last.pt'}: {why}")  # type: ignore[operator]

        # data before any write: missing or corrupt files fail here, leaving no folder behind
        RESOLVED_ROOTS.clear()
        if datasets is not None:
            train_ds, test_ds = datasets
            if info is None:  # user-supplied data: shape from a sample, classes from the labels
                x = train_ds[0][0]
                labels = (train_ds.tensors[1].tolist() if isinstance(train_ds, TensorDataset)
                          else [int(t) for t in train_ds.targets] if hasattr(train_ds, "targets")  # type: ignore
                          else [int(train_ds[i][1]) for i in range(len(train_ds))])  # type: ignore[arg-type]
                info = DatasetInfo("custom", max(labels) + 1, int(x.shape[-3]), int(x.shape[-1]), cfg.time_steps,
                                   x.dim() == 4)
        else:
            train_ds, test_ds, info = build_data(cfg)  # type: ignore[assignment]
        provenance = {n: data_provenance(n) for n in sorted(RESOLVED_ROOTS)}
        sizes = len(train_ds), len(test_ds)  # type: ignore[arg-type]
        if 0 in sizes:
            raise ValueError(f"empty dataset: {sizes[0]} training / {sizes[1]} test samples")
        for split, ds in (("training", train_ds), ("test", test_ds)):
            try:
                ds[0]
            except (ValueError, OSError, RuntimeError) as e:
                raise ValueError(f"cannot read the first {split} sample of {cfg.dataset}: {e}") from None
        check_model_size(cfg, info)  # before anything is allocated: a huge width or T fails here, naming it
        if dist.enabled and not torch.distributed.is_initialized():  # join torchrun's process group
            if device.type == "cuda":
                torch.cuda.set_device(dist.local_rank)
            torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

        # model, optimiser, precision
        seed_everything(cfg.seed)  # identical initial weights on every rank
        model = build_model(cfg, info).to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        net: nn.Module = model
        if dist.enabled:  # device: the GPU of this process's LOCAL_RANK (resolve_device)
            ids = [device.index] if device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(
                nn.SyncBatchNorm.convert_sync_batchnorm(model) if cfg.sync_bn else model, device_ids=ids)
        if cfg.compile:
            net = compile_model(net)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=0.0)
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16 and device.type == "cuda")
        autocast = _autocast(device, amp_dtype)
        show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
        progress = functools.partial(tqdm, leave=False, dynamic_ncols=True, disable=not (show and dist.is_main))
        # soft targets when batches are mixed (__post_init__: then cutmix_alpha or mixup_alpha is > 0)
        mixer = BatchMix(info.num_classes, cutmix_alpha=cfg.cutmix_alpha, mixup_alpha=cfg.mixup_alpha,
                         p=cfg.mix_prob, label_smoothing=cfg.label_smoothing) if cfg.mix_prob > 0 else None

        # loaders: one checkpointed shuffling generator (a resumed run sees the same order), per-rank shards under DDP.
        # Workers start anew each epoch: a persistent pool would draw its seeds once, changing a resumed run's order.
        seed_everything(cfg.seed + dist.rank)  # per-rank augmentation streams
        loader_gen = torch.Generator().manual_seed(cfg.seed)
        pin = device.type == "cuda"
        workers = cfg.workers if cfg.workers is not None else (
            min(8, max(1, (os.cpu_count() or 2) // dist.world_size - 1)) if pin else 0)
        if dist.enabled:
            sampler: Any = DistributedSampler(train_ds, dist.world_size, dist.rank, shuffle=True, seed=cfg.seed,
                                              drop_last=True)
            # this rank's share of the test set, without padding: exact evaluation counts
            test_ds = Subset(test_ds, range(dist.rank, len(test_ds), dist.world_size))  # type: ignore[arg-type]
        else:
            sampler = RandomSampler(train_ds, generator=loader_gen)  # type: ignore[arg-type]
        # each worker's Python, NumPy and torch seeds: DataLoader's, drawn from loader_gen (distinct per worker)
        loader = functools.partial(DataLoader, num_workers=workers, pin_memory=pin)
        train_loader = loader(  # a full last batch unless the set is smaller than one
            train_ds, batch_size=cfg.batch_size, sampler=sampler, generator=loader_gen,
            drop_last=len(train_ds) // dist.world_size > cfg.batch_size)  # type: ignore[arg-type]
        test_loader = loader(test_ds, batch_size=cfg.batch_size * 2, shuffle=False)

        start_epoch, best_acc, best_epoch, history, repaired = 1, -1.0, 0, [], []
        if state is not None:
            load_weights(model, state, out / "last.pt")  # type: ignore[operator]
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if state["scaler"]:
                scaler.load_state_dict(state["scaler"])
            best_acc, best_epoch, history = float(state["best_acc"]), state["best_epoch"], list(state["history"])
            start_epoch = state["epoch"] + 1
            t_start -= float(state["wall_seconds"])  # wall time counts every session of the run
            restore_rng_state(state["rng"][dist.rank], loader_gen)
            if dist.is_main:
                repaired = repair(out, state)  # type: ignore[arg-type]

        if device.type == "cpu" and cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # speed; bit-reproducibility is promised on CPU only
        kept = device.type == "cpu" and keep_freed_memory()
        meta = {  # hardware: cpu_capability is the ATen kernels this run used
            "config": cfg.to_dict(), "autocast_dtype": dtype_name(amp_dtype),
            "data_info": {k: getattr(info, k) for k in MODEL_FIELDS},  # the fields a model is built from
            "hardware": {
                "cpu": cpu_model(), "cpu_count": os.cpu_count(), "native_bf16": cpu_has_native_bf16(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads(),
                "malloc_keeps_freed": kept,  # keep_freed_memory(): glibc holds freed memory for reuse
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "device": str(device),
                "world_size": dist.world_size, "torch": torch.__version__, "python": platform.python_version(),
                "platform": platform.platform(), "git_commit": git_commit(), "hostname": platform.node(),
                "command": " ".join(sys.argv),
            },
            "lif_backend": lif_backend_name(device, cfg.compile), "cudnn_benchmark": device.type == "cuda",
            "parameters": sum(p.numel() for p in model.parameters()), "started": now(),
            "resumed_from_epoch": start_epoch - 1 if resume else None, "data": provenance,
            "repaired_on_resume": repaired,
        }
        writes = out if out is not None and dist.is_main else None  # the run folder, on the rank that writes it
        if writes is not None:  # created and locked just before the first write: a refused start leaves nothing
            writes.mkdir(parents=True, exist_ok=True)
            lock = lock or RunLock(writes).acquire()
            if not resume and ((writes / METRICS_FILE).exists() or (writes / "last.pt").exists()):
                raise ValueError(f"out={str(out)!r} already holds a run (another process started it meanwhile)")
            atomic_write_text(writes / "config.json", json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
            write_run_json(writes, meta, "running")

        pending: dict[str, Tensor] = {}  # non-finite flags not yet read on the host
        skips = torch.zeros((), dtype=torch.int64, device=device)  # fp16: consecutive skipped steps

        def check_finite(what: str, value: Tensor, epoch: int, step: int, last: bool) -> None:
            """:class:`NonFiniteLossError` on all ranks once ``value`` was NaN or inf: checked every step on a CPU,
            every :data:`CHECK_EVERY` steps and at the epoch's end on a GPU (no host sync)."""
            flag = ~torch.isfinite(value.detach())
            pending[what] = flag | pending[what] if what in pending else flag
            if device.type != "cpu" and step % CHECK_EVERY and not last:
                return
            if D.all_reduce_sum([float(pending.pop(what))], device, dist)[0]:  # any rank
                keep = (f"; the last good checkpoint {out / 'last.pt'} (epoch {epoch - 1}) is kept"
                        if out is not None and epoch > 1 else "")
                when = (f"is {float(value)} at epoch {epoch}, step {step}" if device.type == "cpu"
                        else f"became NaN or inf at epoch {epoch}, by step {step}")
                raise NonFiniteLossError(
                    f"{what} {when} (lr={opt.param_groups[0]['lr']:.4g}); the run stopped{keep}. Lower the learning "
                    "rate, use fp32, or check the input data for NaN/inf.")

        for epoch in range(start_epoch, cfg.epochs + 1):
            t0, lr = time.perf_counter(), opt.param_groups[0]["lr"]
            net.train()
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(epoch)
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.float64, device=device)
            seen, grad_sq = 0, collections.defaultdict(float)
            bar = progress(train_loader, f"epoch {epoch}/{cfg.epochs} train", len(train_loader))
            for step, (x, y) in enumerate(bar, start=1):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if cfg.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                if mixer is not None:
                    x, target = mixer(x, y)
                with autocast():
                    logits = net(x).float().mean(1)  # time-averaged logits [B, classes]
                if mixer is not None:  # soft targets; the accuracy counts the dominant label
                    loss, y = soft_cross_entropy(logits, target), target.argmax(1)
                else:
                    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                last = step == len(train_loader)
                if scaler.is_enabled():  # fp16: GradScaler skips the step of a non-finite loss and lowers its scale
                    skips = count_skips(skips, loss, scaler, dist, epoch, step, last)
                else:
                    check_finite("training loss", loss, epoch, step, last)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if not scaler.is_enabled():
                    # spikes swallow NaN (NaN > threshold is False), so a NaN input or weight can leave the
                    # loss finite: check the gradient too (fp16 runs leave inf gradients to the grad scaler)
                    gnorm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
                    check_finite("gradient norm", gnorm, epoch, step, last)
                if cfg.record_grad_norms:
                    scaler.unscale_(opt)
                    for name, p in model.named_parameters():
                        if p.grad is not None:  # per layer: stem, dta, layer2.1 (a block), fc
                            layer = re.match(r"layer\d+\.\d+|stem|[^.]+", name)[0]
                            grad_sq[layer] += float(p.grad.detach().float().pow(2).sum())
                scaler.step(opt)
                scaler.update()
                # fp16: a skipped step adds 0
                loss_sum += torch.nan_to_num(loss.detach().double(), nan=0.0, posinf=0.0) * y.shape[0]
                correct += (logits.detach().argmax(1) == y).sum()
                seen += y.shape[0]
                if bar.disable is False and step % 10 == 0:
                    bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}")
            tot_loss, tot_correct, tot_seen = D.all_reduce_sum([float(loss_sum), float(correct), seen], device, dist)
            rec: dict[str, Any] = {"train_loss": tot_loss / max(tot_seen, 1),
                                   "train_acc": 100.0 * tot_correct / max(tot_seen, 1), "train_samples": int(tot_seen)}
            if cfg.record_grad_norms:  # per-step norm of each layer's gradient, averaged in quadrature (rank 0's)
                rec["grad_norms"] = {k: math.sqrt(v / max(len(train_loader), 1)) for k, v in grad_sq.items()}
            sched.step()
            rec.update(evaluate_model(net, progress(test_loader, "test", len(test_loader)), device, autocast, dist,
                                      probe_model=model if cfg.record_firing_rates else None))
            improved = rec["test_acc"] > best_acc
            if improved:
                best_acc, best_epoch = rec["test_acc"], epoch
            secs = time.perf_counter() - t0
            history.append({"epoch": epoch, "lr": lr, **rec, "best_test_acc": best_acc, "seconds": secs,
                            "images_per_s": rec["train_samples"] / secs if secs > 0 else None})
            # last.pt (the commit point: checkpoint.repair rebuilds the rest from it), best.pt if improved, metrics
            rngs = D.gather_objects(capture_rng_state(loader_gen), dist)  # collective: every rank takes part
            if writes is not None:
                save_checkpoint(writes / "last.pt", {
                    "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "best_acc": best_acc,
                    "best_epoch": best_epoch, "config": cfg.to_dict(), "history": history, "rng": rngs,
                    "data_info": meta["data_info"], "world_size": dist.world_size,
                    "autocast_dtype": dtype_name(amp_dtype), "wall_seconds": time.perf_counter() - t_start})
                if improved:
                    atomic_write(writes / "best.pt", lambda p: shutil.copyfile(writes / "last.pt", p))
                write_metrics(writes, history)
            if on_epoch is not None and dist.is_main:  # after the epoch's files: a stop loses nothing
                on_epoch(list(history))

        digests = [str(d) for d in D.gather_objects(D.param_digest(model), dist)]
        wall = time.perf_counter() - t_start
        final = history[-1]["test_acc"] if history else None
        if writes is not None:
            write_run_json(  # lif_backend again: a kernel that failed shows its fallback
                writes, meta, "completed", lif_backend=lif_backend_name(device, cfg.compile), wall_seconds=wall,
                finished=now(), best_test_acc=best_acc, best_epoch=best_epoch, final_test_acc=final,
                param_digests=digests, ranks_in_sync=len(set(digests)) == 1)
        if dist.enabled:
            torch.distributed.barrier()
        return TrainResult(best_acc, best_epoch, float("nan") if final is None else final, cfg.epochs, list(history),
                           wall, out, cfg, digests)
    except BaseException as e:  # run.json says interrupted (SIGINT/SIGTERM) or failed, never running
        if lock is not None and meta is not None:  # the run holds the lock and has begun to write
            with contextlib.suppress(OSError):  # e.g. the disk is full: run.json keeps its last state
                status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
                write_run_json(out, meta, status, error=f"{type(e).__name__}: {e}"[:2000], stopped=now())
        raise
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)
        if lock is not None:
            lock.release()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
