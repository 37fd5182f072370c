"""``python -m dta_lib.bench``: this library against the release's computation, same process, same inputs.

Races (docs/performance.md, "How it is measured"): LIF forward + backward (:func:`bench_lif`), ``--epoch`` one
training epoch at the CPU study size (:func:`bench_epoch`); fp32 and bf16 (autocast for the models, bf16 tensors for
the LIF). Results go atomically to ``bench/bench_<tag>.json`` and ``.png`` of :func:`dta_lib.paths.output_root`.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import json
import logging
import os
import platform
import statistics
import time
from importlib.metadata import version
from itertools import accumulate
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from .atomic import atomic_write_text
from .models.compat import to_reference_state_dict
from .models.ms_resnet import ms_resnet18
from .models.reference import ReferenceMSResNet18, reference_lif
from .paths import output_root
from .snn.functional import lif_multistep
from . import train
from .train import cpu_model, git, git_commit

PRECISIONS = ("fp32", "bf16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------------------------------------- measurement
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    return train._autocast(device, None if precision == "fp32" else _DTYPES[precision])()


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
    """Peak bytes PyTorch allocates during ``fn()`` above what was allocated before: ``torch.cuda.max_memory_allocated``
    on CUDA, on CPU the running sum of ``torch.profiler(profile_memory=True)``'s allocation/free events."""
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
    events = sorted((e for e in prof.profiler.kineto_results.events()  # type: ignore[union-attr]
                     if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU),
                    key=lambda e: e.start_ns())
    return int(max(accumulate((e.nbytes() for e in events), initial=0)))


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


def _steps(model: torch.nn.Module, opt: torch.optim.Optimizer, batches: list[tuple[torch.Tensor, torch.Tensor]],
           precision: str, device: torch.device) -> Callable[[], None]:
    """A training pass over ``batches`` under ``precision``: cross-entropy on the mean over T, backward, step."""

    def run() -> None:
        model.train()
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            with _autocast(device, precision):
                logits = model(x)
            F.cross_entropy(logits.float().mean(1), y).backward()
            opt.step()

    return run


