"""The committed notebooks as files: parameters papermill can read, metadata JupyterLab leaves alone,
figure names that keep non-default runs apart, and outputs that go where they are told."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from dta_lib import paths, viz
from dta_lib.nbsetup import KERNELSPEC, normalize_notebook, notebook_defaults, param_tag

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 13


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_with_a_type(nb):
    """`papermill --help-notebook` silently drops a line it cannot parse (e.g. a comment holding '=')."""
    inferred = pm.inspect_notebook(str(nb))
    assigned = notebook_defaults(nb)
    assert set(inferred) == set(assigned), f"papermill misses {sorted(set(assigned) - set(inferred))}"
    untyped = [k for k, v in inferred.items() if v["inferred_type_name"] in (None, "None")]
    assert not untyped, f"parameters without a type annotation: {untyped}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_metadata_is_what_jupyterlab_writes(nb):
    text = nb.read_text()
    node = nbformat.read(str(nb), as_version=4)
    nbformat.validate(node)
    assert nbformat.writes(node) + "\n" in (text, text + "\n"), "not in nbformat's own serialisation"
    assert node.metadata["kernelspec"] == KERNELSPEC
    assert node.metadata["language_info"]["name"] == "python"
    assert all("id" in c for c in node.cells)
    # no run timestamps: re-rendering or opening changes no metadata
    assert normalize_notebook(copy.deepcopy(node)) == node
    # a question first, then the parameters
    assert node.cells[0].cell_type == "markdown" and node.cells[0].source.startswith("# ")
    assert "parameters" in node.cells[1].metadata.get("tags", [])


def test_installed_kernelspec_matches_the_stored_one():
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert {"display_name": spec.display_name, "language": spec.language, "name": "python3"} == KERNELSPEC


def test_param_tag_is_empty_for_defaults_and_names_what_changed():
    nb = NOTEBOOKS[0]  # 01: TIME_STEPS 16, GAIN 1.5
    defaults = notebook_defaults(nb)
    assert param_tag(nb, defaults) == ""
    assert param_tag(nb, {**defaults, "PRESET": "cpu"}) == ""  # the preset is not part of the tag
    assert param_tag(nb, {**defaults, "TIME_STEPS": 8, "GAIN": 2.0}) == "_gain-2.0_time_steps-8"
    long = param_tag(nb, {**defaults, "IMAGE_INDEX": 1234567, "TIME_STEPS": 123456789, "GAIN": 2.123456789})
    assert long.startswith("_p") and len(long) == 12
    assert param_tag(nb.stem, {**defaults, "SEED": 3}) == "_seed-3"  # found by name in the checkout


def test_notebook_defaults_names_a_notebook_without_a_parameters_cell(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("A = 1")])
    nbformat.write(nb, str(tmp_path / "x.ipynb"))
    with pytest.raises(ValueError, match=r"x.ipynb: expected exactly one cell tagged 'parameters', found 0"):
        notebook_defaults(tmp_path / "x.ipynb")
    with pytest.raises(FileNotFoundError, match="notebook nope.ipynb not found"):
        notebook_defaults("nope")


# ---------------------------------------------------------------------------- where outputs go
def test_output_root_order(tmp_path, monkeypatch):
    monkeypatch.delenv("DTA_OUTPUT_DIR", raising=False)
    assert paths.CHECKOUT is not None  # the tests run from a checkout (editable install)
    assert paths.output_root() == paths.CHECKOUT / "reports"
    monkeypatch.setenv("DTA_OUTPUT_DIR", str(tmp_path / "env"))
    assert paths.output_root() == tmp_path / "env"
    assert paths.output_root(fallback=tmp_path / "fallback") == tmp_path / "env"  # the variable wins
    monkeypatch.setenv("DTA_OUTPUT_DIR", "")  # exported but empty: not set
    assert paths.output_root() == paths.CHECKOUT / "reports"
    assert paths.output_root(fallback=tmp_path / "fallback") == tmp_path / "fallback"
    monkeypatch.setenv("DTA_OUTPUT_DIR", " ")
    with pytest.raises(ValueError, match=r"\$DTA_OUTPUT_DIR is ' ': expected a folder path, not an empty string"):
        paths.output_root()


def test_recorded_results_fall_back_to_the_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("DTA_OUTPUT_DIR", str(tmp_path))
    bench = "bench/bench_cpu_fp32_2threads.json"
    assert paths.recorded(bench) == paths.CHECKOUT / "reports" / bench  # committed, not in the scratch root
    (tmp_path / "bench").mkdir()
    (tmp_path / bench).write_text("{}")
    assert paths.recorded(bench) == tmp_path / bench  # the output root wins once it has one
    assert paths.recorded("runs/none-such") == tmp_path / "runs/none-such"
    assert [p.name for p in paths.recorded_glob("bench", "*.json")] == ["bench_cpu_fp32_2threads.json"]
    committed = paths.recorded_glob("tables", "12_energy_*.csv")
    assert committed and all(p.parent == paths.CHECKOUT / "reports" / "tables" for p in committed)


def test_save_figure_writes_under_the_output_root(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("DTA_OUTPUT_DIR", str(tmp_path))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    out = viz.save_figure(fig, "x.png")
    plt.close(fig)
    assert out == tmp_path / "figures" / "x.png" and out.is_file()


def test_make_test_points_outputs_away_from_the_committed_reports():
    make = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    for target in ("test:", "unit:", "nbval:"):
        recipe = make.split(f"\n{target}", 1)[1].split("\n\n", 1)[0]
        assert "DTA_OUTPUT_DIR=" in recipe, target
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "ATEN_CPU_CAPABILITY=$aten ONEDNN_MAX_CPU_ISA=$onednn make test" in ci and "AVX512" in ci


def test_bench_json_of_notebook_11_resolves_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DTA_OUTPUT_DIR", raising=False)
    rel = notebook_defaults("11_performance")["BENCH_JSON"]
    assert paths.recorded(rel).is_file()
    assert json.loads(paths.recorded(rel).read_text())["meta"]


def test_environment_yml_lists_the_dependencies_of_pyproject_toml():
    """environment.yml (kept by hand) installs pyproject's dependencies, core and every extra (read from the installed
    metadata, which `make setup` refreshes when pyproject.toml changes), each pinned in constraints.txt."""
    from importlib.metadata import requires

    root = Path(__file__).resolve().parent.parent
    wanted = {r.split(";")[0].strip() for r in requires("dta_lib") or [] if not r.startswith("dta_lib")}
    pip = [line.strip()[2:] for line in (root / "environment.yml").read_text().split("  - pip:\n")[1].splitlines()
           if line.strip().startswith("- ")]
    assert "torch>=2.6" in wanted and {r for r in pip if not r.startswith("-")} == wanted
    assert "-c constraints.txt" in pip and "-e ." in pip
    pins = {line.split("==")[0].lower() for line in (root / "constraints.txt").read_text().splitlines() if "==" in line}
    unpinned = [r for r in wanted if re.split(r"[<>=!~\[ ]", r)[0].lower().replace("_", "-") not in pins]
    assert not unpinned, f"constraints.txt pins no version of {unpinned}"


def test_packaging_files_are_present():
    root = Path(__file__).resolve().parent.parent
    assert "MIT License" in (root / "LICENSE").read_text()
    cff = (root / "CITATION.cff").read_text()
    assert "cff-version: 1.2.0" in cff and "arXiv:2503.10052" in cff and "Minje" in cff
    assert (root / "CHANGELOG.md").is_file() and (root / "dta_lib" / "py.typed").is_file()


def _code_cells(path: Path) -> list[str]:
    """A notebook's code, without its parameters cell and the cell papermill injects."""
    cells = json.loads(path.read_text())["cells"]
    skip = {"parameters", "injected-parameters"}
    return ["".join(c["source"]) for c in cells
            if c["cell_type"] == "code" and not skip & set(c.get("metadata", {}).get("tags", []))]


