"""Spike / SOP / MAC / energy accounting (dta_lib.analysis), exact on hand-built networks."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dta_lib import LIF, ms_resnet18
from dta_lib.analysis import (
    E_AC_PJ, E_MAC_PJ, SpikeRecorder, attention_maps, energy_totals, map_statistics, is_binary, layer_flops, profile,
)
from dta_lib.models.ms_resnet import MSResNet

T = 2


# --------------------------------------------------------------------------- hand-built MLP
def _mlp() -> nn.Sequential:
    """Linear0 (real input) -> LIF -> Linear1 (spikes) -> LIF -> Linear2 (spikes), fixed weights."""
    net = nn.Sequential(nn.Linear(4, 4), LIF(), nn.Linear(4, 3), LIF(), nn.Linear(3, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net[0].weight.copy_(torch.eye(4))          # LIF1 input = x
        net[2].weight[0, 0] = 1.5                   # LIF2 neuron 0 <- 1.5 * s(neuron 0)
        net[2].weight[2, 1] = 0.6                   # LIF2 neuron 2 <- 0.6 * s(neuron 1)
        net[4].weight.fill_(0.3)
    return net


def test_mlp_counts_exact() -> None:
    # LIF (decay 0.5, threshold 1, hard reset) under a constant input c over 4 steps:
    # c = 1.5 -> 1111; c = 0.6 -> h = .6, .9, 1.05, .6 -> 0010; c <= 0 -> 0000.
    x = torch.tensor([[1.5, 0.6, 0.0, -1.0], [1.5, 1.5, 0.6, 0.0]]).unsqueeze(1).repeat(1, 4, 1)  # [B=2, T=4, 4]
    net = _mlp()
    with torch.no_grad(), SpikeRecorder(net) as rec:
        net(x)
    fr = rec.firing_rates().set_index("name")
    # LIF1: sample 0 -> 1111 + 0010 = 5 spikes; sample 1 -> 1111 + 1111 + 0010 = 9; of 2 x 4 x 4 = 32
    assert fr.loc["1", "rate"] == 14 / 32
    assert fr.loc["1", ["t1", "t2", "t3", "t4"]].tolist() == [3 / 8, 3 / 8, 5 / 8, 3 / 8]
    assert fr.loc["1", "spikes"] == 7.0 and fr.loc["1", "neurons"] == 4
    # LIF2: neuron 0 <- 1.5 * 1111 -> 1111 (both samples); neuron 2 <- 0.6 * (0010 | 1111) -> 0000 | 0010
    assert fr.loc["3", "rate"] == 9 / 24
    assert fr.loc["3", ["t1", "t2", "t3", "t4"]].tolist() == [2 / 6, 2 / 6, 3 / 6, 2 / 6]

    df = rec.energy_table().set_index("name")
    assert df["input"].tolist() == ["real", "spike", "spike"]
    assert df.loc["0", "macs"] == 4 * 4 * 4 and df.loc["0", "sops"] == 0   # T x in x out
    assert math.isnan(df.loc["0", "input_rate"])
    # SOPs = rate x T x FLOPs = 14/32 x 4 x 12 = 21 = (14 spikes x 3 targets) / 2 samples
    assert df.loc["2", "sops"] == 21 and df.loc["2", "macs"] == 0 and df.loc["2", "input_rate"] == 14 / 32
    assert df.loc["4", "sops"] == 9                                         # 9/24 x 4 x 6 = 18 spikes x 2 / 2
    assert df.loc["2", "steps"] == 4 and df.loc["2", "flops"] == 12
    tot = energy_totals(rec.energy_table()).loc["total"]
    assert tot["macs"] == 64 and tot["sops"] == 30
    assert tot["energy_pj"] == pytest.approx(4.6 * 64 + 0.9 * 30)


def test_accumulates_over_batches() -> None:
    x = torch.tensor([[1.5, 0.6, 0.0, -1.0], [1.5, 1.5, 0.6, 0.0]]).unsqueeze(1).repeat(1, 4, 1)
    net = _mlp()
    with torch.no_grad(), SpikeRecorder(net) as rec:
        net(x[:1])
        net(x[1:])
    assert rec.samples == 2
    df = rec.energy_table().set_index("name")
    assert df.loc["2", "sops"] == 21 and df.loc["4", "sops"] == 9   # same as one batch of two
    assert df.loc["0", "rule"] == "input not 0/1 -> MAC" and df.loc["0", "sops"] == 0


# --------------------------------------------------------------------------- hand-built MSResNet + DTA
def _tiny_dta() -> MSResNet:
    """C=2, T=2, 4x4 input, one MS block 2 -> 3 (so it has a 1x1 shortcut conv); fixed weights.

    Stem: channel 0 = 3 x pixel (centre tap; pixels 0.5 or 0), channel 1 = 0. DTA: every conv/linear weight and
    bias 0.01 (scales a = b = 1), so at an active pixel T-NA(X) ~ 1.5, T-XA(X) ~ (1.5 + 0.5)^2 and
    the gate ~ sigmoid(6) = 0.9975. Block: conv1 ch0 <- 2 x ch0 (centre), conv2 = 0, shortcut
    ch0 <- 1.2 x ch0.
    """
    m = MSResNet([1], [3], [1], num_classes=2, time_steps=T, attention="dta", in_channels=1, stem_channels=2)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1 or p.numel() > 1:   # conv / linear weights and biases, BN affine
                p.zero_()
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.fill_(1.0)
        for name, p in m.dta.named_parameters():
            if not name.startswith("txa.scale"):
                p.fill_(0.01)
        m.stem_conv.weight[0, 0, 1, 1] = 3.0
        m.layer1[0].conv1.weight[0, 0, 1, 1] = 2.0
        m.layer1[0].downsample[0].weight[0, 0, 0, 0] = 1.2
        m.fc.weight.fill_(0.1)
    return m.eval()


def _images() -> torch.Tensor:
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, :2, :] = 0.5      # 8 active pixels (top half); 0.5, not 1: a 0/1 image would count as spikes
    x[1, 0, :, :2] = 0.5      # 8 active pixels (left half)
    return x


def test_dta_network_counts_exact() -> None:
    m = _tiny_dta()
    with torch.no_grad(), SpikeRecorder(m) as rec:
        m(_images())
    fr = rec.firing_rates().set_index("name")
    # stem LIF: 1.5 at 8 of 16 pixels of channel 0 -> fires every step; 8 / (2 ch x 16)
    assert fr.loc["stem_lif", ["t1", "t2"]].tolist() == [0.25, 0.25]
    # DTA output ~0.9975 there: h = .9975 (no spike), then .4988 + .9975 (spike)
    assert fr.loc["layer1.0.lif1", ["t1", "t2"]].tolist() == [0.0, 0.25]
    assert fr.loc["layer1.0.lif1", "rate"] == 0.125
    # conv1 ch0 = 2 at those 8 pixels at t2 only; 8 / (3 ch x 16)
    assert fr.loc["layer1.0.lif2", ["t1", "t2"]].tolist() == [0.0, 8 / 48]
    # shortcut 1.2 x 0.9975 > 1 at 8 pixels of channel 0, both steps
    assert fr.loc["head_lif", ["t1", "t2"]].tolist() == [8 / 48, 8 / 48]

    df = rec.energy_table(elementwise=True).set_index("name")
    d, hw = 2 * T, 16
    expected_macs = {
        "stem_conv": T * (1 * 9 * 2 * hw),          # static image, counted T times
        "dta.txa.conv_t": (T * 2) * (T * 3),        # out [T, C] x (T in-ch x k=3)
        "dta.txa.conv_c": (2 * T) * (2 * 6),        # out [C, T] x (C in-ch x k=6)
        "dta.tna.encode": d * d * hw,
        "dta.tna.ltca.depthwise": d * 25 * hw,
        "dta.tna.ltca.dilated": d * 1 * hw,         # release: "dilated" conv is 1x1 per channel
        "dta.tna.ltca.pointwise": d * d * hw,
        "dta.tna.gtca.fc1": d * 1,                  # hidden = 4 // max(0, 4) = 1
        "dta.tna.gtca.fc2": 1 * d,
        "dta.tna.decode": d * d * hw,
        "layer1.0.downsample.0": T * (2 * 3 * hw),  # shortcut on the real DTA output
        "fc": T * 3 * 2,                            # pooled spikes (0.5 / 0) are not 0/1
        "dta.txa (element-wise)": T * 2 * hw + 2 * T * 2,
        "dta.tna (element-wise)": 2 * d * hw,
        "dta (element-wise)": T * 2 * hw,
    }
    # exact accumulates: 8 spikes per sample (rows 0-1 of image 0, cols 0-1 of image 1; channel 0, t2), a 3x3
    # pad-1 conv on a 4x4 map: a pixel in row r is read by 2 (edge) or 3 (inner) output rows, likewise for columns,
    # so each half reaches (2 + 3) x (2 + 3 + 3 + 2) = 50 output positions, times 3 output channels
    expected_sops = {"layer1.0.conv1": 5 * 10 * 3, "layer1.0.conv2": 5 * 10 * 3}
    # the field's rate x dense FLOPs estimate (also counts the taps on zero padding)
    expected_estimate = {
        "layer1.0.conv1": 0.125 * T * (2 * 9 * 3 * hw),       # = 216
        "layer1.0.conv2": (8 / 96) * T * (3 * 9 * 3 * hw),    # = 216
    }
    assert set(df.index) == set(expected_macs) | set(expected_sops)
    for name, v in expected_macs.items():
        assert df.loc[name, "macs"] == v, name
        assert df.loc[name, "sops"] == 0 and df.loc[name, "input"] == "real", name
    for name, v in expected_sops.items():
        assert df.loc[name, "sops"] == pytest.approx(v, rel=1e-12), name
        assert df.loc[name, "sops_rate_x_flops"] == pytest.approx(expected_estimate[name], rel=1e-12), name
        assert df.loc[name, "macs"] == 0 and df.loc[name, "input"] == "spike", name
    assert expected_estimate == {"layer1.0.conv1": 216.0, "layer1.0.conv2": 216.0}
    assert "counted T times" in df.loc["stem_conv", "note"]
    tot = energy_totals(df.reset_index(), by="group")
    macs = sum(expected_macs.values())
    assert tot.loc["total", "macs"] == macs and tot.loc["total", "sops"] == 300  # 150 + 150 (216 + 216 estimated)
    assert tot.loc["total", "energy_pj"] == pytest.approx(E_MAC_PJ * macs + E_AC_PJ * 300)
    assert tot.loc["DTA", "macs"] == 2512 + 72 + 128 + 64

    # the stem counted once, and no element-wise rows by default
    with torch.no_grad(), SpikeRecorder(m, static_stem="once") as rec1:
        m(_images())
    df1 = rec1.energy_table().set_index("name")
    assert df1.loc["stem_conv", "macs"] == 288 and "type" in df1 and "elementwise" not in set(df1["type"])
    # frames [B, T, C, H, W]: the stem really runs T times
    with torch.no_grad(), SpikeRecorder(m, static_stem="once") as rec2:
        m(_images().unsqueeze(1).repeat(1, T, 1, 1, 1))
    assert rec2.energy_table().set_index("name").loc["stem_conv", "macs"] == 576
    # a 0/1 image feeds the stem "spikes": 2 x 8 pixels x T steps of 2 x 16 x T -> rate 0.5, estimate 0.5 x 576;
    # exactly: each half-image reaches 50 output positions (see above) x 2 channels, per sample, counted T times
    with torch.no_grad(), SpikeRecorder(m) as rec3:
        m(_images() * 2)
    row = rec3.energy_table().set_index("name").loc["stem_conv"]
    assert (row["input"], row["input_rate"], row["sops"], row["macs"]) == ("spike", 0.5, 50 * 2 * T, 0.0)
    assert row["sops_rate_x_flops"] == 288.0


def test_attention_maps_and_raster() -> None:
    m = _tiny_dta().train()
    x = _images()
    maps = attention_maps(m, x)
    assert m.training                                           # mode restored
    assert maps["txa_temporal"].shape == maps["txa_channel"].shape == maps["tna_global"].shape == (2, T, 2)
    assert maps["gate"].shape == maps["tna_local"].shape == maps["output"].shape == (2, T, 2, 4, 4)
    with torch.no_grad():
        m.eval()
        y = m.stem(x)
        torch.testing.assert_close(maps["output"], m.dta(y, m.stem_lif(y)))
        torch.testing.assert_close(maps["gate"], m.dta.gate(y))
    active = maps["spikes"].bool()
    assert active.sum() == 2 * T * 8 and bool((maps["gate"][active] > 0.99).all())

    rec = profile(m, [(x, torch.zeros(2))], keep=["layer1.0.lif1"])
    r = rec.raster("layer1.0.lif1", sample=0, neurons=[0, 15, 16])   # ch0 (0,0) active, ch0 (3,3) not, ch1
    assert r.tolist() == [[0, 0, 0], [1, 0, 0]]
    assert rec.raster("layer1.0.lif1", sample=1).shape == (T, 2 * 16)
    with pytest.raises(ValueError, match="not kept"):
        rec.raster("stem_lif")
    with pytest.raises(ValueError, match="neurons must index"):
        rec.raster("layer1.0.lif1", neurons=[32])


def test_map_statistics_by_hand() -> None:
    # [B=2, T=2, C=3]: constant 0.5 -> no spread, all entries near 0.5
    flat = {"txa_temporal": torch.full((2, 2, 3), 0.5)}
    row = map_statistics(flat).iloc[0]
    assert (row["map"], row["mean"], row["std"], row["std_over_t"], row["std_over_c"], row["near_half"]) == (
        "txa_temporal", 0.5, 0.0, 0.0, 0.0, 1.0)
    # the gate differs per channel only: spread over c, none over t; spatial dims are averaged first
    g = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 3, 1, 1).expand(2, 2, 3, 4, 4)
    stats = map_statistics({"gate": g, "spikes": torch.ones(2, 2, 3, 4, 4)}).set_index("map")
    assert list(stats.index) == ["gate"]                          # non-map keys are ignored
    assert stats.loc["gate", "std_over_t"] == 0.0
    assert stats.loc["gate", "std_over_c"] == pytest.approx(0.5)   # std of (0, .5, 1)
    assert stats.loc["gate", "near_half"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no attention map"):
        map_statistics({"spikes": torch.ones(1, 1, 1)})


# --------------------------------------------------------------------------- self-consistency on MS-ResNet-18
@pytest.mark.parametrize("attention", ["dta", "none"])
def test_ms_resnet18_self_consistent(attention: str) -> None:
    torch.manual_seed(0)
    m = ms_resnet18(num_classes=10, time_steps=T, attention=attention, width=0.125)   # train mode: BN batch stats
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad(), SpikeRecorder(m, static_stem="once") as rec, FlopCounterMode(display=False) as fc:
        m(x)
    flops = fc.get_flop_counts()
    df = rec.energy_table()
    fr = rec.firing_rates().set_index("name")
    assert fr["rate"].between(0, 1).all() and fr.loc["layer1.0.lif1", "rate"] > 0
    for row in df.itertuples():
        # independent dense count: torch's FLOP counter (2 FLOPs per MAC), per sample
        assert row.dense_macs == sum(flops[f"MSResNet.{row.name}"].values()) / 2 / 2, row.name
        assert row.energy_pj == pytest.approx(E_MAC_PJ * row.macs + E_AC_PJ * row.sops)
        if row.name.endswith(("conv1", "conv2")):
            assert row.input == "spike" and row.macs == 0 and row.steps == T
            lif = row.name[: -len("conv1")] + "lif" + row.name[-1]
            assert row.input_rate == pytest.approx(fr.loc[lif, "rate"], rel=1e-12)   # fed by that LIF
            assert row.sops_rate_x_flops == pytest.approx(row.input_rate * T * row.flops, rel=1e-12)
            assert 0 <= row.sops <= row.sops_rate_x_flops  # exact count: no taps on zero padding
        elif row.name == "fc" and fr.loc["head_lif", "rate"] == 0:
            assert row.input == "spike" and row.sops == 0     # pooled silence is all-zero: 0/1 by the rule
        else:
            assert row.input == "real" and row.sops == 0 and row.macs == row.dense_macs, row.name
    names = set(df["name"])
    assert {"layer1.0.downsample.0", "layer2.0.downsample.0", "stem_conv", "fc"} <= names
    assert any(n.startswith("dta.") for n in names) == (attention == "dta")
    tot = energy_totals(df, by="group")
    assert tot.loc["total", "sops"] == pytest.approx(df["sops"].sum())
    assert tot.loc["total", "macs"] == df["macs"].sum()
    assert tot.loc["total", "energy_pj"] == pytest.approx(df["energy_pj"].sum())
    assert tot.drop(index="total")["energy_pj"].sum() == pytest.approx(tot.loc["total", "energy_pj"])
    long = rec.firing_rates(long=True)
    assert len(long) == len(fr) * T and set(long["t"]) == {1, 2}


# --------------------------------------------------------------------------- helpers and bad input
def test_helpers_and_errors() -> None:
    assert is_binary(torch.tensor([0.0, 1.0, 1.0])) and is_binary(torch.zeros(3))
    assert not is_binary(torch.tensor([0.0, 0.5]))
    assert layer_flops(nn.Conv2d(4, 6, 3, groups=2), torch.zeros(1, 6, 5, 5)) == 6 * 25 * 2 * 9
    with pytest.raises(ValueError, match="Conv1d/2d/3d or Linear"):
        layer_flops(nn.ReLU(), torch.zeros(1))
    net = _mlp()
    with pytest.raises(ValueError, match="not LIF modules"):
        SpikeRecorder(net, keep=["0"])
    with pytest.raises(ValueError, match="static_stem"):
        SpikeRecorder(net, static_stem="twice")
    with pytest.raises(ValueError, match="no forward pass"):
        with SpikeRecorder(net) as rec:
            pass
        rec.energy_table()
    with pytest.raises(ValueError, match="expects an MSResNet"):
        attention_maps(ms_resnet18(time_steps=T, attention="none", width=0.125), torch.zeros(1, 3, 8, 8))
    # hooks are removed on exit
    with SpikeRecorder(net):
        pass
    assert not any(mod._forward_hooks for mod in net.modules())


# ---------------------------------------------------------------------------- exact SOPs
def _brute_force_sops(conv: nn.Conv2d, x: torch.Tensor) -> int:
    """Per input spike, count the (output channel, output position, tap) triples that read it."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    _, c, h, w = x.shape
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    per_group_out = conv.out_channels // conv.groups
    total = 0
    for n, ci, i, j in (x != 0).nonzero().tolist():
        reach = 0
        for oh in range(ho):
            for ow in range(wo):
                for a in range(kh):
                    for b in range(kw):
                        if oh * sh - ph + a * dh == i and ow * sw - pw + b * dw == j:
                            reach += 1
        total += reach * per_group_out  # every output channel of the spike's group
    return total


