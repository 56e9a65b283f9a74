"""Every object key of the storage layout is built here (docs/storage-layout.md).

    <prefix>/bundles/<ws>/<bundle_id>.tar.gz      raw bundles, write-once
    <prefix>/incoming/<ws>/<bundle_id>/<token>.tar.gz presigned direct uploads (token: the intent's)
    <prefix>/workspaces/<ws>/head.json            sequence record (CAS)
    <prefix>/workspaces/<ws>/journal/<seq>.json   one entry per applied bundle
    <prefix>/workspaces/<ws>/results/<id>.json    outcome of a bundle, by bundle id
    <prefix>/workspaces/<ws>/intents/<id>.json    fields of a direct upload, by bundle id
    <prefix>/workspaces/<ws>/refused/<id>.json    why a direct upload was refused
    <prefix>/workspaces/<ws>/plans/<id>.json      apply plan of a claimed bundle
    <prefix>/workspaces/<ws>/plans/<id>.stash/<n> move sources the bundle overwrites
    <prefix>/workspaces/<ws>/tree/<path>          the workspace files
    <prefix>/workspaces/<ws>/commits/<commit>.json one git commit a client sent, write-once
    <prefix>/aliases/<path-key>.json              workspace path -> workspace key
    <prefix>/tenants/<tenant-key>/workspaces/<ws>.json a tenant's workspace: path and repo id
    <prefix>/reindex/<collection-key>.json        a served collection's rebuild: state and cursor (CAS)
    <prefix>/auth/first-user.json                 write-once: who the first (admin) user is
    <prefix>/auth/users/<name>.json               one user: tenant, admin, argon2 hash (write-once per name)
    <prefix>/auth/sessions/<sha256 hex>.json      one session, by the digest of its id (CAS)
    <prefix>/auth/login-failures/<kind>-<hex>.json failed logins of a user name or address (CAS)
    <prefix>/admin/csrf-secret.json               write-once: the admin console's CSRF secret

The `<prefix>` belongs to the storage backend; keys here are relative to it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from core.errors import InvalidRequest

PATH_IDENTITY = "path:"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
BUNDLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # use fullmatch
WORKSPACE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,47}-[0-9a-f]{16}")  # what workspace_key builds
UPLOAD_TOKEN = re.compile(r"[0-9a-f]{32}")  # an intent's secret: 128 random bits, as hex


def _digest(tag: str, *parts: str) -> str:
    """SHA-256 of the parts joined with NUL, a tag first: a fixed number of parts in
    which only the last may hold a NUL, so one input is one tuple (injective framing).
    Callers check their inputs; this refuses anything else rather than hash it."""
    if any("\0" in part for part in (tag, *parts[:-1])):
        raise InvalidRequest("a name or path holds a NUL character")
    return hashlib.sha256("\0".join((tag, *parts)).encode("utf-8")).hexdigest()[:16]


def _leaf(workspace_path: str) -> str:
    leaf = workspace_path.rstrip("/").rsplit("/", 1)[-1]
    return _UNSAFE.sub("-", leaf).strip("-.")[:48] or "workspace"


def normalise_workspace_path(workspace_path: str) -> str:
    """One spelling per path, the only place paths are made comparable (keys and aliases):
    Unicode NFC (macOS hands out NFD), `\\` read as `/`, empty and `.` components dropped,
    `..` resolved lexically and never above the root, no trailing slash. Symlinks are
    not resolved: the path is the client's name for its workspace, not ours to look up."""
    text = unicodedata.normalize("NFC", workspace_path.replace("\\", "/"))
    parts: list[str] = []
    for part in text.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return ("/" if text.startswith("/") else "") + "/".join(parts)


def workspace_key(tenant: str, workspace_path: str, logical_repo_id: str | None) -> str:
    """`<leaf>-<16 hex>`: readable, and distinct per tenant and repo identity. The
    identity is the repo id, else `path:` and the normalised path; a repo id spelt
    `path:…` is refused, so no repo id can stand for a path."""
    if logical_repo_id and logical_repo_id.startswith(PATH_IDENTITY):
        raise InvalidRequest(f"logical_repo_id must not start with {PATH_IDENTITY!r}")
    path = normalise_workspace_path(workspace_path)
    identity = logical_repo_id or PATH_IDENTITY + path
    return f"{_leaf(path)}-{_digest('ws', tenant, identity)}"


def alias_key(tenant: str, workspace_path: str) -> str:
    return f"aliases/{_digest('alias', tenant, normalise_workspace_path(workspace_path))}.json"


def tenant_workspaces_prefix(tenant: str) -> str:
    """Where a tenant's workspaces are listed (one record each, written on upload)."""
    return f"tenants/{_digest('tenant', tenant)}/workspaces/"


def tenant_workspace_key(tenant: str, ws: str) -> str:
    return f"{tenant_workspaces_prefix(tenant)}{ws}.json"


