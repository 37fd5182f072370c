"""Plotting helpers build figures, files are written atomically, the parameter table is exact."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

import dta_lib.atomic
from dta_lib import ms_resnet18, viz
from dta_lib.data import fashion
from dta_lib.data.fashion import DEBIAN_FASHION_MNIST
from dta_lib.snn.neuron import LIF
from dta_lib.models.params import calibrate_bn, count_parameters, dta_parameter_variants, forward_shapes, parameter_table
from dta_lib.snn.surrogate import ATan, Sigmoid, Triangle

FMNIST = DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _tiny_model(attention: str = "dta") -> torch.nn.Module:
    torch.manual_seed(0)
    return ms_resnet18(time_steps=2, attention=attention, width=0.125)


# ------------------------------------------------------------------ save_figure
def test_save_figure_atomic_and_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTA_OUTPUT_DIR", str(tmp_path / "out"))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = viz.save_figure(fig, "sub/test.png")
    assert out == tmp_path / "out" / "figures" / "sub" / "test.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["test.png"]  # no temp file left behind


def test_save_figure_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")
    fig = plt.figure()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", boom)
    with pytest.raises(RuntimeError):
        viz.save_figure(fig, target)
    assert target.read_bytes() == b"old"  # the previous file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_save_figure_uses_os_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = os.replace
    monkeypatch.setattr(dta_lib.atomic.os, "replace", lambda a, b: (calls.append((str(a), str(b))), real(a, b)))
    viz.save_figure(plt.figure(), tmp_path / "x.svg")
    assert len(calls) == 1 and calls[0][1] == str(tmp_path / "x.svg") and calls[0][0] != calls[0][1]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_save_figure_file_mode_follows_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        out = viz.save_figure(plt.figure(), tmp_path / "m.png")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == mode  # not mkstemp's 0o600
    assert os.umask(old) == old  # the process umask is left as it was


def test_save_figure_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png"):
        viz.save_figure(plt.figure(), tmp_path / "fig.jpeg")


# ------------------------------------------------------------------ data
@pytest.mark.skipif(not FMNIST.is_file(), reason="Debian dataset-fashion-mnist not installed")
def test_load_fashion_mnist_samples() -> None:
    x, y = fashion.load_fashion_mnist_samples(3, offset=2)
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.5
    assert y.shape == (3,) and all(0 <= int(v) < 10 for v in y)
    x0, y0 = fashion.load_fashion_mnist_samples(5)
    assert torch.equal(x0[2:], x) and torch.equal(y0[2:], y)  # offset reads the right records


@pytest.mark.skipif(not FMNIST.is_file(), reason="Debian dataset-fashion-mnist not installed")
def test_load_fashion_mnist_samples_reads_both_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``$DTA_DATA_ROOT`` with torchvision's layout (unzipped ``FashionMNIST/raw``) gives the same images."""
    import gzip

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in DEBIAN_FASHION_MNIST.glob("*-ubyte.gz"):
        (raw / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    monkeypatch.setenv("DTA_DATA_ROOT", str(tmp_path))
    x, y = fashion.load_fashion_mnist_samples(4, offset=7)
    monkeypatch.delenv("DTA_DATA_ROOT")
    x_deb, y_deb = fashion.load_fashion_mnist_samples(4, offset=7)
    assert torch.equal(x, x_deb) and torch.equal(y, y_deb)


def test_load_fashion_mnist_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="fashion-mnist: no data found at .* is empty"):
        fashion.load_fashion_mnist_samples(1, root=tmp_path)
    monkeypatch.setenv("DTA_DATA_ROOT", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"\$DTA_DATA_ROOT=.*missing.* does not exist"):
        fashion.load_fashion_mnist_samples(1)
    monkeypatch.delenv("DTA_DATA_ROOT")
    with pytest.raises(ValueError, match="split"):
        fashion.load_fashion_mnist_samples(1, split="val")
    if FMNIST.is_file():
        with pytest.raises(ValueError, match="offset"):
            fashion.load_fashion_mnist_samples(2, offset=9999)


# ------------------------------------------------------------------ figures
def test_lif_figures() -> None:
    lif = LIF()
    x = torch.rand(1, 8, 5) * 2
    h, _, s = lif.trace(x)
    fig = viz.plot_lif_traces(x[0], h[0], s[0], lif.threshold, labels=list("abcde"))
    assert len(fig.axes) == 5
    assert len(viz.plot_spike_raster(s[0]).axes) == 2
    assert len(viz.plot_image(x[0, :, :4].T, marks=[(0, 0)], labels=["A"]).axes) == 2  # image + colorbar
    with pytest.raises(ValueError, match="share shape"):
        viz.plot_lif_traces(x[0], h[0, :-1], s[0])
    with pytest.raises(ValueError, match="labels"):
        viz.plot_lif_traces(x[0], h[0], s[0], labels=["a"])


