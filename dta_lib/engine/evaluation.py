"""Evaluation: accuracy and loss of the time-averaged logits, of a model in memory or of a checkpoint."""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..models import MSResNet
from ..snn.neuron import LIF
from . import distributed as D
from .build import DataInfo, build_data, build_model, get_data_info
from .checkpoint import CheckpointError, load_checkpoint
from .config import PRECISIONS, TrainConfig
from .device import resolve_device, resolve_precision, trained_precision
from .validation import validate_checkpoint_fields

__all__ = ["evaluate", "evaluate_model", "load_model", "layer_group"]


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
