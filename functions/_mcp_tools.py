"""The MCP server's tools: core's read-only answers, for the tenant `functions.mcp` authenticated.

Each tool reads the tenant from the WSGI environ of its HTTP request (set by the
handler after authenticating; a client cannot set it: headers arrive as HTTP_*),
calls core, and answers its dict as structured output. A `DeltaError` becomes a
tool error reading "CODE: message", so the assistant can tell a typo from an outage.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from core import __version__, views
from core.context import service_context
from core.errors import DeltaError
from core.search import MAX_LIMIT, parse_search
from functions.mcp import TENANT

INSTRUCTIONS = """\
Code search over workspaces uploaded to this service (the caller's own only).
Start with list_workspaces to learn the workspace_path values, or use the one the user names.
search_code finds code chunks (path, start_line, end_line, snippet); open a hit with
read_file(workspace_path, path, start_line, end_line) to see more than the snippet.
search_commits finds commits of the workspace's git history by what their message and diff say.
workspace_status tells whether the last upload is in (last_sequence, pending_operations)."""

WorkspacePath = Annotated[str, Field(min_length=1, description="the workspace as uploaded: /work/myrepo")]
OptionalWorkspace = Annotated[str | None, Field(
    description="the workspace as uploaded, e.g. /work/myrepo; give it or collection_name")]
RepoId = Annotated[str | None, Field(
    description="the repo identity it was uploaded with (e.g. git:0123456789abcdef); usually omitted")]
Collection = Annotated[str | None, Field(
    description="search a whole collection (every workspace uploaded into it) instead of one workspace")]
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description="how many hits to return")]
Line = Annotated[int | None, Field(ge=1, description="1-based, inclusive")]
CodeQuery = Annotated[str, Field(min_length=1, description="what the code does or says, in words or names")]
CommitQuery = Annotated[str, Field(min_length=1, description="what the change did, in words")]
FilePath = Annotated[str, Field(min_length=1, description="the path in the workspace, as a hit names it")]
Prefix = Annotated[str | None, Field(description='only paths starting with it, e.g. "src/"')]
Glob = Annotated[str | None, Field(description='only paths a gitignore-style glob matches, e.g. "*.py"')]
Language = Annotated[str | None, Field(description='only chunks of this language, e.g. "python"')]
PageSize = Annotated[int | None, Field(ge=1, description="workspaces per page (default 100)")]
Cursor = Annotated[str | None, Field(description="a next_cursor an earlier call returned")]
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


def search_code(
    ctx: Context,
    query: CodeQuery,
    workspace_path: OptionalWorkspace = None,
    logical_repo_id: RepoId = None,
    collection_name: Collection = None,
    limit: Limit = 10,
    path_prefix: Prefix = None,
    path_glob: Glob = None,
    language: Language = None,
) -> dict[str, Any]:
    """Hybrid (semantic + lexical) search over the code of one uploaded workspace or collection.

    Returns {"hits": [{path, start_line, end_line, score, language, snippet, snippet_truncated,
    host_path, workspace_key}], ...}, best first. The snippet is at most 40 lines of the chunk:
    call read_file with the same workspace_path, the hit's path and its start_line/end_line
    (or a wider range) to read the code itself.
    """
    return _search(ctx, query=query, workspace_path=workspace_path, logical_repo_id=logical_repo_id,
                   collection_name=collection_name, limit=limit, path_prefix=path_prefix,
                   path_glob=path_glob, language=language, kind="code")


def search_commits(
    ctx: Context,
    query: CommitQuery,
    workspace_path: OptionalWorkspace = None,
    logical_repo_id: RepoId = None,
    collection_name: Collection = None,
    limit: Limit = 10,
) -> dict[str, Any]:
    """Search the git history uploaded with a workspace: commits whose message or diff match.

    Returns {"hits": [{commit_id, author, date, message, files, files_truncated, score,
    workspace_key}], ...}, best first. `files` are workspace paths: open one with read_file
    (it shows the file as last uploaded, not as of that commit).
    """
    return _search(ctx, query=query, workspace_path=workspace_path, logical_repo_id=logical_repo_id,
                   collection_name=collection_name, limit=limit, kind="commits")


def read_file(
    ctx: Context,
    workspace_path: WorkspacePath,
    path: FilePath,
    start_line: Line = None,
    end_line: Line = None,
    logical_repo_id: RepoId = None,
) -> dict[str, Any]:
    """Read one file of an uploaded workspace, as last uploaded: all of it or lines of it.

    Returns {"content", "start_line", "end_line", "total_lines", "size", "truncated", ...}.
    At most FILE_MAX_KB of text come back; when "truncated" is true, ask again with a
    start_line after the returned end_line.
    """
    context = service_context()
    return _answer(lambda: views.stored_file(context.store, context.settings, _tenant(ctx), workspace_path,
                                             logical_repo_id, path, start_line, end_line))


def list_workspaces(ctx: Context, limit: PageSize = None, cursor: Cursor = None) -> dict[str, Any]:
    """List the workspaces uploaded by the caller, one page at a time.

    Returns {"workspaces": [{workspace_path, logical_repo_id, workspace_key, collection_name,
    last_sequence, last_upload, pending}], "next_cursor"}; a non-null next_cursor means more:
    pass it back as cursor. Use a workspace_path from here with the other tools.
    """
    context = service_context()
    return _answer(lambda: views.list_workspaces(context.store, context.settings, _tenant(ctx),
                                                 cursor or "", limit))


def workspace_status(ctx: Context, workspace_path: WorkspacePath, logical_repo_id: RepoId = None
                     ) -> dict[str, Any]:
    """The upload state of one workspace: whether the latest changes are stored and searchable.

    Returns {"last_sequence", "last_upload", "pending_operations", "pending_bundle",
    "indexed_points", "collection_name", "source_path", ...}; last_sequence 0 means nothing
    was uploaded to this path yet. A pending bundle is being applied: search may lag it.
    """
    context = service_context()
    indexer = context.indexer
    counter = indexer.count_points if indexer is not None else None
    return _answer(lambda: views.status(context.store, context.settings, _tenant(ctx), workspace_path,
                                        logical_repo_id, count_points=counter))


TOOLS = (search_code, search_commits, read_file, list_workspaces, workspace_status)


def build_server() -> MCPServer:
    """The server with every tool. Built after `service_context()` has set up logging: the SDK's
    constructor calls `logging.basicConfig`, which would otherwise add a second, non-JSON handler."""
    service_context()
    server = MCPServer("delta-upload", version=__version__, instructions=INSTRUCTIONS,
                       subscriptions=False)  # no subscriptions/listen: it is an endless stream per call
    for tool in TOOLS:
        server.add_tool(tool, description=inspect.cleandoc(tool.__doc__ or ""), annotations=READ_ONLY)
    return server


def _tenant(ctx: Context) -> str:
    """The tenant the handler authenticated; a request without one is a bug, never tenant ""."""
    scope = getattr(ctx.request_context.request, "scope", None) or {}
    tenant = (scope.get("wsgi_environ") or {}).get(TENANT)
    if not isinstance(tenant, str):
        raise RuntimeError("an MCP tool ran without an authenticated tenant")
    return tenant


def _search(ctx: Context, **fields: Any) -> dict[str, Any]:
    """The search endpoint's answer to the same parameters (`core.search`)."""
    return _answer(lambda: service_context().searcher.search(_tenant(ctx), parse_search(fields)))


def _answer(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return call()
    except DeltaError as exc:
        raise ToolError(f"{exc.code}: {exc.message}") from None