def step_cost(cfg: train.TrainConfig, steps: int = 3) -> dict[str, float]:
    """Cost of one BPTT training step (forward, cross-entropy on the mean over T, backward, SGD) of ``cfg``'s model on
    a random batch, on ``cfg.threads`` (default 1) CPU threads, after a warm-up step: ``step_mib``, the peak added
    during one step (:func:`peak_added_bytes`), and ``step_cpu_s``, ``time.process_time`` per step over ``steps``
    steps (CPU time of this process: it depends on the CPU and, less than wall time, on other jobs sharing it). The
    caller's random state is left as it was."""
    info, cpu, threads = train.get_data_info(cfg.dataset), torch.device("cpu"), torch.get_num_threads()
    shape = (cfg.batch_size, *([cfg.time_steps] if info.is_event else []), info.in_channels, info.image_size,
             info.image_size)
    torch.set_num_threads(cfg.threads or 1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = train.build_model(cfg, info)
            step = _steps(model, torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum),
                          [(torch.rand(shape), torch.randint(0, info.num_classes, (cfg.batch_size,)))], "fp32", cpu)
            step()  # warm-up: gradients, optimizer buffers
            peak, c0 = peak_added_bytes(step, cpu), time.process_time()
            for _ in range(steps):
                step()
            return {"time_steps": cfg.time_steps, "step_mib": peak / 2**20,
                    "step_cpu_s": (time.process_time() - c0) / steps}
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- the LIF race
def bench_lif(time_steps: Sequence[int] = (4, 6, 10), shape: Sequence[int] = (16, 128, 32, 32),
              precisions: Sequence[str] = PRECISIONS, repeats: int = 5, device: str | torch.device = "cpu",
              seed: int = 0) -> list[dict[str, Any]]:
    """Forward + backward of the release's loop (:func:`~dta_lib.models.reference.reference_lif`), eager and
    compiled, ``lif_multistep`` (automatic backend) and, when installed, spikingjelly's ``LIFNode`` (eager and
    compiled) on ``[B, T, C, H, W]`` (``shape`` is ``[B, C, H, W]``). One record per (candidate, T, precision), with
    its spike mismatches against the release's loop run with an fp32 membrane (a wrong candidate's speed is no claim;
    in bf16 / fp16 the eager loop itself rounds the membrane every step, another function: its row counts the
    spikes that changes)."""
    dev = torch.device(device)
    if len(shape) < 2:
        raise ValueError(f"shape must be [B, ...] with at least 2 dims, got {tuple(shape)}")
    if bad := [p for p in precisions if p not in _DTYPES]:
        raise ValueError(f"unknown precision {bad[0]!r}; expected one of {sorted(_DTYPES)}")
    out = []
    for prec in precisions:
        for t in time_steps:
            g = torch.Generator().manual_seed(seed)
            full = (shape[0], t, *shape[1:])
            x = (torch.randn(full, generator=g) * 1.5 + 0.5).to(dev, _DTYPES[prec]).requires_grad_()
            gy = torch.randn(full, generator=g).to(dev, _DTYPES[prec])
            impls = {"release": reference_lif, "release+compile": torch.compile(reference_lif, dynamic=False),
                     "dta_lib": lif_multistep, **_spikingjelly()}
            fns = {k: (lambda f=f: torch.autograd.grad(f(x), x, gy)) for k, f in impls.items()}
            with torch.no_grad():
                want = reference_lif(x.float()).to(x.dtype)  # the fp32 membrane that dta_lib keeps under autocast
                # compiled ones too: inductor can return wrong spikes (docs/performance.md, "A training epoch at the
                # study size")
                wrong = {k: int((want != f(x)).sum()) for k, f in impls.items()}
            times = race(fns, repeats, dev, warmup=2)  # compiled candidates settle in two calls
            mem = {k: peak_added_bytes(f, dev) for k, f in fns.items()}
            med = {k: statistics.median(v) for k, v in times.items()}
            # the least bytes a fused LIF forward + backward moves: read x, write spikes; read the saved tensor and
            # the spike gradient, write dL/dx (saved: the fp32 membrane on CUDA, x itself on CPU)
            e, membrane, xd = x.element_size(), (4 if x.is_cuda else 0), x.detach()
            moved = x.numel() * (2 * e + membrane) + x.numel() * ((membrane or e) + 2 * e)
            # the practical memory roofline of an elementwise kernel: read + write of a copy into a preallocated tensor
            dst = torch.empty_like(xd)
            copy_s = statistics.median(race({"copy": lambda: dst.copy_(xd)}, max(repeats, 3), dev)["copy"])
            copy_bw = 2 * x.numel() * e / copy_s / 1e9
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
                    "version": version("spikingjelly" if k.startswith("spikingjelly") else "torch"),
                })
    return out


def _spikingjelly() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """spikingjelly's multi-step LIF (tau 2, no input decay, hard reset to 0) on ``[B, T, ...]`` (it wants time
    first: the transposes are part of its cost), eager and compiled; empty when spikingjelly is not installed."""
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


# ---------------------------------------------------------------------------------------------- the training epoch
def conv_step(model: torch.nn.Module, x: torch.Tensor, precision: str = "fp32") -> tuple[Callable[[], None], int]:
    """``(run, calls)``: ``run()`` replays only the convolutions of one training step of ``model`` on ``x``: each
    ``nn.Conv1d``/``nn.Conv2d`` call of a forward pass (``calls``) on its recorded input, forward + backward, in its
    own memory format under ``precision`` where the model ran it under autocast (LTCA's depthwise convs run in fp32
    under CPU autocast), else in fp32. ``step / conv time`` bounds the speed-up anything else can give."""
    calls: list[tuple[torch.nn.Module, torch.Tensor, bool, bool]] = []

    def hook(mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        amp = torch.is_autocast_enabled(x.device.type)
        calls.append((mod, inp[0].detach().clone(), inp[0].requires_grad, amp))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))]
    try:
        with torch.enable_grad(), _autocast(x.device, precision):
            model(x)
    finally:
        for h in handles:
            h.remove()

    def one(mod: torch.nn.Module, inp: torch.Tensor, needs_grad: bool, amp: bool) -> Callable[[], None]:
        leaf, prec = inp.requires_grad_(needs_grad), precision if amp else "fp32"
        wrt = ([leaf] if needs_grad else []) + [p for p in mod.parameters() if p.requires_grad]
        with torch.no_grad(), _autocast(x.device, prec):
            gy = torch.ones_like(mod(leaf))

        def run() -> None:
            with _autocast(x.device, prec):
                y = mod(leaf)
            torch.autograd.grad(y, wrt, gy)

        return run

    fns = [one(*c) for c in calls]
    return (lambda: [f() for f in fns] and None), len(calls)


