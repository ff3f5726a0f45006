"""Kopf's peering rule, as the controller's gate applies it (peering.peers_allow), and where it
lets the controller act (PeeringGate), with the API answers stood in for."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest

from nemotron_operator.shell import peering
from nemotron_operator.shell.peering import PeeringGate, peers_allow
from nemotron_operator.shell.settings import PeeringSettings

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def peer(priority: int, seconds_ago: float, lifetime: int = 60) -> dict[str, object]:
    seen = NOW - dt.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def test_alone_or_above_every_live_peer_acts() -> None:
    assert peers_allow(None, "me", 50, NOW)
    assert peers_allow({"me": peer(50, 1)}, "me", 50, NOW)
    assert peers_allow({"me": peer(50, 1), "low": peer(10, 1)}, "me", 50, NOW)


def test_a_live_peer_of_higher_or_the_same_priority_pauses_it() -> None:
    assert not peers_allow({"high": peer(100, 5)}, "me", 50, NOW)
    assert not peers_allow({"twin": peer(50, 5)}, "me", 50, NOW)


def test_a_peer_whose_lifetime_ran_out_is_dead() -> None:
    assert peers_allow({"high": peer(100, 61)}, "me", 50, NOW)
    assert peers_allow({"gone": peer(100, 0, lifetime=0)}, "me", 50, NOW)  # left cleanly


def test_entries_kopf_could_not_read_either_are_skipped() -> None:
    assert peers_allow({"odd": "x", "bad": {"lastseen": "yesterday"}}, "me", 50, NOW)


# --- acting_in: which namespaces, and how often the peering objects are read ------------------


@dataclass
class PeeringObjects:
    """Stands in for the API: each read, by namespace (None: the cluster-wide object), and a
    clock. In "paused-*" namespaces a live peer ranks above this process; "unreadable-*" fail."""

    reads: list[str | None] = field(default_factory=list)
    now: float = 1000.0

    def read_allowed(self, _: PeeringSettings, namespace: str | None) -> bool:
        self.reads.append(namespace)
        return not (namespace or "").startswith(("paused-", "unreadable-"))

    def gate(self, clusterwide: bool | None) -> PeeringGate:
        """None: standalone."""
        peering = None if clusterwide is None else PeeringSettings("ops", 10, "me", clusterwide)
        return PeeringGate(peering, self.read_allowed, clock=lambda: self.now)


@pytest.fixture
def objects() -> PeeringObjects:
    return PeeringObjects()


def test_a_standalone_operator_acts_everywhere_without_reading_anything(
    objects: PeeringObjects,
) -> None:
    assert objects.gate(None).acting_in(["a", "b"]) == {"a", "b"}
    assert objects.reads == []


def test_namespaced_peering_holds_back_only_the_namespaces_a_peer_or_an_error_holds(
    objects: PeeringObjects,
) -> None:
    gate = objects.gate(clusterwide=False)
    assert gate.acting_in(["a", "paused-b", "unreadable-c", "a"]) == {"a"}
    assert sorted(objects.reads, key=str) == ["a", "paused-b", "unreadable-c"]


def test_cluster_wide_peering_is_one_answer_for_all(objects: PeeringObjects) -> None:
    gate = objects.gate(clusterwide=True)
    assert gate.acting_in(["a", "b"]) == {"a", "b"}
    assert objects.reads == [None]


def test_an_answer_is_used_for_a_few_seconds_then_read_again(objects: PeeringObjects) -> None:
    gate = objects.gate(clusterwide=False)
    for _ in range(20):
        assert gate.acts_in("a")
    assert objects.reads == ["a"]
    objects.now += peering.ANSWER_SECONDS
    gate.acting_in(["a"])
    assert objects.reads == ["a", "a"]
