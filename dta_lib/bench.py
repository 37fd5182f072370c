"""``python -m dta_lib.bench``: this library against the release's computation, same process, same inputs.

Two races, each with interleaved repetitions (A, B, A, B, ...) and the median time:

- **LIF** forward + backward on ``[16, T, 128, 32, 32]`` for ``T`` in {4, 6, 10}: the release's
  per-step loop (:func:`dta_lib.reference.reference_lif`) against ``lif_multistep`` with the
  automatic backend (fused C kernel on CPU, Triton on CUDA).
- **Training step** (forward, cross-entropy on the mean over T, backward, plain SGD step) of
  ``ms_resnet18(num_classes=10, time_steps=6, attention="dta")`` against
  :class:`~dta_lib.reference.ReferenceMSResNet18` holding the same weights
  (copied with :func:`dta_lib.compat.to_reference_state_dict`; the logits are checked equal first).

Precisions: ``fp32``, and ``bf16`` (``torch.autocast`` for the model; bf16 tensors for the LIF).
Peak memory is the peak of bytes allocated by PyTorch's allocator during one call above the bytes
allocated before it: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the running sum of the
allocation/free events recorded by ``torch.profiler(profile_memory=True)`` (RSS is useless here:
glibc keeps freed pages). Results go atomically to ``reports/bench/bench_<device>.json`` and ``.png``.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from .paths import output_root
from .atomic import atomic_write
from .models.compat import to_reference_state_dict
from .snn.functional import lif_multistep
from .models import ms_resnet18
from .models.reference import ReferenceMSResNet18, reference_lif

__all__ = ["bench_lif", "bench_train", "conv_floor", "run_bench", "summary", "plot", "peak_added_bytes", "race", "add_arguments",
           "run", "main", "load_result", "acceptance", "PRECISIONS", "default_precisions"]

PRECISIONS = ("fp32", "bf16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- measurement
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


@contextlib.contextmanager
def _quiet_profiler() -> Iterator[None]:
    """Silence kineto's stderr chatter (it writes to fd 2 directly)."""
    logging.getLogger("torch.profiler").setLevel(logging.ERROR)
    fd = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


def peak_added_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes allocated by PyTorch during ``fn()`` above what was allocated before it."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with _quiet_profiler(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]  # type: ignore[union-attr]
    events = [e for e in events if e.device_type() == torch.autograd.DeviceType.CPU]
    running = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        running += e.nbytes()
        peak = max(peak, running)
    return int(peak)


