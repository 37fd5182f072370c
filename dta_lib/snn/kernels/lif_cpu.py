"""Fused multi-step LIF for the CPU (paper Eqs. 1-3 with the surrogate of Eq. 5).

One autograd node replaces the release's per-step graph. Forward and backward are
fused loops over time written in C (OpenMP over neurons, built once with the system
compiler and cached, called through :mod:`ctypes`); when no compiler is available a
vectorised pure-PyTorch path with the same arithmetic is used instead.

Saved for backward: only the input ``x`` (in its own dtype). The backward recomputes
the charged membrane ``h_t`` chunk by chunk in cache, then runs the adjoint in reverse:

.. math::
    \\frac{\\partial L}{\\partial h_t} = g^u_t (1 - s_t) + \\big(g^s_t - g^u_t h_t\\big)\\, s'(h_t - \\vartheta),
    \\qquad g^u_{t-1} = \\lambda \\frac{\\partial L}{\\partial h_t},\\quad g^u_{T-1} = 0,

which is the loop's autograd graph (reset *not* detached) evaluated in the same order,
so outputs are bit-identical and fp32 gradients agree to rounding.
Half-precision inputs (autocast) are integrated in fp32: the membrane and the
threshold comparison stay fp32, spikes are returned in the input dtype (bf16 and fp16 go through an fp32 copy:
vectorised casts beat scalar half loads in C).
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

from ...paths import cache_dir
from ..surrogate import ATan, Sigmoid, Surrogate, Triangle
from .saving import tag_spikes

__all__ = ["lif_multistep_fused", "FusedLIF", "c_extension_available", "surrogate_code"]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- C kernels
_C_SRC = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <omp.h>
#include <sys/mman.h>
#define CH 1024

/* ask for transparent huge pages on a fresh output buffer: a first touch of 4 KiB pages
   costs more than the kernel itself on large tensors */
void advise_huge(void* p, int64_t nbytes) {
    uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
    uintptr_t e = ((uintptr_t)p + (uintptr_t)nbytes) & ~(uintptr_t)4095;
#ifdef MADV_HUGEPAGE
    if (e > a + (1u << 21)) madvise((void*)a, e - a, MADV_HUGEPAGE);
#endif
}

#define ID(v) (v)

/* kind 0: triangle  max(0, p0 - |v|) / p1          (p0 = gamma, p1 = gamma^2)
   kind 1: sigmoid   s = 1/(1+exp(-p0 v)); p0 s (1-s)
   kind 2: atan      p1 / (1 + (p0 v)^2)            (p0 = pi/2 a, p1 = a/2) */
#define DEFINE_SG(T_, SUF, EXP, FABS)                                                          \
static inline T_ sg_##SUF(int kind, T_ p0, T_ p1, T_ v) {                                     \
    if (kind == 0) { T_ d = p0 - FABS(v); d = d > (T_)0 ? d : (T_)0; return d / p1; }          \
    if (kind == 1) { T_ z = p0 * v; T_ s = (T_)1 / ((T_)1 + EXP(-z)); T_ a = p0 * s;          \
                     return a * ((T_)1 - s); }                                                 \
    { T_ z = p0 * v; z = z * z; return p1 / ((T_)1 + z); }                                     \
}
DEFINE_SG(float, f32, expf, fabsf)
DEFINE_SG(double, f64, exp, fabs)

/* IO_: storage type of x, spikes and gradients; T_: arithmetic type of the membrane */
#define DEFINE_LIF(IO_, T_, SUF, SG, LD, ST)                                                  \
void lif_fwd_##SUF(const IO_* x, IO_* s, int64_t B, int64_t T, int64_t N, T_ decay, T_ thr,   \
                   int nthreads) {                                                             \
    int64_t nc = (N + CH - 1) / CH;                                                            \
    _Pragma("omp parallel for collapse(2) schedule(static) num_threads(nthreads)")             \
    for (int64_t b = 0; b < B; ++b)                                                            \
        for (int64_t c = 0; c < nc; ++c) {                                                     \
            int64_t i0 = c * CH, n = N - i0 < CH ? N - i0 : CH;                                \
            T_ u[CH];                                                                          \
            for (int64_t i = 0; i < n; ++i) u[i] = (T_)0;                                      \
            for (int64_t t = 0; t < T; ++t) {                                                  \
                const IO_* xp = x + (b * T + t) * N + i0;                                      \
                IO_* sp = s + (b * T + t) * N + i0;                                            \
                for (int64_t i = 0; i < n; ++i) {                                              \
                    T_ h = decay * u[i]; h = h + LD(xp[i]);                                    \
                    T_ v = h - thr; T_ sv = v > (T_)0 ? (T_)1 : (T_)0;                         \
                    sp[i] = ST(sv); u[i] = h * ((T_)1 - sv);                                   \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
}                                                                                              \
void lif_bwd_##SUF(const IO_* x, const IO_* gs, IO_* gx, int64_t B, int64_t T, int64_t N,     \
                   T_ decay, T_ thr, int kind, T_ p0, T_ p1, int nthreads) {                   \
    int64_t nc = (N + CH - 1) / CH;                                                            \
    _Pragma("omp parallel num_threads(nthreads)")                                              \
    {                                                                                          \
        T_* hb = (T_*)malloc(sizeof(T_) * (size_t)(T * CH));                                   \
        _Pragma("omp for collapse(2) schedule(static)")                                        \
        for (int64_t b = 0; b < B; ++b)                                                        \
            for (int64_t c = 0; c < nc; ++c) {                                                 \
                int64_t i0 = c * CH, n = N - i0 < CH ? N - i0 : CH;                            \
                T_ u[CH];                                                                      \
                for (int64_t i = 0; i < n; ++i) u[i] = (T_)0;                                  \
                for (int64_t t = 0; t < T; ++t) {                                              \
                    const IO_* xp = x + (b * T + t) * N + i0;                                  \
                    T_* hp = hb + t * CH;                                                      \
                    for (int64_t i = 0; i < n; ++i) {                                          \
                        T_ h = decay * u[i]; h = h + LD(xp[i]);                                \
                        T_ v = h - thr; T_ sv = v > (T_)0 ? (T_)1 : (T_)0;                     \
                        hp[i] = h; u[i] = h * ((T_)1 - sv);                                    \
                    }                                                                          \
                }                                                                              \
                /* u now holds dL/du_t, zero for the last step */                              \
                for (int64_t i = 0; i < n; ++i) u[i] = (T_)0;                                  \
                for (int64_t t = T - 1; t >= 0; --t) {                                         \
                    const IO_* gp = gs + (b * T + t) * N + i0;                                 \
                    IO_* op = gx + (b * T + t) * N + i0;                                       \
                    const T_* hp = hb + t * CH;                                                \
                    for (int64_t i = 0; i < n; ++i) {                                          \
                        T_ h = hp[i]; T_ v = h - thr; T_ sv = v > (T_)0 ? (T_)1 : (T_)0;       \
                        T_ gu = u[i];                                                          \
                        T_ gh = gu * ((T_)1 - sv);                                             \
                        T_ gsum = LD(gp[i]) + (-(gu * h));                                     \
                        T_ gv = gsum * SG(kind, p0, p1, v);                                    \
                        gh = gh + gv;                                                          \
                        op[i] = ST(gh); u[i] = gh * decay;                                     \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        if (hb) free(hb);                                                                      \
    }                                                                                          \
}
DEFINE_LIF(float, float, f32, sg_f32, ID, ID)
DEFINE_LIF(double, double, f64, sg_f64, ID, ID)
"""
#: the C kernels' dtypes; bf16 / fp16 go through fp32 (PyTorch's vectorised casts are 2.6x faster than scalar
#: bf16 loads and stores in C, measured on [64, 4, 16, 28, 28], and the arithmetic is the same fp32)
_C_DTYPES = {torch.float32: "f32", torch.float64: "f64"}
_CFLAGS = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-fast-math", "-fno-trapping-math", "-fPIC", "-shared", "-std=c11"]
_LIB: ctypes.CDLL | None = None
_LIB_TRIED = False
_LOCK = threading.Lock()


