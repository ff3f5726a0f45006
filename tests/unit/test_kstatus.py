"""What Flux sees (issue 13): the kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status), which
Flux's health checks and `wait: true` use, run by itself (hack/kstatus, built with Go once and
cached) on NemotronDeployments whose status the operator's code writes (hack/gitops/scenarios.py).

Current: done. InProgress: wait. Failed: waiting longer changes nothing, so the sync fails at once
with our message instead of at its timeout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

HACK = Path(__file__).resolve().parents[2] / "hack"
sys.path[:0] = [str(HACK / "kstatus"), str(HACK / "gitops")]

import kstatus  # noqa: E402
from scenarios import Scenario, State, scenarios  # noqa: E402

SCENARIOS = scenarios()
KSTATUS = {
    State.SERVING: "Current",
    State.WORKING: "InProgress",
    State.NEEDS_A_PERSON: "Failed",
    State.DELETING: "Terminating",
}


@pytest.fixture(scope="module")
def computed() -> dict[str, dict[str, str]]:
    """The library's answer for every scenario, by name (one run of the program)."""
    results = kstatus.compute([s.object for s in SCENARIOS])
    return {s.name: result for s, result in zip(SCENARIOS, results, strict=True)}


def condition(scenario: Scenario, kind: str) -> dict[str, Any]:
    (found,) = [c for c in scenario.object["status"]["conditions"] if c["type"] == kind]
    return found


def test_the_scenarios_cover_every_state_the_issue_names() -> None:
    states = {s.state for s in SCENARIOS}
    assert states == set(KSTATUS)
    stalled_reasons = {
        condition(s, "Stalled")["reason"] for s in SCENARIOS if s.state == State.NEEDS_A_PERSON
    }
    assert {
        "InsufficientGPUMemory",
        "SecretNotFound",
        "LeaderWorkerSetMissing",
        "ChildRejected",
        "ImagePullUnauthorized",
        "CacheDownloadFailed",
        "Unschedulable",
    } <= stalled_reasons


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_kstatus_tells_flux_what_to_conclude(
    scenario: Scenario, computed: dict[str, dict[str, str]]
) -> None:
    assert computed[scenario.name]["status"] == KSTATUS[scenario.state], scenario.what


@pytest.mark.parametrize(
    "scenario",
    [s for s in SCENARIOS if s.state == State.NEEDS_A_PERSON],
    ids=[s.name for s in SCENARIOS if s.state == State.NEEDS_A_PERSON],
)
def test_a_failed_sync_says_what_to_change_in_our_words(
    scenario: Scenario, computed: dict[str, dict[str, str]]
) -> None:
    message = computed[scenario.name]["message"]
    assert message == condition(scenario, "Stalled")["message"]
    assert message == condition(scenario, "Ready")["message"] or "progress deadline" in message


@pytest.mark.parametrize(
    "scenario",
    [s for s in SCENARIOS if s.state == State.WORKING and s.name != "generation-ahead"],
    ids=[s.name for s in SCENARIOS if s.state == State.WORKING and s.name != "generation-ahead"],
)
def test_a_waiting_sync_says_what_the_operator_is_doing(
    scenario: Scenario, computed: dict[str, dict[str, str]]
) -> None:
    assert computed[scenario.name]["message"] == condition(scenario, "Reconciling")["message"]


def test_a_spec_change_not_yet_observed_is_waited_for(
    computed: dict[str, dict[str, str]],
) -> None:
    (ahead,) = [s for s in SCENARIOS if s.name == "generation-ahead"]
    assert condition(ahead, "Ready")["status"] == "True"  # the old generation served
    assert (
        "generation is 2, but latest observed generation is 1" in (computed[ahead.name]["message"])
    )