def race(fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device, warmup: int = 1) -> dict[str, list[float]]:
    """Wall-clock seconds of each candidate, interleaved ``repeats`` times after ``warmup`` rounds."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


# --------------------------------------------------------------------------- LIF race
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

            fns = {"release": step(reference_lif), "dta_lib": step(lambda v: lif_multistep(v))}
            with torch.no_grad():
                same = bool(torch.equal(reference_lif(x), lif_multistep(x)))
            times = race(fns, repeats, dev)
            mem = {k: peak_added_bytes(f, dev) for k, f in fns.items()}
            med = {k: statistics.median(v) for k, v in times.items()}
            moved = _lif_bytes_moved(x)
            copy_bw = _copy_bandwidth(x.detach(), repeats, dev)
            for k in fns:
                out.append({
                    "bench": "lif", "impl": k, "precision": prec, "T": t, "shape": list(full),
                    "median_s": med[k], "times_s": times[k], "samples_per_s": shape[0] / med[k],
                    "peak_added_bytes": mem[k], "speedup_vs_release": med["release"] / med[k],
                    "memory_ratio_vs_release": mem[k] / max(mem["release"], 1), "spikes_identical": same,
                    "min_bytes_moved": moved, "achieved_GBps": moved / med[k] / 1e9,
                    "copy_GBps": copy_bw, "fraction_of_copy_bandwidth": moved / med[k] / 1e9 / copy_bw,
                })
    return out


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


# --------------------------------------------------------------------------- training-step race
def conv_floor(model: torch.nn.Module, x: torch.Tensor, repeats: int, device: torch.device) -> dict[str, Any]:
    """Seconds of the convolutions alone in one training step of ``model`` on ``x``: ``{"times_s": [...]
    (one per repetition), "calls": number of convolution calls in a forward pass}``.

    Every ``nn.Conv1d``/``nn.Conv2d`` call of a forward pass is recorded with its real input; each is then
    run alone, forward + backward (input gradient when the network needs it, weight and bias gradients),
    in the module's own memory format. The sum is what a step would cost if everything but the
    convolutions were free: ``release_step / conv_floor`` bounds the speed-up any LIF, DTA or memory
    work can give without faster convolution kernels.
    """
    calls: list[tuple[torch.nn.Module, torch.Tensor, bool]] = []

    def hook(mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        calls.append((mod, inp[0].detach().clone(), inp[0].requires_grad))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))]
    try:
        with torch.enable_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()

    def one(mod: torch.nn.Module, inp: torch.Tensor, needs_grad: bool) -> Callable[[], None]:
        leaf = inp.requires_grad_(needs_grad)
        params = [p for p in mod.parameters() if p.requires_grad]
        with torch.no_grad():
            gy = torch.ones_like(mod(leaf))

        def run() -> None:
            y = mod(leaf)
            torch.autograd.grad(y, ([leaf] if needs_grad else []) + params, gy)

        return run

    fns = [one(*c) for c in calls]

    def all_convs() -> None:
        for f in fns:
            f()

    return {"times_s": race({"convs": all_convs}, repeats, device)["convs"], "calls": len(calls)}


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


# --------------------------------------------------------------------------- report
def _meta(device: torch.device) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from .snn.kernels import c_extension_available

    meta: dict[str, Any] = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "--", "dta_lib")),
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "cpu": cpu, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": str(device),
        "lif_c_kernel": c_extension_available(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        # allocator settings change CPU timings a lot (page faults of fresh buffers): record them
        "allocator_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k == "THP_MEM_ALLOC_ENABLE"},
    }
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    return meta


def plot(result: dict[str, Any], path: Path | None = None):
    """Two panels: LIF speed-up vs T, training-step images/s per implementation and precision."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    lif = pd.DataFrame([r for r in result["lif"] if r["impl"] == "dta_lib"])
    if len(lif):
        sns.barplot(lif, x="T", y="speedup_vs_release", hue="precision", ax=axes[0])
        axes[0].axhline(1.0, color="k", lw=0.8)
        axes[0].set(title="LIF forward+backward: speed-up over the release loop", ylabel="x release (same precision)")
    tr = pd.DataFrame(result["train"])
    if len(tr):
        tr["label"] = tr["impl"] + "\n" + tr["precision"]
        sns.barplot(tr, x="label", y="images_per_s", hue="impl", ax=axes[1], legend=False)
        for i, (_, r) in enumerate(tr.iterrows()):
            axes[1].annotate(f"{r['speedup_vs_baseline_fp32']:.2f}x", (i, r["images_per_s"]), ha="center", va="bottom")
        axes[1].margins(y=0.15)
        axes[1].set(title=f"MS-ResNet-18 + DTA training step (labels: x {tr['baseline'].iloc[0]} fp32)",
                    ylabel="images / s", xlabel="")
    m = result["meta"]
    fig.suptitle(f"{m['device']} · {m['cpu'] if m['device'] == 'cpu' else m.get('gpu', '')} · "
                 f"{m['threads']} threads · torch {m['torch']}", fontsize=9)
    fig.tight_layout()
    if path is not None:
        atomic_write(path, lambda p: fig.savefig(p, dpi=120, format="png"))
        plt.close(fig)
    return fig


