"""Figure 6: cold start, from process start to the first /health answer.

Why: serverless platforms start instances on demand, and the first request waits
for the start. Wall time from `Popen` of `functions-framework --source
functions/main.py --target service` (what a platform runs) to the first 200 from
`/health`, polled every 5 ms; REPS starts, median. Target < 1.5 s. Baselines
measured in the same run, also as medians of REPS:

  * `python -c "import flask"` (start of an interpreter that imports Flask);
  * functions-framework serving a one-line function: what the framework itself
    costs before our module is imported, so the difference is ours.

Every start is a fresh process with a fresh storage folder; nothing is warm but
the OS page cache (the same for all three).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from local.bench import common
from local.bench.common import Figure, median, ratio_figure
from tests.support.service import FRAMEWORK, ROOT, free_port

NAME = "cold_start"
REPS = common.sized(5, 2)
LIMIT_S = 1.5
TRIVIAL = '''import functions_framework


@functions_framework.http
def service(request):
    return "ok"
'''


def first_answer(source: Path, work_dir: Path, deadline_s: float = 30.0) -> float:
    """Seconds from Popen to the first 200 on /health."""
    port = free_port()
    env = {**os.environ, "WORK_DIR": str(work_dir), "QDRANT_URL": str(work_dir / "qdrant"), **common.INDEXED}
    url = f"http://127.0.0.1:{port}/health"
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(FRAMEWORK), "--source", str(source), "--target", "service", "--host", "127.0.0.1",
         "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with requests.Session() as session:
            while time.perf_counter() - started < deadline_s:
                try:
                    if session.get(url, timeout=5).status_code == 200:
                        return time.perf_counter() - started
                except requests.ConnectionError:
                    pass
                if process.poll() is not None:
                    raise RuntimeError(f"{source} exited with {process.returncode} before answering")
                time.sleep(0.005)
        raise RuntimeError(f"{source} did not answer /health within {deadline_s} s")
    finally:
        common.drop_process(process, signal.SIGINT)  # nothing to finish: quick shutdown


def main() -> list[Figure]:
    with common.temp_root(NAME) as root:
        trivial = root / "trivial.py"
        trivial.write_text(TRIVIAL)
        ours, bare, flask = [], [], []
        for rep in range(REPS):  # interleaved, so drift hits all three alike
            flask.append(common.timed(lambda: subprocess.run([sys.executable, "-c", "import flask"],
                                                             check=True)))
            bare.append(first_answer(trivial, root / f"bare-{rep}"))
            ours.append(first_answer(ROOT / "functions" / "main.py", root / f"ours-{rep}"))
    cold, base, fw = median(ours), median(flask), median(bare)
    figures = [
        Figure(NAME, "6  cold start: Popen to first /health 200", f"{cold:.2f} s", f"< {LIMIT_S:g} s",
               cold < LIMIT_S, f"median of {REPS}: {', '.join(f'{t:.2f}' for t in ours)} s"),
        ratio_figure(NAME, "   cold start / `python -c 'import flask'`", cold / base, None,
                     f"import flask {base:.2f} s; functions-framework with a one-line function "
                     f"{fw:.2f} s ({cold / fw:.2f}x), so our module adds {cold - fw:.2f} s"),
    ]
    common.report(figures)
    return figures


if __name__ == "__main__":
    common.run(main)