def _build() -> ctypes.CDLL:
    """Compile (once per source/flags/compiler, cached) and load the C kernels."""
    cc = os.environ.get("CC", "cc")
    key = hashlib.sha256((_C_SRC + " ".join(_CFLAGS) + cc + sys.platform).encode()).hexdigest()[:16]
    out = cache_dir() / f"lif_cpu_{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            src = Path(tmp) / "lif.c"
            src.write_text(_C_SRC)
            tmp_so = Path(tmp) / "lif.so"
            subprocess.run([cc, *_CFLAGS, str(src), "-o", str(tmp_so), "-lm"], check=True, capture_output=True,
                           timeout=120)
            os.replace(tmp_so, out)  # atomic: concurrent builders never see half a file
    lib = ctypes.CDLL(str(out))
    i64, vp, ci = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.advise_huge.argtypes, lib.advise_huge.restype = [vp, i64], None
    for suf, ct in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        fwd, bwd = getattr(lib, f"lif_fwd_{suf}"), getattr(lib, f"lif_bwd_{suf}")
        fwd.argtypes, fwd.restype = [vp, vp, i64, i64, i64, ct, ct, ci], None
        bwd.argtypes, bwd.restype = [vp, vp, vp, i64, i64, i64, ct, ct, ci, ct, ct, ci], None
    return lib


