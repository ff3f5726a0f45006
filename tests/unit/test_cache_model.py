"""The arithmetic of the cache benchmark's model (bench/cache_model.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from cache_model import (
    EXISTING,
    GIB,
    MB,
    MIB,
    PER_REPLICA,
    SHARED,
    Assumptions,
    Storage,
    break_even,
    time_to_ready,
    transfer_seconds,
)

A = Assumptions(
    image_bytes=20e9,
    pull_per_node=100 * MB,
    download_per_pod=100 * MB,
    egress_total=625 * MB,
    block=Storage("block", 1000 * MIB, None),
    shared=Storage("shared", 500 * MIB, 3 * GIB),
    engine_start_seconds=600,
)
MODEL = 120 * GIB


def test_one_replica_on_its_own_claim_pulls_downloads_loads_and_starts() -> None:
    one = time_to_ready(PER_REPLICA, MODEL, 1, 1, A)
    expected = 20e9 / (100 * MB) + MODEL / (100 * MB) + MODEL / (1000 * MIB) + 600
    assert one.seconds == pytest.approx(expected)
    assert one.downloaded_bytes == MODEL


@pytest.mark.parametrize("replicas", [1, 2, 4, 8, 16])
def test_a_shared_claim_downloads_once_and_an_existing_one_never(replicas: int) -> None:
    assert time_to_ready(SHARED, MODEL, replicas, 1, A).downloaded_bytes == MODEL
    assert time_to_ready(EXISTING, MODEL, replicas, 1, A).downloaded_bytes == 0
    own = time_to_ready(PER_REPLICA, MODEL, replicas, 2, A)
    assert own.downloaded_bytes == MODEL * replicas * 2  # every pod of every replica


def test_the_shared_download_takes_as_long_whatever_the_replicas() -> None:
    downloads = {time_to_ready(SHARED, MODEL, n, 1, A).download for n in (1, 4, 16)}
    assert downloads == {20e9 / (100 * MB) + MODEL / (100 * MB)}  # the Job's pull and download


def test_simultaneous_transfers_share_the_aggregate_limit_once_it_binds() -> None:
    assert transfer_seconds(100 * MB, 6, 100 * MB, 625 * MB) == pytest.approx(1.0)
    assert transfer_seconds(100 * MB, 10, 100 * MB, 625 * MB) == pytest.approx(1.6)
    assert transfer_seconds(100 * MB, 10, 100 * MB, None) == pytest.approx(1.0)
    assert transfer_seconds(0, 10, 100 * MB, 625 * MB) == 0


def test_the_shared_claim_wins_once_the_egress_is_the_bottleneck() -> None:
    first = break_even(MODEL, 1, A)
    assert first is not None and first > 6  # below 625/100 pods each downloads at full rate
    shared = time_to_ready(SHARED, MODEL, first, 1, A).seconds
    assert shared < time_to_ready(PER_REPLICA, MODEL, first, 1, A).seconds
    before = first - 1
    assert time_to_ready(SHARED, MODEL, before, 1, A).seconds >= (
        time_to_ready(PER_REPLICA, MODEL, before, 1, A).seconds
    )


def test_without_an_egress_limit_the_shared_claim_never_wins_on_a_slower_file_system() -> None:
    unlimited = Assumptions(**{**A.__dict__, "egress_total": None})
    assert break_even(MODEL, 1, unlimited) is None
