"""The MCP server over real HTTP, driven by the SDK's own client, against real service processes.

One service with API keys holds the existing client's five bundles of /work/shop
(uploaded by alice; the fifth carries git history). Both protocol eras go through
the same bridge: the initialize handshake (mode "legacy") and 2026-07-28's
per-request envelope (mode "auto", which probes `server/discover`). The
single-function target `mcp` runs with AUTH_MODE=none.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import pytest
import requests
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from core.auth import hash_key
from tests.support.service import ServiceProcess

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ce-client"
KEYS = {"alice": "alice-mcp-key-0123", "bob": "bob-mcp-key-4567"}
SHOP = "/work/shop"
PRICING = "def total(items):\n    return round(sum(i.price for i in items), 2)\n"
TOOLS = {"search_code", "search_commits", "read_file", "list_workspaces", "workspace_status"}
T = TypeVar("T")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("mcp")
    keys = root / "keys.json"
    keys.write_text(json.dumps({"tenants": {t: [hash_key(k)] for t, k in KEYS.items()}}))
    env = {"WORK_DIR": str(root / "storage"), "AUTH_MODE": "api_key", "API_KEYS_FILE": str(keys)}
    service = ServiceProcess(env, root / "service.log").start()
    try:
        for number in range(1, 6):
            bundle = next(FIXTURES.glob(f"ce-{number}-*.tar.gz")).read_bytes()
            answer = service.upload(bundle, SHOP, session=KEYS["alice"])
            assert answer.status_code == 200, answer.text
        yield service
    finally:
        assert service.stop() == 0


def session(url: str, work: Callable[[Client], Awaitable[T]], key: str | None = KEYS["alice"],
            mode: str = "auto") -> T:
    """`work` on a connected SDK client, the key sent as `Authorization: Bearer`."""
    async def connected() -> T:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with (httpx2.AsyncClient(headers=headers, timeout=30) as http,
                    Client(streamable_http_client(url, http_client=http), mode=mode) as client):
            return await work(client)

    return anyio.run(connected)


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error
    return " ".join(getattr(block, "text", "") for block in result.content)


def rpc(service: ServiceProcess, message: Any, headers: dict[str, str] | None = None) -> requests.Response:
    sent = {"Authorization": f"Bearer {KEYS['alice']}", "Content-Type": "application/json", **(headers or {})}
    return requests.post(service.url + "/mcp", data=json.dumps(message), headers=sent, timeout=30)


def test_initialize_then_the_five_tools_with_their_input_schemas(shop: ServiceProcess) -> None:
    async def work(client: Client) -> tuple[Any, ...]:
        return client.protocol_version, client.server_info, client.instructions, await client.list_tools()

    version, info, instructions, listed = session(shop.url + "/mcp", work, mode="legacy")
    assert version in HANDSHAKE_PROTOCOL_VERSIONS
    assert info is not None and info.name == "delta-upload"
    assert instructions and "read_file" in instructions
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == TOOLS
    required = {"search_code": ["query"], "search_commits": ["query"], "list_workspaces": [],
                "read_file": ["workspace_path", "path"], "workspace_status": ["workspace_path"]}
    for name, tool in tools.items():
        schema = tool.input_schema
        assert schema["type"] == "object" and "ctx" not in schema["properties"], name
        assert sorted(schema.get("required", [])) == sorted(required[name]), name
        assert tool.description and tool.annotations and tool.annotations.read_only_hint, name
    assert tools["search_code"].input_schema["properties"]["limit"]["maximum"] == 100
    assert "read_file" in (tools["search_code"].description or "")


def test_every_tool_answers_from_the_uploaded_workspace(shop: ServiceProcess) -> None:
    async def work(client: Client) -> dict[str, Any]:
        code = structured(await client.call_tool("search_code", {
            "query": "round the total to cents", "workspace_path": SHOP, "limit": 3}))
        hit = next(h for h in code["hits"] if h["path"] == "src/pricing.py")
        return {
            "protocol": client.protocol_version, "code": code,
            "file": structured(await client.call_tool("read_file", {
                "workspace_path": SHOP, "path": hit["path"], "start_line": hit["start_line"]})),
            "line": structured(await client.call_tool("read_file", {
                "workspace_path": SHOP, "path": "src/pricing.py", "start_line": 2, "end_line": 2})),
            "commits": structured(await client.call_tool("search_commits", {
                "query": "totals rounded to cents", "workspace_path": SHOP})),
            "workspaces": structured(await client.call_tool("list_workspaces", {})),
            "status": structured(await client.call_tool("workspace_status", {"workspace_path": SHOP})),
            "missing": await client.call_tool("read_file", {"workspace_path": SHOP, "path": "src/nope.py"}),
            "invalid": await client.call_tool("search_code", {"query": "total", "limit": 0}),
        }

    answers = session(shop.url + "/mcp", work)
    assert answers["protocol"] in MODERN_PROTOCOL_VERSIONS  # the per-request era, through the same bridge
    assert [h["path"] for h in answers["code"]["hits"]][:1] == ["src/pricing.py"], answers["code"]
    assert answers["file"]["content"] == PRICING and answers["file"]["total_lines"] == 2
    assert answers["line"]["content"] == PRICING.splitlines(keepends=True)[1]
    newest = answers["commits"]["hits"][0]
    assert newest["commit_id"].startswith("1e200858") and "cents" in newest["message"]
    workspaces = answers["workspaces"]["workspaces"]
    assert [(w["workspace_path"], w["last_sequence"]) for w in workspaces] == [(SHOP, 5)]
    status = answers["status"]
    assert status["last_sequence"] == 5 and status["pending_operations"] == 0 and status["indexed_points"] > 0
    assert "FILE_NOT_FOUND" in error_text(answers["missing"])
    assert "limit" in error_text(answers["invalid"])  # the input schema's bound, checked by the SDK


def test_another_tenant_sees_nothing_of_the_first(shop: ServiceProcess) -> None:
    async def work(client: Client) -> tuple[Any, ...]:
        listed = structured(await client.call_tool("list_workspaces", {}))
        status = structured(await client.call_tool("workspace_status", {"workspace_path": SHOP}))
        found = await client.call_tool("search_code", {"query": "total", "workspace_path": SHOP})
        read = await client.call_tool("read_file", {"workspace_path": SHOP, "path": "src/pricing.py"})
        return listed, status, found, read

    listed, status, found, read = session(shop.url + "/mcp", work, key=KEYS["bob"])
    assert listed["workspaces"] == [] and status["last_sequence"] == 0
    assert "WORKSPACE_NOT_FOUND" in error_text(found) and "WORKSPACE_NOT_FOUND" in error_text(read)


def test_refusals_before_the_sdk(shop: ServiceProcess) -> None:
    async def work(client: Client) -> Any:
        return await client.list_tools()

    for key in (None, "not-a-key"):  # the 401 fails the SDK client's connect, in its task group
        with pytest.raises(ExceptionGroup) as refused:
            session(shop.url + "/mcp", work, key=key)
        assert refused.group_contains(MCPError, depth=None), key
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    unauthenticated = rpc(shop, listing, {"Authorization": ""})
    assert unauthenticated.status_code == 401 and "WWW-Authenticate" in unauthenticated.headers
    assert unauthenticated.json()["error"]["code"] == "UNAUTHORIZED"
    assert rpc(shop, listing, {"Authorization": "", "X-API-Key": KEYS["alice"]}).status_code == 200
    assert rpc(shop, listing, {"Origin": shop.url}).status_code == 200  # a page of this service's own
    for origin in ("http://evil.example", "null", shop.url.replace("127.0.0.1", "localhost")):
        other_site = rpc(shop, listing, {"Origin": origin})
        assert other_site.status_code == 403 and other_site.json()["error"]["code"] == "FORBIDDEN", origin
    for method in ("GET", "DELETE"):  # no event stream, no session to end
        refused = requests.request(method, shop.url + "/mcp", timeout=10)
        assert refused.status_code == 405 and refused.headers["Allow"] == "POST"
        assert refused.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    as_text = rpc(shop, listing, {"Content-Type": "text/plain"})
    assert as_text.status_code == 415 and as_text.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert rpc(shop, listing, {"Accept": "text/html"}).json()["error"]["code"] == "NOT_ACCEPTABLE"
    assert rpc(shop, [listing]).json()["error"]["code"] == "INVALID_REQUEST"  # no batches
    assert rpc(shop, {**listing, "id": True}).status_code == 400  # a request, not a notification
    by_the_sdk = rpc(shop, {**listing, "jsonrpc": "1.0"})  # the SDK's JSON-RPC error, in the envelope
    assert by_the_sdk.status_code == 400 and by_the_sdk.json()["success"] is False
    assert isinstance(by_the_sdk.json()["error"]["code"], int)
    too_large = rpc(  # JSON_MAX_BODY_KB (64), refused unread
        shop, {**listing, "params": {"pad": "x" * 70_000}})
    assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "REQUEST_TOO_LARGE"


def test_the_single_function_target_serves_mcp_at_any_path(tmp_path: Path) -> None:
    env = {"WORK_DIR": str(tmp_path / "storage"), "INDEXING_ENABLED": "false"}
    service = ServiceProcess(env, tmp_path / "service.log", target="mcp").start()
    try:
        async def work(client: Client) -> tuple[Any, ...]:
            listed = await client.list_tools()
            workspaces = structured(await client.call_tool("list_workspaces", {}))
            search = await client.call_tool("search_code", {"query": "x", "workspace_path": SHOP})
            return listed, workspaces, search

        listed, workspaces, search = session(service.url + "/", work, key=None)  # AUTH_MODE=none: tenant ""
        assert {tool.name for tool in listed.tools} == TOOLS and workspaces["workspaces"] == []
        assert "SEARCH_UNAVAILABLE" in error_text(search)
        assert requests.get(service.url + "/health", timeout=10).status_code == 200
    finally:
        assert service.stop() == 0
