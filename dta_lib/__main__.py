"""Command line: ``python -m dta_lib {train,evaluate,...} --help``.

Subcommands live in :data:`COMMANDS` (name -> :class:`Command`). Another module adds one with
:func:`register_command`, or by being listed in :data:`PLUGIN_MODULES` and defining
``add_arguments(parser)`` and ``run(args) -> int`` (plus a module docstring for the help).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = ["Command", "COMMANDS", "PLUGIN_MODULES", "register_command", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}
#: subcommand name -> module with ``add_arguments(parser)`` and ``run(args)``; skipped if not importable
PLUGIN_MODULES: dict[str, str] = {"bench": "dta_lib.bench"}


def register_command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                     run: Callable[[argparse.Namespace], int]) -> None:
    """Add a subcommand ``python -m dta_lib NAME``."""
    COMMANDS[name] = Command(help, add_arguments, run)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


# ---------------------------------------------------------------------------- train
def _add_train(p: argparse.ArgumentParser) -> None:
    from .engine.config import ARCHS, ATTENTIONS, PRECISIONS, PRESETS, RECIPES
    from .snn.surrogate import SURROGATES

    p.description = (
        "Train an MS-ResNet spiking network (BPTT, SGD momentum 0.9, cosine annealing) with a named "
        "recipe and size preset. Options left unset come from the preset, then the recipe "
        "(see docs/training.md). Files in --out: config.json, run.json, metrics.jsonl, last.pt, best.pt."
    )
    g = p.add_argument_group("run")
    g.add_argument("--dataset", required=True, choices=sorted(RECIPES), help="dataset and its training recipe")
    g.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                   help="size: smoke (CI, <60 s), cpu (laptop, minutes), paper (exact recipe, GPU)")
    g.add_argument("--out", default=None, help="run folder (created); required unless --no-save")
    g.add_argument("--no-save", action="store_true", help="write no files (print the result only)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt, exactly")
    g.add_argument("--seed", type=int, default=None, help="random seed (python, numpy, torch, data order)")
    m = p.add_argument_group("model")
    m.add_argument("--arch", default=None, choices=ARCHS, help="backbone (recipe default: ms_resnet34 for imagenet)")
    m.add_argument("--attention", default=None, choices=ATTENTIONS, help="attention after the stem (default dta)")
    m.add_argument("--time-steps", "-T", type=int, default=None, help="time steps T (recipe default)")
    m.add_argument("--width", type=float, default=None, help="channel width multiplier (1.0 = paper)")
    m.add_argument("--surrogate", default=None, choices=sorted(SURROGATES), help="surrogate gradient (triangle)")
    m.add_argument("--surrogate-width", type=float, default=None,
                   help="surrogate width (the triangle's half-width gamma/alpha, paper Eq. 5; release 1.0)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=None, help="number of epochs (cosine annealing to 0 over them)")
    o.add_argument("--batch-size", type=int, default=None, help="batch size per process")
    o.add_argument("--lr", type=float, default=None, help="initial SGD learning rate")
    o.add_argument("--lr-scale", choices=["none", "linear"], default="none",
                   help="under torchrun, 'linear' multiplies the learning rate by the number of processes (the batch "
                        "size is per process, so the global batch grows with them); the config records the result")
    o.add_argument("--momentum", type=float, default=None, help="SGD momentum (0.9)")
    o.add_argument("--weight-decay", type=float, default=None, help="SGD weight decay")
    o.add_argument("--label-smoothing", type=float, default=None, help="label smoothing")
    o.add_argument("--cutmix-alpha", type=float, default=None, help="CutMix Beta(alpha, alpha); 0 = off")
    o.add_argument("--mixup-alpha", type=float, default=None, help="MixUp Beta(alpha, alpha); 0 = off")
    o.add_argument("--mix-prob", type=float, default=None, help="probability that a batch is mixed")
    d = p.add_argument_group("data")
    d.add_argument("--data-root", default=None, help="dataset folder (else $DTA_DATA_ROOT / offline copies)")
    d.add_argument("--download", action="store_true", help="allow downloading the dataset")
    d.add_argument("--subset", type=int, default=None, help="number of training images (class-balanced)")
    d.add_argument("--test-subset", type=int, default=None, help="number of test images")
    d.add_argument("--no-augment", action="store_true", help="disable training augmentation")
    d.add_argument("--workers", type=int, default=None, help="DataLoader worker processes")
    h = p.add_argument_group("hardware")
    h.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (Apple silicon, fp32)")
    h.add_argument("--threads", type=int, default=None, help="torch CPU threads for this run (default: torch's)")
    h.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="auto = on CUDA bf16 where the GPU has it, else fp16 + grad scaler; on a CPU bf16 autocast "
                        "where it has bf16 instructions (AVX512-BF16 or AMX), else fp32; fp32 on mps")
    h.add_argument("--compile", action="store_true", help="torch.compile the model")
    h.add_argument("--channels-last", action="store_true", help="channels_last memory format (CUDA)")
    h.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across DDP processes")
    h.add_argument("--nondeterministic", action="store_true", help="allow nondeterministic kernels")
    r = p.add_argument_group("recording")
    r.add_argument("--record-grad-norms", action="store_true", help="per-layer gradient norms in metrics.jsonl")
    r.add_argument("--record-firing-rates", action="store_true", help="per-LIF firing rates on the test set")
    bar = r.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show tqdm bars")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show tqdm bars")


def _run_train(args: argparse.Namespace) -> int:
    from .engine import train
    from .engine.config import make_config

    if args.out is None and not args.no_save:
        raise ValueError("--out DIR is required (or pass --no-save to write nothing)")
    if args.out is not None and args.no_save:
        raise ValueError("--out and --no-save exclude each other")
    cfg = make_config(
        args.dataset, args.preset, arch=args.arch, attention=args.attention, time_steps=args.time_steps, seed=args.seed,
        width=args.width, surrogate=args.surrogate, surrogate_width=args.surrogate_width, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing, cutmix_alpha=args.cutmix_alpha, mixup_alpha=args.mixup_alpha,
        mix_prob=args.mix_prob, data_root=args.data_root, download=args.download or None, subset=args.subset,
        test_subset=args.test_subset, augment=False if args.no_augment else None, workers=args.workers,
        threads=args.threads,
        device=args.device, precision=args.precision, compile=args.compile or None,
        channels_last=args.channels_last or None, sync_bn=args.sync_bn or None,
        deterministic=False if args.nondeterministic else None, record_grad_norms=args.record_grad_norms or None,
        record_firing_rates=args.record_firing_rates or None, progress=args.progress,
    )
    from .engine.distributed import detect

    if args.lr_scale == "linear" and detect().world_size > 1:
        cfg = cfg.replace(lr=cfg.lr * detect().world_size)
    res = train(cfg, out=args.out, resume=args.resume)

    if detect().is_main:
        print(json.dumps({"best_acc": res.best_acc, "best_epoch": res.best_epoch, "final_acc": res.final_acc,
                          "epochs": res.epochs, "wall_seconds": round(res.wall_seconds, 2),
                          "out": str(res.out) if res.out else None}))
    return 0


# ---------------------------------------------------------------------------- evaluate
def _add_evaluate(p: argparse.ArgumentParser) -> None:
    from .engine.config import PRECISIONS, RECIPES

    p.description = "Test accuracy of a dta_lib checkpoint (loaded with weights_only=True); prints JSON."
    p.add_argument("--checkpoint", required=True, help="path to last.pt / best.pt")
    p.add_argument("--dataset", default=None, choices=sorted(RECIPES), help="dataset (default: the checkpoint's)")
    p.add_argument("--data-root", default=None, help="dataset folder (else $DTA_DATA_ROOT / offline copies)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="evaluation batch size (default: as in training's evaluation, 2x the training batch)")
    p.add_argument("--subset", type=int, default=None, help="evaluate on this many test images")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="autocast precision (default: the one the run trained with, as recorded in the checkpoint)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show tqdm bars")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show tqdm bars")


def _run_evaluate(args: argparse.Namespace) -> int:
    from .engine import evaluate

    rec = evaluate(args.checkpoint, args.dataset, data_root=args.data_root, batch_size=args.batch_size,
                   subset=args.subset, device=args.device, precision=args.precision, progress=args.progress)
    print(json.dumps(rec))
    return 0


register_command("train", "train a model (python -m dta_lib train --help)", _add_train, _run_train)
register_command("evaluate", "evaluate a checkpoint (python -m dta_lib evaluate --help)", _add_evaluate, _run_evaluate)


# ---------------------------------------------------------------------------- entry point
def _load_plugins() -> None:
    for name, module in PLUGIN_MODULES.items():
        if name in COMMANDS:
            continue
        try:
            mod = importlib.import_module(module)
        except Exception:  # a missing or broken tool must not break train / evaluate
            continue
        if hasattr(mod, "add_arguments") and hasattr(mod, "run"):
            doc = (mod.__doc__ or name).strip().splitlines()[0].replace("``", "")
            register_command(name, doc, mod.add_arguments, mod.run)


def build_parser() -> argparse.ArgumentParser:
    _load_plugins()
    parser = argparse.ArgumentParser(
        prog="python -m dta_lib", description="DTA-SNN companion: training, evaluation and tools.",
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        sp = sub.add_parser(name, help=cmd.help, formatter_class=_Formatter)
        cmd.add_arguments(sp)
        sp.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand. Bad input: message on stderr, exit status 2."""
    from .engine import NonFiniteLossError
    from .engine.checkpoint import CheckpointError
    from .engine.runfolder import RunLockedError

    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _sigterm)  # SIGTERM stops a run like Ctrl-C: run.json says so
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        out = getattr(args, "out", None) if args.command == "train" else None
        kept = ("; the run folder keeps its last finished epoch: continue it with --resume"
                if out and os.path.isfile(os.path.join(out, "last.pt")) else "")
        print(f"error: interrupted (SIGINT/SIGTERM){kept}", file=sys.stderr)
        return 130
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, NotADirectoryError, CheckpointError, ImportError, RunLockedError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only folder, file too large, no network for --download, ...
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        out = getattr(args, "out", None)
        kept = "; the run folder keeps its last finished epoch (continue with --resume)" if (
            out and os.path.isfile(os.path.join(out, "last.pt"))) else ""
        what = "download failed: " if type(e).__name__ == "URLError" else ""
        print(f"error: {what}{_one_line(e) if not e.strerror else e.strerror}{where}{kept}", file=sys.stderr)
        return 1
    except RuntimeError as e:  # e.g. an unusable device string that torch refuses
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:1000] or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
