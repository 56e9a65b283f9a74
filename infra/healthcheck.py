"""Container health check (Dockerfile HEALTHCHECK, compose): exit 0 when healthy.

The router (`service`) and `health` targets answer GET /health; every other target
answers its own function on any path (upload: 405 to a GET, status: 400 without a
workspace), so for those an open TCP port is the best the image can check.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request

HTTP_TARGETS = {"service", "health"}


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    target = os.environ.get("FUNCTION_TARGET", "service")
    try:
        if target in HTTP_TARGETS:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=4) as answer:
                return 0 if answer.status == 200 else 1
        with socket.create_connection(("127.0.0.1", port), timeout=4):
            return 0
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
