"""``python -m dta_lib.bench`` / ``python -m dta_lib bench``: run both races and write the result."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from ..atomic import atomic_write
from ..paths import output_root
from .lif import bench_lif
from .measure import _DTYPES, PRECISIONS
from .epoch import bench_epoch
from .report import bench_metadata, epoch_summary, plot, plot_epoch, summary
from .train_step import bench_train

__all__ = [
    "run_bench",
    "run_epoch_bench",
    "default_precisions",
    "add_arguments",
    "run",
    "main",
]


def run_bench(
    quick: bool = False,
    repeats: int | None = None,
    device: str = "cpu",
    precisions: Sequence[str] = PRECISIONS,
    out_dir: str | Path | None = None,
    tag: str | None = None,
    lif_time_steps: Sequence[int] = (4, 6, 10),
    skip_train: bool = False,
    channels_last: bool = True,
    lif_shape: Sequence[int] | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Run both races; write ``bench_<tag or device>.json`` and ``.png`` into ``out_dir`` (default: ``bench/`` of
    :func:`dta_lib.paths.output_root`) unless ``write=False``.

    ``quick`` shrinks everything (LIF ``[2, T, 8, 8, 8]``, a width-1/16 model with T=2 on 8x8 images, batch 2)
    to check the machinery in seconds; its numbers mean nothing.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")
    reps = repeats if repeats is not None else (2 if quick else 5)
    result: dict[str, Any] = {"meta": {**bench_metadata(dev), "quick": quick, "repeats": reps, "precisions": list(precisions)}}
    if lif_shape is None:
        lif_shape = (2, 8, 8, 8) if quick else (16, 128, 32, 32)
    result["lif"] = bench_lif(lif_time_steps, lif_shape, precisions, reps, dev)
    result["train"] = [] if skip_train else bench_train(
        batch=2 if quick else 8, image_size=8 if quick else 32, width=0.0625 if quick else 1.0,
        time_steps=2 if quick else 6,
        precisions=precisions, repeats=reps, device=dev, channels_last=channels_last)
    if write:
        out = Path(out_dir) if out_dir is not None else output_root() / "bench"
        name = f"bench_{tag or dev.type}"
        atomic_write(out / f"{name}.json", lambda p: p.write_text(json.dumps(result, indent=1)))
        plot(result, out / f"{name}.png")
    return result


def run_epoch_bench(quick: bool = False, repeats: int | None = None, precisions: Sequence[str] = ("fp32",),
                    out_dir: str | Path | None = None, tag: str | None = None, images: int | None = None,
                    width: float = 0.125, time_steps: int = 4, batch: int = 64, write: bool = True) -> dict[str, Any]:
    """The training-epoch race (:func:`dta_lib.bench.bench_epoch`) at the study size; writes
    ``bench_epoch_<tag or cpu>.json`` and ``.png`` into ``out_dir`` unless ``write=False``. ``quick``: 2 batches of
    8 images at width 1/16, T=2 (machinery only)."""
    dev = torch.device("cpu")
    reps = repeats if repeats is not None else (1 if quick else 3)
    if quick:
        images, batch, width, time_steps = 16, 8, 0.0625, 2
    result: dict[str, Any] = {"meta": {**bench_metadata(dev), "quick": quick, "repeats": reps,
                                       "precisions": list(precisions)}}
    result["epoch"] = bench_epoch(images=images or 1280, batch=batch, time_steps=time_steps, width=width,
                                  precisions=precisions, repeats=reps)
    if write:
        out = Path(out_dir) if out_dir is not None else output_root() / "bench"
        name = f"bench_epoch_{tag or dev.type}"
        atomic_write(out / f"{name}.json", lambda p: p.write_text(json.dumps(result, indent=1)))
        plot_epoch(result, out / f"{name}.png")
    return result


def default_precisions(device: str | torch.device) -> list[str]:
    """fp32 and bf16 where bf16 is native (CUDA, or a CPU with AVX512-BF16/AMX), else fp32 only."""
    from ..train import cpu_has_native_bf16

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
    p.add_argument("--out", default=None,
                   help="output folder (default: bench/ of $DTA_OUTPUT_DIR, else of ./reports)")
    p.add_argument("--tag", default=None, help="file stem suffix (default: the device type)")
    p.add_argument("--lif-T", nargs="+", type=int, default=[4, 6, 10], help="LIF time steps")
    p.add_argument("--lif-shape", nargs="+", type=int, default=None, help="LIF [B, C, H, W] (default 16 128 32 32)")
    p.add_argument("--skip-train", action="store_true", help="LIF race only")
    p.add_argument("--no-channels-last", action="store_true", help="keep this library's model in NCHW")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--epoch", action="store_true",
                   help="instead: race one training epoch at the CPU study size (width 1/8, T=4, batch 64, 28x28) "
                        "against the release's computation; bench_epoch_<tag>.json/.png")
    p.add_argument("--images", type=int, default=None, help="--epoch: images per timed epoch (default 1280)")


def run(args: argparse.Namespace) -> int:
    """Entry point of the ``bench`` subcommand."""
    if args.repeats is not None and args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = args.precision or default_precisions(args.device)
    if getattr(args, "epoch", False):
        if args.device != "cpu":
            raise ValueError(f"--epoch races the CPU study size; got --device {args.device}")
        res = run_epoch_bench(args.quick, args.repeats, precisions, args.out, args.tag, args.images)
        print(epoch_summary(res))
        return 0
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
