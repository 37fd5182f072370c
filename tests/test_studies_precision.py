"""Mixed precision on CPU: the ``auto`` rule and the fp32-vs-bf16 verdict."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from dta_lib import studies as precision
from dta_lib import train as device
from dta_lib.train import make_config
from dta_lib.train import resolve_precision


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, None)])
def test_auto_uses_bf16_on_cpu_only_with_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    cfg = make_config("synthetic", "smoke", precision="auto")
    assert resolve_precision(cfg, torch.device("cpu")) is expected
    # explicit choices are never overridden
    assert resolve_precision(cfg.replace(precision="fp32"), torch.device("cpu")) is None
    assert resolve_precision(cfg.replace(precision="bf16"), torch.device("cpu")) is torch.bfloat16


def test_native_bf16_detection_agrees_with_torch(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)  # no oneDNN limit: the hardware decides
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    want = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert device.cpu_has_native_bf16() is bool(want)


def _runs(fp32, bf16):
    rows = [{"precision": "fp32", "seed": s, "best_test_acc": a} for s, a in enumerate(fp32)]
    rows += [{"precision": "bf16", "seed": s, "best_test_acc": a} for s, a in enumerate(bf16)]
    return pd.DataFrame(rows)


def test_verdict_pairs_by_seed():
    # seed effects are large, the precision effect is a constant 0.1: paired, it is a consistent shift
    v = precision.precision_verdict(_runs([50.0, 60.0, 70.0], [49.9, 59.9, 69.9]))
    assert v["n_pairs"] == 3 and v["diff_mean"] == pytest.approx(0.1) and v["diff_std"] == pytest.approx(0.0, abs=1e-9)
    assert v["within_noise"] is False
    v = precision.precision_verdict(_runs([50.0, 60.0, 70.0], [52.0, 57.0, 71.0]))
    assert v["within_noise"] is True
    assert list(v["table"]["precision"]) == ["fp32", "bf16"] and list(v["table"]["n"]) == [3, 3]
    assert list(v["table"]["best_test_acc_mean"]) == [60.0, 60.0] and v["table"]["best_test_acc_std"][0] == 10.0
    assert precision.precision_verdict(_runs([50.0], [51.0]))["within_noise"] is None  # one seed: no verdict


def test_verdict_rejects_bad_input():
    with pytest.raises(ValueError, match="columns"):
        precision.precision_verdict(pd.DataFrame({"seed": [0]}))
    with pytest.raises(ValueError, match="fp32 and bf16"):
        precision.precision_verdict(_runs([50.0], []).assign(precision="fp32"))


def test_a_limited_onednn_isa_means_no_native_bf16(monkeypatch):
    """ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16 makes oneDNN emulate bf16: auto must then pick fp32."""
    from dta_lib.train import cpu_has_native_bf16

    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    for isa in ("AVX2", "SSE41", "avx512_core"):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        assert cpu_has_native_bf16() is False
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16() is True
