"""Training-step race: MS-ResNet-18 + DTA of this library against the release's model holding the same weights
(forward, cross-entropy on the mean over T, backward, SGD step), and the time the convolutions alone take."""
from __future__ import annotations

import statistics
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..models.compat import to_reference_state_dict
from ..models.ms_resnet import ms_resnet18
from ..models.reference import ReferenceMSResNet18
from .measure import _DTYPES, PRECISIONS, _autocast, peak_added_bytes, race

__all__ = [
    "conv_floor",
    "conv_step",
    "bench_train",
]


def conv_step(model: torch.nn.Module, x: torch.Tensor, precision: str = "fp32",
              device: torch.device | None = None) -> tuple[Callable[[], None], int]:
    """``(run, calls)``: ``run()`` performs the convolutions of one training step of ``model`` on ``x`` and nothing
    else; ``calls`` is the number of convolution calls in a forward pass.

    Every ``nn.Conv1d``/``nn.Conv2d`` call of a forward pass is recorded with its real input; ``run`` then runs each
    alone, forward + backward (input gradient when the network needs it, weight and bias gradients), in the module's
    own memory format and under ``precision``'s autocast. Its time is what a step would cost if everything but the
    convolutions were free: ``step / conv time`` bounds the speed-up any LIF, DTA or memory work can give without
    faster convolution kernels.
    """
    device = device or x.device
    calls: list[tuple[torch.nn.Module, torch.Tensor, bool]] = []

    def hook(mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        calls.append((mod, inp[0].detach().clone(), inp[0].requires_grad))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))]
    try:
        with torch.enable_grad(), _autocast(device, precision):
            model(x)
    finally:
        for h in handles:
            h.remove()

    def one(mod: torch.nn.Module, inp: torch.Tensor, needs_grad: bool) -> Callable[[], None]:
        leaf = inp.requires_grad_(needs_grad)
        params = [p for p in mod.parameters() if p.requires_grad]
        with torch.no_grad(), _autocast(device, precision):
            gy = torch.ones_like(mod(leaf))

        def run() -> None:
            with _autocast(device, precision):
                y = mod(leaf)
            torch.autograd.grad(y, ([leaf] if needs_grad else []) + params, gy)

        return run

    fns = [one(*c) for c in calls]

    def all_convs() -> None:
        for f in fns:
            f()

    return all_convs, len(calls)


def conv_floor(model: torch.nn.Module, x: torch.Tensor, repeats: int, device: torch.device) -> dict[str, Any]:
    """Seconds of the convolutions alone in one fp32 training step of ``model`` on ``x`` (:func:`conv_step`):
    ``{"times_s": [...] (one per repetition), "calls": number of convolution calls in a forward pass}``."""
    run, calls = conv_step(model, x, "fp32", device)
    return {"times_s": race({"convs": run}, repeats, device)["convs"], "calls": calls}


def _train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                device: torch.device, precision: str) -> Callable[[], None]:
    def run() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            logits = model(x)
        loss = F.cross_entropy(logits.float().mean(1), y)
        loss.backward()
        opt.step()

    return run


def bench_train(
    batch: int = 8,
    time_steps: int = 6,
    image_size: int = 32,
    width: float = 1.0,
    precisions: Sequence[str] = PRECISIONS,
    repeats: int = 5,
    device: str | torch.device = "cpu",
    channels_last: bool = True,
    lr: float = 0.01,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Training step of ``ms_resnet18(attention="dta")`` vs the release's model with the same weights.

    The release runs as released (NCHW, its own loops); this library runs with the automatic LIF
    backend and, when ``channels_last``, ``model.to(memory_format=torch.channels_last)``.
    ``width != 1`` is for smoke runs: the release's model has no width, so the baseline is then this
    library's model with the reference ``"loop"`` LIF backend in NCHW (impl ``"loop"``).
    The logits of both sides are compared first (``max_abs_logit_diff_fp32``).
    """
    dev = torch.device(device)
    if batch < 1 or time_steps < 1 or image_size < 4:
        raise ValueError(f"need batch >= 1, time_steps >= 1, image_size >= 4; got {batch}, {time_steps}, {image_size}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, image_size, image_size, generator=g).to(dev)
    y = torch.randint(0, 10, (batch,), generator=g).to(dev)
    ours = ms_resnet18(10, time_steps, "dta", width=width).to(dev)
    if width == 1.0:  # the release's own model, holding our weights
        base_name, base = "release", ReferenceMSResNet18(10, time_steps).to(dev)
        base.load_state_dict(to_reference_state_dict(ours.state_dict()))
    else:  # smoke sizes: the release has no width knob; race the reference loop backend instead
        base_name, base = "loop", ms_resnet18(10, time_steps, "dta", width=width, lif_backend="loop").to(dev)
        base.load_state_dict(ours.state_dict())
    with torch.no_grad():
        max_diff = float((ours(x) - base(x)).abs().max())
    if channels_last:
        ours = ours.to(memory_format=torch.channels_last)
    x_ours = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    models = {base_name: base, "dta_lib": ours}
    inputs = {base_name: x, "dta_lib": x_ours}
    opts = {k: torch.optim.SGD(m.parameters(), lr=lr) for k, m in models.items()}
    fns: dict[str, Callable[[], None]] = {}
    for prec in precisions:
        if prec not in _DTYPES:
            raise ValueError(f"unknown precision {prec!r}; expected one of {sorted(_DTYPES)}")
        for k in models:
            fns[f"{k}/{prec}"] = _train_step(models[k], opts[k], inputs[k], y, dev, prec)
    times = race(fns, repeats, dev)
    mem = {k: peak_added_bytes(f, dev) for k, f in fns.items()}
    floor = conv_floor(ours, x_ours, repeats, dev) if "fp32" in precisions else None
    base_fp32 = f"{base_name}/fp32"
    base_t = statistics.median(times[base_fp32]) if base_fp32 in times else None
    out = []
    for key, ts in times.items():
        impl, prec = key.split("/")
        med = statistics.median(ts)
        out.append({
            "bench": "train", "impl": impl, "baseline": base_name, "precision": prec, "batch": batch,
            "T": time_steps, "image_size": image_size, "width": width,
            "channels_last": channels_last and impl == "dta_lib",
            "median_s": med, "times_s": ts, "images_per_s": batch / med,
            "speedup_vs_baseline_fp32": (base_t / med) if base_t else None,
            "speedup_vs_baseline_same_precision": statistics.median(times[f"{base_name}/{prec}"]) / med,
            "peak_added_bytes": mem[key],
            "memory_ratio_vs_baseline_same_precision": mem[key] / max(mem[f"{base_name}/{prec}"], 1),
            "max_abs_logit_diff_fp32": max_diff,
        })
        if floor is not None and impl == "dta_lib" and prec == "fp32":
            fl = statistics.median(floor["times_s"])
            out[-1].update({"conv_floor_s": fl, "conv_floor_times_s": floor["times_s"], "conv_calls": floor["calls"],
                            "conv_share": fl / med, "speedup_cap_from_conv_floor": base_t / fl if base_t else None})
    return out
