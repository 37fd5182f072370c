"""Fused LIF kernels against the reference loop (paper Eqs. 1-3, surrogate Eq. 5)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from dta_lib.snn.functional import LIF_BACKENDS, _auto_backend, lif_multistep
from dta_lib.snn.loop import lif_multistep_loop
from dta_lib.snn.kernels import triton_available
from dta_lib.snn.kernels.lif_cpu import c_extension_available, lif_multistep_fused, surrogate_code
from dta_lib.snn.kernels.lif_cpu import _btn, _torch_backward, _torch_forward
from dta_lib.snn.kernels.saving import compact_spikes, is_spikes
from dta_lib.models.ms_resnet import ms_resnet18
from dta_lib.models.reference import reference_lif
from dta_lib.snn.surrogate import ATan, Sigmoid, Surrogate, Triangle

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SURROGATES = [Triangle(1.0), Triangle(0.7), Sigmoid(4.0), ATan(2.0)]


class Quadratic(Surrogate):
    """A surrogate the kernels do not know: the backward must call its derivative()."""

    name = "quadratic"

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        return (1 - v * v).clamp_min(0)


def _inputs(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 1.5 + 0.6).to(dtype).requires_grad_()
    gy = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return x, gy


def _both(fn, x, gy, sg, decay=0.5, thr=1.0):
    y_ref = lif_multistep_loop(x, decay, thr, sg)
    (g_ref,) = torch.autograd.grad(y_ref, x, gy)
    y = fn(x, decay, thr, sg)
    (g,) = torch.autograd.grad(y, x, gy)
    return y_ref, g_ref, y, g


def test_registered_and_auto_selection():
    assert LIF_BACKENDS["fused"] is lif_multistep_fused
    assert _auto_backend(torch.zeros(1, 1), Triangle()) == "fused"
    if triton_available():
        assert "triton" in LIF_BACKENDS


@pytest.mark.parametrize("sg", SURROGATES + [Quadratic()], ids=lambda s: f"{s.name}-{s.width}")
@pytest.mark.parametrize("decay,thr", [(0.5, 1.0), (0.9, 0.3)])
def test_fused_equals_loop_fp32(sg, decay, thr):
    x, gy = _inputs((3, 6, 4, 5, 7))
    y_ref, g_ref, y, g = _both(lif_multistep_fused, x, gy, sg, decay, thr)
    assert torch.equal(y, y_ref)
    assert y.dtype == x.dtype and y.shape == x.shape
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-6)
    assert y.sum() > 0 and (y == 0).any()  # both branches of the threshold are exercised


@pytest.mark.parametrize("sg", SURROGATES, ids=lambda s: f"{s.name}-{s.width}")
def test_fused_equals_loop_fp64(sg):
    x, gy = _inputs((2, 10, 33), torch.float64)
    y_ref, g_ref, y, g = _both(lif_multistep_fused, x, gy, sg)
    assert torch.equal(y, y_ref)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-13)


def test_matches_release_reference_lif():
    x, gy = _inputs((2, 6, 8, 9))
    y = lif_multistep_fused(x, 0.5, 1.0, Triangle(1.0))
    y_rel = reference_lif(x)
    assert torch.equal(y, y_rel)
    (g,) = torch.autograd.grad(y, x, gy)
    (g_rel,) = torch.autograd.grad(reference_lif(x), x, gy)
    torch.testing.assert_close(g, g_rel, rtol=0, atol=1e-6)


def test_gradcheck_against_primitive_free_formula():
    """The fused backward is the adjoint of the surrogate-relaxed forward: check it against the loop in
    float64 on random directions (gradcheck itself cannot see through the Heaviside)."""
    x, _ = _inputs((2, 5, 6), torch.float64)
    for seed in range(3):
        gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        _, g_ref, _, g = _both(lif_multistep_fused, x, gy, Sigmoid(4.0))
        assert torch.allclose(g, g_ref, atol=1e-13, rtol=0)


def test_channels_last_and_strided_inputs():
    x, gy = _inputs((2, 3, 8, 5, 5))
    x_cl = x.detach().flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (2, 3)).requires_grad_()
    assert _btn(x_cl) is not None and not x_cl.is_contiguous()
    y_ref, g_ref, y, g = _both(lif_multistep_fused, x_cl, gy, Triangle())
    assert torch.equal(y, y_ref) and y.stride() == x_cl.stride()  # layout kept for the next conv
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-6)
    x_t = x.detach().transpose(3, 4).requires_grad_()  # non-dense per (b, t) order still works
    y_ref, g_ref, y, g = _both(lif_multistep_fused, x_t, gy.transpose(3, 4), Triangle())
    assert torch.equal(y, y_ref)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-6)
    x_sl = x.detach()[:, ::2].requires_grad_()  # time-strided slice: copied, still correct
    y_ref, g_ref, y, g = _both(lif_multistep_fused, x_sl, gy[:, ::2], ATan())
    assert torch.equal(y, y_ref)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-6)


def test_bf16_input_keeps_membrane_in_fp32():
    x, gy = _inputs((2, 6, 64), torch.bfloat16)
    y = lif_multistep_fused(x, 0.5, 1.0, Triangle())
    assert y.dtype == torch.bfloat16
    x32 = x.detach().float().requires_grad_()
    y32 = lif_multistep_loop(x32, 0.5, 1.0, Triangle())
    assert torch.equal(y.float(), y32)  # fp32 integration of the bf16 input
    (g,) = torch.autograd.grad(y, x, gy)
    (g32,) = torch.autograd.grad(y32, x32, gy.float())
    assert g.dtype == torch.bfloat16
    torch.testing.assert_close(g.float(), g32.bfloat16().float(), rtol=0, atol=0)


@pytest.mark.skipif(not c_extension_available(), reason="the C kernels do not build here")
@pytest.mark.parametrize("sg", SURROGATES[1:], ids=lambda sg: f"{sg.name}{sg.width}")
def test_bf16_c_kernels_equal_the_fp32_kernels_rounded(sg, monkeypatch):
    """bf16 goes to the bf16 kernels, which load, store and round by bits in C: the fp32 kernels' results cast by
    PyTorch, bit for bit, on a channels_last input of several 1,024-neuron chunks and a tail, large enough for the
    OpenMP path; NaN where they give NaN."""
    from dta_lib.snn.kernels import lif_cpu
    from dta_lib.snn.kernels.lif_cpu import _c_backward, _c_forward

    x, gy = _inputs((3, 4, 7, 50, 26), torch.bfloat16)  # 109,200 elements: more than _threads' one-thread cutoff
    x, gy = (t.detach().flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (3, 4)) for t in (x, gy))
    gy[0, 1, 0, :2, 0] = torch.tensor([3e38, -3e38]).bfloat16()  # large gradients: rounding near the top of the range
    x[1, 0, 2, 3, 4] = float("nan")
    args = (0.5, 1.0, *surrogate_code(sg))
    lib, called = lif_cpu._lib(), []
    for name in ("lif_fwd_bf16", "lif_bwd_bf16"):
        kernel = getattr(lib, name)
        monkeypatch.setattr(lib, name, lambda *a, kernel=kernel, name=name: (called.append(name), kernel(*a))[1])
    s, gx = _c_forward(x, *args), _c_backward(x, gy, *args)
    assert called == ["lif_fwd_bf16", "lif_bwd_bf16"]  # not through fp32 copies
    assert s.dtype == gx.dtype == torch.bfloat16 and s.stride() == x.stride()
    s32, gx32 = _c_forward(x.float(), *args), _c_backward(x.float(), gy.float(), *args)
    nan = gx32.isnan()
    assert nan.any() and torch.equal(gx.isnan(), nan)
    assert torch.equal(s, s32.bfloat16()) and torch.equal(gx[~nan], gx32.bfloat16()[~nan])


def test_pytorch_fallback_path_matches():
    x, gy = _inputs((2, 6, 3, 4))
    x3 = _btn(x.detach())
    s, h = torch.empty_like(x3), torch.empty_like(x3)
    _torch_forward(x3, 0.5, 1.0, s, h)
    assert torch.equal(s, lif_multistep_loop(x.detach(), 0.5, 1.0, Triangle()).reshape(s.shape))
    gx = torch.empty_like(h)
    _torch_backward(h, gy.reshape(h.shape), 0.5, 1.0, Triangle(), gx)
    _, g_ref, _, _ = _both(lif_multistep_fused, x, gy, Triangle())
    torch.testing.assert_close(gx.reshape(g_ref.shape), g_ref, rtol=0, atol=1e-6)


def test_fallback_without_c_extension_in_subprocess():
    code = (
        "import torch; from dta_lib.snn.kernels.lif_cpu import c_extension_available, lif_multistep_fused, surrogate_code;"
        "from dta_lib.snn.loop import lif_multistep_loop; from dta_lib.snn.surrogate import Triangle;"
        "x = torch.randn(2, 6, 50, requires_grad=True);"
        "a = lif_multistep_fused(x, 0.5, 1.0, Triangle()); b = lif_multistep_loop(x, 0.5, 1.0, Triangle());"
        "ga, = torch.autograd.grad(a.sum(), x); gb, = torch.autograd.grad(b.sum(), x);"
        "assert not c_extension_available(); assert torch.equal(a, b); assert (ga - gb).abs().max() <= 1e-6; print('ok')"
    )
    env = {**os.environ, "DTA_LIB_NO_CEXT": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_c_extension_builds_here():
    """CI machines have a C compiler: the fast path must actually be in use there."""
    assert c_extension_available()


def test_empty_and_single_step():
    x = torch.zeros(0, 6, 3, requires_grad=True)
    assert lif_multistep_fused(x, 0.5, 1.0, Triangle()).shape == (0, 6, 3)
    x, gy = _inputs((4, 1, 3))
    y_ref, g_ref, y, g = _both(lif_multistep_fused, x, gy, Triangle())
    assert torch.equal(y, y_ref)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-6)


def test_spikes_saved_as_bool_same_gradients():
    torch.manual_seed(0)
    m = ms_resnet18(10, 4, "dta", width=0.125)
    x = torch.randn(2, 3, 8, 8)
    loss = m(x).mean(1).logsumexp(1).sum()
    g_compact = torch.autograd.grad(loss, list(m.parameters()))
    with torch.no_grad():  # the same model with the loop backend saves float spikes
        for mod in m.modules():
            if hasattr(mod, "backend"):
                mod.backend = "loop"
    loss = m(x).mean(1).logsumexp(1).sum()
    g_loop = torch.autograd.grad(loss, list(m.parameters()))
    for a, b in zip(g_compact, g_loop):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_compact_spikes_packs_only_spikes():
    x = torch.randn(2, 3, 4, requires_grad=True)
    s = lif_multistep(x)
    assert is_spikes(s) and is_spikes(s.flatten(0, 1)) and not is_spikes(x)
    w = torch.randn(4, requires_grad=True)
    with compact_spikes():
        y = (s.flatten(0, 1) * w).sum()
    (gw,) = torch.autograd.grad(y, w)
    torch.testing.assert_close(gw, s.flatten(0, 1).sum(0))


# ------------------------------------------------------------------ Triton (interpreter on CPU, real on CUDA)
triton_interp = pytest.mark.skipif(
    not triton_available() or os.environ.get("TRITON_INTERPRET") != "1",
    reason="Triton kernels on CPU need TRITON_INTERPRET=1 (set before import); CUDA tests cover them on a GPU",
)


def _triton_case(device: str, dtype: torch.dtype, sg: Surrogate, shape=(2, 6, 3, 5, 7)):
    from dta_lib.snn.kernels.lif_triton import lif_multistep_triton

    x, gy = _inputs(shape, dtype)
    x = x.detach().to(device).requires_grad_()
    gy = gy.to(device)
    y = lif_multistep_triton(x, 0.5, 1.0, sg)
    (g,) = torch.autograd.grad(y, x, gy)
    x32 = x.detach().float().requires_grad_()
    y32 = lif_multistep_loop(x32, 0.5, 1.0, sg)
    (g32,) = torch.autograd.grad(y32, x32, gy.float())
    assert y.dtype == dtype and torch.equal(y.float(), y32)
    if dtype == torch.float32:
        torch.testing.assert_close(g, g32, rtol=0, atol=1e-6)
    else:
        torch.testing.assert_close(g.float(), g32, rtol=1e-2, atol=1e-2)  # one ulp of the output dtype


@triton_interp
@pytest.mark.parametrize("sg", SURROGATES + [Quadratic()], ids=lambda s: f"{s.name}-{s.width}")
def test_triton_interpreter_fp32(sg):
    _triton_case("cpu", torch.float32, sg)


@triton_interp
def test_triton_interpreter_bf16():
    _triton_case("cpu", torch.bfloat16, Triangle())


@requires_cuda
@pytest.mark.skipif(not triton_available(), reason="needs triton")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("sg", SURROGATES, ids=lambda s: f"{s.name}-{s.width}")
def test_triton_cuda(dtype, sg):
    _triton_case("cuda", dtype, sg, shape=(4, 6, 64, 17, 17))


@requires_cuda
def test_cuda_auto_backend_and_model_step():
    x = torch.randn(2, 6, 8, device="cuda")
    assert _auto_backend(x, Triangle()) == ("triton" if triton_available() else "fused")
    m = ms_resnet18(10, 4, "dta", width=0.25).cuda().to(memory_format=torch.channels_last)
    ref = ms_resnet18(10, 4, "dta", width=0.25, lif_backend="loop").cuda()
    ref.load_state_dict(m.state_dict())
    xin = torch.randn(2, 3, 16, 16, device="cuda")
    torch.testing.assert_close(m(xin), ref(xin), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not triton_available() or torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                    reason="runs the Triton interpreter tests when there is no GPU (else they run directly)")
def test_triton_kernels_under_interpreter_subprocess():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                          "triton_interpreter"], env=env, capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout.splitlines()[-1]


#: the fallback tests run on a GPU too (gpu_check.sh), else under the interpreter
triton_here = pytest.mark.skipif(
    not triton_available() or not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="needs a CUDA GPU or TRITON_INTERPRET=1 (set before import)")
DEV = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def fresh_triton():
    """Triton not yet marked broken in this process, and restored afterwards."""
    from dta_lib.snn import kernels

    saved = list(kernels._TRITON_BROKEN)
    kernels._TRITON_BROKEN.clear()
    yield kernels
    kernels._TRITON_BROKEN[:] = saved


class _Boom:
    """A Triton kernel that fails at launch, as one that does not compile for this GPU would."""

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            raise RuntimeError("ptxas: unsupported GPU architecture (test)")
        return launch


@triton_here
def test_triton_interpreter_backward_failure_falls_back_once(fresh_triton, monkeypatch):
    from dta_lib.snn.kernels import lif_triton

    monkeypatch.setattr(lif_triton, "_lif_bwd_kernel", _Boom())
    x, gy = _inputs((2, 6, 3, 5, 7), torch.float32)
    x, gy = x.detach().to(DEV).requires_grad_(), gy.to(DEV)
    y = fresh_triton.lif_multistep_triton(x, 0.5, 1.0, Triangle())  # the forward kernel still runs
    with pytest.warns(RuntimeWarning, match=r"Triton LIF kernel failed \(backward: RuntimeError: ptxas") as rec:
        (g,) = torch.autograd.grad(y, x, gy)
        y2 = fresh_triton.lif_multistep_triton(x, 0.5, 1.0, Triangle())  # the rest of the process: the fallback
        (g2,) = torch.autograd.grad(y2, x, gy)
    assert len([w for w in rec if "Triton LIF kernel failed" in str(w.message)]) == 1  # one warning
    x32 = x.detach().requires_grad_()
    (ref,) = torch.autograd.grad(lif_multistep_loop(x32, 0.5, 1.0, Triangle()), x32, gy)
    torch.testing.assert_close(g, ref, rtol=0, atol=1e-6)  # the loop's gradients
    torch.testing.assert_close(g2, ref, rtol=0, atol=1e-6)
    assert torch.equal(y2, y) and "fused PyTorch (Triton failed: backward" in fresh_triton.lif_backend_name("cuda")


@triton_here
def test_triton_interpreter_forward_fallback_under_bf16_keeps_the_kernels_spikes(fresh_triton, monkeypatch):
    from dta_lib.snn.kernels import lif_triton

    x, gy = _inputs((2, 6, 16, 9, 9), torch.bfloat16)
    x, gy = x.detach().to(DEV).requires_grad_(), gy.to(DEV)
    y_kernel = fresh_triton.lif_multistep_triton(x, 0.5, 1.0, Triangle())
    (g_kernel,) = torch.autograd.grad(y_kernel, x, gy)
    monkeypatch.setattr(lif_triton, "_lif_fwd_kernel", _Boom())
    with pytest.warns(RuntimeWarning, match=r"Triton LIF kernel failed \(forward: RuntimeError"):
        y_fb = fresh_triton.lif_multistep_triton(x, 0.5, 1.0, Triangle())
    (g_fb,) = torch.autograd.grad(y_fb, x, gy)
    assert y_fb.dtype == torch.bfloat16 and torch.equal(y_fb, y_kernel)  # the fp32 membrane, as the kernel keeps it
    torch.testing.assert_close(g_fb.float(), g_kernel.float(), rtol=1e-2, atol=1e-2)  # one ulp of bf16


@triton_here
def test_triton_interpreter_model_step_matches_the_loop(fresh_triton):
    torch.manual_seed(0)
    m = ms_resnet18(10, 2, "dta", in_channels=1, width=0.0625, lif_backend="triton").to(DEV)
    ref = ms_resnet18(10, 2, "dta", in_channels=1, width=0.0625, lif_backend="loop").to(DEV)
    ref.load_state_dict(m.state_dict())
    x, y = torch.randn(2, 1, 8, 8, device=DEV), torch.tensor([1, 3], device=DEV)
    grads = []
    for net in (m, ref):
        loss = torch.nn.functional.cross_entropy(net(x).mean(1), y)
        grads.append(torch.autograd.grad(loss, list(net.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not fresh_triton._TRITON_BROKEN
