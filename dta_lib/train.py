"""Training engine: BPTT with SGD + cosine annealing (paper Sec. 4, the release's recipe).

The loss is cross-entropy on the time-averaged logits
:math:`\\bar{o} = \\frac{1}{T}\\sum_t o_t` of the MS-ResNet (soft-label cross-entropy when
CutMix / MixUp mix the batch); gradients flow through every time step and every LIF
site via the surrogate derivative (paper Eq. 5), i.e. backpropagation through time.

Use :func:`train` (or :class:`Trainer`) with a :class:`~dta_lib.config.TrainConfig`; with
an ``out`` folder each epoch writes ``metrics.jsonl``, ``last.pt`` / ``best.pt`` (atomic),
beside ``config.json`` and ``run.json`` (hardware, versions, git commit, wall time).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset, TensorDataset
from tqdm.auto import tqdm

from . import distributed as D
from .checkpoint import (
    CheckpointError,
    atomic_write_text,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from .config import PRECISIONS, SYNTHETIC_DATASETS, TrainConfig
from .data.registry import RESOLVED_ROOTS, data_provenance
from .runfolder import LOCK_FILE, RunLock, check_out_path, clean_temp_files, copy_checkpoint, repair, write_metrics
from .runfolder import read_metrics as _read_metrics
from .models import MSResNet, ms_resnet18, ms_resnet34
from .snn.neuron import LIF

__all__ = [
    "DataInfo",
    "TrainResult",
    "NonFiniteLossError",
    "Trainer",
    "train",
    "evaluate",
    "evaluate_model",
    "load_model",
    "run_metadata",
    "build_model",
    "build_data",
    "get_data_info",
    "synthetic_datasets",
    "seed_everything",
    "read_metrics",
    "METRICS_FILE",
]

METRICS_FILE = "metrics.jsonl"
#: config fields that may differ between a run and its ``--resume`` (they do not change the maths)
RESUME_FREE_FIELDS = frozenset({"progress", "workers", "data_root", "download", "device"})


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class DataInfo:
    """What the model needs to know about a dataset (mirrors ``dta_lib.data.dataset_info``)."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    default_time_steps: int
    is_event: bool


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


# ---------------------------------------------------------------------------- data
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
    """Dataset metadata: built in for the synthetic sets, else ``dta_lib.data.dataset_info``."""
    if name in SYNTHETIC_DATASETS:
        return DataInfo(name, _SYNTH["num_classes"], 1 if name == "synthetic" else 2, _SYNTH["image_size"], 4,
                        name != "synthetic")
    from .data import dataset_info

    i = dataset_info(name)
    return DataInfo(name, i.num_classes, i.in_channels, i.image_size, i.default_time_steps, i.is_event)


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


# ---------------------------------------------------------------------------- determinism / device
def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    s = torch.initial_seed() % 2**32  # distinct per worker, derived from the loader's generator
    random.seed(s)
    np.random.seed(s)


def resolve_device(cfg: TrainConfig, info: D.DistInfo | None = None) -> torch.device:
    if cfg.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", info.local_rank if info and info.enabled else torch.cuda.current_device())
        return torch.device("cpu")
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={cfg.device!r} requested but CUDA is not available on this machine")
    if dev.type == "cuda" and info is not None and info.enabled and dev.index is None:
        dev = torch.device("cuda", info.local_rank)
    return dev