def _lib() -> ctypes.CDLL | None:
    global _LIB, _LIB_TRIED
    if _LIB_TRIED:
        return _LIB
    with _LOCK:
        if not _LIB_TRIED:
            if os.environ.get("DTA_LIB_NO_CEXT", "") in ("", "0"):
                try:
                    _LIB = _build()
                except Exception as e:  # no compiler, no OpenMP, read-only cache...: fall back to PyTorch
                    log.warning("dta_lib: C LIF kernel unavailable (%s); using the PyTorch fused path", e)
            _LIB_TRIED = True
    return _LIB


def c_extension_available() -> bool:
    """True when the compiled C kernels load on this machine."""
    return _lib() is not None


# --------------------------------------------------------------------------- helpers
def surrogate_code(surrogate: Surrogate) -> tuple[int, float, float] | None:
    """``(kind, p0, p1)`` of a built-in surrogate for the fused kernels, or None (use ``derivative``).

    Matches the exact class only: a subclass may override ``derivative``.
    """
    t = type(surrogate)
    if t is Triangle:
        return 0, surrogate.width, surrogate.width * surrogate.width
    if t is Sigmoid:
        return 1, surrogate.width, 0.0
    if t is ATan:
        return 2, math.pi / 2 * surrogate.width, surrogate.width / 2
    return None


def _btn(x: Tensor) -> Tensor | None:
    """A ``[B, T, N]`` strided view over the same memory when ``x`` ``[B, T, ...]`` is dense with
    each ``(b, t)`` slice stored in one contiguous block laid out alike (e.g. channels_last); else None."""
    b, t = x.shape[0], x.shape[1]
    if x.numel() == 0:
        return None
    n = x.numel() // (b * t)
    inner = sorted((st, sz) for sz, st in zip(x.shape[2:], x.stride()[2:]) if sz != 1)
    expect = 1
    for st, sz in inner:
        if st != expect:
            return None
        expect *= sz
    if (t > 1 and x.stride(1) != n) or (b > 1 and x.stride(0) != t * n):
        return None
    return x.as_strided((b, t, n), (t * n, n, 1))


