"""Writes the hostile-bundle corpus: one .tar.gz per case and index.json of expected codes.

    .venv/bin/python -m tests.hostile.generate

The cases are the rows of tests/e2e/test_refusals.py; the files are checked in
so that other tools (fuzzers, other implementations) can use them as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_refusals import BUNDLE_CASES, SIZE_CASES, Make
from tests.support.bundles import BundleBuilder

HERE = Path(__file__).resolve().parent


def build(make: Make) -> bytes:
    made = make(BundleBuilder())
    return made if isinstance(made, bytes) else made.build()


def main() -> None:
    index = {}
    for limited, cases in ((False, BUNDLE_CASES), (True, SIZE_CASES)):
        for name, code, make in cases:
            data = build(make)
            if len(data) > 64 * 1024 and not limited:
                continue
            (HERE / f"{name}.tar.gz").write_bytes(data)
            index[name] = {"code": code, "tiny_limits": limited}
    (HERE / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(index)} hostile bundles to {HERE}")


if __name__ == "__main__":
    main()
