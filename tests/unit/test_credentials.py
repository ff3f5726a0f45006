"""When the NGC credentials of thousands of NemotronDeployments are checked again
(credentials.Credentials): one registry question per period for all of them, each object back at
its own moment, and a changed answer told at once."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from nemotron_operator.api import names
from nemotron_operator.api.types import NemotronDeploymentSpec, PlanStatus
from nemotron_operator.shell import ngc
from nemotron_operator.shell.credentials import Credentials

from .test_controller import Clock

PERIOD = 600.0
IMAGE = "nvcr.io/nim/nvidia/nemotron-3-nano:1.0.0"
SPEC = NemotronDeploymentSpec.model_validate(
    {"model": "nemotron-3-nano", "ngc": {"apiKeySecret": {"name": "ngc-api"}}}
)
PLAN = PlanStatus(fits=True, reason="Fits", message="", image=IMAGE)
READERS = [(f"team-{i % 50:02d}", f"nd-{i:04d}") for i in range(1000)]


@dataclass
class Registry:
    entitled: bool = True
    asked: list[float] = field(default_factory=list)
    clock: Clock = field(default_factory=Clock)

    def image(self, image: str, key: ngc.ApiKey) -> ngc.CredentialCheck:
        self.asked.append(self.clock.now)
        if self.entitled:
            return ngc.CredentialCheck(True, names.NimReason.NGC_ENTITLED, "entitled")
        return ngc.CredentialCheck(False, names.NimReason.NGC_NOT_ENTITLED, "not entitled")

    def anonymous(self, repository: str, tag: str) -> ngc.CredentialCheck:
        raise AssertionError("the specs here name a key")


def credentials(registry: Registry) -> Credentials:
    return Credentials(
        registry,
        lambda namespace, name, key: ("nvapi-test", ""),
        lambda namespace, name: "7",  # the key Secret's version, as its watch saw it
        PERIOD,
        clock=registry.clock,
    )


def come_back_at(checks: Credentials, clock: Clock) -> dict[tuple[str, str], float]:
    """Each reader checked now: the moment it is due back."""
    due = {}
    for reader in READERS:
        recheck_in = checks.check(*reader, SPEC, PLAN).recheck_in
        assert recheck_in is not None
        due[reader] = clock.now + recheck_in
    return due


def test_rechecks_of_objects_created_together_spread_evenly_over_the_period() -> None:
    registry = Registry()
    checks = credentials(registry)
    due = come_back_at(checks, registry.clock)  # a burst: all created (or relisted) at once
    assert registry.asked == [1000.0]  # one question answers all of them

    # none before the answer is a period old; all within the period after that
    assert min(due.values()) >= 1000 + PERIOD
    assert max(due.values()) < 1000 + 2 * PERIOD
    # evenly: each minute of that period brings back about a tenth of them, not all at once
    per_minute = Counter(int((at - 1000 - PERIOD) // 60) for at in due.values())
    assert sorted(per_minute) == list(range(10))
    assert all(70 <= count <= 130 for count in per_minute.values()), per_minute


def test_each_object_comes_back_once_a_period_and_the_registry_is_asked_once_a_period() -> None:
    registry = Registry()
    checks = credentials(registry)
    due = come_back_at(checks, registry.clock)
    for _ in range(2):  # two periods: each reader converged at its moment, in time order
        for reader, at in sorted(due.items(), key=lambda item: item[1]):
            registry.clock.now = at
            answer = checks.check(*reader, SPEC, PLAN)
            assert answer.condition.status is True
            assert answer.recheck_in == PERIOD  # its own moment of the next period
            due[reader] = at + PERIOD
    # the first back once the answer was due asked again, the rest used that answer
    assert len(registry.asked) == 3
    assert registry.asked[1] - registry.asked[0] < PERIOD + 10
    assert PERIOD <= registry.asked[2] - registry.asked[1] < PERIOD + 10


def test_a_changed_answer_is_told_at_once_not_at_each_objects_moment() -> None:
    registry = Registry()
    checks = credentials(registry)
    told: list[str] = []
    checks.answer_changed = told.append
    due = come_back_at(checks, registry.clock)
    registry.entitled = False  # the entitlement lapsed at NGC
    first, at = min(due.items(), key=lambda item: item[1])
    registry.clock.now = at

    answer = checks.check(*first, SPEC, PLAN)

    assert answer.condition.reason == names.NimReason.NGC_NOT_ENTITLED
    assert told == [IMAGE]  # the controller converges every object planned on it now
    second = min((r for r in due if r != first), key=lambda r: due[r])
    assert checks.check(*second, SPEC, PLAN).condition.reason == names.NimReason.NGC_NOT_ENTITLED
    assert told == [IMAGE]  # one change, told once
