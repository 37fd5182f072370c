"""Command line: ``python -m dta_lib train --help`` (the tools: ``python -m dta_lib.bench``, ...)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from typing import Any, Sequence


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:  # config options say their default themselves
        return action.help if action.help and "[unset:" in action.help else super()._get_help_string(action)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field of :class:`~dta_lib.train.TrainConfig` but ``dataset`` and ``preset``, from the field's
    :func:`dta_lib.train._f` metadata; every option defaults to ``None`` (unset)."""
    from .train import TrainConfig

    groups: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("dataset", "preset"):
            continue
        meta = f.metadata
        if (group := meta.get("group", "run")) not in groups:
            groups[group] = parser.add_argument_group(group)
        g, flag = groups[group], "--" + f.name.replace("_", "-")
        kind = str(f.type).replace(" | None", "")
        help_ = meta.get("help", "") + f" [unset: the preset's, else the recipe's, else {f.default}]"
        if kind == "bool" and f.default is None:  # on / off / unset
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif kind == "bool":  # a flag turns the default around
            flags = meta.get("flags") or ((flag,) if not f.default else (f"--no-{flag[2:]}",))
            g.add_argument(*flags, dest=f.name, action="store_const", const=not f.default, default=None, help=help_)
        else:
            g.add_argument(*(meta.get("flags") or (flag,)), dest=f.name, default=None, help=help_,
                           type={"int": int, "float": float}.get(kind, str), choices=meta.get("choices"))


def _run_train(args: argparse.Namespace) -> int:
    from .distributed import detect
    from .train import TrainConfig, make_config, train

    # the config fields given on the command line (None = unset: make_config takes the preset's, else the recipe's)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if f.name not in ("dataset", "preset")}
    cfg, dist = make_config(args.dataset, args.preset, **overrides), detect()
    if args.lr_scale == "linear" and dist.world_size > 1:
        cfg = cfg.replace(lr=cfg.lr * dist.world_size)
    res = train(cfg, out=args.out, resume=args.resume)
    if dist.is_main:
        print(json.dumps({"best_acc": res.best_acc, "best_epoch": res.best_epoch, "final_acc": res.final_acc,
                          "epochs": res.epochs, "wall_seconds": round(res.wall_seconds, 2),
                          "out": str(res.out) if res.out else None}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .train import PRESETS, RECIPES

    parser = argparse.ArgumentParser(prog="python -m dta_lib", formatter_class=_Formatter,
                                     description="DTA-SNN companion: training (a checkpoint's accuracy: dta_lib.train."
                                                 "evaluate; tools: python -m dta_lib.bench, .campaign, .reproduce).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("train", help="train a model (python -m dta_lib train --help)", formatter_class=_Formatter,
                       description="Train an MS-ResNet spiking network (BPTT, SGD, cosine annealing) with a recipe "
                                   "and size preset; unset options come from the preset, then the recipe "
                                   "(docs/training.md).")
    g = p.add_argument_group("run")
    g.add_argument("--dataset", required=True, choices=sorted(RECIPES), help="dataset and its training recipe")
    g.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                   help="size: smoke (CI, <60 s), cpu (laptop, minutes), paper (exact recipe, GPU)")
    where = g.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", default=None, help="run folder (created): config.json, run.json, metrics.jsonl, *.pt")
    where.add_argument("--no-save", action="store_true", help="write no files (print the result only)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt, exactly")
    g.add_argument("--lr-scale", choices=["none", "linear"], default="none",
                   help="under torchrun, 'linear' multiplies the learning rate by the number of processes (the batch "
                        "is per process); the config records the result")
    add_config_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand. Bad input: message on stderr, exit status 2."""
    from .checkpoint import CheckpointError, RunLockedError
    from .train import NonFiniteLossError

    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _sigterm)  # SIGTERM stops a run like Ctrl-C: run.json says so
    try:
        return _run_train(args)
    except KeyboardInterrupt:
        kept = "; the run folder keeps its last finished epoch: continue it with --resume" if _has_last(args) else ""
        print(f"error: interrupted (SIGINT/SIGTERM){kept}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError, CheckpointError, ImportError, RunLockedError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only folder, file too large, no network for --download, ...
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        kept = "; the run folder keeps its last finished epoch (continue with --resume)" if _has_last(args) else ""
        what = "download failed: " if type(e).__name__ == "URLError" else ""
        print(f"error: {what}{_one_line(e) if not e.strerror else e.strerror}{where}{kept}", file=sys.stderr)
        return 1
    except RuntimeError as e:  # a non-finite loss, or e.g. an unusable device string that torch refuses
        print(f"error: {e if isinstance(e, NonFiniteLossError) else _one_line(e)}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _has_last(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "out", None)) and os.path.isfile(os.path.join(args.out, "last.pt"))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:1000] or type(e).__name__


if __name__ == "__main__":
    raise SystemExit(main())
