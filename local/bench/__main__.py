"""`make bench`: every benchmark, one table (see `local.bench.run_all`)."""

from __future__ import annotations

import sys

from local.bench import run_all

if __name__ == "__main__":
    sys.exit(run_all.main())
