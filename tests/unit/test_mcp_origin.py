"""Which `Origin` names the request's own host (`functions._http.same_host`): a browser page
may call /mcp only from the service's host, behind a TLS-terminating proxy too."""

from __future__ import annotations

import pytest

from functions._http import same_host


@pytest.mark.parametrize(("origin", "host", "same"), [
    ("http://127.0.0.1:8002", "127.0.0.1:8002", True),
    ("https://mcp.example.com", "mcp.example.com", True),  # TLS ends at the proxy: Host names no port
    ("https://mcp.example.com", "mcp.example.com:443", True),
    ("http://MCP.example.com", "mcp.example.com", True),
    ("http://[::1]:8002", "[::1]:8002", True),
    ("http://127.0.0.1:8003", "127.0.0.1:8002", False),  # another port is another origin
    ("https://mcp.example.com:8443", "mcp.example.com", False),
    ("http://localhost:8002", "127.0.0.1:8002", False),
    ("https://mcp.example.com.evil.example", "mcp.example.com", False),
    ("null", "mcp.example.com", False),  # an opaque origin (sandboxed page, file://)
    ("vscode-webview://abc", "mcp.example.com", False),
    ("http://mcp.example.com:99999", "mcp.example.com", False),  # not a port
])
def test_same_host(origin: str, host: str, same: bool) -> None:
    assert same_host(origin, host) is same
