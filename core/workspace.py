"""Applying a bundle's operations to the stored workspace tree, and listing it.

Applying happens in two phases so that a replay after a crash ends exactly like
one clean run. `make_plan` looks at the tree once, before anything is written,
replays the operations in the order listed on that picture (`core.net_effect`:
a bundle means the net effect of its sequence), and decides every action and
every count; the plan is stored write-once with the claim. `execute` then
carries it out in an order that is safe to repeat:

    1. removals paths that end empty (so a file may become a folder and back),
                and move sources that stand in the way of a write (stashed first)
    2. copies   pre-bundle bytes that end at another path (renames, also chained
                or swapped; stashed when the bundle overwrites their source):
                skipped if the destination already holds the expected bytes
    3. writes   content the bundle ships, from the staged members
    4. deletes  the other move sources, whose bytes now stand elsewhere

Sources are removed only in step 4, after every copy landed, so a replay that
finds a source gone finds its destination already in place. Every write goes
through the claim's `core.fence.Fence`, conditional on the etag the survey saw
at its path (`etags_before`), in sections of `batch_files` writes. Cost is at most one
HEAD per path named (a folder with many of the bundle's paths below it is listed
once instead, and only the files found there get a HEAD): it grows with the delta
and the folders it touches, never with the whole workspace.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from core.bundle import Bundle
from core.keys import stash_key, tree_key, tree_prefix
from core.models import OperationFailure, ProcessedOperations
from core.net_effect import Held, NetEffect, replay, unchanged
from core.storage import Expect, FolderEntries, ObjectInfo, ObjectNotFound, ObjectStore, PathConflict

if TYPE_CHECKING:
    from core.fence import Fence

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
    # etag of every such file at planning (None in older plans): the condition each
    # tree write of the plan carries, so a claim that lost its lease cannot land one
    etags_before: dict[str, str] | None = None

    def expect(self, path: str) -> Expect | None:
        """The state `path` must be in for this plan's write there to take effect."""
        return None if self.etags_before is None else Expect(self.etags_before.get(path))


def parallel_map(store: ObjectStore, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`map` with up to `store.parallel_io` storage round trips in flight; order is kept."""
    items = list(items)
    workers = min(store.parallel_io, len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def make_plan(store: ObjectStore, ws: str, bundle: Bundle, owner: str) -> ApplyPlan:
    """Survey the paths the bundle names, replay its operations in order on that
    picture (`core.net_effect`), fail what cannot stand in the final tree, and turn
    each path's net change into actions. Writes nothing: the stashes it names (after
    `owner`, the claim planning) are made by `stash_sources`."""
    ops = bundle.operations
    survey = _survey(store, ws, {p for op in ops for p in (op.target, op.source) if p})
    held = {p: info for p, info in survey.infos.items() if info is not None}
    plan = ApplyPlan(bundle_id=bundle.bundle_id, sizes_before={p: i.size for p, i in held.items()},
                     etags_before={p: i.etag for p, i in held.items()})
    effect = replay(ops, bundle.content, {p: info.sha1 for p, info in held.items()})
    _fail_collisions(store, ws, effect, survey)
    vacated = _plan_changes(plan, effect)
    _order_sources(ws, plan, vacated, owner)
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


def _fail_collisions(store: ObjectStore, ws: str, effect: NetEffect, survey: _Survey) -> None:
    """Fail the new paths that cannot be files in the final tree, until none is left:
    first those where a folder of the tree keeps a file (one the bundle does not
    remove), then those below a path that ends a file. Failing a path can only bring
    pre-bundle files back, so the new paths only shrink and the loop ends."""
    after = effect.after
    fresh = sorted(p for p, value in after.items() if value is not None and p not in effect.before)
    folders = parallel_map(store, lambda p: survey.is_folder(store, ws, p), fresh)
    listed = [p for p, folder in zip(fresh, folders, strict=True) if folder]
    inside = dict(zip(listed, parallel_map(store, lambda p: _files_below(store, ws, p), listed), strict=True))
    parents = sorted({a for p in fresh for a in _ancestors(p)} - set(after))
    unknown = [a for a in parents if survey.is_file(a) is None]
    tree_files = {a for a in parents if survey.is_file(a)}
    tree_files.update(a for a, info in zip(unknown, parallel_map(
        store, lambda a: store.head(tree_key(ws, a)), unknown), strict=True) if info is not None)

    def is_file(path: str) -> bool:
        return after[path] is not None if path in after else path in tree_files

    while True:
        fresh = [p for p in fresh if after[p] is not None]
        blocked = {p: "a folder of the workspace stands at this path" for p in fresh
                   if any(f not in after or after[f] is not None for f in inside.get(p, ()))}
        if not blocked:
            blocked = {p: "a file of the workspace stands where this path needs a folder" for p in fresh
                       if any(is_file(a) for a in _ancestors(p))}
        if not blocked:
            return
        for path, reason in blocked.items():
            effect.fail(path, reason)


def _files_below(store: ObjectStore, ws: str, folder: str) -> list[str]:
    base = tree_key(ws, "")
    return [key[len(base):] for key in store.list(tree_key(ws, folder) + "/")]


def _plan_changes(plan: ApplyPlan, effect: NetEffect) -> list[str]:
    """Actions and counts for each path's net change; returns the move sources whose
    bytes land elsewhere (removed once nothing reads them)."""
    counts = plan.processed
    landed = effect.landed()
    vacated = []
    for path in sorted(effect.after):
        value, before = effect.after[path], effect.before.get(path)
        if unchanged(effect, path):
            counts.skipped += path in effect.targets
        elif value is None:
            if path in landed:
                vacated.append(path)
            else:
                plan.removals.append(path)
                counts.deleted += 1
        elif isinstance(value, Held):
            plan.copies.append(Copy(source=value.origin, source_key="", dest=path, sha1=value.sha1 or ""))
            counts.moved += 1
        else:
            plan.writes.append(Write(path=path, member=value.member, sha1=value.sha1,
                                     replaces=before is not None, moved_from=value.origin))
            kind = "moved" if value.kind == "moved" else "updated" if before is not None else "created"
            setattr(counts, kind, getattr(counts, kind) + 1)
    plan.failures = effect.failures
    counts.failed = len(effect.failures)
    return vacated


def _order_sources(ws: str, plan: ApplyPlan, vacated: list[str], owner: str) -> None:
    """Name stashes for the move sources that this bundle overwrites (rename chains, swaps,
    a path renamed away and created anew) or that must go before the writes (a file
    that becomes a folder, a folder that becomes a file), so every copy reads the
    pre-bundle bytes whatever the order. Other move sources are removed last, after
    every copy landed: a replay that finds a source gone finds its destination done."""
    written = {c.dest for c in plan.copies} | {w.path for w in plan.writes}
    folders = {a for p in written for a in _ancestors(p)}
    early = {p for p in vacated if p in folders or any(a in written for a in _ancestors(p))}
    for number, step in enumerate(plan.copies):
        step.source_key = tree_key(ws, step.source)
        if step.source in written or step.source in early:
            stash = stash_key(ws, plan.bundle_id, owner, number)
            step.source_key = stash
            plan.stashed.append(stash)
    plan.removals.extend(p for p in vacated if p in early)
    plan.deletes = [p for p in vacated if p not in early]


def stash_sources(store: ObjectStore, ws: str, plan: ApplyPlan, fence: Fence) -> None:
    """Copy aside the pre-bundle bytes of the sources `make_plan` stashed; the keys
    are the planning claim's own, so the copies need no condition."""
    stashed = set(plan.stashed)
    todo = [c for c in plan.copies if c.source_key in stashed]
    if todo:
        with fence.section():
            parallel_map(store, lambda c: fence.copy(tree_key(ws, c.source), c.source_key, None, None), todo)


