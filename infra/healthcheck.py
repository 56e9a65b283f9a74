"""Container health check (Dockerfile HEALTHCHECK, compose): exit 0 when healthy.

Every HTTP target answers GET /health: the router (`service`) and `health` route it,
the single-function targets through `_with_probes` in functions/main.py. A CloudEvent
target (`on_bundle_uploaded`) answers every request as an event, so for it an open TCP
port is the best the image can check.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request

EVENT_TARGETS = {"on_bundle_uploaded"}


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    target = os.environ.get("FUNCTION_TARGET", "service")
    event = target in EVENT_TARGETS or os.environ.get("FUNCTION_SIGNATURE_TYPE") == "cloudevent"
    try:
        if not event:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=4) as answer:
                return 0 if answer.status == 200 else 1
        with socket.create_connection(("127.0.0.1", port), timeout=4):
            return 0
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