def run_bench(
    quick: bool = False,
    repeats: int | None = None,
    device: str = "cpu",
    precisions: Sequence[str] = PRECISIONS,
    out_dir: str | Path | None = output_root() / "bench",
    tag: str | None = None,
    lif_time_steps: Sequence[int] = (4, 6, 10),
    skip_train: bool = False,
    channels_last: bool = True,
    lif_shape: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Run both races; write ``bench_<tag or device>.json`` and ``.png`` into ``out_dir`` (None: don't write).

    ``quick`` shrinks everything (LIF ``[2, T, 8, 8, 8]``, a width-1/16 model with T=2 on 8x8 images, batch 2)
    to check the machinery in seconds; its numbers mean nothing.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")
    reps = repeats if repeats is not None else (2 if quick else 5)
    result: dict[str, Any] = {"meta": {**_meta(dev), "quick": quick, "repeats": reps, "precisions": list(precisions)}}
    if lif_shape is None:
        lif_shape = (2, 8, 8, 8) if quick else (16, 128, 32, 32)
    result["lif"] = bench_lif(lif_time_steps, lif_shape, precisions, reps, dev)
    result["train"] = [] if skip_train else bench_train(
        batch=2 if quick else 8, image_size=8 if quick else 32, width=0.0625 if quick else 1.0,
        time_steps=2 if quick else 6,
        precisions=precisions, repeats=reps, device=dev, channels_last=channels_last)
    if out_dir is not None:
        out = Path(out_dir)
        name = f"bench_{tag or dev.type}"
        atomic_write(out / f"{name}.json", lambda p: p.write_text(json.dumps(result, indent=1)))
        plot(result, out / f"{name}.png")
    return result


def summary(result: dict[str, Any]) -> str:
    """A short table of the dta_lib rows (speed-ups and memory ratios)."""
    lines = []
    for r in result["lif"]:
        if r["impl"] == "dta_lib":
            lines.append(f"LIF   T={r['T']:<3d} {r['precision']}: {r['speedup_vs_release']:.2f}x release, "
                         f"memory {r['memory_ratio_vs_release']:.2f}x")
    for r in result["train"]:
        lines.append(f"train {r['impl']:8s} {r['precision']}: {r['images_per_s']:.2f} img/s, "
                     f"{r['speedup_vs_baseline_fp32']:.2f}x {r['baseline']} fp32, peak added "
                     f"{r['peak_added_bytes'] / 2**20:.0f} MiB ({r['memory_ratio_vs_baseline_same_precision']:.2f}x)")
        if r.get("conv_floor_s"):
            lines.append(f"      convolutions alone: {r['conv_floor_s']:.2f} s = {r['conv_share']:.0%} of the step; "
                         f"ceiling without faster convolutions: {r['speedup_cap_from_conv_floor']:.2f}x {r['baseline']}")
    return "\n".join(lines)


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a ``bench_*.json`` written by :func:`run_bench`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark result at {path}; run `python -m dta_lib.bench` to create it")
    data = json.loads(path.read_text())
    if not {"meta", "lif", "train"} <= set(data):
        raise ValueError(f"{path} is not a dta_lib.bench result (keys {sorted(data)}; expected meta, lif, train)")
    return data


def acceptance(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's acceptance checks evaluated on a result: one row per check with value, target, pass."""
    rows: list[dict[str, Any]] = []

    def add(check: str, value: float | None, target: float, higher: bool = True) -> None:
        ok = None if value is None else (value >= target if higher else value <= target)
        rows.append({"check": check, "value": value, "target": (">= " if higher else "<= ") + f"{target:g}", "pass": ok})

    lif6 = [r for r in result["lif"] if r["impl"] == "dta_lib" and r["T"] == 6 and r["precision"] == "fp32"]
    add("LIF fwd+bwd speed-up, T=6 fp32", lif6[0]["speedup_vs_release"] if lif6 else None, 6.0)
    train = {(r["impl"], r["precision"]): r for r in result["train"]}
    ours32, ours16 = train.get(("dta_lib", "fp32")), train.get(("dta_lib", "bf16"))
    gpu = result["meta"]["device"].startswith("cuda")
    if gpu:
        if lif6:
            add("Triton LIF, fraction of copy bandwidth", lif6[0]["fraction_of_copy_bandwidth"], 0.8)
        best = max((r["speedup_vs_baseline_fp32"] for r in result["train"] if r["impl"] == "dta_lib"), default=None)
        add("training step vs release fp32 (best precision)", best, 3.0)
    else:
        add("training step fp32 vs release fp32", ours32["speedup_vs_baseline_fp32"] if ours32 else None, 1.3)
        add("training step bf16 autocast vs release fp32", ours16["speedup_vs_baseline_fp32"] if ours16 else None, 2.5)
        add("memory added by the fp32 step vs release", ours32["memory_ratio_vs_baseline_same_precision"] if ours32 else None,
            0.6, higher=False)
    return rows


def default_precisions(device: str | torch.device) -> list[str]:
    """fp32 and bf16 where bf16 is native (CUDA, or a CPU with AVX512-BF16/AMX), else fp32 only."""
    from .engine.device import cpu_has_native_bf16

    native = torch.device(device).type == "cuda" or cpu_has_native_bf16()
    return list(PRECISIONS) if native else ["fp32"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m dta_lib bench`` / ``python -m dta_lib.bench``."""
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the machinery in seconds")
    p.add_argument("--repeats", type=int, default=None, help="timed repetitions per candidate (default 5; 2 quick)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", nargs="+", default=None, choices=sorted(_DTYPES),
                   help="default: fp32 and bf16 on CUDA or on a CPU with bf16 instructions, else fp32 "
                        "(emulated bf16 takes minutes per training step)")
    p.add_argument("--out", default=str(output_root() / "bench"),
                   help="output folder (default: bench/ of $DTA_OUTPUT_DIR, else of the checkout's reports/)")
    p.add_argument("--tag", default=None, help="file stem suffix (default: the device type)")
    p.add_argument("--lif-T", nargs="+", type=int, default=[4, 6, 10], help="LIF time steps")
    p.add_argument("--lif-shape", nargs="+", type=int, default=None, help="LIF [B, C, H, W] (default 16 128 32 32)")
    p.add_argument("--skip-train", action="store_true", help="LIF race only")
    p.add_argument("--no-channels-last", action="store_true", help="keep this library's model in NCHW")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")


def run(args: argparse.Namespace) -> int:
    """Entry point of the ``bench`` subcommand."""
    if args.repeats is not None and args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = args.precision or default_precisions(args.device)
    res = run_bench(args.quick, args.repeats, args.device, precisions, args.out, args.tag, args.lif_T,
                    args.skip_train, not args.no_channels_last, args.lif_shape)
    print(summary(res))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dta_lib.bench", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    a = p.parse_args(argv)
    if a.repeats is not None and a.repeats < 1:
        p.error(f"--repeats must be >= 1, got {a.repeats}")
    return run(a)


if __name__ == "__main__":
    raise SystemExit(main())
