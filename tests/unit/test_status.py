"""The status a NemotronDeployment gets, as Flux (kstatus) and an SRE read it.

kstatus reads three conditions of a custom resource: `Reconciling` True means still in
progress, `Stalled` True means failed (a person must act), else `Ready`. These tests check the
conditions the pure core writes for each kind of situation, and that the real pod failures of the
diagnosis corpus land on the right side of "retry" versus "needs a person".
(`test_kstatus.py` runs the same statuses through the kstatus library itself.)
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from nemotron_operator.api import names
from nemotron_operator.core.conditions import Condition
from nemotron_operator.core.diagnose import DIAGNOSIS_REASONS, Diagnosis
from nemotron_operator.core.status import (
    NEEDS_A_PERSON,
    PROGRESS_DEADLINE_SECONDS,
    RETRIED,
    Blocker,
    CacheFill,
    Observed,
    changed_reasons,
    desired_status,
    event_for,
    seconds_until_stalled,
)
from tests.diagnosis_corpus import load_cases

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
Why = names.StatusReason


def observed(**changes: Any) -> Observed:
    base: dict[str, Any] = {
        "generation": 3,
        "plan": None,
        "blocker": None,
        "credentials": None,
        "replicas": 2,
        "workload": {"status": {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}},
        "diagnosis": None,
        "endpoint": "http://nd.ns.svc:8000/v1",
        "selector": f"{names.DEPLOYMENT_LABEL}=nd",
    }
    return Observed(**{**base, **changes})


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_ready_is_neither_reconciling_nor_stalled() -> None:
    found = conditions(desired_status(observed(), None, NOW))
    assert found["Ready"] == ("True", Why.READY)
    assert found["Reconciling"] == ("False", Why.ROLLOUT_COMPLETE)
    assert found["Stalled"] == ("False", Why.AS_EXPECTED)


def test_scaled_to_zero_is_ready_so_a_waiting_pipeline_finishes() -> None:
    found = conditions(desired_status(observed(replicas=0, workload=None), None, NOW))
    assert found["Ready"] == ("True", Why.SCALED_TO_ZERO)
    assert found["Reconciling"][0] == "False" and found["Stalled"][0] == "False"


@pytest.mark.parametrize(
    ("workload", "reason"),
    [
        (None, Why.CREATING),
        ({"status": {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2}}, Why.ROLLING_OUT),
    ],
)
def test_rolling_out_is_reconciling(workload: dict[str, Any] | None, reason: str) -> None:
    found = conditions(desired_status(observed(workload=workload), None, NOW))
    assert found["Reconciling"] == ("True", reason)
    assert found["Stalled"][0] == "False"
    assert found["Ready"][0] == "False"


@pytest.mark.parametrize(
    "blocker",
    [
        Blocker(names.ConditionType.PLANNED, names.PlanReason.INSUFFICIENT_GPU_MEMORY, "too big"),
        Blocker(
            names.ConditionType.CREDENTIALS_VALID, names.NimReason.NGC_NOT_ENTITLED, "no access"
        ),
        Blocker(names.ConditionType.PROGRESSING, Why.LEADER_WORKER_SET_MISSING, "install LWS"),
        Blocker(names.ConditionType.PROGRESSING, Why.CHILD_REJECTED, "forbidden by quota"),
    ],
)
def test_what_stops_pods_from_existing_stalls_with_its_reason(blocker: Blocker) -> None:
    status = desired_status(observed(blocker=blocker, workload=None), None, NOW)
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"], stalled["message"]) == (
        "True",
        blocker.reason,
        blocker.message,
    )
    assert conditions(status)["Reconciling"][0] == "False"
    assert stalled["observedGeneration"] == 3


def test_every_diagnosable_reason_is_either_retried_or_needs_a_person() -> None:
    assert not NEEDS_A_PERSON & RETRIED
    assert set(DIAGNOSIS_REASONS) == NEEDS_A_PERSON | RETRIED


def failing(reason: str) -> Diagnosis:
    return Diagnosis(reason, "what is wrong", "what to change")  # type: ignore[arg-type]


def test_a_retried_failure_reconciles_until_the_progress_deadline_then_stalls() -> None:
    broken = observed(diagnosis=failing(names.NimReason.UNSCHEDULABLE))
    first = desired_status(broken, None, NOW)
    assert conditions(first)["Reconciling"] == ("True", "Unschedulable")
    assert conditions(first)["Stalled"][0] == "False"
    assert seconds_until_stalled(first, NOW) == PROGRESS_DEADLINE_SECONDS

    later = NOW + dt.timedelta(seconds=PROGRESS_DEADLINE_SECONDS - 1)
    still = desired_status(broken, first, later)
    assert still["conditions"] == first["conditions"]  # nothing to write meanwhile
    assert seconds_until_stalled(still, later) == 1

    deadline = NOW + dt.timedelta(seconds=PROGRESS_DEADLINE_SECONDS)
    past = desired_status(broken, still, deadline)
    assert conditions(past)["Stalled"] == ("True", "Unschedulable")
    assert conditions(past)["Reconciling"][0] == "False"
    stalled = next(c for c in past["conditions"] if c["type"] == "Stalled")
    assert "failing since 2026-12-02T12:00:00Z" in stalled["message"]
    assert seconds_until_stalled(past, deadline) is None


def test_a_failure_that_mends_starts_the_deadline_afresh() -> None:
    broken = observed(diagnosis=failing(names.NimReason.IMAGE_PULL_FAILED))
    first = desired_status(broken, None, NOW)
    mended = desired_status(observed(), first, NOW + dt.timedelta(minutes=5))
    again = desired_status(broken, mended, NOW + dt.timedelta(minutes=12))
    assert conditions(again)["Reconciling"] == ("True", "ImagePullFailed")
    assert seconds_until_stalled(again, NOW + dt.timedelta(minutes=12)) == 600


def test_a_failed_cache_download_stalls() -> None:
    cache = CacheFill(
        Condition(
            names.ConditionType.CACHE_READY, False, Why.CACHE_DOWNLOAD_FAILED, "the Job failed"
        ),
        failing=True,
        gave_up=True,
    )
    found = conditions(desired_status(observed(cache=cache, workload=None), None, NOW))
    assert found["Stalled"] == ("True", Why.CACHE_DOWNLOAD_FAILED)


CASES = [case for case in load_cases() if case.expected is not None]


def test_real_failures_that_need_a_person_stall_at_once_and_the_rest_retry() -> None:
    """The diagnosis corpus's real failure reports (public issue trackers): every failure the
    diagnosis names ends as Stalled at once or Reconciling, by its class, never both."""
    stalled_at_once = retrying = 0
    for case in CASES:
        diagnosis = case.diagnose()
        if diagnosis is None:
            continue
        found = conditions(desired_status(observed(diagnosis=diagnosis), None, case.now))
        if diagnosis.reason in NEEDS_A_PERSON:
            assert found["Stalled"] == ("True", diagnosis.reason), case.id
            assert found["Reconciling"][0] == "False", case.id
            stalled_at_once += 1
        else:
            assert found["Reconciling"] == ("True", diagnosis.reason), case.id
            assert found["Stalled"][0] == "False", case.id
            retrying += 1
    assert stalled_at_once > 100 and retrying > 50  # the corpus covers both classes


def test_the_readme_names_the_failures_that_are_retried() -> None:
    text = " ".join(Path("README.md").read_text().split())
    listed = text.split("except the ones that may mend by themselves (", 1)[1].split(")", 1)[0]
    assert set(re.findall(r"`(\w+)`", listed)) == RETRIED


def test_a_retried_failure_that_stalls_posts_one_warning_event() -> None:
    broken = observed(diagnosis=failing(names.NimReason.CRASH_LOOP))
    first = desired_status(broken, None, NOW)
    past = desired_status(broken, first, NOW + dt.timedelta(minutes=10))
    news = [event_for(c) for c in changed_reasons(first["conditions"], past["conditions"])]
    assert [n for n in news if n] == [("Warning", "CrashLoop")]  # Stalled; Ready did not change
    healthy = desired_status(observed(), past, NOW + dt.timedelta(minutes=11))
    news = [event_for(c) for c in changed_reasons(past["conditions"], healthy["conditions"])]
    assert [n for n in news if n] == [("Normal", "Ready")]  # Stalled turning False posts nothing
