"""Training-epoch race at the CPU study size: the release's computation against this library's training set-ups.

One "epoch" is ``images // batch`` training steps (forward, cross-entropy on the mean over T, backward, SGD with
momentum 0.9 and weight decay, as the trainer does) over the same real Fashion-MNIST images for every candidate
(random tensors when no copy of Fashion-MNIST is found; recorded). Candidates, each with its own copy of the same
initial weights:

- ``release``: :class:`~dta_lib.models.reference.ReferenceMSResNet18` at the same width (the release's
  computation: input repeated T times before the stem, Python LIF loops, NCHW), fp32;
- ``dta_lib``: :func:`~dta_lib.models.ms_resnet18` eager in NCHW, then with ``channels_last``, with
  ``torch.compile`` (:func:`dta_lib.engine.device.compile_model`), with both; in bf16 autocast too where
  bf16 is native (AVX512-BF16 / AMX; elsewhere it is emulated and minutes slower).

Repetitions are interleaved (A, B, C, A, B, C, ...) after one warm-up round that also compiles; the median is
reported with the speed-up over the release in fp32 and the projected time of a 60,000-image epoch.
"""
from __future__ import annotations

import copy
import statistics
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..models.compat import to_reference_state_dict
from ..models.ms_resnet import ms_resnet18
from ..models.reference import ReferenceMSResNet18
from .measure import _autocast, race

__all__ = ["EPOCH_CANDIDATES", "bench_epoch", "epoch_images"]

#: (name, precision, channels_last, compile) of this library's candidates
EPOCH_CANDIDATES: tuple[tuple[str, str, bool, bool], ...] = (
    ("dta_lib", "fp32", False, False),
    ("dta_lib+channels_last", "fp32", True, False),
    ("dta_lib+compile", "fp32", False, True),
    ("dta_lib+channels_last+compile", "fp32", True, True),
    ("dta_lib+channels_last", "bf16", True, False),
    ("dta_lib+compile", "bf16", False, True),
)
FULL_EPOCH = 60_000


def epoch_images(n: int, image_size: int = 28, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` normalised training images ``[n, 1, s, s]``, labels and where they came from."""
    from ..data.fashion import load_fashion_mnist_samples
    from ..data.registry import dataset_info

    try:
        x, y = load_fashion_mnist_samples(n, split="train")
        source = f"fashion-mnist train[0:{n}]"
    except (FileNotFoundError, ValueError, OSError):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
        source = "random (no Fashion-MNIST copy found)"
    info = dataset_info("fashion-mnist")
    x = (x - info.mean[0]) / info.std[0]
    if image_size != 28:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x, y, source


def _epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, batches: list[tuple[torch.Tensor, torch.Tensor]],
           precision: str, device: torch.device) -> Callable[[], None]:
    def run() -> None:
        model.train()
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            with _autocast(device, precision):
                logits = model(x)
            F.cross_entropy(logits.float().mean(1), y).backward()
            opt.step()

    return run


def bench_epoch(
    images: int = 1280,
    batch: int = 64,
    time_steps: int = 4,
    width: float = 0.125,
    image_size: int = 28,
    precisions: Sequence[str] = ("fp32",),
    candidates: Sequence[tuple[str, str, bool, bool]] = EPOCH_CANDIDATES,
    repeats: int = 3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Race one training epoch of ``images`` images (``images // batch`` full batches) on the CPU; one row per
    candidate whose precision is in ``precisions`` (the release always runs, in fp32)."""
    if images < batch or batch < 1 or time_steps < 1 or repeats < 1:
        raise ValueError(f"need images >= batch >= 1, time_steps >= 1, repeats >= 1; got images={images}, "
                         f"batch={batch}, time_steps={time_steps}, repeats={repeats}")
    dev = torch.device("cpu")
    x, y, source = epoch_images(images, image_size, seed)
    steps = images // batch
    batches = [(x[i * batch:(i + 1) * batch].contiguous(), y[i * batch:(i + 1) * batch]) for i in range(steps)]
    batches_cl = [(b.contiguous(memory_format=torch.channels_last), t) for b, t in batches]
    torch.manual_seed(seed)
    ours = ms_resnet18(10, time_steps, "dta", in_channels=1, width=width)
    release = ReferenceMSResNet18(10, time_steps, in_channels=1, width=width)
    release.load_state_dict(to_reference_state_dict(ours.state_dict()))
    with torch.no_grad():
        max_diff = float((ours.eval()(batches[0][0]) - release.eval()(batches[0][0])).abs().max())

    def sgd(m: torch.nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)

    fns: dict[str, Callable[[], None]] = {"release/fp32": _epoch(release, sgd(release), batches, "fp32", dev)}
    chosen = [c for c in candidates if c[1] in precisions]
    for name, prec, cl, comp in chosen:
        m = copy.deepcopy(ours)
        if cl:
            m = m.to(memory_format=torch.channels_last)
        net = m
        if comp:
            from ..engine.device import compile_model

            net = compile_model(m)
        fns[f"{name}/{prec}"] = _epoch(net, sgd(m), batches_cl if cl else batches, prec, dev)
    times = race(fns, repeats, dev, warmup=1)
    base = statistics.median(times["release/fp32"])
    rows = []
    for key, ts in times.items():
        name, prec = key.split("/")
        med = statistics.median(ts)
        rows.append({
            "bench": "epoch", "impl": name, "precision": prec, "images": steps * batch, "batch": batch,
            "T": time_steps, "width": width, "image_size": image_size, "data": source,
            "median_s": med, "times_s": ts, "images_per_s": steps * batch / med,
            "speedup_vs_release_fp32": base / med, "full_epoch_s": med * FULL_EPOCH / (steps * batch),
            "max_abs_logit_diff_fp32": max_diff,
        })
    return rows
