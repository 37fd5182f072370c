"""``python -m dta_lib.bench``: this library against the release's computation, same process, same inputs.

Two races, each with interleaved repetitions (A, B, A, B, ...) and the median time:

- **LIF** forward + backward on ``[16, T, 128, 32, 32]`` for ``T`` in {4, 6, 10}: the release's
  per-step loop (:func:`dta_lib.models.reference.reference_lif`) against ``lif_multistep`` with the
  automatic backend (fused C kernel on CPU, Triton on CUDA).
- **Training step** (forward, cross-entropy on the mean over T, backward, plain SGD step) of
  ``ms_resnet18(num_classes=10, time_steps=6, attention="dta")`` against
  :class:`~dta_lib.models.reference.ReferenceMSResNet18` holding the same weights
  (copied with :func:`dta_lib.models.compat.to_reference_state_dict`; the logits are checked equal first).

- **Training epoch** (``--epoch``) at the CPU study size (width 1/8, T=4, batch 64, 28x28 Fashion-MNIST): the
  release's computation at that width against this library eager, ``channels_last``, compiled, and in bf16 where
  native (:mod:`.epoch`).

Precisions: ``fp32``, and ``bf16`` (``torch.autocast`` for the model; bf16 tensors for the LIF).
Peak memory is the peak of bytes allocated by PyTorch's allocator during one call above the bytes
allocated before it: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the running sum of the
allocation/free events recorded by ``torch.profiler(profile_memory=True)`` (RSS is useless here:
glibc keeps freed pages). Results go atomically to ``bench/bench_<device>.json`` and ``.png`` of the output root
(:func:`dta_lib.paths.output_root`).

Modules: :mod:`.measure` (timing, peak memory), :mod:`.lif` and :mod:`.train_step` (the races),
:mod:`.report` (metadata, figure, summary, targets), :mod:`.cli` (:func:`run_bench`, the command line).
"""
from __future__ import annotations

from .cli import *  # noqa: F403
from .cli import __all__ as _cli
from .epoch import *  # noqa: F403
from .epoch import __all__ as _epoch
from .lif import *  # noqa: F403
from .lif import __all__ as _lif
from .measure import *  # noqa: F403
from .measure import __all__ as _measure
from .report import *  # noqa: F403
from .report import __all__ as _report
from .train_step import *  # noqa: F403
from .train_step import __all__ as _train_step

__all__ = [*_measure, *_lif, *_train_step, *_epoch, *_report, *_cli]