RENDERS = sorted((Path(__file__).resolve().parent.parent / "reports" / "notebooks").glob("*/*.ipynb"))


@pytest.mark.parametrize("render", RENDERS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_committed_renders_run_the_notebooks_code(render):
    """A committed render (reports/notebooks/<preset>/) shows what its notebook does now: the same code cells."""
    source = render.parents[3] / "notebooks" / render.name
    assert _code_cells(render) == _code_cells(source), (
        f"{render} is stale: its code differs from {source}; re-render it (make reproduce) or remove it")


def test_there_are_committed_renders_to_check():
    assert {p.parent.name for p in RENDERS} == {"study"} and len(RENDERS) == 6


#: paths the docs name as what a command writes (not committed)
GENERATED = ("reports/notebooks/cpu/", "reports/bench/bench_gpu_check.json", "reports/bench/gpu_tests.xml")


def test_every_path_and_link_named_in_notebooks_and_docs_exists():
    """Backticked repository paths (``notebooks/...``, ``docs/...``, ``reports/...``, ...) and relative markdown links in
    the notebooks' prose, the README and docs/ point at files that exist; placeholders (``<preset>``, globs) aside."""
    import re

    root = Path(__file__).resolve().parent.parent
    texts = {p: "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "markdown")
             for p in sorted(root.glob("notebooks/[0-9][0-9]_*.ipynb"))}
    texts.update({p: p.read_text() for p in [root / "README.md", *sorted(root.glob("docs/*.md"))]})
    named = re.compile(r"`((?:notebooks|docs|reports|tests|dta_lib|scripts|book)/[^`\s]+)`")
    linked = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
    missing = []
    for path, text in texts.items():
        for target, base in [(m, root) for m in named.findall(text)] + [
                (m, path.parent) for m in linked.findall(text) if not re.match(r"[a-z]+:", m)]:
            if any(ch in target for ch in "*{<>$") or target.startswith(GENERATED):
                continue
            if not ((base / target).exists() or (root / target).exists()):
                missing.append(f"{path.relative_to(root)}: {target}")
    assert not missing, missing
    assert not [p for p, t in texts.items() if "reference-spec.md" in t]  # the old name of docs/reference.md


def _docs() -> dict[Path, str]:
    root = Path(__file__).resolve().parent.parent
    return {p: p.read_text() for p in [root / "README.md", *sorted(root.glob("docs/*.md"))]}


def test_hardware_and_precision_lines_in_docs_are_generated_from_the_recorded_files():
    """Every ``<!-- recorded: PATTERN -->`` block says what its files recorded (``python scripts/sync_docs.py``
    refills them), and no CPU model is named, nor "this machine" claimed, outside such a block."""
    import re

    from dta_lib.studies import RECORDED_BLOCK, sync_recorded

    root = Path(__file__).resolve().parent.parent
    docs = _docs()
    assert sum(len(RECORDED_BLOCK.findall(t)) for t in docs.values()) >= 10
    stale = [p.name for p, t in docs.items() if sync_recorded(t, root) != t]
    assert not stale, f"recorded blocks out of date in {stale}: run python scripts/sync_docs.py"
    typed = re.compile(r"Xeon|EPYC|Ryzen|\bZen\b|Intel\(R\)|\bon this (?:\S+ ){0,2}(?:CPU|machine)\b")
    outside = [f"{p.name}: {line.strip()[:90]}" for p, t in docs.items()
               for line in RECORDED_BLOCK.sub("", t).splitlines() if typed.search(line)]
    assert not outside, outside


def test_recorded_hardware_reads_bench_files_and_run_folders(tmp_path):
    from dta_lib.studies import recorded_hardware, sync_recorded

    meta = {"cpu": "CPU X", "cpu_capability": "AVX2", "cpu_count": 4, "threads": 1, "torch": "2.9.0+cpu"}
    (tmp_path / "b.json").write_text(json.dumps({"meta": meta}))
    assert recorded_hardware("b.json", tmp_path) == "CPU X (AVX2 kernels), 4 cores, 1 thread, torch 2.9.0"
    for i, dtype in enumerate([None, None, "bfloat16"]):
        (tmp_path / f"r{i}").mkdir()
        hw = {"cpu": "CPU Y", "cpu_count": 2, "torch_threads": 2, "torch": "2.9.0"}
        (tmp_path / f"r{i}" / "run.json").write_text(json.dumps({"hardware": hw, "autocast_dtype": dtype}))
    assert recorded_hardware("r*/run.json", tmp_path) == ("CPU Y, 2 cores, 2 threads per run, fp32, torch 2.9.0 (2 of 3 "
                                                          "runs); CPU Y, 2 cores, 2 threads per run, bfloat16, torch "
                                                          "2.9.0 (1 of 3 runs)")
    text = "on <!-- recorded: b.json -->typed by hand<!-- /recorded -->."
    assert sync_recorded(text, tmp_path) == f"on <!-- recorded: b.json -->{recorded_hardware('b.json', tmp_path)}<!-- /recorded -->."
    with pytest.raises(FileNotFoundError, match="no recorded file matches nothing/"):
        recorded_hardware("nothing/*.json", tmp_path)


#: the notebooks whose committed outputs are CI-sized (smoke) runs: each opens by pointing at its real results
SMOKE_RENDERED = ("05", "06", "07", "08", "09", "11", "12")


@pytest.mark.parametrize("number", SMOKE_RENDERED)
def test_smoke_rendered_notebooks_open_with_where_the_results_are(number):
    import re

    root = Path(__file__).resolve().parent.parent
    nb = json.loads(next(root.glob(f"notebooks/{number}_*.ipynb")).read_text())
    first = "".join(nb["cells"][0]["source"])
    line = next((l for l in first.splitlines() if l.startswith("> **Where the results are:**")), None)
    assert line, f"notebook {number}: its first cell has no '> **Where the results are:**' line"
    named = re.findall(r"`((?:reports|docs)/[^`]+)`", line)
    assert named and all((root / p).exists() for p in named), (number, named)


def test_energy_numbers_typed_in_docs_match_the_recorded_tables():
    import re

    import pandas as pd

    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "experiments.md").read_text()
    shares = {}
    for preset in ("cpu", "study"):
        t = pd.read_csv(root / "reports" / "tables" / f"12_energy_{preset}.csv")
        full = t[t["scale"].str.startswith("full-size")].set_index(["model", "group"])["energy_uj"]
        shares[preset] = f"{100 * full['DTA', 'DTA'] / full['DTA', 'total']:.1f} %"
    assert f"{shares['cpu']} at `cpu` and {shares['study']} at `study`" in text
    t = pd.read_csv(root / "reports" / "tables" / "12_energy_cpu.csv")
    measured = t[t["scale"].str.startswith("trained")].set_index(["model", "group"])["energy_uj"]
    m = re.search(r"baseline ([\d.]+) uJ\s+vs\. DTA ([\d.]+) uJ \(([\d.]+)x\)", text)
    assert m, "docs/experiments.md no longer states the cpu energy per image"
    assert (m[1], m[2]) == (f"{measured['baseline', 'total']:.2f}", f"{measured['DTA', 'total']:.2f}")
    assert m[3] == f"{measured['DTA', 'total'] / measured['baseline', 'total']:.2f}"
