"""Kopf's watcher, stopped before its first listing, must not hold back every handler.

Run against the installed Kopf's own watcher code; only the API stream is replaced, by one that
never finishes listing (a namespace deleted while its watchers start). `operator_indexed.is_on()`
is what Kopf's processing waits for before any handler runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.clients import watching
from kopf._cogs.structs import references
from kopf._core.reactor import queueing

from nemotron_operator.kopf_workarounds import watcher_releasing_its_holds

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


def holds_released_after_stopping(watcher: Any) -> bool:
    """Start `watcher` for a namespace's pods, stop it mid-listing: is the operator indexed?"""

    async def scenario() -> bool:
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
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return holds.is_on()

    return asyncio.run(scenario())


def test_a_watcher_stopped_mid_listing_releases_its_holds(stream_that_never_lists: None) -> None:
    assert holds_released_after_stopping(watcher_releasing_its_holds(queueing.watcher))


def test_kopf_alone_still_keeps_them(stream_that_never_lists: None) -> None:
    """The bug the mend is for. When a Kopf release fixes it, this fails: drop the mend."""
    unwrapped = getattr(queueing.watcher, "__wrapped__", queueing.watcher)
    assert not holds_released_after_stopping(unwrapped)