#: (implementation, precision, channels_last, compile) of every candidate; the eager fp32 release comes first
_SETUPS = ((False, False), (True, False), (False, True), (True, True))
EPOCH_CANDIDATES: tuple[tuple[str, str, bool, bool], ...] = tuple(
    (impl, prec, cl, comp) for impl, prec, setups in (("release", "fp32", _SETUPS), ("release", "bf16", _SETUPS[2:]),
                                                      ("dta_lib", "fp32", _SETUPS), ("dta_lib", "bf16", _SETUPS[1:]))
    for cl, comp in setups)
FULL_EPOCH = 60_000
#: the epoch race's extra row: the convolutions of dta_lib's channels_last step alone (:func:`conv_step`)
CONV_FLOOR = "convolutions only"
#: :func:`step_profile`'s groups: (group, substrings of torch.profiler event names); the first match wins, the rest
#: is "other". Under torch.compile inductor's fused kernels run inside the compiled graph's own events ("compiled
#: graph", first: its event names carry a random hash and fused-op names); the C LIF ops keep their own
#: ("dta::lif_forward", "dta::lif_backward").
PROFILE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("compiled graph", ("Compiled", "compiled", "cpp_fused", "inductor")),
    ("convolution", ("conv",)),
    ("batch norm", ("batch_norm",)),
    ("LIF (dta_lib kernel)", ("FusedLIF", "dta::lif")),
    ("optimizer", ("_foreach", "Optimizer")),
    ("copies (dtype, layout, saved spikes)", ("copy", "clone", "contiguous")),
    ("elementwise", ("add", "mul", "sub", "div", "sigmoid", "gelu", "where", "gt", "mean", "sum", "threshold")),
)


def step_profile(step: Callable[[], None], steps: int = 3) -> dict[str, float]:
    """Seconds per call of a warm ``step`` per group of :data:`PROFILE_GROUPS` and "other": the self CPU time of the
    profiler's events over ``steps`` calls after a profiled warm-up; the groups sum to one step (profiler included)."""
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


