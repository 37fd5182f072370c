"""LIF race, forward + backward: the release's per-step loop (:func:`dta_lib.models.reference.reference_lif`), the
same loop under ``torch.compile`` (what a user gets in one line), :func:`dta_lib.snn.functional.lif_multistep` with
the automatic backend, and, when it is importable (an optional peer, never a dependency), spikingjelly's multi-step
``LIFNode`` with the release's constants (tau 2, no input decay, hard reset to 0), eager and compiled."""
from __future__ import annotations

import statistics
from typing import Any, Callable, Sequence

import torch

from ..models.reference import reference_lif
from ..snn.functional import lif_multistep
from .measure import _DTYPES, PRECISIONS, peak_added_bytes, race

__all__ = [
    "bench_lif",
]


def bench_lif(
    time_steps: Sequence[int] = (4, 6, 10),
    shape: Sequence[int] = (16, 128, 32, 32),
    precisions: Sequence[str] = PRECISIONS,
    repeats: int = 5,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Forward + backward of the release's LIF loop vs ``lif_multistep(backend="auto")``.

    ``shape`` is ``[B, C, H, W]``; the input is ``[B, T, C, H, W]``. One record per (T, precision).
    """
    dev = torch.device(device)
    if len(shape) < 2:
        raise ValueError(f"shape must be [B, ...] with at least 2 dims, got {tuple(shape)}")
    out = []
    for prec in precisions:
        if prec not in _DTYPES:
            raise ValueError(f"unknown precision {prec!r}; expected one of {sorted(_DTYPES)}")
        for t in time_steps:
            g = torch.Generator().manual_seed(seed)
            full = (shape[0], t, *shape[1:])
            x = (torch.randn(full, generator=g) * 1.5 + 0.5).to(dev, _DTYPES[prec]).requires_grad_()
            gy = torch.randn(full, generator=g).to(dev, _DTYPES[prec])

            def step(f: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
                def run() -> None:
                    y = f(x)
                    torch.autograd.grad(y, x, gy)

                return run

            compiled_loop = torch.compile(reference_lif, dynamic=False)
            fns = {"release": step(reference_lif), "release+compile": step(compiled_loop),
                   "dta_lib": step(lambda v: lif_multistep(v))}
            peers = _spikingjelly()
            fns.update({k: step(f) for k, f in peers.items()})
            with torch.no_grad():
                want = reference_lif(x)
                # every candidate is checked against the release's loop, compiled ones too: under
                # ATEN_CPU_CAPABILITY=avx2 on an AVX512 host (CI's second pass) torch 2.14's inductor returns wrong
                # spikes, NaN among them, for this loop (natively, and with cpp.simdlen=256, it is exact); a wrong
                # candidate's speed is no claim, so its mismatches are recorded beside it
                wrong = {k: int((want != f(x)).sum()) for k, f in
                         [("release", reference_lif), ("release+compile", compiled_loop), ("dta_lib", lif_multistep),
                          *peers.items()]}
            times = race(fns, repeats, dev, warmup=2)  # compiled candidates settle in two calls
            mem = {k: peak_added_bytes(f, dev) for k, f in fns.items()}
            med = {k: statistics.median(v) for k, v in times.items()}
            moved = _lif_bytes_moved(x)
            copy_bw = _copy_bandwidth(x.detach(), repeats, dev)
            for k in fns:
                out.append({
                    "bench": "lif", "impl": k, "precision": prec, "T": t, "shape": list(full),
                    "median_s": med[k], "times_s": times[k], "samples_per_s": shape[0] / med[k],
                    "peak_added_bytes": mem[k], "speedup_vs_release": med["release"] / med[k],
                    "speedup_vs_compiled_release": med["release+compile"] / med[k],
                    "memory_ratio_vs_release": mem[k] / max(mem["release"], 1), "spikes_identical": wrong[k] == 0,
                    "spike_mismatches": wrong[k], "spike_mismatch_fraction": wrong[k] / want.numel(),
                    "min_bytes_moved": moved, "achieved_GBps": moved / med[k] / 1e9,
                    "copy_GBps": copy_bw, "fraction_of_copy_bandwidth": moved / med[k] / 1e9 / copy_bw,
                    "version": _version(k),
                })
    return out


def _version(impl: str) -> str:
    """The version of the package behind a candidate: torch for the release's loop and this library's kernel."""
    from importlib.metadata import version

    return version("spikingjelly" if impl.startswith("spikingjelly") else "torch")


def _spikingjelly() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """spikingjelly's multi-step LIF on ``[B, T, ...]`` (it wants time first: the transposes are part of its cost),
    eager and compiled; empty when spikingjelly is not installed."""
    try:
        from spikingjelly.activation_based import neuron
    except ImportError:
        return {}

    def make() -> Callable[[torch.Tensor], torch.Tensor]:
        node = neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=0.0, step_mode="m")

        def run(x: torch.Tensor) -> torch.Tensor:
            node.reset()
            return node(x.transpose(0, 1)).transpose(0, 1)

        return run

    return {"spikingjelly": make(), "spikingjelly+compile": torch.compile(make(), dynamic=False)}


def _lif_bytes_moved(x: torch.Tensor) -> int:
    """Bytes a fused LIF forward + backward must move at least: read ``x``, write spikes; read the saved
    tensor and the spike gradient, write ``dL/dx`` (the fp32 membrane on CUDA, ``x`` itself on CPU)."""
    e = x.element_size()
    saved = 4 if x.is_cuda else e
    fwd = x.numel() * (e + e + (4 if x.is_cuda else 0))
    bwd = x.numel() * (saved + e + e)
    return int(fwd + bwd)


def _copy_bandwidth(x: torch.Tensor, repeats: int, device: torch.device) -> float:
    """Measured bandwidth (GB/s, read + write) of ``dst.copy_(x)`` into a preallocated tensor: the
    machine's practical memory roofline for an elementwise kernel."""
    dst = torch.empty_like(x)
    t = race({"copy": lambda: dst.copy_(x)}, max(repeats, 3), device)["copy"]
    return 2 * x.numel() * x.element_size() / statistics.median(t) / 1e9
