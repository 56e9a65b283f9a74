"""Start a functions-framework target under gunicorn with the service's HTTP limits.

    python -m functions.serve [--target T] [--source F] [--host H] [--port P] [--signature-type S]

Takes the same options, and the same environment (FUNCTION_TARGET, FUNCTION_SOURCE,
FUNCTION_SIGNATURE_TYPE, HOST, PORT, WORKERS, THREADS, ...), as the
`functions-framework` command, which offers no way to pass gunicorn settings:
its gunicorn application even sets `limit_request_line = 0` (no limit) and reads
neither GUNICORN_CMD_ARGS nor a config file. This launcher builds the same app
with `functions_framework.create_app` and hands functions-framework's own
gunicorn application these settings on top (README "Security"):

    limit_request_line        LIMIT_REQUEST_LINE          longest request line (bytes)
    limit_request_fields      LIMIT_REQUEST_FIELDS        most header fields
    limit_request_field_size  LIMIT_REQUEST_FIELD_SIZE    longest header field (bytes)
    worker_class              functions._worker.DeadlineWorker (read deadlines)

and answers HTTP errors the framework raises itself (its router's 404 for a path it
cannot match) in the error envelope.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from core.config import ConfigError, Settings, load_settings

DEFAULT_SOURCE = str(Path(__file__).resolve().parent / "main.py")


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """What the service sets on top of functions-framework's gunicorn defaults."""
    return {
        "limit_request_line": settings.limit_request_line,
        "limit_request_fields": settings.limit_request_fields,
        "limit_request_field_size": settings.limit_request_field_size,
        "worker_class": "functions._worker.DeadlineWorker",
    }


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m functions.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default=env("FUNCTION_TARGET", "service"))
    parser.add_argument("--source", default=env("FUNCTION_SOURCE", DEFAULT_SOURCE))
    parser.add_argument("--signature-type", default=env("FUNCTION_SIGNATURE_TYPE", "http"),
                        choices=("http", "event", "cloudevent", "typed"))
    parser.add_argument("--host", default=env("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(env("PORT", "8080")))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.exit(f"delta-upload: {exc}")
    from functions_framework import create_app
    from functions_framework._http.gunicorn import GunicornApplication
    from werkzeug.exceptions import HTTPException

    from functions._http import framework_error

    app = create_app(args.target, args.source, args.signature_type)  # type: ignore[no-untyped-call]
    app.register_error_handler(HTTPException, framework_error)
    server = GunicornApplication(app, args.host, args.port, False,  # type: ignore[no-untyped-call]
                                 **gunicorn_options(settings))
    server.run()


if __name__ == "__main__":
    main()
