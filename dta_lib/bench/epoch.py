"""Training-epoch race at the CPU study size: the release's computation against this library's training set-ups.

One "epoch" is ``images // batch`` training steps (forward, cross-entropy on the mean over T, backward, SGD with
momentum 0.9 and weight decay, as the trainer does) over the same real Fashion-MNIST images for every candidate
(random tensors when no copy of Fashion-MNIST is found; recorded). Candidates, each with its own copy of the same
initial weights:

- ``release``: :class:`~dta_lib.models.reference.ReferenceMSResNet18` at the same width (the release's
  computation: input repeated T times before the stem, Python LIF loops), eager in NCHW and tuned with the
  one-liners any user can add: ``channels_last``, ``torch.compile``, both, and bf16 autocast where it is native;
- ``dta_lib``: :func:`~dta_lib.models.ms_resnet18` in the same set-ups (compiled through
  :func:`dta_lib.train.compile_model`);
- ``convolutions only``: the convolutions of ``dta_lib``'s channels_last step alone, forward and backward, per
  precision (:func:`~dta_lib.bench.train_step.conv_step`). Every candidate runs these same convolutions, so
  ``best release / this`` bounds what any LIF, attention or memory work can gain (each row's
  ``speedup_cap_vs_best_release_same_precision``).

After the race, the fastest set-up of each side per precision is profiled (:func:`step_profile`): where one training
step's time goes, by the groups of :data:`PROFILE_GROUPS` (each row's ``profile``, seconds per step).

bf16 runs only where it is native (AVX512-BF16 / AMX; elsewhere it is emulated and minutes slower). Each row
carries its speed-up over the eager fp32 release and over the *fastest release set-up of the same precision*, the
honest opponent, and the peak memory one training step adds.

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
from .measure import _autocast, peak_added_bytes, race

__all__ = ["CONV_FLOOR", "EPOCH_CANDIDATES", "PROFILE_GROUPS", "bench_epoch", "epoch_images", "step_profile"]

#: (implementation, precision, channels_last, compile) of every candidate; the eager fp32 release comes first
EPOCH_CANDIDATES: tuple[tuple[str, str, bool, bool], ...] = (
    ("release", "fp32", False, False),
    ("release", "fp32", True, False),
    ("release", "fp32", False, True),
    ("release", "fp32", True, True),
    ("release", "bf16", False, True),
    ("release", "bf16", True, True),
    ("dta_lib", "fp32", False, False),
    ("dta_lib", "fp32", True, False),
    ("dta_lib", "fp32", False, True),
    ("dta_lib", "fp32", True, True),
    ("dta_lib", "bf16", True, False),
    ("dta_lib", "bf16", False, True),
    ("dta_lib", "bf16", True, True),
)
FULL_EPOCH = 60_000
#: the race's extra row: the convolutions of dta_lib's channels_last step alone (:func:`.train_step.conv_step`)
CONV_FLOOR = "convolutions only"
#: :func:`step_profile`'s groups: (group, substrings of torch.profiler event names); the first match wins, the rest
#: is "other". Under torch.compile the fused kernels run inside the compiled graph's own events ("compiled graph").
PROFILE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("convolution", ("conv",)),
    ("batch norm", ("batch_norm",)),
    ("LIF (dta_lib kernel)", ("FusedLIF",)),
    ("optimizer", ("foreach", "Optimizer", "sgd")),
    ("copies (dtype, layout, saved spikes)", ("copy", "clone", "contiguous")),
    ("compiled graph", ("Compiled", "compiled", "Torch-Compiled", "cpp_fused", "inductor")),
    ("elementwise", ("add", "mul", "sub", "div", "sigmoid", "gelu", "where", "gt", "mean", "sum", "threshold")),
)


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


def step_profile(step: Callable[[], None], steps: int = 3) -> dict[str, float]:
    """Seconds per call of ``step`` (already warm) spent in each group of :data:`PROFILE_GROUPS` and in "other":
    the self CPU time of every torch.profiler event over ``steps`` calls after one profiled warm-up call (the
    profiler's first call costs more), grouped by name. Self times add up to the profiled time, so the groups sum to
    one step (the profiler's own overhead included)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]):
        step()  # the warm-up call, not counted
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    out = {g: 0.0 for g, _ in PROFILE_GROUPS} | {"other": 0.0}
    for e in prof.key_averages():
        group = next((g for g, keys in PROFILE_GROUPS if any(k in e.key for k in keys)), "other")
        out[group] += e.self_cpu_time_total / 1e6 / steps
    return out


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

    from ..train import compile_model

    fns: dict[str, Callable[[], None]] = {}
    one_step: dict[str, Callable[[], None]] = {}
    for impl, prec, cl, comp in [c for c in candidates if c[1] in precisions or c == EPOCH_CANDIDATES[0]]:
        m = copy.deepcopy(ours if impl == "dta_lib" else release)
        if cl:
            m = m.to(memory_format=torch.channels_last)
        net = compile_model(m) if comp else m
        key = f"{impl}{'+channels_last' * cl}{'+compile' * comp}/{prec}"
        data = batches_cl if cl else batches
        fns[key] = _epoch(net, sgd(m), data, prec, dev)
        one_step[key] = _epoch(net, sgd(m), data[:1], prec, dev)
    # the floor: the convolutions of dta_lib's channels_last step alone, per precision, raced with the rest
    from .train_step import conv_step

    conv_net = copy.deepcopy(ours).to(memory_format=torch.channels_last)
    for prec in dict.fromkeys(k.split("/")[1] for k in fns):
        run, _ = conv_step(conv_net, batches_cl[0][0], prec, dev)
        fns[f"{CONV_FLOOR}/{prec}"] = lambda run=run: [run() for _ in range(steps)]
    if "release/fp32" not in fns:
        raise ValueError("the candidates must include the eager fp32 release, ('release', 'fp32', False, False)")
    times = race(fns, repeats, dev, warmup=1)
    med = {k: statistics.median(ts) for k, ts in times.items()}
    best_release = {prec: min(v for k, v in med.items() if k.startswith("release") and k.endswith(f"/{prec}"))
                    for prec in {k.split("/")[1] for k in med}}
    rows = []
    for key, ts in times.items():
        name, prec = key.split("/")
        floor = med[f"{CONV_FLOOR}/{prec}"]
        rows.append({
            "bench": "epoch", "impl": name, "precision": prec, "images": steps * batch, "batch": batch,
            "T": time_steps, "width": width, "image_size": image_size, "data": source,
            "median_s": med[key], "times_s": ts, "images_per_s": steps * batch / med[key],
            "speedup_vs_release_fp32": med["release/fp32"] / med[key],
            "speedup_vs_best_release_same_precision": best_release[prec] / med[key],
            "full_epoch_s": med[key] * FULL_EPOCH / (steps * batch),
            "peak_added_bytes_per_step": peak_added_bytes(one_step[key], dev) if key in one_step else None,
            # if everything but the convolutions were free, this candidate could be at most this much faster than
            # the best release of its precision (the convolutions are the same in every candidate)
            "conv_floor_s": floor, "conv_share": floor / med[key],
            "speedup_cap_vs_best_release_same_precision": best_release[prec] / floor,
            "max_abs_logit_diff_fp32": max_diff,
        })
    # where the fastest set-up of each side spends a step, per precision
    for side in ("release", "dta_lib"):
        for prec in best_release:
            mine = [r for r in rows if r["impl"].split("+")[0] == side and r["precision"] == prec]
            if mine:
                best = min(mine, key=lambda r: r["median_s"])
                best["profile"] = step_profile(one_step[f"{best['impl']}/{prec}"])
    return rows