def test_surrogate_figure_draws_each_curve() -> None:
    sgs = {"tri": Triangle(1.0), "sig": Sigmoid(), "atan": ATan()}
    fig = viz.plot_surrogates(sgs)
    left, right = fig.axes
    assert len(left.lines) == 3 and len(right.lines) == 4  # + Heaviside
    peak = max(left.lines[0].get_ydata())
    assert peak == pytest.approx(1.0, abs=1e-2)  # triangle of width 1 has height 1
    with pytest.raises(ValueError):
        viz.plot_surrogates({})


def test_map_figures() -> None:
    fig = viz.plot_tc_maps({"A_t": torch.rand(6, 16), "A_c": torch.rand(6, 16)}, title="maps")
    assert len(fig.axes) == 4  # two heatmaps + two colorbars
    fig = viz.plot_spatial_maps(torch.rand(4, 8, 5, 5), times=[0, 3], channels=[1, 2, 7])
    assert len(fig.axes) == 12  # 6 panels + 6 colorbars
    fig = viz.plot_timestep_rows({"x": torch.rand(3, 4, 4), "gate": torch.rand(3, 4, 4)})
    assert len(fig.axes) == 3 * 2 + 2
    with pytest.raises(ValueError, match="dims"):
        viz.plot_tc_maps({"bad": torch.rand(2, 3, 4)})
    with pytest.raises(ValueError, match="channels"):
        viz.plot_spatial_maps(torch.rand(4, 8, 5, 5), times=[0], channels=[8])
    with pytest.raises(ValueError, match="same number of time steps"):
        viz.plot_timestep_rows({"a": torch.rand(3, 4, 4), "b": torch.rand(2, 4, 4)})


# ------------------------------------------------------------------ parameter accounting
@pytest.mark.parametrize("attention", ["none", "txa", "tna", "dta"])
def test_parameter_table_sums_to_total(attention: str) -> None:
    model = _tiny_model(attention)
    table = parameter_table(model)
    assert int(table["parameters"].sum()) == count_parameters(model)
    assert not (table["group"] == "other").any()
    assert table["share %"].sum() == pytest.approx(100.0, abs=0.1)


def test_parameter_table_matches_spec_dta_numbers() -> None:
    torch.manual_seed(0)
    model = ms_resnet18(num_classes=10, time_steps=6, attention="dta")
    table = parameter_table(model)
    by_group = table.groupby("group")["parameters"].sum()
    assert int(by_group["DTA: T-XA"]) == 24_686  # reference-spec.md, T-XA
    assert int(by_group["DTA: T-NA"]) == 466_560  # reference-spec.md, T-NA
    three = table["component"].str.contains(r"1x1 \(D->D\)")
    assert int(table.loc[three, "parameters"].sum()) == 443_520
    assert int(table["parameters"].sum()) == 12_993_336


def test_dta_parameter_variants_are_consistent() -> None:
    df = dta_parameter_variants(64, 6).set_index("configuration")["parameters"]
    assert df["release DTA (T=6, C=64)"] == 491_246 == df["T-XA only"] + df["T-NA only"]
    assert df["DTA without the three D x D 1x1 convs"] == 491_246 - 443_520
    with pytest.raises(ValueError):
        dta_parameter_variants(0, 6)


def test_forward_shapes_records_every_child() -> None:
    model = _tiny_model()
    df = forward_shapes(model, torch.rand(1, 3, 8, 8))
    assert list(df["module"])[:4] == ["stem_conv", "stem_bn", "stem_lif", "dta"]
    assert df.iloc[-1]["output shape"] == (1, 2, 10)
    x = model.stem(torch.rand(1, 3, 8, 8))  # any module: notebook 04 records the DTA block's and an MS block's shapes
    assert list(forward_shapes(model.dta.tna, x)["module"]) == ["encode", "gtca", "ltca", "decode", "(model)"]
    assert forward_shapes(model.layer1[0], x).iloc[-1]["output shape"] == (1, 2, 16, 8, 8)
    assert not any(h for m in model.modules() for h in m._forward_hooks.values())  # hooks removed


