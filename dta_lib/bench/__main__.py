"""``python -m dta_lib.bench``."""
from .cli import main

raise SystemExit(main())
