import datetime as dt

from nemotron_operator.core.conditions import (
    Condition,
    find_condition,
    merge_conditions,
    same_conditions,
)

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def test_first_statement_sets_transition_time_and_generation() -> None:
    conditions = merge_conditions(None, [Condition("Ready", False, "Pending", "waiting")], 3, T0)
    assert conditions == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Pending",
            "message": "waiting",
            "observedGeneration": 3,
            "lastTransitionTime": "2026-01-01T12:00:00Z",
        }
    ]


def test_transition_time_moves_only_when_status_flips() -> None:
    before = merge_conditions(None, [Condition("Ready", False, "Pending", "waiting")], 1, T0)
    same_status = merge_conditions(before, [Condition("Ready", False, "CrashLoop", "boom")], 1, T1)
    assert find_condition(same_status, "Ready")["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert find_condition(same_status, "Ready")["reason"] == "CrashLoop"
    flipped = merge_conditions(same_status, [Condition("Ready", True, "Ready", "ok")], 2, T1)
    assert find_condition(flipped, "Ready")["lastTransitionTime"] == "2026-01-01T12:05:00Z"


def test_restating_an_unchanged_fact_later_changes_nothing() -> None:
    facts = [
        Condition("Planned", True, "Planned", "fits"),
        Condition("Ready", None, "Unknown", "?"),
    ]
    before = merge_conditions(None, facts, 1, T0)
    after = merge_conditions(list(reversed(before)), facts, 1, T1)
    assert same_conditions(before, after)
    assert find_condition(after, "Ready")["status"] == "Unknown"


def test_conditions_not_restated_are_kept() -> None:
    before = merge_conditions(None, [Condition("CredentialsValid", True, "Valid", "ok")], 1, T0)
    after = merge_conditions(before, [Condition("Ready", True, "Ready", "ok")], 1, T1)
    assert {c["type"] for c in after} == {"CredentialsValid", "Ready"}


def test_withdrawn_conditions_leave_the_list() -> None:
    before = merge_conditions(
        None, [Condition("ImagePrePulled", True, "ImageOnNodes", "ok")], 1, T0
    )
    after = merge_conditions(
        before, [Condition("Ready", True, "Ready", "ok")], 1, T1, withdrawn={"ImagePrePulled"}
    )
    assert {c["type"] for c in after} == {"Ready"}
