"""Triton LIF kernels for CUDA (paper Eqs. 1-3, surrogate of Eq. 5): one launch forward over ``T``, one backward
in reverse over ``T``.

Each program keeps ``BLOCK`` neurons of one sample in fp32 registers for the whole sequence: the forward reads ``x``
once and writes the spikes (input dtype) and the charged membrane ``h`` (fp32, the only tensor saved for backward);
the backward reads ``h`` and the spike gradient once and writes ``dL/dx``. Inputs fp32, bf16 or fp16 (membrane and
threshold comparison in fp32). CPU tensors run under ``TRITON_INTERPRET=1`` (the tests, on machines without a GPU).
"""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..surrogate import Surrogate
from .lif_cpu import _TRITON_BROKEN, _btn, _dense, _same_layout, _torch_backward, surrogate_code, triton_failed
from .saving import tag_spikes

_BLOCK = 1024


@triton.jit
def _lif_fwd_kernel(x_ptr, s_ptr, h_ptr, T, N, decay, thr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    base = b * T * N
    u = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(T):
        p = base + t * N + offs
        x = tl.load(x_ptr + p, mask=mask, other=0.0).to(tl.float32)
        h = u * decay
        h = h + x
        v = h - thr
        s = tl.where(v > 0.0, 1.0, 0.0)
        tl.store(s_ptr + p, s.to(s_ptr.dtype.element_ty), mask=mask)
        tl.store(h_ptr + p, h, mask=mask)
        u = h * (1.0 - s)


@triton.jit
def _lif_bwd_kernel(h_ptr, g_ptr, gx_ptr, T, N, decay, thr, p0, p1, KIND: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    base = b * T * N
    gu = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(T):
        t = T - 1 - i
        p = base + t * N + offs
        h = tl.load(h_ptr + p, mask=mask, other=0.0)
        gs = tl.load(g_ptr + p, mask=mask, other=0.0).to(tl.float32)
        v = h - thr
        s = tl.where(v > 0.0, 1.0, 0.0)
        if KIND == 0:  # triangle: max(0, gamma - |v|) / gamma^2
            d = tl.maximum(p0 - tl.abs(v), 0.0) / p1
        elif KIND == 1:  # sigmoid: a sig(a v) (1 - sig(a v))
            sv = tl.sigmoid(p0 * v)
            d = (p0 * sv) * (1.0 - sv)
        else:  # atan: (a/2) / (1 + (pi/2 a v)^2)
            z = p0 * v
            d = p1 / (1.0 + z * z)
        gh = gu * (1.0 - s) + (gs + (-(gu * h))) * d
        tl.store(gx_ptr + p, gh.to(gx_ptr.dtype.element_ty), mask=mask)
        gu = gh * decay


def _on(x: Tensor) -> contextlib.AbstractContextManager:
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


class TritonLIF(torch.autograd.Function):
    """``x [B, T, ...] -> spikes`` with the Triton kernel pair; saves the fp32 membrane ``h``."""

    @staticmethod
    def forward(ctx, x: Tensor, decay: float, threshold: float, surrogate: Surrogate) -> Tensor:  # type: ignore[override]
        if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"triton LIF supports float32/bfloat16/float16 inputs, got {x.dtype}")
        x, x3 = _dense(x)
        s = torch.empty_like(x)
        h = torch.empty_like(x, dtype=torch.float32)
        b, t, n = x3.shape
        if x3.numel():
            grid = (triton.cdiv(n, _BLOCK), b)
            with _on(x):  # Triton launches on the current device: make it the tensor's (--device cuda:1)
                _lif_fwd_kernel[grid](x3, _btn(s), _btn(h), t, n, decay, threshold, BLOCK=_BLOCK)
        ctx.save_for_backward(h)
        ctx.decay, ctx.threshold, ctx.surrogate, ctx.in_dtype = decay, threshold, surrogate, x.dtype
        return s

    @staticmethod
    def backward(ctx, grad_s: Tensor):  # type: ignore[override]
        (h,) = ctx.saved_tensors
        g = _same_layout(grad_s, h)
        gx = torch.empty_like(h, dtype=ctx.in_dtype)
        h3, g3, gx3 = _btn(h), _btn(g), _btn(gx)
        assert h3 is not None and g3 is not None and gx3 is not None
        code = surrogate_code(ctx.surrogate)
        if code is not None and h3.numel() and not _TRITON_BROKEN:
            kind, p0, p1 = code
            b, t, n = h3.shape
            grid = (triton.cdiv(n, _BLOCK), b)
            try:
                with _on(h):
                    _lif_bwd_kernel[grid](h3, g3, gx3, t, n, ctx.decay, ctx.threshold, p0, p1, KIND=kind, BLOCK=_BLOCK)
                return gx, None, None, None
            except torch.OutOfMemoryError:
                raise
            except Exception as e:  # a backward kernel that fails to compile or launch: same arithmetic in PyTorch
                triton_failed(e, "backward")
        if h3.numel():  # a custom surrogate (its own derivative(v)), or the fallback: from the saved fp32 membrane
            out = torch.empty_like(h)
            _torch_backward(h3, g3.float(), ctx.decay, ctx.threshold, ctx.surrogate, _btn(out))
            gx.copy_(out)
        return gx, None, None, None


def lif_multistep_triton(x: Tensor, decay: float, threshold: float, surrogate: Surrogate) -> Tensor:
    """The ``"triton"`` LIF backend (CUDA tensors; CPU tensors only under ``TRITON_INTERPRET=1``)."""
    return tag_spikes(TritonLIF.apply(x, decay, threshold, surrogate))