def bench_epoch(images: int = 1280, batch: int = 64, time_steps: int = 4, width: float = 0.125,
                precisions: Sequence[str] = ("fp32",), repeats: int = 3, seed: int = 0) -> list[dict[str, Any]]:
    """Race one CPU training epoch of ``images`` normalised 28x28 Fashion-MNIST training images (random if no copy;
    ``images // batch`` full batches; SGD as the trainer): a row per :data:`EPOCH_CANDIDATES` entry whose precision is
    in ``precisions`` (the eager fp32 release always) and per precision's convolutions-only floor; each side's fastest
    set-up is profiled (:func:`step_profile`). docs/performance.md, "A training epoch at the study size"."""
    if images < batch or batch < 1 or time_steps < 1 or repeats < 1:
        raise ValueError(f"need images >= batch >= 1, time_steps >= 1, repeats >= 1; got images={images}, "
                         f"batch={batch}, time_steps={time_steps}, repeats={repeats}")
    from .data.fashion import load_fashion_mnist_samples
    from .data.registry import dataset_info
    from .train import compile_model, keep_freed_memory

    kept = keep_freed_memory()  # as train() on a CPU; process-wide, so every candidate runs under it
    try:
        x, y = load_fashion_mnist_samples(images, split="train")
        source = f"fashion-mnist train[0:{images}]"
    except (FileNotFoundError, ValueError, OSError):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.rand(images, 1, 28, 28, generator=g), torch.randint(0, 10, (images,), generator=g)
        source = "random (no Fashion-MNIST copy found)"
    info, dev = dataset_info("fashion-mnist"), torch.device("cpu")
    x = (x - info.mean[0]) / info.std[0]
    steps = images // batch
    batches = [(x[i * batch:(i + 1) * batch].contiguous(), y[i * batch:(i + 1) * batch]) for i in range(steps)]
    batches_cl = [(b.contiguous(memory_format=torch.channels_last), t) for b, t in batches]
    torch.manual_seed(seed)
    ours = ms_resnet18(10, time_steps, "dta", in_channels=1, width=width)
    release = ReferenceMSResNet18(10, time_steps, in_channels=1, width=width)  # the release's model, ours' weights
    release.load_state_dict(to_reference_state_dict(ours.state_dict(), release.state_dict()))
    with torch.no_grad():
        max_diff = float((ours.eval()(batches[0][0]) - release.eval()(batches[0][0])).abs().max())

    fns: dict[str, Callable[[], None]] = {}
    one_step: dict[str, Callable[[], None]] = {}
    def sgd(m: torch.nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)

    for impl, prec, cl, comp in [c for c in EPOCH_CANDIDATES if c[1] in precisions or c == EPOCH_CANDIDATES[0]]:
        m = copy.deepcopy(ours if impl == "dta_lib" else release)
        m = m.to(memory_format=torch.channels_last) if cl else m
        net, data = (compile_model(m) if comp else m), (batches_cl if cl else batches)
        key = f"{impl}{'+channels_last' * cl}{'+compile' * comp}/{prec}"
        fns[key], one_step[key] = _steps(net, sgd(m), data, prec, dev), _steps(net, sgd(m), data[:1], prec, dev)
    conv_net = copy.deepcopy(ours).to(memory_format=torch.channels_last)
    precs = list(dict.fromkeys(k.split("/")[1] for k in fns))
    for prec in precs:
        run, _ = conv_step(conv_net, batches_cl[0][0], prec)
        fns[f"{CONV_FLOOR}/{prec}"] = lambda run=run: [run() for _ in range(steps)]
    times = race(fns, repeats, dev, warmup=1)
    med = {k: statistics.median(ts) for k, ts in times.items()}
    best_release = {prec: min(v for k, v in med.items() if k.startswith("release") and k.endswith(f"/{prec}"))
                    for prec in precs}
    rows = []
    for key, ts in times.items():
        name, prec = key.split("/")
        floor = med[f"{CONV_FLOOR}/{prec}"]
        rows.append({
            "bench": "epoch", "impl": name, "precision": prec, "images": steps * batch, "batch": batch,
            "T": time_steps, "width": width, "image_size": 28, "data": source,
            "median_s": med[key], "times_s": ts, "images_per_s": steps * batch / med[key],
            "speedup_vs_release_fp32": med["release/fp32"] / med[key],
            "speedup_vs_best_release_same_precision": best_release[prec] / med[key],
            "full_epoch_s": med[key] * FULL_EPOCH / (steps * batch),
            "peak_added_bytes_per_step": peak_added_bytes(one_step[key], dev) if key in one_step else None,
            # with everything but the (same) convolutions free, a candidate is at most this much faster
            "conv_floor_s": floor, "conv_share": floor / med[key],
            "speedup_cap_vs_best_release_same_precision": best_release[prec] / floor,
            "max_abs_logit_diff_fp32": max_diff, "malloc_keeps_freed": kept,
        })
    for side in ("release", "dta_lib"):  # where the fastest set-up of each side spends a step, per precision
        for prec in best_release:
            if mine := [r for r in rows if r["impl"].split("+")[0] == side and r["precision"] == prec]:
                best = min(mine, key=lambda r: r["median_s"])
                best["profile"] = step_profile(one_step[f"{best['impl']}/{prec}"])
    return rows


# ---------------------------------------------------------------------------------------------- results
_THP = "/sys/kernel/mm/transparent_hugepage/enabled"  # Linux: always / madvise / never


def bench_metadata(device: torch.device, **extra: Any) -> dict[str, Any]:
    from .snn.kernels.lif_cpu import c_extension_available

    meta: dict[str, Any] = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),  # git_dirty: uncommitted changes in dta_lib/ (None outside a checkout)
        "git_dirty": None if (status := git("status", "--porcelain", "--", "dta_lib")) is None else bool(status),
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": str(device),
        "lif_c_kernel": c_extension_available(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        # allocator settings change CPU timings a lot (page faults of fresh buffers): record them
        "allocator_env": {k: v for k, v in os.environ.items()
                          if k.startswith("MALLOC_") or k in ("THP_MEM_ALLOC_ENABLE", "GLIBC_TUNABLES", "LD_PRELOAD")},
        "transparent_hugepage": thp.read_text().strip() if (thp := Path(_THP)).exists() else None,
    }
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    return meta | extra


