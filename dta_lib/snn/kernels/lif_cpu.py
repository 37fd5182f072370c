"""Fused multi-step LIF for the CPU (paper Eqs. 1-3 with the surrogate of Eq. 5; docs/performance.md, "What is fused").

One autograd node replaces the release's per-step graph: loops over time in C (OpenMP over neurons, compiled once
with the system compiler and cached, called through :mod:`ctypes`), or without a compiler a vectorised PyTorch path
with the same arithmetic. Saved for backward (eager): only ``x`` (its own dtype); the backward recomputes the charged
membrane ``h_t`` chunk by chunk in cache, then runs the adjoint in reverse:

.. math::
    \\frac{\\partial L}{\\partial h_t} = g^u_t (1 - s_t) + \\big(g^s_t - g^u_t h_t\\big)\\, s'(h_t - \\vartheta),
    \\qquad g^u_{t-1} = \\lambda \\frac{\\partial L}{\\partial h_t},\\quad g^u_{T-1} = 0,

the loop's autograd graph (reset *not* detached) in the same order: spikes bit-identical, fp32 gradients equal to
rounding. The membrane and the arithmetic are fp32 for half-precision inputs (autocast) too: the C kernels load and
store bf16 themselves, fp16 (and the PyTorch path) go through an fp32 copy; spikes come back in the input dtype.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import math
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...paths import cache_dir
from ..surrogate import ATan, Sigmoid, Surrogate, Triangle
from .saving import tag_spikes

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- C kernels
_CH = 1024  # neurons per chunk (CH in the C source): the backward's scratch holds T x CH per thread
_C_SRC = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <omp.h>
#define CH @CH@
/* one build for every x86-64 CPU: GCC compiles the kernels for AVX-512, AVX2 and the baseline and picks one at load
   time (the same arithmetic: no contraction, so the same results) */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GNUC__) && !defined(__clang__)  /* ifunc: glibc */
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* bfloat16 <-> float by bits (vectorisable, unlike scalar __bf16 casts); rounding to nearest even, a NaN to 0x7FC0
   (the same values as PyTorch's casts; a NaN's sign and payload may differ) */
static inline float ld_bf16(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }
static inline uint16_t st_bf16(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    uint16_t r = (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    return (u & 0x7FFFFFFFu) > 0x7F800000u ? (uint16_t)0x7FC0 : r;
}
#define ID(v) (v)

/* one step of the adjoint over n neurons (module docstring); a loop per surrogate, so the compiler vectorises each */
#define ADJOINT(T_, LD, ST, SG)                                                                \
    for (int64_t i = 0; i < n; ++i) {                                                          \
        T_ h = hp[i]; T_ v = h - thr; T_ sv = v > (T_)0 ? (T_)1 : (T_)0;                       \
        T_ gu = u[i];                                                                          \
        T_ gh = gu * ((T_)1 - sv);                                                             \
        T_ gsum = LD(gp[i]) + (-(gu * h));                                                     \
        T_ gv = gsum * SG(p0, p1, v);                                                          \
        gh = gh + gv;                                                                          \
        op[i] = ST(gh); u[i] = gh * decay;                                                     \
    }

/* S_: the stored type of x, spikes and gradients (LD/ST convert); T_: the arithmetic's and the membrane's type;
   sgK_: the surrogate derivative of
   kind 0: triangle  max(0, p0 - |v|) / p1          (p0 = gamma, p1 = gamma^2)
   kind 1: sigmoid   s = 1/(1+exp(-p0 v)); p0 s (1-s)
   kind 2: atan      p1 / (1 + (p0 v)^2)            (p0 = pi/2 a, p1 = a/2) */
#define DEFINE_LIF(S_, T_, SUF, LD, ST, EXP, FABS)                                             \
static inline T_ sg0_##SUF(T_ p0, T_ p1, T_ v) { T_ d = p0 - FABS(v); d = d > (T_)0 ? d : (T_)0; return d / p1; } \
static inline T_ sg1_##SUF(T_ p0, T_ p1, T_ v) {                                               \
    T_ z = p0 * v; T_ s = (T_)1 / ((T_)1 + EXP(-z)); T_ a = p0 * s; return a * ((T_)1 - s);    \
}                                                                                              \
static inline T_ sg2_##SUF(T_ p0, T_ p1, T_ v) { T_ z = p0 * v; z = z * z; return p1 / ((T_)1 + z); } \
/* one chunk of n neurons of one sample over T steps, from u = 0: h = decay u + x_t, s = [h > thr], \
   u = h (1 - s); writes s to so (ho == NULL) or h to ho, at t * stride */                     \
static inline void charge_##SUF(const S_* xp, S_* so, T_* ho, int64_t T, int64_t N, int64_t n, int64_t stride, \
                                T_ decay, T_ thr, T_* u) {                                     \
    for (int64_t i = 0; i < n; ++i) u[i] = (T_)0;                                              \
    for (int64_t t = 0; t < T; ++t, xp += N)                                                   \
        for (int64_t i = 0; i < n; ++i) {                                                      \
            T_ h = decay * u[i]; h = h + LD(xp[i]);                                            \
            T_ v = h - thr; T_ sv = v > (T_)0 ? (T_)1 : (T_)0;                                 \
            if (ho) ho[t * stride + i] = h; else so[t * stride + i] = ST(sv);                  \
            u[i] = h * ((T_)1 - sv);                                                           \
        }                                                                                      \
}                                                                                              \
CLONES void lif_fwd_##SUF(const S_* x, S_* s, int64_t B, int64_t T, int64_t N, T_ decay, T_ thr,      \
                   int nthreads) {                                                             \
    int64_t nc = (N + CH - 1) / CH;                                                            \
    _Pragma("omp parallel for collapse(2) schedule(static) num_threads(nthreads)")             \
    for (int64_t b = 0; b < B; ++b)                                                            \
        for (int64_t c = 0; c < nc; ++c) {                                                     \
            int64_t i0 = c * CH, n = N - i0 < CH ? N - i0 : CH;                                \
            T_ u[CH];                                                                          \
            charge_##SUF(x + b * T * N + i0, s + b * T * N + i0, NULL, T, N, n, N, decay, thr, u); \
        }                                                                                      \
}                                                                                              \
/* hs: nthreads x T x CH scratch for the recomputed membrane (allocated by the caller, which can raise) */   \
CLONES void lif_bwd_##SUF(const S_* x, const S_* gs, S_* gx, int64_t B, int64_t T, int64_t N,         \
                   T_ decay, T_ thr, int kind, T_ p0, T_ p1, T_* hs, int nthreads) {           \
    int64_t nc = (N + CH - 1) / CH;                                                            \
    _Pragma("omp parallel num_threads(nthreads)")                                              \
    {                                                                                          \
        T_* hb = hs + (int64_t)omp_get_thread_num() * T * CH;                                  \
        _Pragma("omp for collapse(2) schedule(static)")                                        \
        for (int64_t b = 0; b < B; ++b)                                                        \
            for (int64_t c = 0; c < nc; ++c) {                                                 \
                int64_t i0 = c * CH, n = N - i0 < CH ? N - i0 : CH;                            \
                T_ u[CH];                                                                      \
                charge_##SUF(x + b * T * N + i0, NULL, hb, T, N, n, CH, decay, thr, u);        \
                /* u now holds dL/du_t, zero for the last step */                              \
                for (int64_t i = 0; i < n; ++i) u[i] = (T_)0;                                  \
                for (int64_t t = T - 1; t >= 0; --t) {                                         \
                    const S_* gp = gs + (b * T + t) * N + i0;                                  \
                    S_* op = gx + (b * T + t) * N + i0;                                        \
                    const T_* hp = hb + t * CH;                                                \
                    if (kind == 0) ADJOINT(T_, LD, ST, sg0_##SUF)                              \
                    else if (kind == 1) ADJOINT(T_, LD, ST, sg1_##SUF)                         \
                    else ADJOINT(T_, LD, ST, sg2_##SUF)                                        \
                }                                                                              \
            }                                                                                  \
    }                                                                                          \
}
DEFINE_LIF(float, float, f32, ID, ID, expf, fabsf)
DEFINE_LIF(double, double, f64, ID, ID, exp, fabs)
DEFINE_LIF(uint16_t, float, bf16, ld_bf16, st_bf16, expf, fabsf)
""".replace("@CH@", str(_CH))
#: the C kernels' stored dtypes (bf16: fp32 arithmetic and membrane, bf16 loads and stores); fp16 goes through fp32
_C_DTYPES = {torch.float32: "f32", torch.float64: "f64", torch.bfloat16: "bf16"}
_CFLAGS = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-fast-math", "-fno-trapping-math", "-fPIC", "-shared", "-std=c11"]


