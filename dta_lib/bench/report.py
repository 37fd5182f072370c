"""Benchmark results: what they were measured on, the figure, a text summary, reading a result back and the
targets the results are checked against."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from ..train import cpu_model, git_commit, git_dirty

__all__ = [
    "bench_metadata",
    "plot",
    "summary",
    "load_result",
    "check_targets",
    "plot_epoch",
    "epoch_summary",
]


def bench_metadata(device: torch.device) -> dict[str, Any]:
    from ..snn.kernels import c_extension_available

    meta: dict[str, Any] = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(), "git_dirty": git_dirty(),
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
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
    lif = pd.DataFrame([r for r in result["lif"] if r["impl"] != "release"])
    if len(lif):
        lif["candidate"] = lif["impl"] + " " + lif["precision"]
        sns.barplot(lif, x="T", y="speedup_vs_release", hue="candidate", ax=axes[0])
        axes[0].axhline(1.0, color="k", lw=0.8)
        axes[0].legend(fontsize=7)
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
        from ..viz.core import save_figure

        save_figure(fig, Path(path).absolute(), dpi=120)  # a relative path means the working folder here
        plt.close(fig)
    return fig


def summary(result: dict[str, Any]) -> str:
    """A short table of the dta_lib rows (speed-ups and memory ratios)."""
    lines = []
    for r in result["lif"]:
        if r["impl"] != "release":
            vs_compiled = (f", {r['speedup_vs_compiled_release']:.2f}x the compiled release loop"
                           if "speedup_vs_compiled_release" in r else "")
            lines.append(f"LIF   {r['impl']:20s} T={r['T']:<3d} {r['precision']}: {r['speedup_vs_release']:.2f}x release"
                         f"{vs_compiled}, memory {r['memory_ratio_vs_release']:.2f}x"
                         + ("" if r.get("spikes_identical", True) else
                            f"  WRONG: {r['spike_mismatches']} spikes differ from the release's, no speed claim"))
    for r in result["train"]:
        lines.append(f"train {r['impl']:8s} {r['precision']}: {r['images_per_s']:.2f} img/s, "
                     f"{r['speedup_vs_baseline_fp32']:.2f}x {r['baseline']} fp32, peak added "
                     f"{r['peak_added_bytes'] / 2**20:.0f} MiB ({r['memory_ratio_vs_baseline_same_precision']:.2f}x)")
        if r.get("conv_floor_s"):
            lines.append(f"      convolutions alone: {r['conv_floor_s']:.2f} s = {r['conv_share']:.0%} of the step; "
                         f"ceiling without faster convolutions: {r['speedup_cap_from_conv_floor']:.2f}x {r['baseline']}")
    return "\n".join(lines)


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a ``bench_*.json`` written by :func:`run_bench` (keys meta, lif, train) or ``run_epoch_bench`` (meta,
    epoch)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark result at {path}; run `python -m dta_lib.bench` to create it")
    data = json.loads(path.read_text())
    if not ({"meta", "lif", "train"} <= set(data) or {"meta", "epoch"} <= set(data)):
        raise ValueError(f"{path} is not a dta_lib.bench result (keys {sorted(data)}; expected meta, lif, train "
                         "or meta, epoch)")
    return data


def check_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The performance targets of ``docs/performance.md`` evaluated on a result: one row per check with value,
    target and pass."""
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


def plot_epoch(result: dict[str, Any], path: Path | None = None):
    """Images/s of one training epoch per candidate, labelled with the speed-up over the release in fp32."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = result["epoch"]
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
    if path is not None:
        from ..viz.core import save_figure

        save_figure(fig, Path(path).absolute(), dpi=120)
        plt.close(fig)
    return fig


def epoch_summary(result: dict[str, Any]) -> str:
    """One line per candidate of the epoch race."""
    def best(r: dict[str, Any]) -> str:
        x = r.get("speedup_vs_best_release_same_precision")
        return f", {x:.2f}x the best release {r['precision']}" if x is not None else ""

    def mem(r: dict[str, Any]) -> str:
        return (f", {r['peak_added_bytes_per_step'] / 2**20:.0f} MiB per step"
                if r.get("peak_added_bytes_per_step") is not None else "")

    lines = [f"epoch {r['impl']:35s} {r['precision']}: {r['images_per_s']:6.1f} img/s, "
             f"{r['speedup_vs_release_fp32']:.2f}x release fp32{best(r)}, {r['full_epoch_s'] / 60:.1f} min per 60,000 "
             f"images{mem(r)}" for r in result["epoch"]]
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
