"""``python -m dta_lib.gpu_check``: the GPU check (``scripts/gpu_check.sh``), one JSON and one figure.

Four sections (docs/performance.md, "GPU"), the JSON rewritten after each (the script's ``timeout`` bounds the whole
at 8 minutes): **agreement** (:func:`agreement`), **lif** (:func:`lif_race` on ``[16, 6, 128, 32, 32]``), **step**
(:func:`step_race`, batch 64, 32x32, full width) and **ddp** (:func:`ddp_smoke`). Without a CUDA GPU it prints one
line and exits 2. ``--dry-run`` runs every section at toy sizes on the CPU (what the tests do, so the code that only
a GPU session can run is still exercised in CI).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .bench import _DTYPES, _copy_bandwidth, _release_twin, _steps, peak_added_bytes, race
from .models.ms_resnet import ms_resnet18
from .snn.functional import lif_multistep
from .snn.kernels import lif_backend_name
from .snn.loop import lif_multistep_loop
from .snn.surrogate import Triangle
from .train import cuda_autocast_dtype


def _median_seconds(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn`` after one warm-up call (compilation, cudnn.benchmark's search)."""
    return statistics.median(race({"fn": fn}, repeats, device)["fn"])


def agreement(device: torch.device, shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """Triton (or whatever ``auto`` runs here) against the PyTorch loop (fp32 membrane) in fp32, bf16 and fp16 (CUDA
    only): spike mismatches and the largest input-gradient difference, with the backend that actually ran."""
    rows = []
    for name, dtype in _DTYPES.items():
        if dtype == torch.float16 and device.type != "cuda":
            continue
        torch.manual_seed(0)
        x = (torch.randn(shape, device=device) * 1.5).to(dtype).requires_grad_()
        gy = torch.randn(shape, device=device)
        y = lif_multistep(x, 0.5, 1.0, Triangle(1.0))
        (g,) = torch.autograd.grad(y, x, gy.to(dtype))
        x32 = x.detach().float().requires_grad_()
        y32 = lif_multistep_loop(x32, 0.5, 1.0, Triangle(1.0))
        (g32,) = torch.autograd.grad(y32, x32, gy.to(dtype).float())
        rows.append({"dtype": name, "backend": lif_backend_name(device), "elements": x.numel(),
                     "spike_mismatches": int((y.float() != y32).sum()),
                     "max_grad_diff": float((g.float() - g32).abs().max())})
    return rows


def lif_race(device: torch.device, shape: tuple[int, ...], repeats: int, compile_too: bool) -> list[dict[str, Any]]:
    """Forward + backward of the LIF per precision: the loop, the library's kernel and ``torch.compile`` of the loop,
    with the achieved bandwidth as a fraction of a measured device copy (``dta_lib.bench._copy_bandwidth``)."""
    rows, sg = [], Triangle(1.0)
    compiled = torch.compile(lambda x: lif_multistep_loop(x, 0.5, 1.0, sg), dynamic=False)
    for name in ("fp32", "bf16"):
        x = torch.randn(shape, device=device, dtype=_DTYPES[name]).requires_grad_()
        gy = torch.ones_like(x)
        copy_bw = _copy_bandwidth(x.detach(), repeats, device) * 1e9
        # bytes a fused LIF must move: read x, write spikes and the fp32 membrane; backward reads both, writes dx
        moved = x.numel() * (3 * x.element_size() + 2 * 4)
        candidates = [("loop", lambda: lif_multistep(x, backend="loop")), ("dta_lib auto", lambda: lif_multistep(x))]
        if compile_too:
            candidates.append(("torch.compile(loop)", lambda: compiled(x)))
        for cand, fn in candidates:
            try:
                s = _median_seconds(lambda: torch.autograd.grad(fn(), x, gy), device, repeats)
            except Exception as e:  # noqa: BLE001 - a candidate that cannot run here is reported, not fatal
                rows.append({"precision": name, "candidate": cand, "error": f"{type(e).__name__}: {str(e)[:200]}"})
                continue
            rows.append({"precision": name, "candidate": cand, "seconds": s, "shape": list(shape),
                         "backend": lif_backend_name(device) if cand == "dta_lib auto" else cand,
                         "bandwidth_fraction_of_copy": (moved / s) / copy_bw})
    return rows


def step_race(device: torch.device, batch: int, size: int, width: float, repeats: int, compile_too: bool,
              rows: list[dict[str, Any]] | None = None, written: Callable[[], None] = lambda: None) -> list[dict[str, Any]]:
    """One SGD training step of ``ms_resnet18`` + DTA (T=6, ``channels_last``, ``cudnn.benchmark``) per candidate in
    bf16 and fp16 (GradScaler; CUDA only) autocast, eager and compiled (bf16), against the release's computation:
    images/s and peak memory. Each row is appended to ``rows`` and ``written()`` called, eager candidates first
    (compiling takes minutes)."""
    torch.backends.cudnn.benchmark = True
    rows = [] if rows is None else rows
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    precisions = ["bf16", "fp16"] if device.type == "cuda" else ["bf16"]
    plan = [(prec, side, False) for prec in precisions for side in ("release", "dta_lib")]
    plan += [("bf16", side, True) for side in ("release", "dta_lib")] if compile_too else []
    for prec, side, compiled in plan:
        torch.manual_seed(0)
        ours = ms_resnet18(10, 6, "dta", width=width)
        model = ours if side == "dta_lib" else _release_twin(ours, 6, width=width)
        model = model.to(device).to(memory_format=torch.channels_last)
        net = torch.compile(model, dynamic=False) if compiled else model
        step = _steps(net, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), [(x, y)], prec, device,
                      torch.amp.GradScaler(device.type, enabled=prec == "fp16"))
        name = f"{side} {'compiled' if compiled else 'eager'} {prec}"
        try:
            s, peak = _median_seconds(step, device, repeats), peak_added_bytes(step, device)
            rows.append({"candidate": name, "precision": prec, "compiled": compiled, "images_per_s": batch / s,
                         "peak_mib": peak / 2**20, "backend": lif_backend_name(device, compiled) if side ==
                         "dta_lib" else "release loop", "cudnn_benchmark": True, "channels_last": True})
        except Exception as e:  # noqa: BLE001
            rows.append({"candidate": name, "error": f"{type(e).__name__}: {str(e)[:200]}"})
        written()
    return rows