# ------------------------------------------------------------------ calibrate_bn
def _stem_batch_stats(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased variance per channel of what the stem BN sees: the stem conv output, repeated over T."""
    with torch.no_grad():
        y = model.stem_conv(x).repeat_interleave(model.time_steps, dim=0)
    return y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=True)


def test_calibrate_bn_sets_stem_stats_to_batch_stats() -> None:
    model = _tiny_model()
    model.stem_bn.momentum = 0.3  # a non-default momentum must come back unchanged
    torch.manual_seed(1)
    x = torch.rand(16, 3, 8, 8) * 2 + 0.5
    mean, var = _stem_batch_stats(model, x)
    assert calibrate_bn(model, x, batch_size=16) is model  # one chunk: exactly the batch statistics
    assert not model.training and not any(m.training for m in model.modules())
    assert torch.allclose(model.stem_bn.running_mean, mean, atol=1e-6)
    assert torch.allclose(model.stem_bn.running_var, var, rtol=1e-4, atol=1e-6)
    assert model.stem_bn.momentum == 0.3
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) and m is not model.stem_bn)
    # every BN of the model was reached by the default forward (the whole model)
    assert all(int(m.num_batches_tracked) == 1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_calibrate_bn_chunks_average_and_forward_subset() -> None:
    model = _tiny_model()
    torch.manual_seed(2)
    x = torch.rand(12, 3, 8, 8)
    mean, _ = _stem_batch_stats(model, x)
    calibrate_bn(model, x, batch_size=4, forward=model.stem)  # 3 equal chunks, stem only
    assert int(model.stem_bn.num_batches_tracked) == 3
    assert torch.allclose(model.stem_bn.running_mean, mean, atol=1e-6)  # cumulative average (momentum=None)
    bn1 = model.layer1[0].bn1  # not reached by model.stem: reset statistics
    assert int(bn1.num_batches_tracked) == 0 and torch.equal(bn1.running_mean, torch.zeros_like(bn1.running_mean))
    assert not model.training


def test_calibrated_eval_keeps_the_spatial_mean_that_train_mode_erases() -> None:
    """The notebooks' flaw: one image in train-mode BN has zero spatial mean per channel; calibration fixes it."""
    model = _tiny_model()
    torch.manual_seed(3)
    x = torch.rand(8, 3, 8, 8)
    with torch.no_grad():
        z_train = model.train().stem(x[:1]).mean(dim=(3, 4))
        calibrate_bn(model, x[1:], forward=model.stem)
        z_eval = model.stem(x[:1]).mean(dim=(3, 4))
    assert z_train.abs().max() < 1e-5
    assert z_eval.abs().max() > 1e-2


def test_calibrate_bn_restores_momentum_on_error_and_checks_input() -> None:
    model = _tiny_model()

    def boom(x: torch.Tensor) -> None:
        raise RuntimeError("forward failed")

    with pytest.raises(RuntimeError, match="forward failed"):
        calibrate_bn(model, torch.rand(2, 3, 8, 8), forward=boom)
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(ValueError, match="images"):
        calibrate_bn(model, torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="images"):
        calibrate_bn(model, torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="batch_size"):
        calibrate_bn(model, torch.rand(2, 3, 8, 8), batch_size=0)
    with pytest.raises(ValueError, match="BatchNorm"):
        calibrate_bn(torch.nn.Linear(2, 2), torch.rand(2, 3, 8, 8))


def test_study_plots_of_notebook_09() -> None:
    curves = pd.DataFrame([{"surrogate_width": w, "seed": 0, "epoch": e, "layer": layer, "grad_norm": g}
                           for w in (0.5, 1.0) for e in (1, 2) for layer, g in (("stem", 0.1 * e), ("fc", 1.0))])
    fig = viz.plot_grad_norms(curves, title="t")
    assert len(fig.axes) == 2 and fig.axes[0].get_yscale() == "log"  # one panel per epoch
    ratio = curves.pivot_table(index=["surrogate_width", "seed", "epoch"], columns="layer", values="grad_norm")
    ratio = ratio.assign(ratio=ratio["stem"] / ratio["fc"]).reset_index()
    acc = ratio[["surrogate_width", "seed", "epoch"]].assign(test_acc=30.0)
    fig = viz.plot_vanishing_check(ratio, acc, vanishing=0.1, exploding=10.0)
    rules = {line.get_label(): line.get_ydata()[0] for line in fig.axes[0].lines if "rule" in line.get_label()}
    assert rules == {"0.1 (vanishing rule)": 0.1, "10 (exploding rule)": 10.0}
    lo, hi = fig.axes[0].get_ylim()
    assert lo < 0.1 and hi > 10.0  # both rule lines inside the axis, not on its frame
    # the legend hides no line: one figure legend, clear of both panels
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert not any(ax.get_legend() for ax in fig.axes) and len(fig.legends) == 1
    box = fig.legends[0].get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    # the widths read on white: no pale (yellow) end of viridis
    from matplotlib.colors import to_rgb

    def luminance(c):
        r, g, b = to_rgb(c)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    for f in (fig, viz.plot_grad_norms(curves)):
        colors = [line.get_color() for ax in f.axes for line in ax.lines if line.get_label().startswith("_child")
                  or line.get_marker() == "o"]
        assert colors and max(luminance(c) for c in colors) < 0.75  # viridis yellow: 0.87
    with pytest.raises(ValueError, match="lacks columns"):
        viz.plot_vanishing_check(ratio.drop(columns="ratio"), acc)


# ------------------------------------------------------------------ event figures of notebook 13
def test_event_bbox_crops_to_the_events_and_drops_isolated_noise() -> None:
    frames = torch.zeros(3, 2, 260, 346)
    frames[:, 1, 150:170, 60:120] = 5.0  # the scene
    frames[0, 0, 5, 340] = 1.0  # one noise event in a far corner
    y0, y1, x0, x1 = viz.event_bbox(frames, coverage=0.99, margin=8)
    assert (y0, y1, x0, x1) == (142, 178, 52, 128)  # the scene plus 8 pixels, not stretched to the noise
    assert viz.event_bbox(frames, coverage=1.0, margin=0) == (5, 170, 60, 341)  # everything: the noise too
    assert viz.event_bbox(torch.zeros(1, 2, 10, 20)) == (0, 10, 0, 20)  # no events: the whole frame
    assert viz.event_bbox(frames, margin=500) == (0, 260, 0, 346)  # clipped to the sensor
    with pytest.raises(ValueError, match="coverage"):
        viz.event_bbox(frames, coverage=0.0)


def test_real_vs_emulated_figure_gives_each_frame_its_own_aspect() -> None:
    real, emulated = torch.rand(4, 2, 40, 120), torch.rand(4, 2, 34, 34)
    fig = viz.real_vs_emulated_figure(real, emulated, "real", "emulated", frames_shown=3)
    axes = fig.axes
    assert len(axes) == 6  # 3 frames x (real, emulated)
    (w_real, h_real), (w_emu, h_emu) = (axes[0].get_position().size, axes[1].get_position().size)
    fw, fh = fig.get_size_inches()
    assert (w_real * fw) / (h_real * fh) == pytest.approx(3.0, rel=0.05)  # a wide crop gets the width it needs
    assert (w_emu * fw) / (h_emu * fh) == pytest.approx(1.0, rel=0.05)
    with pytest.raises(ValueError, match=r"\[T, 2, H, W\]"):
        viz.real_vs_emulated_figure(real[:, :1], emulated, "real", "emulated")


def test_emulation_figure_legends_sit_above_the_data() -> None:
    frames = torch.rand(4, 2, 34, 34)
    events = np.zeros(200, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "?")])
    events["t"] = np.arange(200) * 1000
    events["p"] = np.arange(200) % 2 == 0
    fig = viz.emulation_figure(np.ones((28, 28)), frames, events, title="t")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 2
    for legend in legends:  # the legend box lies above its axes' plotting area: no bar or bin under it
        assert legend.get_window_extent(renderer).y0 >= legend.axes.get_window_extent(renderer).y1 - 1