def raw_bundle_key(ws: str, bundle_id: str) -> str:
    return f"bundles/{ws}/{bundle_id}.tar.gz"


def incoming_key(ws: str, bundle_id: str, token: str) -> str:
    """Where a presigned PUT lands: the intent's random token makes the key unguessable."""
    return f"incoming/{ws}/{bundle_id}/{token}.tar.gz"


def parse_incoming_key(key: str) -> tuple[str, str, str] | None:
    """(ws, bundle_id, token) of an `incoming/<ws>/<bundle_id>/<token>.tar.gz` key, else
    None: exactly four segments, each matching its pattern in full (no `..`, no empties)."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "incoming" or not parts[3].endswith(".tar.gz"):
        return None
    ws, bundle_id, token = parts[1], parts[2], parts[3].removesuffix(".tar.gz")
    if WORKSPACE_KEY.fullmatch(ws) and BUNDLE_ID.fullmatch(bundle_id) and UPLOAD_TOKEN.fullmatch(token):
        return ws, bundle_id, token
    return None


def intent_key(ws: str, bundle_id: str) -> str:
    """The upload fields given when a direct-upload URL was handed out."""
    return f"workspaces/{ws}/intents/{bundle_id}.json"


def refusal_key(ws: str, bundle_id: str) -> str:
    """Why a directly uploaded bundle was refused (the event path has no client to tell)."""
    return f"workspaces/{ws}/refused/{bundle_id}.json"


def head_key(ws: str) -> str:
    return f"workspaces/{ws}/head.json"


def journal_key(ws: str, sequence: int) -> str:
    return f"workspaces/{ws}/journal/{sequence:012d}.json"


def result_key(ws: str, bundle_id: str) -> str:
    return f"workspaces/{ws}/results/{bundle_id}.json"


def plan_key(ws: str, bundle_id: str) -> str:
    return f"workspaces/{ws}/plans/{bundle_id}.json"


def stash_key(ws: str, bundle_id: str, owner: str, number: int) -> str:
    """Pre-bundle bytes of a move source that the same bundle overwrites, under the
    name of the claim that planned it: a late stash of a claim that lost its lease
    lands beside the taker's, never on it."""
    return f"{stash_prefix(ws, bundle_id)}{owner}/{number}"


def stash_prefix(ws: str, bundle_id: str) -> str:
    return f"workspaces/{ws}/plans/{bundle_id}.stash/"


def commit_key(ws: str, commit_id: str) -> str:
    """A commit by its id (`core.models.GitCommit`: hex digits only)."""
    return f"workspaces/{ws}/commits/{commit_id}.json"


def commits_prefix(ws: str) -> str:
    return f"workspaces/{ws}/commits/"


def reindex_prefix() -> str:
    return "reindex/"


def reindex_job_key(stored_collection: str) -> str:
    """The rebuild job of a served collection name (tenant included, `core.names`)."""
    return f"{reindex_prefix()}{_digest('reindex', stored_collection)}.json"


def tree_prefix(ws: str) -> str:
    return f"workspaces/{ws}/tree/"


def tree_key(ws: str, path: str) -> str:
    return tree_prefix(ws) + path


def first_user_key() -> str:
    return "auth/first-user.json"


def user_key(username: str) -> str:
    """Names are checked (core.auth.records.USERNAME) and compared case-insensitively."""
    return f"auth/users/{username.casefold()}.json"


def csrf_secret_key() -> str:
    """The admin console's CSRF secret, one per deployment (core.csrf)."""
    return "admin/csrf-secret.json"


def session_key(digest_hex: str) -> str:
    """A session by the SHA-256 of its id: the id itself is never stored."""
    return f"auth/sessions/{digest_hex}.json"


def login_failures_key(kind: str, subject: str) -> str:
    """Failed logins of a user name or client address (`kind`), by a digest of it."""
    return f"auth/login-failures/{kind}-{_digest('login', kind, subject.casefold())}.json"


# prefixes the retention sweep lists (core/retention.py) ------------------------------
WORKSPACES_PREFIX = "workspaces/"


def journal_prefix(ws: str) -> str:
    return f"workspaces/{ws}/journal/"


def journal_sequence(key: str) -> int | None:
    """The sequence number of a journal key, None for any other name."""
    name = key.rsplit("/", 1)[-1]
    digits = name.removesuffix(".json")
    return int(digits) if name.endswith(".json") and len(digits) == 12 and digits.isdigit() else None


def plans_prefix(ws: str) -> str:
    return f"workspaces/{ws}/plans/"


def intents_prefix(ws: str) -> str:
    return f"workspaces/{ws}/intents/"


def refusals_prefix(ws: str) -> str:
    return f"workspaces/{ws}/refused/"


def incoming_prefix(ws: str, bundle_id: str) -> str:
    """Every direct upload of one bundle, whichever intent's token named it."""
    return f"incoming/{ws}/{bundle_id}/"