def ddp_smoke(timeout: int) -> dict[str, Any]:
    """``torchrun --nproc_per_node 2`` on synthetic data, one epoch; skipped below two GPUs."""
    if torch.cuda.device_count() < 2:
        return {"skipped": f"{torch.cuda.device_count()} GPU(s) visible; needs 2"}
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu_check_ddp_{os.getpid()}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dta_lib",
           "train", "--dataset", "synthetic", "--preset", "smoke", "--epochs", "1", "--device", "cuda",
           "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # torchrun and both workers: no orphan keeps GPU memory
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return {"returncode": None, "error": f"timed out after {timeout} s", "tail": (out or "")[-800:]}
    return {"returncode": proc.returncode, "tail": out[-800:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dta_lib.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="folder of gpu_check.json / .png (default: <output root>/bench)")
    ap.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU: exercises the code, measures nothing")
    a = ap.parse_args(argv)
    if not a.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible to torch; nothing measured", file=sys.stderr)
        return 2
    from .atomic import atomic_write_text
    from .paths import output_root
    from .viz import save_figure

    small, t0 = a.dry_run, time.perf_counter()
    device, gpu = torch.device("cpu" if small else "cuda"), not small
    folder = (Path(a.out) if a.out else output_root() / "bench").absolute()
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"torch": torch.__version__, "dry_run": small, "device": str(device),
                            "gpu": torch.cuda.get_device_name(device) if gpu else None,
                            "capability": list(torch.cuda.get_device_capability(device)) if gpu else None,
                            "auto_precision": str(cuda_autocast_dtype(device)) if gpu else None}
    result: dict[str, Any] = {"meta": meta}
    sections: list[tuple[str, Callable[[], Any]]] = [
        ("agreement", lambda: agreement(device, (2, 6, 8, 9, 9) if small else (16, 6, 64, 32, 32))),
        ("lif", lambda: lif_race(device, (2, 4, 8, 8, 8) if small else (16, 6, 128, 32, 32), 1 if small else 20,
                                 compile_too=not small)),
        ("step", lambda: step_race(device, 2 if small else 64, 16 if small else 32, 0.0625 if small else 1.0,
                                   1 if small else 10, compile_too=not small, rows=result.setdefault("step", []),
                                   written=write)),
        ("ddp", lambda: {"skipped": "dry run"} if small else ddp_smoke(90)),
    ]

    def write() -> None:  # after each section and each step row: a timeout keeps what finished
        meta["lif_backend"] = lif_backend_name(device)  # after the runs: a kernel that failed shows its fallback
        meta["wall_seconds"] = time.perf_counter() - t0
        atomic_write_text(folder / "gpu_check.json", json.dumps(result, indent=2, default=str) + "\n")

    for name, run in sections:
        result[name] = run()
        write()
    import matplotlib.pyplot as plt

    ok = [r for r in result["step"] if "images_per_s" in r]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(ok) + 1.2))
    ax.barh([f"{r['candidate']} ({r['peak_mib']:.0f} MiB)" for r in ok], [r["images_per_s"] for r in ok],
            color=["tab:gray" if r["candidate"].startswith("release") else "tab:blue" for r in ok])
    ax.set(xlabel="training images / s (higher is better); peak memory in brackets",
           title=f"one training step, {meta['gpu'] or 'CPU dry run'}, batch {2 if small else 64}")
    save_figure(fig, folder / "gpu_check.png")
    print(json.dumps({"out": str(folder / "gpu_check.json"), "wall_seconds": round(meta["wall_seconds"], 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