@functools.cache
def _lib() -> ctypes.CDLL | None:
    """The C kernels, compiled on first use (once per source/flags/compiler, cached) and loaded; None when
    ``$DTA_LIB_NO_CEXT`` is set or they cannot be built."""
    if os.environ.get("DTA_LIB_NO_CEXT", "") not in ("", "0"):
        return None
    cc = os.environ.get("CC", "cc")
    key = hashlib.sha256((_C_SRC + " ".join(_CFLAGS) + cc + sys.platform).encode()).hexdigest()[:16]
    try:
        out = cache_dir() / f"lif_cpu_{key}.so"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
                (Path(tmp) / "lif.c").write_text(_C_SRC)
                subprocess.run([cc, *_CFLAGS, f"{tmp}/lif.c", "-o", f"{tmp}/lif.so", "-lm"], check=True,
                               capture_output=True, timeout=120)
                os.replace(f"{tmp}/lif.so", out)  # atomic: concurrent builders never see half a file
        lib = ctypes.CDLL(str(out))
        i64, vp, ci = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        for suf, ct in (("f32", ctypes.c_float), ("f64", ctypes.c_double), ("bf16", ctypes.c_float)):
            fwd, bwd = getattr(lib, f"lif_fwd_{suf}"), getattr(lib, f"lif_bwd_{suf}")
            fwd.argtypes, fwd.restype = [vp, vp, i64, i64, i64, ct, ct, ci], None
            bwd.argtypes, bwd.restype = [vp, vp, vp, i64, i64, i64, ct, ct, ci, ct, ct, vp, ci], None
        return lib
    except Exception as e:  # no compiler, no OpenMP, read-only cache...: fall back to PyTorch
        log.warning("dta_lib: C LIF kernel unavailable (%s); using the PyTorch fused path", e)
        return None