def resolve_precision(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype (``None`` = fp32).

    ``auto``: on CUDA bf16 when supported, else fp16; on a CPU bf16 only when it has bf16 instructions
    (:func:`dta_lib.precision.cpu_has_native_bf16`; elsewhere bf16 is emulated and slower), else fp32.
    The recorded ``precision`` study (notebook 11) checks that bf16 keeps fp32's accuracy.
    """
    p = cfg.precision
    if p == "auto":
        if device.type == "cpu":
            from .precision import cpu_has_native_bf16

            return torch.bfloat16 if cpu_has_native_bf16() else None
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if p == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
    if p == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision='bf16' is not supported by this GPU; use 'fp16' or 'auto'")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]


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


# ---------------------------------------------------------------------------- run metadata
def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu_model() -> str:
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
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "device": str(device),
        "world_size": world_size,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "hostname": platform.node(),
        "command": " ".join(sys.argv),
    }


read_metrics = _read_metrics  # the run folder's reader (dta_lib.runfolder.read_metrics)


# ---------------------------------------------------------------------------- probes
def _layer_group(name: str) -> str:
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


# ---------------------------------------------------------------------------- trainer
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
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        config.validate()
        self.cfg = config
        self.out = check_out_path(out) if out is not None else None
        self.resume = resume
        self._datasets = datasets
        self._info = info
        self._lock: RunLock | None = None
        self._created_out = False
        self.repaired: list[str] = []
        self.data_provenance: dict[str, Any] = {}
        self._check_out()

    # ------------------------------------------------------------------ output folder
    def _check_out(self) -> None:
        """Refuse bad run folders before anything is created or written."""
        if self.out is None:
            if self.resume:
                raise ValueError("resume=True needs an out folder holding last.pt")
            return
        out = self.out = check_out_path(self.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"out={str(out)!r} exists and is not a folder; expected a (new or run) folder")
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ValueError(f"out={str(out)!r}: {parent} is a file, not a folder")
                break
        last = out / "last.pt"
        if self.resume:
            if not last.is_file():
                if out.is_dir() and not (out / METRICS_FILE).exists():
                    self.resume = False  # the run died before its first epoch: nothing to resume, start it afresh
                    return
                raise FileNotFoundError(f"cannot resume: {last} does not exist (start a new run without --resume)")
        elif out.is_dir() and ((out / METRICS_FILE).exists() or last.exists()):
            raise ValueError(
                f"out={str(out)!r} already holds a run ({METRICS_FILE} / last.pt); pass resume=True (--resume) "
                "to continue it or choose a new folder"
            )

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
            info = self._info or _infer_info(cfg, train_ds)
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
            # static shapes: the last, smaller test batch recompiles once instead of tracing symbolic sizes
            # (dynamic shapes fail on CPU in the LIF loop: "cannot determine truth value of Relational")
            # every layer's LIF call has its own shape, one compiled entry each: lift dynamo's limit of 8
            # entries per frame so no layer falls back to eager
            import torch._dynamo.config as dynamo_config

            dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)
            self.net = torch.compile(self.net, dynamic=False)  # type: ignore[assignment]
        self.opt = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=cfg.epochs, eta_min=0.0)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda"
        )
        self.mixer = None
        if cfg.mixing:
            from .data import BatchMix

            self.mixer = BatchMix(
                info.num_classes, cutmix_alpha=cfg.cutmix_alpha, mixup_alpha=cfg.mixup_alpha, p=cfg.mix_prob,
                label_smoothing=cfg.label_smoothing,
            )

        seed_everything(cfg.seed + self.dist.rank)  # per-rank augmentation streams
        self.loader_gen = torch.Generator().manual_seed(cfg.seed)
        pin = self.device.type == "cuda"
        if self.dist.enabled:
            self.train_sampler: Any = DistributedSampler(
                train_ds, self.dist.world_size, self.dist.rank, shuffle=True, seed=cfg.seed, drop_last=True
            )
        else:
            self.train_sampler = RandomSampler(train_ds, generator=self.loader_gen)
        n_train = len(train_ds) // self.dist.world_size  # type: ignore[arg-type]
        self.train_loader = DataLoader(
            train_ds, batch_size=cfg.batch_size, sampler=self.train_sampler, num_workers=cfg.workers,
            pin_memory=pin, drop_last=n_train > cfg.batch_size, worker_init_fn=_worker_init,
            generator=self.loader_gen,
        )
        eval_ds = Subset(test_ds, D.shard_indices(len(test_ds), self.dist)) if self.dist.enabled else test_ds  # type: ignore[arg-type]
        self.test_loader = DataLoader(
            eval_ds, batch_size=cfg.batch_size * 2, shuffle=False, num_workers=cfg.workers, pin_memory=pin,
            worker_init_fn=_worker_init,
        )

        self.start_epoch = 1
        self.best_acc, self.best_epoch = -1.0, 0
        self.history: list[dict[str, Any]] = []
        if self.resume_state is not None:
            self._load_state(self.resume_state)
            if self.out is not None and self.is_main:
                self.repaired = repair(self.out, self.resume_state, load_checkpoint)

    def _lock_out(self) -> None:
        """Take the run folder's lock (once) and remove temp files that killed writes left behind."""
        if self._lock is not None or self.out is None or not D.detect().is_main:
            return
        self._lock = RunLock(self.out).acquire()
        clean_temp_files(self.out)

    def _check_resume_config(self, state: dict[str, Any]) -> None:
        saved = state["config"]
        now = self.cfg.to_dict()
        diff = {k: (saved.get(k), v) for k, v in now.items() if k not in RESUME_FREE_FIELDS and saved.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"cannot resume {self.out / 'last.pt'}: the config differs ({detail})")  # type: ignore[operator]

    def _load_state(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint {self.out}/last.pt does not fit the model: {str(e)[:300]}") from None
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"]) + 1
        self.best_acc, self.best_epoch = float(state["best_acc"]), int(state["best_epoch"])
        self.history = list(state["history"])
        rngs = state["rng"]
        mine = rngs[self.dist.rank] if len(rngs) == self.dist.world_size else rngs[0]
        restore_rng_state(mine, self.loader_gen)

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
            self._check_finite(loss, epoch, step, "training loss")
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if not self.scaler.is_enabled():
                # spikes swallow NaN (NaN > threshold is False), so a NaN input or weight can leave the
                # loss finite: check the gradient too (fp16 runs leave inf gradients to the grad scaler)
                gnorm = torch.nn.utils.get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None])
                self._check_finite(gnorm, epoch, step, "gradient norm")
            if cfg.record_grad_norms:
                self.scaler.unscale_(self.opt)
                for name, p in self.model.named_parameters():
                    if p.grad is not None:
                        g = _layer_group(name)
                        grad_sq[g] = grad_sq.get(g, 0.0) + float(p.grad.detach().float().pow(2).sum())
                steps += 1
            self.scaler.step(self.opt)
            self.scaler.update()
            b = y.shape[0]
            loss_sum += loss.detach().double() * b
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

    def _check_finite(self, value: Tensor, epoch: int, step: int, what: str) -> None:
        """Stop the run (all ranks) with :class:`NonFiniteLossError` if ``value`` is NaN or inf."""
        bad = 0.0 if bool(torch.isfinite(value.detach())) else 1.0
        if self.dist.enabled:
            bad = D.all_reduce_sum([bad], self.device, self.dist)[0]
        if bad:
            keep = f"; the last good checkpoint {self.out / 'last.pt'} (epoch {epoch - 1}) is kept" if (
                self.out is not None and epoch > 1) else ""
            raise NonFiniteLossError(
                f"{what} is {float(value)} at epoch {epoch}, step {step} (lr={self.opt.param_groups[0]['lr']:.4g}); "
                f"the run stopped{keep}. Lower the learning rate, use fp32, or check the input data for NaN/inf."
            )

    @torch.no_grad()
    def _evaluate(self) -> dict[str, Any]:
        return evaluate_model(
            self.net, self.test_loader, self.device, self._autocast, self.dist,
            probe_model=self.model if self.cfg.record_firing_rates else None,
            progress=lambda it, n: self._progress(it, "test", n),
        )

    # ------------------------------------------------------------------ files
    def _state(self, epoch: int) -> dict[str, Any]:
        rng = capture_rng_state(self.loader_gen)
        rngs: list[Any] = [rng]
        if self.dist.enabled:
            rngs = [None] * self.dist.world_size
            torch.distributed.all_gather_object(rngs, rng)
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            "config": self.cfg.to_dict(),
            "history": self.history,
            "rng": rngs,
            "data_info": _dc_dict(self.info),
            "world_size": self.dist.world_size,
            "autocast_dtype": dtype_name(self.amp_dtype),
            "wall_seconds": self._wall(),
        }

    def _write_metadata(self, status: str, extra: dict[str, Any] | None = None) -> None:
        if self.out is None or not self.is_main:
            return
        meta = dict(self.meta, status=status, **(extra or {}))
        atomic_write_text(self.out / "run.json", json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")

    def _write_epoch(self, epoch: int, improved: bool) -> None:
        state = self._state(epoch)  # collective under DDP: every rank takes part
        if self.out is None or not self.is_main:
            return
        # last.pt is the commit point: it carries the history and the best epoch, so whatever a kill interrupts
        # after it (best.pt, metrics.jsonl) is rebuilt from it on --resume (dta_lib.runfolder.repair)
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
                "data_info": _dc_dict(self.info),
                "hardware": run_metadata(self.device, self.dist.world_size),
                "autocast_dtype": dtype_name(self.amp_dtype),
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
            digests = D.gather_digests(self.net, self.dist)
            wall = prior_wall + time.perf_counter() - t_start
            self._write_metadata("completed", {
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
            if {p.name for p in self.out.iterdir()} <= {LOCK_FILE}:
                self._lock.release()
                self._lock = None
                with contextlib.suppress(OSError):
                    self.out.rmdir()


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
        names = set(DataInfo.__dataclass_fields__)
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


def _dc_dict(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in getattr(obj, "__dataclass_fields__", vars(obj))}


def _infer_info(cfg: TrainConfig, ds: Dataset) -> DataInfo:
    """DataInfo for user-supplied datasets: shape from a sample, classes from the labels."""
    x, _ = ds[0]
    if isinstance(ds, TensorDataset):
        labels = ds.tensors[1].tolist()
    elif hasattr(ds, "targets"):
        labels = [int(t) for t in ds.targets]  # type: ignore[attr-defined]
    else:
        labels = [int(ds[i][1]) for i in range(len(ds))]  # type: ignore[arg-type]
    event = x.dim() == 4
    return DataInfo("custom", max(labels) + 1, int(x.shape[-3]), int(x.shape[-1]), cfg.time_steps, event)


@torch.no_grad()
def evaluate_model(
    model: nn.Module, loader: DataLoader, device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    dist_info: D.DistInfo | None = None, probe_model: nn.Module | None = None,
    progress: Callable[[Any, int], Any] | None = None,
) -> dict[str, Any]:
    """Top-1 accuracy (percent) and mean cross-entropy of the time-averaged logits."""
    info = dist_info or D.DistInfo()
    model.eval()
    probe = _FiringProbe(probe_model) if probe_model is not None else None
    loss_sum, correct, n = 0.0, 0.0, 0
    try:
        it: Iterator[Any] = progress(loader, len(loader)) if progress else iter(loader)
        for x, y in it:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast():
                logits = model(x).float().mean(1)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += float((logits.argmax(1) == y).sum())
            n += y.shape[0]
    finally:
        if probe is not None:
            probe.close()
    loss_sum, correct, total = D.all_reduce_sum([loss_sum, correct, n], device, info)
    rec: dict[str, Any] = {"test_loss": loss_sum / max(total, 1), "test_acc": 100.0 * correct / max(total, 1),
                           "test_samples": int(total)}
    if probe is not None:
        names = sorted(probe.sums)
        vals = D.all_reduce_sum([probe.sums[k] for k in names] + [probe.counts[k] for k in names], device, info)
        rec["firing_rates"] = {k: vals[i] / max(vals[len(names) + i], 1) for i, k in enumerate(names)}
    return rec


def train(
    config: TrainConfig,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    datasets: tuple[Dataset, Dataset] | None = None,
    info: DataInfo | None = None,
) -> TrainResult:
    """Train one run; see :class:`Trainer`."""
    return Trainer(config, out, resume, datasets, info).fit()


# ---------------------------------------------------------------------------- evaluation of a checkpoint
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
