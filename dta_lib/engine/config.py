"""Run configuration: the release's per-dataset training recipes and the size presets.

A :class:`TrainConfig` is a flat, JSON-serialisable description of one training run.
:func:`make_config` builds one from a named recipe (``cifar10``, ``cifar100``,
``imagenet``, ``cifar10-dvs``, ``fashion-mnist``, ``fashion-mnist-dvs``; the first four
are the reference release's recipes, ``docs/reference.md`` "Training recipes") and a
size preset:

- ``paper``: the recipe unchanged (needs a GPU: full data, full width, 200-1000 epochs);
- ``cpu``: a laptop-sized run (1,000 training images, width 1/8, 3 epochs; minutes on 2 cores);
- ``smoke``: a CI-sized run (>= 3 epochs on a few hundred images, width 1/16);
- ``study``: the full Fashion-MNIST (60,000 / 10,000), width 1/8, 8 epochs, fp32, no mixing: models that
  learn (the headline DTA vs no-attention runs; about 1.5-2 hours per run on one core);
- ``study-10k``: a fixed class-balanced 10,000-image training subset, the full 10,000-image test set, width 1/8,
  3 epochs, fp32, no mixing: the multi-seed studies (ablation, time steps, surrogate width, DVS), sized so
  that a variant's seed std is about a point (docs/experiments.md has the measured numbers).

The two ``study`` presets turn CutMix / MixUp off: on schedules of a few epochs they only slow learning down.
They train in fp32 with ``channels_last`` (fastest fp32 layout measured here) so that a study can be continued
on any CPU (bf16 is emulated, ~10x slower, on CPUs without AVX512-BF16/AMX).

Explicit keyword overrides win over the preset, which wins over the recipe.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..snn.surrogate import SURROGATES

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
]

ATTENTIONS = ("none", "txa", "tna", "dta")
#: largest learning rate accepted (SGD with momentum diverges far below this; 1e300 is a typo, not a recipe)
MAX_LR = 100.0
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ARCHS = ("ms_resnet18", "ms_resnet34")
#: datasets generated in memory by :func:`dta_lib.engine.build.synthetic_datasets` (tests, CI, DDP checks)
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
