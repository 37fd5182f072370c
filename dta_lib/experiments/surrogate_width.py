"""The surrogate-width study (notebook 09): per-layer gradient norms over training (``metrics.jsonl``
``grad_norms``) and the first-to-last-layer ratio (the vanishing-gradient check)."""
from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd

from ..engine.runfolder import read_metrics

__all__ = [
    "grad_norm_curves",
    "layer_order",
    "gradient_ratio",
]


def grad_norm_curves(runs: pd.DataFrame, by: Sequence[str] = ("surrogate_width", "seed")) -> pd.DataFrame:
    """Per-layer gradient norms over training, long form: ``*by, epoch, layer, grad_norm``.

    ``runs`` has a ``run`` column (run folders recorded with ``record_grad_norms=True``) and the
    ``by`` columns. Layers come in forward order (stem, dta, layer1.0 ... layer3.1, fc; see
    :func:`layer_order`), not the alphabetical order of ``metrics.jsonl``.
    """
    missing = [c for c in ("run", *by) if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks columns {missing}; expected 'run' and {list(by)}")
    rows = []
    for _, r in runs.iterrows():
        for rec in read_metrics(r["run"]):
            norms = rec.get("grad_norms")
            if not norms:
                raise ValueError(f"run {r['run']} has no grad_norms at epoch {rec.get('epoch')}; "
                                 "train it with record_grad_norms=True")
            rows += [{**{c: r[c] for c in by}, "epoch": rec["epoch"], "layer": k, "grad_norm": norms[k]}
                     for k in layer_order(norms)]
    return pd.DataFrame(rows)


def layer_order(names: Iterable[str]) -> list[str]:
    """Layer-group names in forward order: ``stem``, ``dta``, ``layerS.B`` by stage and block, then the rest, ``fc`` last.

    >>> layer_order(["fc", "layer2.0", "stem", "layer1.1", "dta", "layer1.0"])
    ['stem', 'dta', 'layer1.0', 'layer1.1', 'layer2.0', 'fc']
    """
    def rank(name: str) -> tuple[int, int, int, str]:
        if name == "stem":
            return (0, 0, 0, name)
        if name == "dta":
            return (1, 0, 0, name)
        head, _, block = name.partition(".")
        if head.startswith("layer") and head[5:].isdigit():
            return (2, int(head[5:]), int(block) if block.isdigit() else 0, name)
        return (4, 0, 0, name) if name == "fc" else (3, 0, 0, name)

    return sorted(names, key=rank)


def gradient_ratio(curves: pd.DataFrame, first: str = "stem", last: str = "fc",
                   by: Sequence[str] = ("surrogate_width", "seed")) -> pd.DataFrame:
    """``first``-layer over ``last``-layer gradient norm per run and epoch (columns ``*by, epoch, ratio``).

    A ratio far below 1 that falls over training is the vanishing-gradient signature: the loss
    signal reaching the first layer through the spiking layers (each multiplying by the surrogate
    derivative, paper Eq. 5) shrinks relative to the classifier's.
    """
    layers = set(curves["layer"])
    for name in (first, last):
        if name not in layers:
            raise ValueError(f"layer {name!r} not in the gradient norms; layers: {sorted(layers)}")
    wide = curves.pivot_table(index=[*by, "epoch"], columns="layer", values="grad_norm").reset_index()
    wide["ratio"] = wide[first] / wide[last]
    return wide[[*by, "epoch", first, last, "ratio"]]