def _save(fig, path: Path | None):
    if path is not None:
        import matplotlib.pyplot as plt

        from .viz import save_figure

        save_figure(fig, Path(path).absolute(), dpi=120)  # a relative path means the working folder here
        plt.close(fig)
    return fig


def plot(result: dict[str, Any], path: Path | None = None):
    """The LIF race: each candidate's speed-up over the release's loop per T and precision."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6, 4))
    lif = pd.DataFrame([r for r in result["lif"] if r["impl"] != "release"])
    if len(lif):
        lif["candidate"] = lif["impl"] + " " + lif["precision"]
        sns.barplot(lif, x="T", y="speedup_vs_release", hue="candidate", ax=ax)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.legend(fontsize=7)
    ax.set(title="LIF forward+backward: speed-up over the release loop", ylabel="x release (same precision)")
    m = result["meta"]
    fig.suptitle(f"{m['device']} · {m['cpu'] if m['device'] == 'cpu' else m.get('gpu', '')} · "
                 f"{m['threads']} threads · torch {m['torch']}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def summary(result: dict[str, Any]) -> str:
    """One line per LIF candidate but the release's loop: speed-ups and memory ratio."""
    # speedup_vs_compiled_release is absent from the files recorded before the compiled loop raced
    return "\n".join(f"LIF   {r['impl']:20s} T={r['T']:<3d} {r['precision']}: {r['speedup_vs_release']:.2f}x release"
                     + ("" if (x := r.get("speedup_vs_compiled_release")) is None
                        else f", {x:.2f}x the compiled release loop")
                     + f", memory {r['memory_ratio_vs_release']:.2f}x"
                     + ("" if r.get("spikes_identical", True) else
                        f"  WRONG: {r['spike_mismatches']} spikes differ from the release's, no speed claim")
                     for r in result["lif"] if r["impl"] != "release")


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a ``bench_*.json`` written by ``python -m dta_lib.bench`` (keys meta, lif) or ``--epoch`` (meta, epoch)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark result at {path}; run `python -m dta_lib.bench` to create it")
    data = json.loads(path.read_text())
    if not ({"meta", "lif"} <= set(data) or {"meta", "epoch"} <= set(data)):
        raise ValueError(f"{path} is not a dta_lib.bench result (keys {sorted(data)}; expected meta, lif or meta, "
                         "epoch)")
    return data