@torch.compiler.assume_constant_result  # torch.compile: a constant, not traced into the loader
def c_extension_available() -> bool:
    """True when the compiled C kernels load on this machine."""
    return _lib() is not None


# --------------------------------------------------------------------------- helpers
def surrogate_code(surrogate: Surrogate) -> tuple[int, float, float] | None:
    """``(kind, p0, p1)`` of a built-in surrogate for the fused kernels; None (use ``derivative``) for any other
    class, subclasses included (they may override ``derivative``)."""
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
    if _btn(x) is None:
        x = x.contiguous()
    return x, _btn(x)  # type: ignore[return-value]


def _threads(numel: int) -> int:
    """OpenMP threads for a call: one for small inputs (a parallel region costs more than it saves)."""
    return torch.get_num_threads() if numel >= (1 << 16) else 1


def _same_layout(g: Tensor, like: Tensor) -> Tensor:
    return g if g.stride() == like.stride() else torch.empty_like(like, dtype=g.dtype).copy_(g)


# --------------------------------------------------------------------------- PyTorch fused path
def _torch_forward(x3: Tensor, decay: float, thr: float, s3: Tensor, h3: Tensor) -> None:
    """Fused-by-hand forward on ``[B, T, N]`` views with in-place ops; fills the spikes ``s3`` and membrane ``h3``."""
    u = torch.zeros_like(x3[:, 0])
    v = torch.empty_like(u)
    for t in range(x3.shape[1]):
        h = h3[:, t]
        torch.mul(u, decay, out=h)
        h.add_(x3[:, t])
        torch.sub(h, thr, out=v)
        st = s3[:, t]
        torch.gt(v, 0, out=st)  # writes 0/1 in s's dtype
        torch.mul(h, torch.rsub(st, 1), out=u)


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


#: the first Triton failure of this process; CUDA then runs the fused PyTorch LIF above (hence the record is here)
_TRITON_BROKEN: list[str] = []