def _dense(x: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` (a contiguous copy when :func:`_btn` has no view of it) and its ``[B, T, N]`` view."""
    x3 = _btn(x)
    if x3 is None:
        x = x.contiguous()
        x3 = _btn(x)
    assert x3 is not None
    return x, x3


def _threads(numel: int) -> int:
    """OpenMP threads for a call: one for small inputs (a parallel region costs more than it saves)."""
    return torch.get_num_threads() if numel >= (1 << 16) else 1


def _same_layout(g: Tensor, like: Tensor) -> Tensor:
    if g.stride() == like.stride():
        return g
    out = torch.empty_like(like, dtype=g.dtype)
    out.copy_(g)
    return out


# --------------------------------------------------------------------------- PyTorch fused path
def _torch_forward(x3: Tensor, decay: float, thr: float, s3: Tensor, h3: Tensor | None) -> None:
    """Fused-by-hand forward on ``[B, T, N]`` views with in-place ops; fills ``s3`` (and ``h3``)."""
    u = torch.zeros_like(x3[:, 0])
    h = torch.empty_like(u)
    v = torch.empty_like(u)
    for t in range(x3.shape[1]):
        torch.mul(u, decay, out=h)
        h.add_(x3[:, t])
        torch.sub(h, thr, out=v)
        st = s3[:, t]
        torch.gt(v, 0, out=st)  # writes 0/1 in s's dtype
        torch.mul(h, torch.rsub(st, 1), out=u)
        if h3 is not None:
            h3[:, t].copy_(h)


def _torch_backward(h3: Tensor, g3: Tensor, decay: float, thr: float, sg: Surrogate, gx3: Tensor) -> None:
    gu: Tensor | None = None
    for t in range(h3.shape[1] - 1, -1, -1):
        h = h3[:, t]
        v = h - thr
        d = sg.derivative(v)
        if gu is None:
            gh = g3[:, t] * d
        else:
            s = (v > 0).to(h.dtype)
            gh = gu * (1 - s) + (g3[:, t] + (-(gu * h))) * d
        gx3[:, t].copy_(gh)
        gu = gh * decay


# --------------------------------------------------------------------------- autograd
class FusedLIF(torch.autograd.Function):
    """``x [B, T, ...] -> spikes``: one node, saves ``x`` only (C path) or the membrane ``h`` (PyTorch path)."""

    @staticmethod
    def forward(ctx, x: Tensor, decay: float, threshold: float, surrogate: Surrogate) -> Tensor:  # type: ignore[override]
        if x.numel() == 0:
            ctx.mode = "empty"
            return torch.empty_like(x)
        lib = _lib() if x.device.type == "cpu" else None  # other devices: the PyTorch path
        code = surrogate_code(surrogate)
        fast = lib is not None and code is not None
        work_dtype = x.dtype if x.dtype in _C_DTYPES else torch.float32
        xw, x3 = _dense(x if x.dtype == work_dtype else x.to(work_dtype))
        s = torch.empty_like(xw)
        s3 = _btn(s)
        assert s3 is not None
        ctx.decay, ctx.threshold, ctx.surrogate, ctx.in_dtype = decay, threshold, surrogate, x.dtype
        if fast:
            suf = _C_DTYPES[work_dtype]
            lib.advise_huge(s.data_ptr(), s.numel() * s.element_size())
            getattr(lib, f"lif_fwd_{suf}")(x3.data_ptr(), s3.data_ptr(), *x3.shape, decay, threshold,
                                           _threads(x3.numel()))
            ctx.mode = "c"
            ctx.save_for_backward(x)  # the caller's tensor: free when something else keeps it too
        else:  # no C kernel, another device, or a surrogate only known by its derivative(): PyTorch
            h = torch.empty_like(xw)
            _torch_forward(x3, decay, threshold, s3, _btn(h))
            ctx.mode = "torch"
            ctx.save_for_backward(h)
        return s if s.dtype == x.dtype else s.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_s: Tensor):  # type: ignore[override]
        if ctx.mode == "empty":
            return torch.zeros_like(grad_s), None, None, None
        (saved,) = ctx.saved_tensors
        work_dtype = saved.dtype if saved.dtype in _C_DTYPES else torch.float32
        sw, s3 = _dense(saved if saved.dtype == work_dtype else saved.to(work_dtype))
        g = _same_layout(grad_s.to(work_dtype), sw)
        gx = torch.empty_like(sw)
        g3, gx3 = _btn(g), _btn(gx)
        assert g3 is not None and gx3 is not None
        if ctx.mode == "c":
            kind, p0, p1 = surrogate_code(ctx.surrogate)  # type: ignore[misc]
            suf = _C_DTYPES[work_dtype]
            lib = _lib()
            lib.advise_huge(gx.data_ptr(), gx.numel() * gx.element_size())
            getattr(lib, f"lif_bwd_{suf}")(s3.data_ptr(), g3.data_ptr(), gx3.data_ptr(), *s3.shape, ctx.decay,
                                              ctx.threshold, kind, p0, p1, _threads(s3.numel()))
        else:
            _torch_backward(s3, g3, ctx.decay, ctx.threshold, ctx.surrogate, gx3)
        return (gx if gx.dtype == ctx.in_dtype else gx.to(ctx.in_dtype)), None, None, None


def lif_multistep_fused(x: Tensor, decay: float, threshold: float, surrogate: Surrogate) -> Tensor:
    """The ``"fused"`` LIF backend: same function as :func:`dta_lib.snn.loop.lif_multistep_loop`."""
    return tag_spikes(FusedLIF.apply(x, decay, threshold, surrogate))

