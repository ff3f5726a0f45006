"""Mends for two Kopf bugs that leave the operator alive and idle, applied before `kopf.run`.

1. A namespace created while the operator starts is never served (kopf 1.45.2,
`observation.namespace_observer`). With `--namespace` globs Kopf lists the namespaces, then
starts a watch that lists them again and follows events from there; a namespace made between the
two lists shows only in the second, whose entries Kopf ignores
(`process_discovered_namespace_event` skips events without a type), and no event follows for it.
The mend lets listed namespaces count. Seen in the e2e suite: a private operator, started and
given a namespace at once, never acted.

2. Kopf holds back every handler until each index has seen its first full listing: each watcher of
an indexed (resource, namespace) gets a hold, and so does each object met before the operator
was first fully indexed; the hold is released when the listing ends, or when the object's
indexers have run. A watcher stopped earlier never releases its holds (kopf 1.45.2,
`orchestration.spawn_missing_watchers` and `queueing.watcher`). That happens when a namespace
that matches `--namespace` globs goes away while its watchers are starting (a short-lived CI or
preview namespace, or one already Terminating when the operator starts): from then on no handler
runs at all, in any namespace, until a restart; Kopf alone logs nothing, and /healthz stays green.

The mend wraps Kopf's watcher: when it ends, however it ends, the holds it was given or made are
released. A namespace no longer served has no index entries left to wait for.

In case another path leaves a hold behind, `oldest_hold_seconds` says for how long the same hold
has held every handler back; the liveness probe (handlers.handlers_not_held_back) fails past
HOLD_LIMIT_SECONDS, so that Kubernetes restarts the operator instead of leaving it silent.

Beside the mends, `NoDiffBase` spares a cost: for every watch event Kopf deep-copies the object
into the "essence" it diffs against the last handled one, though only change-detecting handlers
(on.create/update/delete/resume/field, daemons, timers) read the diff; this operator has none
(a unit test keeps it so), and keeps no essence. And `count_watch_restarts` counts each time a
Kopf watch stream lists again (metrics.WATCH_RESTARTS): a steady rise is a connection to the API
server that keeps breaking. `server_label_selectors` reads the label filters of the registered
handlers from Kopf's registry, which has no public listing, so that the API server can filter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import kopf

from nemotron_operator.shell import metrics

log = logging.getLogger(__name__)

HOLD_LIMIT_SECONDS = 300.0  # a first listing takes seconds, even of a large cluster
_holds_seen: list[Any] = []  # Kopf's set of index holds, once a watcher has been given it
_first_seen: dict[Any, float] = {}  # hold -> when oldest_hold_seconds first found it held


class _RecordedHolds:
    """Kopf's set of index holds, as one watcher sees it: the holds it makes are remembered."""

    def __init__(self, holds: Any) -> None:
        self._holds = holds
        self.made: list[Any] = []

    async def make_toggle(self, *args: Any, **kwargs: Any) -> Any:
        hold = await self._holds.make_toggle(*args, **kwargs)
        self.made.append(hold)
        return hold

    def __getattr__(self, name: str) -> Any:
        return getattr(self._holds, name)


def watcher_releasing_its_holds(kopf_watcher: Any) -> Any:
    """Kopf's `queueing.watcher`, but releasing its index holds when it ends."""

    async def watcher(
        *, operator_indexed: Any = None, resource_indexed: Any = None, **kwargs: Any
    ) -> None:
        if operator_indexed is None:
            await kopf_watcher(resource_indexed=resource_indexed, **kwargs)
            return
        _holds_seen[:] = [operator_indexed]
        recorded = _RecordedHolds(operator_indexed)
        try:
            await kopf_watcher(
                operator_indexed=recorded, resource_indexed=resource_indexed, **kwargs
            )
        finally:
            held = [h for h in (resource_indexed, *recorded.made) if h is not None]
            try:  # shielded: the watcher is usually ending because it was cancelled
                await asyncio.shield(operator_indexed.drop_toggles(held))
            except asyncio.CancelledError:
                raise
            except Exception:  # another Kopf's holds: never fail Kopf's task because of the mend
                log.exception("could not release the index holds of a stopped Kopf watcher")

    watcher.__wrapped__ = kopf_watcher  # type: ignore[attr-defined]
    return watcher


# Told the namespaces Kopf serves, on its loop, each time its namespace watch revises them
# (`--namespace` globs); the controller starts its own watches there (owned_children).
served_namespaces_revised: list[Callable[[set[str]], None]] = []