def triton_failed(e: BaseException, where: str) -> None:
    """Record a Triton failure at ``where`` (compile, forward or backward launch) and warn, once per process."""
    if _TRITON_BROKEN:
        return
    _TRITON_BROKEN.append(f"{where}: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
    warnings.warn(f"Triton LIF kernel failed ({_TRITON_BROKEN[0]}); using the fused PyTorch LIF instead for the rest "
                  "of this process (the same fp32-membrane arithmetic, so the same spikes; slower)",
                  RuntimeWarning, stacklevel=3)


# --------------------------------------------------------------------------- the C kernels as torch ops
# Custom ops, so that torch.compile keeps each call as one opaque node and fuses what is around it (batch norm,
# additions) instead of tracing the per-step loop; ctypes inside an autograd.Function would break the graph.
def _like(x: Tensor) -> Tensor:
    """An empty tensor laid out as the kernels write: ``x``'s layout when :func:`_btn` has a view, else contiguous."""
    return torch.empty_like(x) if _btn(x) is not None else torch.empty_like(x, memory_format=torch.contiguous_format)


def _work(x: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` laid out as :func:`_like` (the layout decided on ``x`` itself), in a C dtype (fp16: fp32),
    and its ``[B, T, N]`` view."""
    x = _dense(x)[0]
    x = x if x.dtype in _C_DTYPES else x.float()  # dense: the cast keeps the strides
    return x, _btn(x)  # type: ignore[return-value]


@torch.library.custom_op("dta::lif_forward", mutates_args=())
def _c_forward(x: Tensor, decay: float, threshold: float, kind: int, p0: float, p1: float) -> Tensor:
    """Spikes of the C forward; fp16 ``x`` goes through fp32 (:data:`_C_DTYPES`). ``kind, p0, p1``: the
    surrogate (:func:`surrogate_code`), for the backward."""
    xw, x3 = _work(x)
    s = torch.empty_like(xw)
    fwd = getattr(_lib(), f"lif_fwd_{_C_DTYPES[xw.dtype]}")
    fwd(x3.data_ptr(), _btn(s).data_ptr(), *x3.shape, decay, threshold, _threads(x3.numel()))
    return s.to(x.dtype)


@torch.library.custom_op("dta::lif_backward", mutates_args=())
def _c_backward(x: Tensor, grad_s: Tensor, decay: float, threshold: float, kind: int, p0: float, p1: float) -> Tensor:
    """``dL/dx`` from the saved input ``x``: the C backward recomputes ``h_t`` (module docstring)."""
    sw, s3 = _work(x)
    g = _same_layout(grad_s.to(sw.dtype), sw)
    gx = torch.empty_like(sw)
    nt = _threads(s3.numel())  # the membrane scratch is a torch tensor: running out of memory raises
    hs = torch.empty(nt * s3.shape[1] * _CH, dtype=torch.float64 if sw.dtype == torch.float64 else torch.float32)
    bwd = getattr(_lib(), f"lif_bwd_{_C_DTYPES[sw.dtype]}")
    bwd(s3.data_ptr(), _btn(g).data_ptr(), _btn(gx).data_ptr(), *s3.shape, decay, threshold, kind, p0, p1,
        hs.data_ptr(), nt)
    return gx.to(x.dtype)


_c_forward.register_fake(lambda x, decay, threshold, kind, p0, p1: _like(x))
_c_backward.register_fake(lambda x, grad_s, decay, threshold, kind, p0, p1: _like(x))


def _c_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.save_for_backward(inputs[0])  # the caller's tensor: free when something else keeps it too
    ctx.args = inputs[1:]


def _c_grad(ctx: Any, grad_s: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:
    (x,) = ctx.saved_tensors
    decay, threshold, kind, p0, p1 = ctx.args
    return _c_backward(x, grad_s, decay, threshold, kind, p0, p1), None, None, None, None, None


_c_forward.register_autograd(_c_grad, setup_context=_c_setup)


# --------------------------------------------------------------------------- autograd
class FusedLIF(torch.autograd.Function):
    """``x [B, T, ...] -> spikes`` without the C kernels: one node, saves the membrane ``h``."""

    @staticmethod
    def forward(ctx, x: Tensor, decay: float, threshold: float, surrogate: Surrogate) -> Tensor:  # type: ignore[override]
        if x.numel() == 0:
            ctx.empty = True
            return torch.empty_like(x)
        xw, x3 = _dense(x if x.dtype in (torch.float32, torch.float64) else x.float())
        s, h = torch.empty_like(xw), torch.empty_like(xw)
        _torch_forward(x3, decay, threshold, _btn(s), _btn(h))
        ctx.empty, ctx.decay, ctx.threshold, ctx.surrogate, ctx.in_dtype = False, decay, threshold, surrogate, x.dtype
        ctx.save_for_backward(h)
        return s.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_s: Tensor):  # type: ignore[override]
        if ctx.empty:
            return torch.zeros_like(grad_s), None, None, None
        (h,) = ctx.saved_tensors
        g = _same_layout(grad_s.to(h.dtype), h)
        gx = torch.empty_like(h)
        _torch_backward(_btn(h), _btn(g), ctx.decay, ctx.threshold, ctx.surrogate, _btn(gx))
        return gx.to(ctx.in_dtype), None, None, None


def lif_multistep_fused(x: Tensor, decay: float, threshold: float, surrogate: Surrogate) -> Tensor:
    """The ``"fused"`` LIF backend: same function as :func:`dta_lib.snn.loop.lif_multistep_loop`. The C kernels
    (:func:`_c_forward`, a custom op with its autograd) where they load, the input is on the CPU and not empty and
    the surrogate is built in; else :class:`FusedLIF`, the PyTorch path."""
    code = surrogate_code(surrogate)
    if x.device.type == "cpu" and x.numel() and code is not None and c_extension_available():
        s = _c_forward(x, decay, threshold, *code)  # saves the caller's tensor (bf16: half the bytes of fp32)
    else:
        s = FusedLIF.apply(x, decay, threshold, surrogate)
    return s if torch.compiler.is_compiling() else tag_spikes(s)

