"""A real browser for the admin console's tests: Debian's Chromium driven by Playwright.

`ensure_chromium()` installs the `chromium` and `chromium-driver` packages with apt-get
when `/usr/bin/chromium` is missing (once per session; the outcome is kept), and raises
`BrowserUnavailable` with the reason when that cannot be done (no apt-get, not root, no
mirror), which the fixture turns into a skip. Playwright never downloads a browser here:
it is launched on that binary, with the flags this machine's closed network needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.support.workers import machine_lock

CHROMIUM = Path("/usr/bin/chromium")
PACKAGES = ["chromium", "chromium-driver"]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class BrowserUnavailable(Exception):
    """Chromium cannot be installed on this machine; the message says why."""


_failure: BrowserUnavailable | None = None
install_seconds: float | None = None  # how long apt took, when this session installed it


def ensure_chromium(timeout: float = 900.0) -> Path:
    global _failure
    if CHROMIUM.exists() and shutil.which("chromedriver"):
        return CHROMIUM
    if _failure is not None:
        raise _failure
    if shutil.which("apt-get") is None:
        _failure = BrowserUnavailable(f"no apt-get: install {' '.join(PACKAGES)} by hand")
    elif os.geteuid() != 0:
        _failure = BrowserUnavailable(f"apt-get needs root: sudo apt-get install {' '.join(PACKAGES)}")
    else:
        # one installer at a time on the machine (the other xdist worker may be installing Ceph)
        with machine_lock("apt"):
            if not (CHROMIUM.exists() and shutil.which("chromedriver")):  # or installed it meanwhile
                _install(timeout)
        if _failure is None and not CHROMIUM.exists():
            _failure = BrowserUnavailable(f"{CHROMIUM} still missing after apt-get install")
    if _failure is not None:
        raise _failure
    return CHROMIUM


def _install(timeout: float) -> None:
    global _failure, install_seconds
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            _failure = BrowserUnavailable(f"{' '.join(command)} timed out after {timeout:.0f}s")
            break
        if done.returncode != 0:
            _failure = BrowserUnavailable(f"{' '.join(command)} failed (exit {done.returncode}): "
                                          f"{(done.stdout + done.stderr)[-1500:]}")
            break
    install_seconds = time.monotonic() - started