def execute(
    store: ObjectStore, ws: str, plan: ApplyPlan, bundle: Bundle, fence: Fence, *,
    batch_files: int = 512, checkpoint: Callable[[str], None] = lambda point: None,
) -> None:
    """Carry out `plan`; safe to run again after a crash part-way through. `checkpoint`
    is called between write batches ("mid_apply") and inside the first batch of
    writes, or of copies if there are none ("mid_batch")."""

    def remove(path: str) -> None:
        fence.delete(tree_key(ws, path), plan.expect(path))

    first: list[Copy] | list[Write] = plan.writes or plan.copies
    marker = first[min(len(first), batch_files) // 2] if first else None  # where "mid_batch" is

    def copy(step: Copy) -> None:
        if step is marker:
            checkpoint("mid_batch")
        key = tree_key(ws, step.dest)
        dest = store.head(key)
        if dest is not None and step.sha1 and dest.sha1 == step.sha1:
            return
        try:
            fence.copy(step.source_key, key, step.sha1, plan.expect(step.dest))
        except ObjectNotFound:
            if dest is None:
                raise
        except PathConflict:  # as for writes: never let one path wedge the workspace
            log.warning("skipped %s: it conflicts with a file or folder of the tree", step.dest)

    uses = Counter(w.member for w in plan.writes)  # a member renamed in the bundle may land twice

    def write(step: Write) -> None:
        if step is marker:
            checkpoint("mid_batch")
        staged = bundle.staged[step.member]
        try:
            fence.put_file(tree_key(ws, step.path), staged.path, step.sha1, plan.expect(step.path),
                           consume=uses[step.member] == 1)
        except PathConflict:  # planning refuses these; a tree changed by hand can still hold one
            log.warning("skipped %s: it conflicts with a file or folder of the tree", step.path)

    for removals in _batches(plan.removals, batch_files):
        with fence.section():
            parallel_map(store, remove, removals)
    for copies in _batches(plan.copies, batch_files):
        with fence.section():
            parallel_map(store, copy, copies)
    checkpoint("mid_apply")
    for writes in _batches(plan.writes, batch_files):
        with fence.section():
            parallel_map(store, write, writes)
        checkpoint("mid_apply")
    for deletes in _batches(plan.deletes, batch_files):
        with fence.section():
            parallel_map(store, remove, deletes)


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
