"""Refill the ``<!-- recorded: PATTERN -->`` blocks of README.md and docs/*.md from the files they name
(``dta_lib.studies.sync_recorded``). Run from the repository root: ``python scripts/sync_docs.py``."""
from pathlib import Path

from dta_lib.studies import sync_recorded

if __name__ == "__main__":
    for path in [Path("README.md"), *sorted(Path("docs").glob("*.md"))]:
        text = path.read_text()
        if (new := sync_recorded(text)) != text:
            path.write_text(new)
            print(f"updated {path}")
