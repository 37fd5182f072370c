"""``python -m dta_lib.gpu_check``: the GPU check (``scripts/gpu_check.sh``), one JSON and one figure.

Two sections (docs/performance.md, "GPU"), the JSON rewritten after each (the script's ``timeout`` bounds the
whole at 8 minutes): **lif** (:func:`dta_lib.bench.bench_lif` on ``[16, 6, 128, 32, 32]``, fp32 and bf16) and
**step** (:func:`step_race`, batch 64, 32x32, full width); a section that fails is recorded as an error row and the
next one runs. The LIF kernels' agreement with the loop is checked by ``tests/test_snn_kernels.py``, which
``scripts/gpu_check.sh`` runs next. Without a CUDA GPU it prints one line and exits 2.
``--dry-run`` runs every section at toy sizes on the CPU (what the tests do, so the code that only a GPU session can
run is still exercised in CI).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .bench import _release_twin, _steps, bench_lif, peak_added_bytes, race
from .models.ms_resnet import ms_resnet18
from .snn.kernels import lif_backend_name
from .train import cuda_autocast_dtype


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
            s = statistics.median(race({"step": step}, repeats, device)["step"])  # after one warm-up step
            peak = peak_added_bytes(step, device)
            rows.append({"candidate": name, "precision": prec, "compiled": compiled, "images_per_s": batch / s,
                         "peak_mib": peak / 2**20, "backend": lif_backend_name(device, compiled) if side ==
                         "dta_lib" else "release loop", "cudnn_benchmark": True, "channels_last": True})
        except Exception as e:  # noqa: BLE001
            rows.append({"candidate": name, "error": f"{type(e).__name__}: {str(e)[:200]}"})
        written()
    return rows


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
        ("lif", lambda: bench_lif((4,) if small else (6,), (2, 8, 8, 8) if small else (16, 128, 32, 32),
                                  ("fp32",) if small else ("fp32", "bf16"), 1 if small else 20, device)),
        ("step", lambda: step_race(device, 2 if small else 64, 16 if small else 32, 0.0625 if small else 1.0,
                                   1 if small else 10, compile_too=not small, rows=result.setdefault("step", []),
                                   written=write)),
    ]

    def write() -> None:  # after each section and each step row: a timeout keeps what finished
        meta["lif_backend"] = lif_backend_name(device)  # after the runs: a kernel that failed shows its fallback
        meta["wall_seconds"] = time.perf_counter() - t0
        atomic_write_text(folder / "gpu_check.json", json.dumps(result, indent=2, default=str) + "\n")

    for name, run in sections:
        try:
            result[name] = run()
        except Exception as e:  # noqa: BLE001 - reported beside the rows already measured; the next sections run
            result.setdefault(name, []).append({"error": f"{type(e).__name__}: {str(e)[:200]}"})
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
