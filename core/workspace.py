"""Applying a bundle's operations to the stored workspace tree, and listing it.

Applying happens in two phases so that a replay after a crash ends exactly like
one clean run. `make_plan` looks at the tree once, before anything is written,
and decides every action and every count; the plan is stored write-once with
the claim. `execute` then carries it out in an order that is safe to repeat:

    1. removals deleted paths (so a file may become a folder and back)
    2. copies   moves without content: source -> destination (skipped if the
                destination already holds the expected bytes)
    3. writes   created / updated / moved-with-content, from the staged members
    4. deletes  move sources not written again in this bundle

Sources are removed only in step 4, after every copy landed, so a replay that
finds a source gone finds its destination already in place. Cost is at most one
HEAD per operation (a folder with many of the bundle's paths below it is listed
once instead, and only the files found there get a HEAD): it grows with the delta
and the folders it touches, never with the whole workspace.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import BaseModel

from core.bundle import Bundle
from core.keys import stash_key, tree_key, tree_prefix
from core.models import Operation, OperationFailure, ProcessedOperations
from core.storage import FolderEntries, ObjectInfo, ObjectNotFound, ObjectStore, PathConflict

log = logging.getLogger(__name__)
LIST_FROM = 8  # paths under one folder from which one listing costs less than a HEAD each
NO_ENTRIES = FolderEntries(files=frozenset(), folders=frozenset())
T = TypeVar("T")
R = TypeVar("R")


class Copy(BaseModel):
    source: str
    source_key: str
    dest: str
    sha1: str


class Write(BaseModel):
    path: str
    member: str
    sha1: str
    replaces: bool = False  # the tree held a file at `path` before this bundle
    moved_from: str | None = None


class ApplyPlan(BaseModel):
    """Every action and count for one bundle, decided before the first write."""

    bundle_id: str
    removals: list[str] = []  # deleted paths: cleared first, making way for writes
    copies: list[Copy] = []
    writes: list[Write] = []
    deletes: list[str] = []  # move sources: removed last, after every copy landed
    stashed: list[str] = []
    processed: ProcessedOperations = ProcessedOperations()
    failures: list[OperationFailure] = []
    # size of every file the bundle names that the tree held before it (None in plans
    # stored before this field existed): lets indexing read the replaced versions
    sizes_before: dict[str, int] | None = None


def parallel_map(store: ObjectStore, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`map` with up to `store.parallel_io` storage round trips in flight; order is kept."""
    items = list(items)
    workers = min(store.parallel_io, len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def make_plan(store: ObjectStore, ws: str, bundle: Bundle) -> ApplyPlan:
    ops = bundle.operations
    survey = _survey(store, ws, {p for op in ops for p in (op.target, op.source) if p})
    infos = survey.infos
    plan = ApplyPlan(bundle_id=bundle.bundle_id,
                     sizes_before={p: info.size for p, info in infos.items() if info is not None})
    written = {op.target for op in ops if op.operation != "deleted"}
    blocked = _blocked_paths(store, ws, ops, survey, written)
    for op in ops:
        if op.target in blocked:
            _fail(plan, op, blocked[op.target])
        else:
            _plan_one(plan, bundle, op, infos, written)
    _stash_overwritten_sources(store, ws, plan, written)
    return plan


@dataclass
class _Survey:
    """What the tree holds at some paths, found with as few requests as possible."""

    infos: dict[str, ObjectInfo | None]  # the file at each path, or None
    listings: dict[str, FolderEntries]  # the folders listed, by path ("" is the root)

    def is_folder(self, store: ObjectStore, ws: str, path: str) -> bool:
        """Whether a folder stands at `path` (which holds no file)."""
        parent, _, name = path.rpartition("/")
        listing = self.listings.get(parent)
        return name in listing.folders if listing else store.is_folder(tree_key(ws, path))

    def is_file(self, path: str) -> bool | None:
        """Whether a file stands at `path`; None when the survey did not look there."""
        if path in self.infos:
            return self.infos[path] is not None
        return self._listed_file(path)

    def _listed_file(self, path: str) -> bool | None:
        parent, _, name = path.rpartition("/")
        listing = self.listings.get(parent)
        return name in listing.files if listing else None


def _survey(store: ObjectStore, ws: str, paths: set[str]) -> _Survey:
    """A folder with `LIST_FROM` or more of `paths` anywhere below it is listed once,
    top-down from the tree's root, so a new file there costs no request of its own (on
    S3, a HEAD and a folder check saved each); a folder that its parent's listing does
    not show is known empty unlisted, and so is everything below it: a new subtree, or
    a bundle into a new workspace, costs one listing. Then only the paths that hold a
    file, or lie in folders nobody listed, get a HEAD."""
    below: Counter[str] = Counter()  # the paths at any depth under each folder ("" is the root)
    for path in paths:
        below.update(["", *_ancestors(path)])
    listings: dict[str, FolderEntries] = {}
    for depth in sorted({_depth(f) for f in below}):
        level = [f for f in below if _depth(f) == depth]
        todo = []
        for folder in level:
            parent, _, name = folder.rpartition("/")
            if folder and parent in listings and name not in listings[parent].folders:
                listings[folder] = NO_ENTRIES
            elif below[folder] >= LIST_FROM and (not folder or parent in listings):
                todo.append(folder)
        found = parallel_map(store, lambda f: store.list_folder(tree_key(ws, f + "/" if f else "")), todo)
        listings.update(zip(todo, found, strict=True))
    survey = _Survey(infos=dict.fromkeys(paths), listings=listings)
    to_head = [p for p in paths if survey._listed_file(p) is not False]
    survey.infos.update(zip(to_head, parallel_map(store, lambda p: store.head(tree_key(ws, p)), to_head),
                            strict=True))
    return survey


def _depth(folder: str) -> int:
    return folder.count("/") + 1 if folder else 0


def _ancestors(path: str) -> Iterator[str]:
    parts = path.split("/")
    for depth in range(1, len(parts)):
        yield "/".join(parts[:depth])


def _blocked_paths(
    store: ObjectStore,
    ws: str,
    ops: list[Operation],
    survey: _Survey,
    written: set[str],
) -> dict[str, str]:
    """New paths that cannot become files: a file of the tree stands where one of
    their folders must be, or a folder of the tree stands at the path itself.
    (The bundle's own deletions run before its writes, so they clear the way.)"""
    deleted = {op.target for op in ops if op.operation == "deleted"}
    fresh = [p for p in written if survey.infos[p] is None]
    parents = {a for p in fresh for a in _ancestors(p)} - written - deleted
    unknown = [a for a in parents if survey.is_file(a) is None]
    heads = parallel_map(store, lambda a: store.head(tree_key(ws, a)), unknown)
    files = {a for a in parents if survey.is_file(a)}
    files.update(a for a, info in zip(unknown, heads, strict=True) if info is not None)

    def stays_a_folder(path: str) -> bool:
        """A folder of the tree that this bundle's deletions do not empty completely."""
        if not survey.is_folder(store, ws, path):
            return False
        inside = tree_key(ws, path) + "/"
        return any(key[len(tree_key(ws, "")):] not in deleted for key in store.list(inside))

    folders = parallel_map(store, stays_a_folder, fresh)
    blocked = {p: "a folder of the workspace stands at this path"
               for p, folder in zip(fresh, folders, strict=True) if folder}
    for path in fresh:
        if any(a in files for a in _ancestors(path)):
            blocked[path] = "a file of the workspace stands where this path needs a folder"
    return blocked


def _plan_one(
    plan: ApplyPlan,
    bundle: Bundle,
    op: Operation,
    infos: dict[str, ObjectInfo | None],
    written: set[str],
) -> None:
    counts = plan.processed
    current = infos[op.target]
    if op.operation == "deleted":
        if current is None:
            counts.skipped += 1
        else:
            plan.removals.append(op.target)
            counts.deleted += 1
        return
    staged = bundle.content(op)
    if op.operation == "moved":
        if staged is None and not _plan_copy(plan, op, infos[op.source], current):
            return
        if op.source not in written:
            plan.deletes.append(op.source)
        if staged is None:
            return
    assert staged is not None
    kind: Literal["created", "updated", "moved"] = op.operation
    if kind != "moved" and current is not None and current.sha1 == staged.sha1:
        counts.skipped += 1
        return
    plan.writes.append(Write(
        path=op.target, member=f"files/{kind}/{op.target}", sha1=staged.sha1,
        replaces=current is not None, moved_from=op.source if kind == "moved" else None,
    ))
    setattr(counts, kind, getattr(counts, kind) + 1)


def _plan_copy(
    plan: ApplyPlan, op: Operation, source: ObjectInfo | None, dest: ObjectInfo | None
) -> bool:
    """Plan a move without content; False when it cannot be done."""
    if source is None:
        if dest is not None and op.sha1 is not None and dest.sha1 == op.sha1:
            plan.processed.moved += 1
            return True
        _fail(plan, op, "source_path is not on the server and no content was sent")
        return False
    if op.sha1 is not None and source.sha1 is not None and source.sha1 != op.sha1:
        _fail(plan, op, "content_hash differs from the server's copy of source_path")
        return False
    plan.copies.append(Copy(source=op.source, source_key="", dest=op.target, sha1=source.sha1 or ""))
    plan.processed.moved += 1
    return True


def _stash_overwritten_sources(
    store: ObjectStore, ws: str, plan: ApplyPlan, written: set[str]
) -> None:
    """Copy move sources that this bundle also overwrites (renames in a chain or a
    swap) aside first, so every copy reads the pre-bundle bytes whatever the order."""
    for number, step in enumerate(plan.copies):
        step.source_key = tree_key(ws, step.source)
        if step.source in written:
            stash = stash_key(ws, plan.bundle_id, number)
            store.copy(step.source_key, stash)
            step.source_key = stash
            plan.stashed.append(stash)


def _fail(plan: ApplyPlan, op: Operation, reason: str) -> None:
    plan.failures.append(OperationFailure(operation=op.operation, path=op.target, reason=reason))
    plan.processed.failed += 1


def execute(
    store: ObjectStore, ws: str, plan: ApplyPlan, bundle: Bundle, heartbeat: Callable[[], None]
) -> None:
    """Carry out `plan`; safe to run again after a crash part-way through."""

    def copy(step: Copy) -> None:
        dest = store.head(tree_key(ws, step.dest))
        if dest is not None and step.sha1 and dest.sha1 == step.sha1:
            return
        try:
            store.copy(step.source_key, tree_key(ws, step.dest))
        except ObjectNotFound:
            if dest is None:
                raise
        except PathConflict:  # as for writes: never let one path wedge the workspace
            log.warning("skipped %s: it conflicts with a file or folder of the tree", step.dest)

    def write(step: Write) -> None:
        staged = bundle.staged[step.member]
        try:
            store.put_file(tree_key(ws, step.path), staged.path, step.sha1, consume=True)
        except PathConflict:  # planning refuses these; a tree changed by hand can still hold one
            log.warning("skipped %s: it conflicts with a file or folder of the tree", step.path)

    parallel_map(store, lambda path: store.delete(tree_key(ws, path)), plan.removals)
    parallel_map(store, copy, plan.copies)
    heartbeat()
    for batch in _batches(plan.writes, 512):
        parallel_map(store, write, batch)
        heartbeat()
    parallel_map(store, lambda path: store.delete(tree_key(ws, path)), plan.deletes)


def read_before(
    store: ObjectStore, ws: str, plan: ApplyPlan, paths: list[str], max_bytes: int
) -> dict[str, bytes]:
    """The bytes the tree held at `paths` before this bundle, for those that held a
    file of at most `max_bytes`. Before the first write of `execute` this is the tree
    itself; a stashed move source is read from its stash, which stays put until the
    commit. Once `execute` has run part-way, a path may already hold its new bytes,
    or none: callers must accept either (indexing does, see `core.indexing.sync`)."""
    stashes = {c.source: c.source_key for c in plan.copies if c.source_key in plan.stashed}
    sizes = plan.sizes_before

    def wanted(path: str) -> bool:
        return sizes is None or sizes.get(path, max_bytes + 1) <= max_bytes

    def read(path: str) -> bytes | None:
        try:
            body = store.get(stashes.get(path) or tree_key(ws, path)).body
        except ObjectNotFound:
            return None
        return body if len(body) <= max_bytes else None

    todo = sorted({p for p in paths if wanted(p)})
    bodies = parallel_map(store, read, todo)
    return {p: body for p, body in zip(todo, bodies, strict=True) if body is not None}


def _batches(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def list_files(store: ObjectStore, ws: str, after: str, limit: int) -> tuple[dict[str, str], str]:
    """Up to `limit` `{path: "sha1:<hex>"}` after path `after`, and the last path listed."""
    prefix = tree_prefix(ws)
    paths: list[str] = []
    for key in store.list(prefix, start_after=prefix + after if after else ""):
        paths.append(key[len(prefix) :])
        if len(paths) >= limit:
            break
    infos = parallel_map(store, lambda p: store.head(tree_key(ws, p)), paths)
    files = {p: f"sha1:{info.sha1}" for p, info in zip(paths, infos, strict=True) if info and info.sha1}
    return files, paths[-1] if len(paths) >= limit else ""
