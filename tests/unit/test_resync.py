"""Which NemotronDeployments the resync loop converges again (reconcile.resync_due)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from nemotron_operator import reconcile


def body(ready: str | None, generation: int = 2, observed: int = 2) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": ready}] if ready else []
    return {
        "metadata": {"namespace": "ns", "name": "nd", "generation": generation},
        "status": {"observedGeneration": observed, "conditions": conditions},
    }


@pytest.fixture(autouse=True)
def no_failures() -> None:
    reconcile._failed.clear()


def test_a_ready_object_waits_for_the_full_round() -> None:
    assert not reconcile.resync_due(body("True"), full=False)
    assert reconcile.resync_due(body("True"), full=True)


def test_an_object_not_ready_yet_is_converged_every_round() -> None:
    assert reconcile.resync_due(body("False"), full=False)
    assert reconcile.resync_due(body(None), full=False)


def test_a_status_of_an_older_generation_is_converged_again() -> None:
    assert reconcile.resync_due(body("True", generation=3, observed=2), full=False)


def test_a_failed_converge_is_retried_even_when_the_status_says_ready() -> None:
    class Broken(reconcile.World):
        def one(self, index: Any, key: Any) -> Any:
            raise ConnectionError("the API server is away")

    world = Broken({}, {}, {}, {}, {})
    with pytest.raises(ConnectionError):
        reconcile.converge("ns", "nd", world)
    assert reconcile.resync_due(body("True"), full=False)
    reconcile.converge("ns", "nd", reconcile.World({}, {}, {}, {}, {}))  # gone: nothing to do
    assert not reconcile.resync_due(body("True"), full=False)


def scaled_to_zero(credentials: str | None) -> dict[str, Any]:
    scaled = body("False")
    scaled["status"]["conditions"][0]["reason"] = "ScaledToZero"
    if credentials:
        scaled["status"]["conditions"].append({"type": "CredentialsValid", "status": credentials})
    return scaled


def test_scaled_to_zero_waits_for_an_event_or_the_full_round() -> None:
    assert not reconcile.resync_due(scaled_to_zero("True"), full=False)
    assert not reconcile.resync_due(scaled_to_zero(None), full=False)
    assert reconcile.resync_due(scaled_to_zero("True"), full=True)


def test_scaled_to_zero_with_an_unanswered_credentials_check_asks_again() -> None:
    assert reconcile.resync_due(scaled_to_zero("Unknown"), full=False)


def test_the_loop_outlives_a_round_that_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing would restart the loop: a round that raises (an index read, the peering check)
    is logged, and the next round runs."""
    rounds: list[bool] = []

    def round_(full: bool) -> None:
        rounds.append(full)
        if len(rounds) == 1:
            raise RuntimeError("Set changed size during iteration")

    monkeypatch.setattr(reconcile, "RESYNC_SECONDS", 0.01)
    monkeypatch.setattr(reconcile, "_resync_round", round_)
    reconcile.start_resync()
    try:
        deadline = time.monotonic() + 5
        while len(rounds) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        reconcile._resync_stop.set()
    assert len(rounds) >= 3
