"""The studies: which runs each notebook records at each preset, declared once.

Notebooks 05-09, 11 and 12 take their variants and seeds from here, ``python -m dta_lib.experiments.campaign``
trains them, and the report (notebook 10, :func:`~dta_lib.experiments.summary.load_study_runs`) loads exactly
these runs: a missing, incomplete, extra or duplicated run folder is an error that names it.

A run's folder is ``<runs>/<preset>/<study>/<dataset>/<variant>-s<seed>`` (:func:`~dta_lib.experiments.run_dir`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .runner import variant_key

__all__ = ["Study", "STUDIES"]


@dataclass(frozen=True)
class Study:
    """One study: its folder name, dataset, variants (config overrides), overrides common to every run, the notebook
    that renders it, and its seeds per preset (``"*"``: every other preset).

    ``variants_by_preset`` lists presets that run fewer variants (notebook 05 trains its no-attention baseline at the
    study presets only)."""

    name: str
    dataset: str
    variants: tuple[dict[str, Any], ...]
    seeds: dict[str, tuple[int, ...]]
    common: dict[str, Any] = field(default_factory=dict)
    notebook: str = ""
    variants_by_preset: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    #: False for a study whose runs stand in for others' (notebook 12 trains ``energy`` runs only for the models
    #: no other study recorded): a missing run is then expected, not an error
    complete: bool = True

    def seeds_for(self, preset: str) -> list[int]:
        """The seeds this study runs at ``preset``."""
        return list(self.seeds.get(preset, self.seeds["*"]))

    def variants_for(self, preset: str) -> list[dict[str, Any]]:
        """The variants this study runs at ``preset``."""
        return [dict(v) for v in self.variants_by_preset.get(preset, self.variants)]

    def expected(self, preset: str) -> list[str]:
        """The run folder names (``<variant>-s<seed>``) this study records at ``preset``, variant-major."""
        return [f"{variant_key(v)}-s{s}" for v in self.variants_for(preset) for s in self.seeds_for(preset)]


_T4 = ({"attention": "dta", "time_steps": 4}, {"attention": "none", "time_steps": 4})
_STUDY_PRESETS = ("study", "study-10k")

#: every study of the notebooks, by folder name
STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("train", "fashion-mnist", _T4, {"*": (0,)}, notebook="05_train",
          variants_by_preset={p: _T4[:1] for p in ("smoke", "cpu", "paper")}),
    Study("ablation", "fashion-mnist", tuple({"attention": a} for a in ("none", "txa", "tna", "dta")),
          {"smoke": (0, 1), "study": (0, 1, 2, 3, 4), "study-10k": (0, 1, 2, 3, 4), "*": (0, 1, 2)},
          notebook="06_ablation"),
    Study("time_steps", "fashion-mnist", tuple({"attention": "dta", "time_steps": t} for t in (2, 4, 6, 8)),
          {"smoke": (0,), "cpu": (0,), "*": (0, 1, 2)}, notebook="07_time_steps"),
    Study("dvs", "fashion-mnist-dvs", ({"attention": "none"}, {"attention": "dta"}),
          {"smoke": (0,), "cpu": (0, 1), "*": (0, 1, 2)}, {"time_steps": 10}, notebook="08_dvs"),
    Study("surrogate_width", "fashion-mnist", tuple({"surrogate_width": w} for w in (0.5, 1.0, 2.0)),
          {"smoke": (0,), "cpu": (0,), "*": (0, 1, 2)},
          {"attention": "dta", "time_steps": 4, "record_grad_norms": True}, notebook="09_surrogate_width"),
    Study("precision", "fashion-mnist", ({"precision": "fp32"}, {"precision": "bf16"}),
          {"smoke": (0, 1), "*": (0, 1, 2)}, notebook="11_performance"),
    Study("energy", "fashion-mnist", ({"attention": "none"}, {"attention": "dta"}), {"*": (0,)},
          notebook="12_spikes_and_energy", complete=False),
)}
