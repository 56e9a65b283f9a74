"""`make bench`: every benchmark, one table."""

from __future__ import annotations

from local.bench import indexing, pipeline

if __name__ == "__main__":
    indexing.main()
    pipeline.main()
