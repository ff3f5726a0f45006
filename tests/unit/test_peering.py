"""Kopf's peering rule, as the resync loop applies it (peering.peers_allow)."""

from __future__ import annotations

import datetime as dt

from nemotron_operator.peering import peers_allow

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