def test_study_plots_refuse_empty_input() -> None:
    """A mistyped study name must not write a blank figure into reports/."""
    with pytest.raises(ValueError, match="no runs of study 'nope'"):
        viz.plot_study(pd.DataFrame({"study": ["ablation"], "best_test_acc": [1.0]}), "nope")
    with pytest.raises(ValueError, match="no comparisons to draw"):
        viz.plot_paper_gaps(pd.DataFrame())
    with pytest.raises(ValueError, match="no histories given"):
        viz.plot_curve_comparison({})


def test_paper_gaps_figure_draws_the_tables_intervals() -> None:
    """plot_paper_gaps draws paper_gaps' own ci95 columns (no second computation); one seed: a hollow marker."""
    gaps = pd.DataFrame({"study": ["ablation", "train"], "comparison": ["DTA - T-XA only", "DTA - none"],
                         "n_pairs": [3, 1], "ours_mean": [0.5, -0.6], "ci95_low": [-1.25, np.nan],
                         "ci95_high": [2.5, np.nan], "paper_low": [0.4, np.nan], "paper_high": [0.8, np.nan]})
    ax = viz.plot_paper_gaps(gaps).axes[0]
    (bar,) = [c for c in ax.containers if c.has_yerr]
    (_, lo), (_, hi) = bar.lines[2][0].get_segments()[0]
    assert (lo, hi, bar.lines[0].get_ydata()[0]) == pytest.approx((-1.25, 2.5, 0.5))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "ours: mean, 95% t-interval", "one seed: no interval", "paper (its setting)"]
