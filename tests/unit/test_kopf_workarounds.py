"""Kopf's watcher, stopped before its first listing, must not hold back every handler; and a
hold that stays for minutes fails the liveness probe.

Run against the installed Kopf's own watcher code; only the API stream is replaced, by one that
never finishes listing (a namespace deleted while its watchers start). `operator_indexed.is_on()`
is what Kopf's processing waits for before any handler runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.clients import watching
from kopf._cogs.structs import references
from kopf._core.reactor import observation, queueing

from nemotron_operator.shell import handlers, kopf_workarounds
from nemotron_operator.shell.kopf_workarounds import watcher_releasing_its_holds

PODS = references.Resource(group="", version="v1", plural="pods", namespaced=True)
POD_EVENT = {"type": "ADDED", "object": {"metadata": {"uid": "u-1", "name": "p", "namespace": "n"}}}


@pytest.fixture
def stream_that_never_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """Yields one object of the initial listing, then waits forever: LISTED never comes."""

    async def infinite_watch(**_: Any) -> AsyncIterator[Any]:
        yield POD_EVENT
        await asyncio.Event().wait()

    monkeypatch.setattr(watching, "infinite_watch", infinite_watch)


async def processor_that_never_indexes(**_: Any) -> None:
    await asyncio.Event().wait()  # the object's indexers never get to run


async def watching_a_namespace(watcher: Any) -> tuple[asyncio.Task[None], Any]:
    """`watcher` started for a namespace's pods, mid-listing; and Kopf's set of holds."""
    settings = kopf.OperatorSettings()
    settings.queueing.exit_timeout = 0.1
    holds = aiotoggles.ToggleSet(all)
    hold = await holds.make_toggle(name="pods@gone")
    task = asyncio.create_task(
        watcher(
            settings=settings,
            resource=PODS,
            namespace="gone",
            processor=processor_that_never_indexes,
            operator_indexed=holds,
            resource_indexed=hold,
        )
    )
    await asyncio.sleep(0.2)
    assert holds.is_off(), "the listing is not over: handlers must still wait"
    return task, holds


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def holds_released_after_stopping(watcher: Any) -> bool:
    """Start `watcher`, stop it mid-listing: is the operator indexed?"""

    async def scenario() -> bool:
        task, holds = await watching_a_namespace(watcher)
        await stopped(task)
        return bool(holds.is_on())

    return asyncio.run(scenario())


def test_a_watcher_stopped_mid_listing_releases_its_holds(stream_that_never_lists: None) -> None:
    assert holds_released_after_stopping(watcher_releasing_its_holds(queueing.watcher))


def test_kopf_alone_still_keeps_them(stream_that_never_lists: None) -> None:
    """The bug the mend is for. When a Kopf release fixes it, this fails: drop the mend."""
    unwrapped = getattr(queueing.watcher, "__wrapped__", queueing.watcher)
    assert not holds_released_after_stopping(unwrapped)


def test_a_hold_kept_for_minutes_fails_the_liveness_probe(
    stream_that_never_lists: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]  # the probe's clock only: asyncio's must go on
    monkeypatch.setattr(handlers, "time", SimpleNamespace(monotonic=lambda: clock[0]))

    async def scenario() -> None:
        task, _ = await watching_a_namespace(watcher_releasing_its_holds(queueing.watcher))
        assert await handlers.handlers_not_held_back() == "running"  # a listing takes a while
        clock[0] += kopf_workarounds.HOLD_LIMIT_SECONDS - 1
        assert await handlers.handlers_not_held_back() == "running"
        clock[0] += 2
        with pytest.raises(kopf.PermanentError, match="needs a restart"):
            await handlers.handlers_not_held_back()
        await stopped(task)  # the namespace is gone: its holds with it
        assert kopf_workarounds.oldest_hold_seconds(clock[0]) == 0.0
        assert await handlers.handlers_not_held_back() == "running"

    asyncio.run(scenario())


def test_another_kopf_layout_is_left_alone_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(queueing, "watcher")
    kopf_workarounds.apply()  # the operator still starts, unmended
    assert not hasattr(queueing, "watcher")
    assert "index holds are not mended" in caplog.text


def namespace_known_after_listing(processor: Any) -> bool:
    """A namespace matching the operator's glob, seen only in the namespace watch's own list
    (an event without a type): is it served?"""

    async def scenario() -> bool:
        insights = references.Insights()
        listed = {"type": None, "object": {"metadata": {"name": "team-a"}}}
        await processor(raw_event=listed, namespaces=["team-*"], insights=insights)
        return "team-a" in insights.namespaces

    return asyncio.run(scenario())


def test_a_namespace_made_while_the_operator_starts_is_served() -> None:
    assert namespace_known_after_listing(kopf_workarounds.namespace_event_including_listed)


def test_the_controller_is_told_each_namespace_kopf_comes_to_serve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """So that the children's own watches start before the namespace's first object."""
    told: list[set[str]] = []
    monkeypatch.setattr(kopf_workarounds, "served_namespaces_revised", [told.append])
    assert namespace_known_after_listing(kopf_workarounds.namespace_event_including_listed)
    assert told == [{"team-a"}]


def test_only_values_that_name_one_namespace_count_as_named() -> None:
    patterns = ["llm", "team-*", "!team-x", "a,b", "stag?"]
    assert kopf_workarounds.named_namespaces(patterns) == {"llm"}


def test_kopf_alone_ignores_it() -> None:
    """The bug the mend is for. When a Kopf release fixes it, this fails: drop the mend."""
    processor = observation.process_discovered_namespace_event
    assert not namespace_known_after_listing(getattr(processor, "__wrapped__", processor))


def test_no_handler_needs_the_diff_base_the_operator_does_not_keep() -> None:
    """NoDiffBase keeps no essence of the last handled object: only change-detecting handlers
    (on.create/update/delete/resume/field) and daemons or timers would read it. Adding one needs
    Kopf's diff base back (handlers.configure)."""
    registry = kopf.get_default_registry()
    assert handlers.nemotron_deployment_changed  # the handlers are registered
    assert registry._watching.get_all_handlers()
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []


def test_the_api_server_sends_only_what_a_handler_takes() -> None:
    """The GPU nodes are selected by the API server with the labels all their handlers filter
    on, and Events by what pod_warnings takes; pods (the GPU inventory counts every pod holding
    GPUs) and NemotronDeployments are sent whole. Kopf watches none of the children
    (owned_children's watches select them the same way)."""
    settings = kopf.OperatorSettings()
    handlers.filter_on_the_server(settings, kopf.get_default_registry())
    labels = {(s.group, s.any_name): v for s, v in settings.watching.label_selectors.items()}
    assert labels == {("", "nodes"): "nvidia.com/gpu.product"}
    registry = kopf.get_default_registry()
    handled = registry._watching.get_all_handlers() + registry._indexing.get_all_handlers()
    assert {h.selector.any_name for h in handled} == {
        "nemotrondeployments",
        "pods",
        "events",
        "nodes",
    }
    fields = {(s.group, s.any_name): v for s, v in settings.watching.field_selectors.items()}
    assert fields == {("", "events"): "type=Warning,involvedObject.kind=Pod"}
    warning = {"type": "Warning", "involvedObject": {"kind": "Pod"}}
    assert handlers._warning_about_a_pod(warning)  # what the server sends, the handler takes
    assert not handlers._warning_about_a_pod({**warning, "type": "Normal"})
