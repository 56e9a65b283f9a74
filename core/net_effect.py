"""What a bundle's operations do when applied in the order listed (wire-format.md,
"One path, several operations: apply in order").

The existing clients name one path several times: a pure rename arrives as
`created b`, `moved a→b`, `deleted a`, and a folder rename names each of its
files three times. Their own server applies the list in order, each operation on
the tree the previous ones left, so a bundle means the net effect of that
sequence. `replay` computes it on a picture of the tree (what the planning
survey found at every path the bundle names), before anything is written:

    created, updated   the path holds the shipped content
    moved S→T          the tree's bytes at S (if the picture has S and they match
                       the declared hash) are renamed to T; otherwise the content
                       shipped under files/moved/T is written there and S is gone;
                       with neither the operation fails and changes nothing
                       (a repeat of a move already made, T holding the declared
                       bytes and S gone, is not a failure)
    deleted            the path holds nothing; already nothing is no failure

Bytes keep their identity through renames (`Held` names the path whose
pre-bundle bytes they are), so a rename, a rename chain and a folder rename stay
moves for the index: their vectors are re-pointed, nothing is embedded. A path
that cannot hold a file once the sequence has run (a file/folder collision) is
failed by `NetEffect.fail`, which puts the bytes renamed there back at their
source, so no file is ever lost to a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from core.bundle import StagedFile
from core.models import Operation, OperationFailure, OperationKind

ShippedKind = Literal["created", "updated", "moved"]


@dataclass(frozen=True)
class Held:
    """The bytes the tree held at `origin` before the bundle."""

    origin: str
    sha1: str | None


@dataclass(frozen=True)
class Shipped:
    """Content the bundle carries; `origin` is the path whose pre-bundle bytes a move
    with content replaced (its vectors can be reused for identical chunks)."""

    member: str
    sha1: str
    kind: ShippedKind
    origin: str | None = None


Value = Held | Shipped


@dataclass
class NetEffect:
    """Where every path the bundle names ends, and the operations that failed."""

    before: dict[str, Held]  # the named paths that held a file before the bundle
    after: dict[str, Value | None]  # every named path after the whole sequence
    targets: set[str]  # paths an operation wrote or deleted (not merely moved away)
    last_kind: dict[str, OperationKind] = field(default_factory=dict)
    failures: list[OperationFailure] = field(default_factory=list)

    def fail(self, path: str, reason: str) -> None:
        """`path` keeps what it held before; bytes renamed there go back to their source."""
        value = self.after[path]
        self.failures.append(OperationFailure(operation=self.last_kind.get(path, "created"),
                                              path=path, reason=reason))
        self.after[path] = self.before.get(path)
        self.targets.discard(path)  # counted as failed, not also as skipped
        origin = value.origin if value is not None else None
        if origin is not None and origin != path and self.after.get(origin) is None and origin in self.before:
            self.after[origin] = self.before[origin]

    def landed(self) -> dict[str, str]:
        """Pre-bundle bytes that end at another path (moves): origin -> destination."""
        moved: dict[str, str] = {}
        for path, value in self.after.items():
            if value is None or _same_bytes(value, self.before.get(path)):
                continue
            if isinstance(value, Held) and value.origin != path:
                moved[value.origin] = path
            elif isinstance(value, Shipped) and value.kind == "moved" and value.origin not in (None, path):
                assert value.origin is not None
                moved.setdefault(value.origin, path)
        return {origin: dest for origin, dest in moved.items() if self.after.get(origin) is None}


def sha1_of(value: Value | None) -> str | None:
    return None if value is None else value.sha1


def _same_bytes(value: Value | None, before: Held | None) -> bool:
    if value is None or before is None:
        return value is None and before is None
    return value == before or (value.sha1 is not None and value.sha1 == before.sha1)


def unchanged(effect: NetEffect, path: str) -> bool:
    """Whether `path` ends holding exactly what it held before the bundle."""
    return _same_bytes(effect.after.get(path), effect.before.get(path))


def replay(
    ops: list[Operation],
    content: Callable[[Operation], StagedFile | None],
    held: dict[str, str | None],
) -> NetEffect:
    """Apply `ops` in order to a picture of the tree: `held` maps each path the
    operations name at which the tree holds a file to that file's SHA-1 (None when
    unknown); the picture holds nothing at the other paths they name."""
    before = {p: Held(p, sha) for p, sha in held.items()}
    effect = NetEffect(before=before, after=dict(before), targets=set())
    for op in ops:
        for path in (op.target, op.source) if op.operation == "moved" else (op.target,):
            effect.after.setdefault(path, None)
    after = effect.after
    for op in ops:
        target = op.target
        if op.operation == "deleted":
            after[target] = None
        elif op.operation in ("created", "updated"):
            staged = content(op)
            assert staged is not None  # the reader refuses a write without content
            after[target] = Shipped(member=f"files/{op.operation}/{target}", sha1=staged.sha1,
                                    kind=op.operation)
        else:
            reason = _move(after, op, content(op))
            if reason is not None:
                effect.failures.append(OperationFailure(operation="moved", path=target, reason=reason))
                continue
        effect.targets.add(target)
        effect.last_kind[target] = op.operation
    return effect


def _move(after: dict[str, Value | None], op: Operation, staged: StagedFile | None) -> str | None:
    """One move on the picture; the reason it fails, or None."""
    source, target = op.source, op.target
    current = after[source]
    wanted = staged.sha1 if staged is not None else op.sha1
    if current is not None and (wanted is None or current.sha1 is None or current.sha1 == wanted):
        if source != target:
            after[target], after[source] = current, None
        return None
    if staged is not None:
        origin = current.origin if current is not None else None
        after[target] = Shipped(member=f"files/moved/{target}", sha1=staged.sha1, kind="moved",
                                origin=origin)
        if current is not None and source != target:
            after[source] = None
        return None
    if current is None and op.sha1 is not None and sha1_of(after[target]) == op.sha1:
        return None  # already moved: a client repeating a move the tree shows done
    if current is None:
        return "source_path is not on the server and no content was sent"
    return "content_hash differs from the server's copy of source_path"