def named_namespaces(patterns: Iterable[str]) -> set[str]:
    """The `--namespace` values that name one namespace, by Kopf's own rule (no glob, no
    negation, no list): served even when Kopf may not list namespaces, and never revised."""
    from kopf._cogs.structs import references

    return set(references.select_specific_namespaces(patterns))


async def namespace_event_including_listed(
    *, raw_event: Any, namespaces: Any, insights: Any, **_: Any
) -> None:
    """Kopf's `process_discovered_namespace_event`, but a listed namespace (an event without a
    type, from the watch's own list) counts like an added one."""
    from kopf._core.reactor import observation

    async with insights.revised:
        observation.revise_namespaces(
            raw_events=[raw_event], insights=insights, namespaces=namespaces
        )
        insights.revised.notify_all()
    for listener in served_namespaces_revised:
        listener({n for n in insights.namespaces if isinstance(n, str)})


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf's diff base for an operator without change-detecting handlers: none is built,
    stored or read (Kopf then sees no change, and needs none)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return None

    def fetch(self, *, body: kopf.Body) -> None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


def apply() -> None:
    """Mend Kopf, once, and count its watch restarts (metrics). Another Kopf layout is left
    alone, with a warning."""
    count_watch_restarts()
    try:
        from kopf._core.reactor import observation, queueing
    except ImportError:
        observation = queueing = None  # type: ignore[assignment]
    kopf_watcher = getattr(queueing, "watcher", None)
    if kopf_watcher is None or not hasattr(observation, "process_discovered_namespace_event"):
        log.warning("Kopf's watcher was not found; its index holds are not mended")
        return
    if not hasattr(kopf_watcher, "__wrapped__"):
        queueing.watcher = watcher_releasing_its_holds(kopf_watcher)
    kopf_processor = observation.process_discovered_namespace_event
    if kopf_processor is not namespace_event_including_listed:
        namespace_event_including_listed.__wrapped__ = kopf_processor  # type: ignore[attr-defined]
        observation.process_discovered_namespace_event = namespace_event_including_listed


def count_watch_restarts() -> None:
    """Count each time one of Kopf's watch streams lists again (after a 410 Gone or a lost
    connection): Kopf's `infinite_watch` calls `continuous_watch` anew for each."""
    try:
        from kopf._cogs.clients import watching
    except ImportError:
        watching = None  # type: ignore[assignment]
    continuous_watch = getattr(watching, "continuous_watch", None)
    if continuous_watch is None:
        log.warning("Kopf's continuous_watch was not found; its watch restarts are not counted")
    elif not hasattr(continuous_watch, "__wrapped__"):
        watching.continuous_watch = metrics.counting_kopf_restarts(continuous_watch)


def oldest_hold_seconds(now: float) -> float:
    """For how long (seconds on the `now` clock, between calls) the oldest of Kopf's index holds
    has been held: 0 when none is. Call it from the event loop, where Kopf changes the holds."""
    held = [hold for holds in _holds_seen for hold in holds if hold.is_off()]
    for gone in set(_first_seen) - set(held):
        del _first_seen[gone]
    for hold in held:
        _first_seen.setdefault(hold, now)
    return max((now - since for since in _first_seen.values()), default=0.0)


def server_label_selectors(registry: kopf.OperatorRegistry) -> dict[Any, str]:
    """The label selector the API server may apply to each resource the registry's handlers watch:
    the labels every handler of that resource filters on, when all filter on the same ones.
    Pods get none (the GPU inventory counts every pod holding GPUs), nor NemotronDeployments.
    Kopf lists no handlers publicly: its registry's indexing and watching parts are read (kopf
    1.45; handlers.filter_on_the_server hands the result to Kopf's settings)."""
    labels_by_resource: dict[Any, list[Any]] = {}
    for handler in [
        *registry._indexing.get_all_handlers(),
        *registry._watching.get_all_handlers(),
    ]:
        labels_by_resource.setdefault(handler.selector, []).append(handler.labels)
    selectors = {}
    for resource, filters in labels_by_resource.items():
        first = filters[0]
        if not first or any(f != first for f in filters):
            continue
        terms = [_label_term(key, value) for key, value in first.items()]
        if all(terms):
            selectors[resource] = ",".join(str(term) for term in terms)
    return selectors


def _label_term(key: str, value: Any) -> str | None:
    """`key: value` of a Kopf label filter as a label selector term (None: it has none)."""
    if value is kopf.PRESENT:
        return key
    if value is kopf.ABSENT:
        return f"!{key}"
    return f"{key}={value}" if isinstance(value, str) else None
