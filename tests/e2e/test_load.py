"""The short version of `make load`: concurrent workspaces and racing writers, checked."""

from __future__ import annotations

from local.load import main


def test_short_load_run_keeps_every_workspace_exact() -> None:
    assert main(["--seconds", "6", "--workspaces", "6", "--racers", "3"]) == 0