@pytest.mark.parametrize("kw", [
    dict(in_channels=3, out_channels=4, kernel_size=3, padding=1),
    dict(in_channels=3, out_channels=5, kernel_size=3, stride=2, padding=1),
    dict(in_channels=4, out_channels=4, kernel_size=5, padding=2, groups=4),  # LTCA's depthwise 5x5
    dict(in_channels=4, out_channels=8, kernel_size=3, padding=3, dilation=3, groups=2),
    dict(in_channels=3, out_channels=2, kernel_size=1),
])
def test_exact_sops_match_an_independent_per_spike_count(kw):
    from dta_lib.analysis import exact_sops

    conv = nn.Conv2d(bias=False, **kw)
    x = (torch.rand(2, kw["in_channels"], 7, 6, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    assert exact_sops(conv, x) == _brute_force_sops(conv, x)
    dense = layer_flops(conv, conv(x)) * float(x.mean())
    if conv.padding == (0, 0):
        assert exact_sops(conv, x) == pytest.approx(dense)  # no padding: the rate x FLOPs estimate is exact
    else:
        assert exact_sops(conv, x) < dense  # the estimate also counts taps on zero padding


def test_exact_sops_linear_and_conv1d():
    from dta_lib.analysis import exact_sops

    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    assert exact_sops(nn.Linear(4, 3), x) == 9.0
    conv = nn.Conv1d(1, 2, 3, padding=1, bias=False)
    # spikes at 0, 2, 3 of 4 positions: reached by 2, 3, 2 output positions (edges lose the padded tap), x 2 channels
    assert exact_sops(conv, x[None]) == (2 + 3 + 2) * 2
    with pytest.raises(ValueError, match="exact_sops expects a Conv1d/2d/3d or Linear, got ReLU"):
        exact_sops(nn.ReLU(), x)


def test_energy_table_reports_exact_sops_beside_the_estimate():
    model = ms_resnet18(num_classes=10, width=0.0625, time_steps=2, attention="dta", in_channels=1).eval()
    with SpikeRecorder(model) as rec, torch.no_grad():
        model(torch.rand(2, 1, 8, 8) * 3)
    t = rec.energy_table()
    spiking = t[t["input"] == "spike"]
    assert len(spiking) > 0 and (spiking["sops"] <= spiking["sops_rate_x_flops"] + 1e-9).all()
    assert (spiking["sops"] < spiking["sops_rate_x_flops"]).any()  # 3x3 convs on 8x8 maps lose padded taps
    assert (t.loc[t["input"] == "real", ["sops", "sops_rate_x_flops"]] == 0).all().all()


def test_recorder_refuses_reentry_and_a_lif_that_changes_size():
    """Firing rates divide by the neurons of the first call: a later call with other sizes would inflate them."""
    from dta_lib.analysis import SpikeRecorder
    from dta_lib.models.ms_resnet import ms_resnet18

    model = ms_resnet18(10, 2, "none", width=1 / 16).eval()
    rec = SpikeRecorder(model)
    with rec, torch.no_grad():
        with pytest.raises(ValueError, match="already active"):
            rec.__enter__()
        model(torch.rand(1, 3, 8, 8))
        with pytest.raises(ValueError, match="neurons per step as in earlier calls"):
            model(torch.rand(1, 3, 16, 16))
