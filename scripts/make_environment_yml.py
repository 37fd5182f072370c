#!/usr/bin/env python3
"""Write environment.yml from constraints.txt, so conda users get exactly the versions `make setup` installs.

Usage: python scripts/make_environment_yml.py [--check]   (--check: exit 1 if environment.yml is out of date)
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = """\
# Generated from constraints.txt by scripts/make_environment_yml.py: do not edit by hand.
# conda / mamba: `mamba env create -f environment.yml && conda activate dta-snn`
# Every Python package is pinned to the version `make setup` installs (pip, from constraints.txt), foolbox
# included (its wheel ships the 20 real CIFAR test images the CIFAR tests use), except the CUDA runtime
# (nvidia-*, cuda-*, triton): torch's own wheel brings it where it needs it (Linux), and nowhere else, so the
# file works on macOS, Windows and CPU-only Linux alike. Not installable through conda:
# the offline default data, Debian's dataset-fashion-mnist (`make data`, as root with apt), or point
# DTA_DATA_ROOT at a folder with Fashion-MNIST (torchvision's layout).
name: dta-snn
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
"""


#: CUDA runtime packages: torch's wheel requires them on Linux only (environment markers); never pinned here
PLATFORM_SPECIFIC = ("nvidia-", "cuda-", "triton")


def render() -> str:
    pins = [line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    if bad := [p for p in pins if "==" not in p]:
        raise SystemExit(f"constraints.txt: expected exact pins NAME==VERSION, got {bad}")
    pins = [p for p in pins if not p.lower().startswith(PLATFORM_SPECIFIC)]
    return HEADER + "".join(f"      - {p}\n" for p in sorted(pins, key=str.lower)) + "      - -e .[dev]\n"


def main(argv: list[str]) -> int:
    text, target = render(), ROOT / "environment.yml"
    if "--check" not in argv:
        target.write_text(text)
    elif target.read_text() != text:
        print("environment.yml is out of date: run python scripts/make_environment_yml.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
