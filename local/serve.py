"""`make run`: check the settings, then serve every function on one port.

Runs functions-framework (gunicorn, through `functions.serve`, which adds the
HTTP limits) in the foreground with the router target
`service`; SIGTERM and SIGINT stop it cleanly. A bad setting, or an embedding
model that cannot be loaded, or an embedded index folder of the format before
Qdrant Edge, stops start-up here with a message that says what to do.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from core.config import ConfigError, load_settings
from core.indexing.embedders import EmbedderError, open_embedder
from core.indexing.engines import is_remote
from core.indexing.engines.edge import IndexFormatOutdated, check_format

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    try:
        settings = load_settings()
        if settings.indexing_enabled:
            open_embedder(settings.embedding_model, settings.embedding_cache_dir)
            if not is_remote(settings.qdrant_url) and settings.qdrant_url != ":memory:":
                check_format(Path(settings.qdrant_url.removeprefix("file://")))
                if os.environ.get("WORKERS", "1").strip() != "1":
                    raise ConfigError("WORKERS: an embedded index folder (QDRANT_URL) is opened by "
                                      "one process; run one worker (it serves many threads) or use "
                                      "a Qdrant server")
    except (ConfigError, EmbedderError, IndexFormatOutdated) as exc:
        sys.exit(f"delta-upload: {exc}")
    print(
        f"delta-upload: serving on http://{settings.upload_service_host}:"
        f"{settings.upload_service_port} (storage {settings.resolved_storage_url}, "
        f"qdrant {settings.qdrant_url})",
        file=sys.stderr,
        flush=True,
    )
    # functions.serve: functions-framework's gunicorn with the HTTP limits (README "Security")
    os.execv(
        sys.executable,
        [
            sys.executable, "-m", "functions.serve",
            "--source", str(ROOT / "functions" / "main.py"),
            "--target", "service",
            "--host", settings.upload_service_host,
            "--port", str(settings.upload_service_port),
        ],
    )


if __name__ == "__main__":
    main()