def plot_epoch(result: dict[str, Any], path: Path | None = None):
    """Images/s of one training epoch per candidate, labelled with the speed-up over the release in fp32."""
    rows = result["epoch"]
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.6))
    labels = [f"{r['impl']} / {r['precision']}" for r in rows]
    vals = [r["images_per_s"] for r in rows]
    colors = [("0.45" if r["precision"] == "bf16" else "0.7") if r["impl"].startswith("release")
              else ("C1" if r["precision"] == "bf16" else "C0") if r["impl"].startswith("dta_lib")
              else "0.9" for r in rows]  # the convolutions-only floor in light grey
    ax.barh(labels, vals, color=colors)
    for i, r in enumerate(rows):
        best = r.get("speedup_vs_best_release_same_precision")
        ax.annotate(f" {r['speedup_vs_release_fp32']:.2f}x" + (f" · {best:.2f}x best release {r['precision']}"
                                                               if best is not None else "")
                    + f"  ({r['full_epoch_s'] / 60:.1f} min / 60k images)", (vals[i], i), va="center", fontsize=8)
    ax.invert_yaxis()
    ax.margins(x=0.45)
    r0, m = rows[0], result["meta"]
    ax.set(xlabel="training images / s (median of interleaved repetitions)",
           title=f"One training epoch, MS-ResNet-18 + DTA, width {r0['width']:g}, T={r0['T']}, batch {r0['batch']}, "
                 f"{r0['images']} images", )
    ax.title.set_fontsize(9)
    fig.suptitle(f"{m['cpu']} · {m['threads']} threads · torch {m['torch']} · labels: x release fp32", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def epoch_summary(result: dict[str, Any]) -> str:
    """One line per candidate of the epoch race."""
    lines = [f"epoch {r['impl']:35s} {r['precision']}: {r['images_per_s']:6.1f} img/s, "
             f"{r['speedup_vs_release_fp32']:.2f}x release fp32"
             + ("" if (x := r.get("speedup_vs_best_release_same_precision")) is None
                else f", {x:.2f}x the best release {r['precision']}")
             + f", {r['full_epoch_s'] / 60:.1f} min per 60,000 images"
             + ("" if (b := r.get("peak_added_bytes_per_step")) is None else f", {b / 2**20:.0f} MiB per step")
             for r in result["epoch"]]
    caps = {r["precision"]: r for r in result["epoch"] if "speedup_cap_vs_best_release_same_precision" in r}
    lines += [f"{p}: the convolutions alone take {r['conv_floor_s']:.2f} s per epoch; with everything else free a "
              f"candidate could be at most {r['speedup_cap_vs_best_release_same_precision']:.2f}x the best release {p}"
              for p, r in caps.items()]
    for r in result["epoch"]:
        if r.get("profile"):
            total = sum(r["profile"].values())
            parts = ", ".join(f"{g} {v * 1e3:.0f} ms ({v / total:.0%})" for g, v in
                              sorted(r["profile"].items(), key=lambda kv: -kv[1]) if v / total >= 0.01)
            lines.append(f"profile of one step, {r['impl']} {r['precision']} ({total * 1e3:.0f} ms): {parts}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    """The LIF race into ``bench_<tag or device>.json``/``.png``, ``--epoch`` the epoch race into
    ``bench_epoch_<tag or cpu>.*``. Default precisions: fp32, plus bf16 where native (CUDA, or a CPU with
    AVX512-BF16/AMX). ``--quick``: tiny sizes (LIF ``[2, T, 8, 8, 8]``; epoch 2 x 8 images, width 1/16, T=2), checks
    the machinery only. Bad input: argparse's usage and one error line, exit status 2."""
    p = argparse.ArgumentParser(prog="python -m dta_lib.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the machinery in seconds")
    p.add_argument("--repeats", type=int, default=None, help="timed repetitions per candidate (default 5; 2 quick)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", nargs="+", default=None, choices=sorted(_DTYPES), help="default: fp32, plus bf16 "
                   "on CUDA or a CPU with bf16 instructions")
    p.add_argument("--out", default=None, help="output folder (default: bench/ of $DTA_OUTPUT_DIR, else of ./reports)")
    p.add_argument("--tag", default=None, help="file stem suffix (default: the device type)")
    p.add_argument("--lif-T", nargs="+", type=int, default=[4, 6, 10], help="LIF time steps")
    p.add_argument("--lif-shape", nargs="+", type=int, default=None, help="LIF [B, C, H, W] (default 16 128 32 32)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--epoch", action="store_true", help="instead: race one training epoch at the CPU study size")
    p.add_argument("--images", type=int, default=None, help="--epoch: images per timed epoch (default 1280)")
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error(f"argument --repeats: must be >= 1, got {args.repeats}")
    if args.threads:
        torch.set_num_threads(args.threads)
    dev, q = torch.device(args.device), args.quick
    if args.epoch and dev.type != "cpu":
        p.error(f"--epoch races the CPU study size; got --device {args.device}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        p.error("device='cuda' requested but torch.cuda.is_available() is False")
    native = dev.type == "cuda" or train.cpu_has_native_bf16()
    precisions = args.precision or (list(PRECISIONS) if native else ["fp32"])
    reps = args.repeats or ((1 if q else 3) if args.epoch else (2 if q else 5))
    result: dict[str, Any] = {"meta": bench_metadata(dev, quick=q, repeats=reps, precisions=list(precisions))}
    if args.epoch:
        result["epoch"] = bench_epoch(16 if q else args.images or 1280, 8 if q else 64, 2 if q else 4,
                                      0.0625 if q else 0.125, precisions, reps)
        name, draw, text = "bench_epoch", plot_epoch, epoch_summary
    else:
        result["lif"] = bench_lif(args.lif_T, args.lif_shape or ((2, 8, 8, 8) if q else (16, 128, 32, 32)),
                                  precisions, reps, dev)
        name, draw, text = "bench", plot, summary
    folder, stem = Path(args.out) if args.out is not None else output_root() / "bench", f"{name}_{args.tag or dev.type}"
    atomic_write_text(folder / f"{stem}.json", json.dumps(result, indent=1))
    draw(result, folder / f"{stem}.png")
    print(text(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
