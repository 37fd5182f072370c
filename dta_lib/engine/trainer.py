"""Training engine: BPTT with SGD + cosine annealing (paper Sec. 4, the release's recipe).

The loss is cross-entropy on the time-averaged logits
:math:`\\bar{o} = \\frac{1}{T}\\sum_t o_t` of the MS-ResNet (soft-label cross-entropy when
CutMix / MixUp mix the batch); gradients flow through every time step and every LIF
site via the surrogate derivative (paper Eq. 5), i.e. backpropagation through time.

Use :func:`train` (or :class:`Trainer`) with a :class:`~dta_lib.engine.config.TrainConfig`; with
an ``out`` folder each epoch writes ``metrics.jsonl``, ``last.pt`` / ``best.pt`` (atomic),
beside ``config.json`` and ``run.json`` (hardware, versions, git commit, wall time).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, DistributedSampler
from tqdm.auto import tqdm

from ..data.registry import RESOLVED_ROOTS, data_provenance
from . import distributed as D
from .build import DataInfo, build_data, build_model, infer_info, model_fields
from .checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from .config import SYNTHETIC_DATASETS, TrainConfig, config_diff
from .device import compile_model, dtype_name, resolve_device, resolve_precision, seed_everything
from .evaluation import evaluate_model, layer_group
from ..snn.kernels import lif_backend_name
from .loaders import make_loaders
from .provenance import run_metadata
from .results import NonFiniteLossError, TrainResult
from .runfolder import (LOCK_FILE, HOLDER_FILE, METRICS_FILE, RunLock, check_out_path, check_run_folder, clean_temp_files,
                        copy_checkpoint, repair, write_metrics)
from .state import load_trainer_state, trainer_state
from .validation import check_model_size, validate_checkpoint_fields

__all__ = ["Trainer", "train", "TrainResult", "NonFiniteLossError"]


# ---------------------------------------------------------------------------- trainer
#: on a GPU the non-finite checks are read on the host every this many steps (and at the end of each epoch)
CHECK_EVERY = 25
#: fp16: consecutive steps with a non-finite loss (each skipped by GradScaler) after which the run stops
MAX_SKIPPED_STEPS = 100

class Trainer:
    """One training run (BPTT, SGD momentum, cosine annealing to 0 over ``cfg.epochs``).

    Args:
        config: the run.
        out: run folder (created); ``None`` writes nothing.
        resume: continue from ``out/last.pt`` exactly (model, optimizer, scheduler, scaler,
            RNG states, history); the config must match the checkpoint's.
        datasets: ``(train_ds, test_ds)`` to use instead of ``cfg.dataset``'s (tests,
            notebooks); ``info`` then describes them (inferred from a sample if omitted).
    """

    def __init__(
        self,
        config: TrainConfig,
        out: str | os.PathLike[str] | None = None,
        resume: bool = False,
        datasets: tuple[Dataset, Dataset] | None = None,
        info: DataInfo | None = None,
        on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        config.validate()
        self.cfg = config
        self.out = check_out_path(out) if out is not None else None
        self.resume = resume
        self._datasets = datasets
        self._info = info
        self.on_epoch = on_epoch
        self._lock: RunLock | None = None
        self._created_out = False
        self.repaired: list[str] = []
        self.data_provenance: dict[str, Any] = {}
        if self.out is None and resume:
            raise ValueError("resume=True needs an out folder holding last.pt")
        if self.out is not None:
            self.resume = check_run_folder(self.out, resume)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg = self.cfg
        self.dist = D.detect()
        self.device = resolve_device(cfg, self.dist)
        if (cfg.preset == "paper" and self.device.type == "cpu" and cfg.device == "auto"
                and cfg.dataset not in SYNTHETIC_DATASETS):
            raise ValueError(
                f"preset 'paper' trains the full {cfg.dataset} recipe ({cfg.epochs} epochs at width {cfg.width}): days "
                "on a CPU, and no CUDA GPU is visible. Use --preset cpu, or pass --device cpu to insist"
            )
        self.amp_dtype = resolve_precision(cfg, self.device)
        if cfg.sync_bn and self.device.type != "cuda":
            raise ValueError("sync_bn=True (--sync-bn) needs CUDA devices: torch's SyncBatchNorm does not run on CPU")
        self.resume_state: dict[str, Any] | None = None
        if self.resume:
            assert self.out is not None
            self._lock_out()
            self.resume_state = load_checkpoint(self.out / "last.pt")
            validate_checkpoint_fields(self.out / "last.pt", self.resume_state)
            self._check_resume_config(self.resume_state)
        # data first (may raise for missing files) so that nothing is written on bad input
        RESOLVED_ROOTS.clear()
        if self._datasets is not None:
            train_ds, test_ds = self._datasets
            info = self._info or infer_info(cfg, train_ds)
        else:
            train_ds, test_ds, info = build_data(cfg)
        self.data_provenance = {n: data_provenance(n) for n in sorted(RESOLVED_ROOTS)}
        assert train_ds is not None
        if len(train_ds) == 0 or len(test_ds) == 0:  # type: ignore[arg-type]
            raise ValueError(f"empty dataset: {len(train_ds)} training / {len(test_ds)} test samples")  # type: ignore[arg-type]
        for split, ds in (("training", train_ds), ("test", test_ds)):  # a corrupt file fails here, before any write
            try:
                ds[0]
            except (ValueError, OSError, RuntimeError) as e:
                raise ValueError(f"cannot read the first {split} sample of {cfg.dataset}: {e}") from None
        self.info = info
        check_model_size(cfg, info)  # before anything is allocated: a huge width or T fails here, naming it
        self.dist = D.setup(self.device)
        self.is_main = self.dist.is_main
        if self.out is not None and self.is_main:
            self._created_out = not self.out.exists()
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock_out()
            if not self.resume and ((self.out / METRICS_FILE).exists() or (self.out / "last.pt").exists()):
                raise ValueError(f"out={str(self.out)!r} already holds a run (another process started it meanwhile)")

        seed_everything(cfg.seed)  # identical initial weights on every rank
        model = build_model(cfg, info).to(self.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.net: nn.Module = D.wrap_model(model, self.dist, self.device, cfg.sync_bn)
        if cfg.compile:
            self.net = compile_model(self.net)
        self.opt = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=cfg.epochs, eta_min=0.0)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda"
        )
        self._pending: dict[str, Tensor] = {}  # non-finite flags not yet read on the host (see _check_finite)
        self._skips = torch.zeros((), dtype=torch.int64, device=self.device)  # fp16: consecutive skipped steps
        self.mixer = None
        if cfg.mixing:
            from ..data import BatchMix

            self.mixer = BatchMix(
                info.num_classes, cutmix_alpha=cfg.cutmix_alpha, mixup_alpha=cfg.mixup_alpha, p=cfg.mix_prob,
                label_smoothing=cfg.label_smoothing,
            )

        seed_everything(cfg.seed + self.dist.rank)  # per-rank augmentation streams
        self.loader_gen = torch.Generator().manual_seed(cfg.seed)
        self.train_sampler, self.train_loader, self.test_loader = make_loaders(
            cfg, train_ds, test_ds, self.dist, self.device, self.loader_gen)

        self.start_epoch = 1
        self.best_acc, self.best_epoch = -1.0, 0
        self.history: list[dict[str, Any]] = []
        if self.resume_state is not None:
            load_trainer_state(self, self.resume_state)
            if self.out is not None and self.is_main:
                self.repaired = repair(self.out, self.resume_state, load_checkpoint)

    def _lock_out(self) -> None:
        """Take the run folder's lock (once) and remove temp files that killed writes left behind."""
        if self._lock is not None or self.out is None or not D.detect().is_main:
            return
        self._lock = RunLock(self.out).acquire()
        clean_temp_files(self.out)

    def _check_resume_config(self, state: dict[str, Any]) -> None:
        saved, now = int(state.get("world_size", 1)), self.dist.world_size
        if saved != now:  # each rank's data order and RNG streams belong to its process: no exact continuation
            raise ValueError(f"cannot resume {self.out / 'last.pt'}: it was trained by {saved} process(es) and this "  # type: ignore[operator]
                             f"run has {now}; resume with the same number (torchrun --nproc_per_node {saved})")
        was, now_dtype = state.get("autocast_dtype"), dtype_name(self.amp_dtype)
        if was is not None and was != now_dtype:  # e.g. precision=auto: an fp16 (V100) run resumed on an A100
            raise ValueError(f"cannot resume {self.out / 'last.pt'}: it trained in {was} and this run would train in "  # type: ignore[operator]
                             f"{now_dtype} on {self.device}; pass the --precision (and --device) it trained with")
        diff = config_diff(state["config"], self.cfg)
        if diff:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"cannot resume {self.out / 'last.pt'}: the config differs ({detail})")  # type: ignore[operator]

    # ------------------------------------------------------------------ epochs
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _inputs(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.cfg.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _progress(self, it: Any, desc: str, total: int) -> Any:
        show = self.cfg.progress if self.cfg.progress is not None else sys.stderr.isatty()
        return tqdm(it, desc=desc, total=total, leave=False, dynamic_ncols=True, disable=not (show and self.is_main))

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        self.net.train()
        if isinstance(self.train_sampler, DistributedSampler):
            self.train_sampler.set_epoch(epoch)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        grad_sq: dict[str, float] = {}
        steps = 0
        bar = self._progress(self.train_loader, f"epoch {epoch}/{cfg.epochs} train", len(self.train_loader))
        for step, (x, y) in enumerate(bar, start=1):
            x, y = self._inputs(x), y.to(self.device, non_blocking=True)
            if self.mixer is not None:
                x, target = self.mixer(x, y)
                hard = target.argmax(1)
            else:
                target, hard = y, y
            with self._autocast():
                logits = self.net(x).float().mean(1)  # time-averaged logits [B, classes]
            if self.mixer is not None:
                from ..data import soft_cross_entropy

                loss = soft_cross_entropy(logits, target)
            else:
                loss = F.cross_entropy(logits, target, label_smoothing=cfg.label_smoothing)
            last = step == len(self.train_loader)
            if self.scaler.is_enabled():  # fp16: GradScaler skips the step of a non-finite loss and lowers its scale
                self._count_skips(loss, epoch, step, last)
            else:
                self._check_finite(loss, epoch, step, "training loss", last)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if not self.scaler.is_enabled():
                # spikes swallow NaN (NaN > threshold is False), so a NaN input or weight can leave the
                # loss finite: check the gradient too (fp16 runs leave inf gradients to the grad scaler)
                gnorm = torch.nn.utils.get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None])
                self._check_finite(gnorm, epoch, step, "gradient norm", last)
            if cfg.record_grad_norms:
                self.scaler.unscale_(self.opt)
                for name, p in self.model.named_parameters():
                    if p.grad is not None:
                        g = layer_group(name)
                        grad_sq[g] = grad_sq.get(g, 0.0) + float(p.grad.detach().float().pow(2).sum())
                steps += 1
            self.scaler.step(self.opt)
            self.scaler.update()
            b = y.shape[0]
            loss_sum += torch.nan_to_num(loss.detach().double(), nan=0.0, posinf=0.0) * b  # fp16: skipped steps add 0
            correct += (logits.detach().argmax(1) == hard).sum()
            seen += b
            if bar.disable is False and step % 10 == 0:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}")
        tot_loss, tot_correct, tot_seen = D.all_reduce_sum([float(loss_sum), float(correct), seen], self.device, self.dist)
        rec: dict[str, Any] = {
            "train_loss": tot_loss / max(tot_seen, 1),
            "train_acc": 100.0 * tot_correct / max(tot_seen, 1),
            "train_samples": int(tot_seen),
        }
        if cfg.record_grad_norms:
            # per-step norm of each layer's gradient, averaged in quadrature over the epoch (rank 0's)
            rec["grad_norms"] = {k: math.sqrt(v / max(steps, 1)) for k, v in grad_sq.items()}
        return rec

    def _check_finite(self, value: Tensor, epoch: int, step: int, what: str, last: bool = True) -> None:
        """Stop the run (all ranks) with :class:`NonFiniteLossError` once ``value`` was NaN or inf.

        On a CPU every step is checked (reading a scalar costs nothing there); on a GPU the flags stay on the device
        and are read every :data:`CHECK_EVERY` steps and at the end of the epoch, so the step never waits for the host.
        """
        flag = ~torch.isfinite(value.detach())
        prev = self._pending.get(what)
        self._pending[what] = flag if prev is None else prev | flag
        if self.device.type != "cpu" and step % CHECK_EVERY and not last:
            return
        bad = float(self._pending.pop(what))
        if self.dist.enabled:
            bad = D.all_reduce_sum([bad], self.device, self.dist)[0]
        if bad:
            keep = f"; the last good checkpoint {self.out / 'last.pt'} (epoch {epoch - 1}) is kept" if (
                self.out is not None and epoch > 1) else ""
            when = (f"is {float(value)} at epoch {epoch}, step {step}" if self.device.type == "cpu"
                    else f"became NaN or inf at epoch {epoch}, by step {step}")
            raise NonFiniteLossError(
                f"{what} {when} (lr={self.opt.param_groups[0]['lr']:.4g}); the run stopped{keep}. Lower the learning "
                "rate, use fp32, or check the input data for NaN/inf."
            )

    def _count_skips(self, loss: Tensor, epoch: int, step: int, last: bool) -> None:
        """fp16: count consecutive steps with a non-finite loss (GradScaler skips them); stop after
        :data:`MAX_SKIPPED_STEPS` in a row. Read on the host every :data:`CHECK_EVERY` steps."""
        bad = (~torch.isfinite(loss.detach())).to(torch.int64)
        if self.dist.enabled:  # GradScaler skips the step on every rank when one rank's loss is not finite
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        self._skips = torch.where(bad > 0, self._skips + 1, torch.zeros_like(self._skips))
        if step % CHECK_EVERY and not last:
            return
        skips = int(self._skips)
        if skips >= MAX_SKIPPED_STEPS:
            raise NonFiniteLossError(
                f"fp16: the training loss was NaN or inf in {skips} consecutive steps up to epoch {epoch}, step {step} "
                f"(GradScaler skipped them; scale now {self.scaler.get_scale():.3g}); the run stopped. Use bf16 on a "
                "GPU that has it, fp32, a lower learning rate, or check the input data."
            )

    @torch.no_grad()
    def _evaluate(self) -> dict[str, Any]:
        return evaluate_model(
            self.net, self.test_loader, self.device, self._autocast, self.dist,
            probe_model=self.model if self.cfg.record_firing_rates else None,
            progress=lambda it, n: self._progress(it, "test", n),
        )

    # ------------------------------------------------------------------ files
    def _write_metadata(self, status: str, extra: dict[str, Any] | None = None) -> None:
        if self.out is None or not self.is_main:
            return
        meta = dict(self.meta, status=status, **(extra or {}))
        atomic_write_text(self.out / "run.json", json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")

    def _write_epoch(self, epoch: int, improved: bool) -> None:
        state = trainer_state(self, epoch)  # collective under DDP: every rank takes part
        if self.out is None or not self.is_main:
            return
        # last.pt is the commit point: it carries the history and the best epoch, so whatever a kill interrupts
        # after it (best.pt, metrics.jsonl) is rebuilt from it on --resume (dta_lib.runfolder.repair)
        save_checkpoint(self.out / "last.pt", state)
        if improved:
            copy_checkpoint(self.out / "last.pt", self.out / "best.pt")
        write_metrics(self.out, self.history)

    # ------------------------------------------------------------------ main loop
    def fit(self) -> TrainResult:
        """Run the remaining epochs; returns a :class:`TrainResult`."""
        cfg = self.cfg
        prev_det = torch.are_deterministic_algorithms_enabled()
        prev_threads = torch.get_num_threads()
        t_start = time.perf_counter()
        try:
            if cfg.threads is not None:
                torch.set_num_threads(cfg.threads)
            self._setup()
            if self.device.type == "cpu" and cfg.deterministic:
                torch.use_deterministic_algorithms(True)
            elif self.device.type == "cuda":
                torch.backends.cudnn.benchmark = True  # speed; bit-reproducibility is promised on CPU only
            prior_wall = float(self.resume_state.get("wall_seconds", 0.0)) if self.resume_state else 0.0
            self._wall = lambda: prior_wall + time.perf_counter() - t_start  # training wall time so far, all sessions
            self.resume_state = None
            self.meta = {
                "config": cfg.to_dict(),
                "data_info": model_fields(self.info),
                "hardware": run_metadata(self.device, self.dist.world_size),
                "autocast_dtype": dtype_name(self.amp_dtype),
                "lif_backend": lif_backend_name(self.device, cfg.compile),
                "cudnn_benchmark": self.device.type == "cuda",
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "resumed_from_epoch": self.start_epoch - 1 if self.resume else None,
                "data": self.data_provenance,
                "repaired_on_resume": self.repaired,
            }
            if self.out is not None and self.is_main:
                atomic_write_text(self.out / "config.json", cfg.to_json() + "\n")
                self._write_metadata("running")
            for epoch in range(self.start_epoch, cfg.epochs + 1):
                t0 = time.perf_counter()
                lr = self.opt.param_groups[0]["lr"]
                rec = self._train_epoch(epoch)
                self.sched.step()
                rec.update(self._evaluate())
                improved = rec["test_acc"] > self.best_acc
                if improved:
                    self.best_acc, self.best_epoch = rec["test_acc"], epoch
                secs = time.perf_counter() - t0
                rec = {"epoch": epoch, "lr": lr, **rec, "best_test_acc": self.best_acc, "seconds": secs,
                       "images_per_s": rec["train_samples"] / secs if secs > 0 else None}
                self.history.append(rec)
                self._write_epoch(epoch, improved)
                if self.on_epoch is not None and self.is_main:  # after the epoch's files: an interrupt here loses nothing
                    self.on_epoch(list(self.history))
            digests = D.gather_digests(self.net, self.dist)
            wall = prior_wall + time.perf_counter() - t_start
            self._write_metadata("completed", {
                "lif_backend": lif_backend_name(self.device, cfg.compile),  # a kernel that failed shows its fallback
                "wall_seconds": wall, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "best_test_acc": self.best_acc, "best_epoch": self.best_epoch,
                "final_test_acc": self.history[-1]["test_acc"] if self.history else None,
                "param_digests": digests, "ranks_in_sync": len(set(digests)) == 1,
            })
            D.barrier(self.dist)
            return TrainResult(
                best_acc=self.best_acc, best_epoch=self.best_epoch,
                final_acc=self.history[-1]["test_acc"] if self.history else float("nan"),
                epochs=cfg.epochs, history=list(self.history), wall_seconds=wall, out=self.out, config=cfg,
                param_digests=digests,
            )
        except BaseException as e:
            self._record_failure(e)
            raise
        finally:
            torch.use_deterministic_algorithms(prev_det)
            torch.set_num_threads(prev_threads)
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            D.cleanup()

    def _record_failure(self, e: BaseException) -> None:
        """``run.json`` says ``interrupted`` (SIGINT/SIGTERM) or ``failed`` with the error, never ``running``; a
        folder this run created and never wrote a file into is removed again."""
        if self.out is None or self._lock is None:
            return  # nothing of ours in the folder (or another process holds it)
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        if getattr(self, "meta", None) is not None:
            try:
                self._write_metadata(status, {"error": f"{type(e).__name__}: {e}"[:2000],
                                              "stopped": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            except OSError:
                pass  # e.g. the disk is full: run.json keeps its last state
        elif self._created_out:
            clean_temp_files(self.out)
            if {p.name for p in self.out.iterdir()} <= {LOCK_FILE, HOLDER_FILE}:
                self._lock.release()
                self._lock = None
                with contextlib.suppress(OSError):
                    self.out.rmdir()


def train(
    config: TrainConfig,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    datasets: tuple[Dataset, Dataset] | None = None,
    info: DataInfo | None = None,
    on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
) -> TrainResult:
    """Train one run; see :class:`Trainer`. ``on_epoch(history)`` is called (rank 0) after each epoch's files are
    written, with every epoch's record so far: live curves in a notebook, early stopping by raising. Under torchrun
    only rank 0 calls it: raising there leaves the other ranks waiting in their next collective (stop a DDP run
    with a signal instead)."""
    return Trainer(config, out, resume, datasets, info, on_epoch).fit()

