"""Which NemotronDeployments a change to a Secret converges (reconcile.key_secret_changed)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from nemotron_operator import reconcile
from nemotron_operator.key_secrets import KeySecretWatches


def deployment(namespace: str, name: str, ngc: dict[str, Any] | None) -> dict[str, Any]:
    spec = {"model": "nemotron-3-nano", **({"ngc": ngc} if ngc is not None else {})}
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec}


DEPLOYMENTS = [
    deployment("team-a", "reads-ngc", {"apiKeySecret": {"name": "ngc"}}),
    deployment("team-a", "reads-other", {"apiKeySecret": {"name": "other", "key": "K"}}),
    deployment("team-a", "keyless", None),
    deployment("team-a", "offline", {"offline": True, "apiKeySecret": {"name": "ngc"}}),
    deployment("team-b", "reads-ngc", {"apiKeySecret": {"name": "ngc"}}),
]


def test_the_key_secret_is_the_one_the_spec_names_unless_offline() -> None:
    assert [reconcile.key_secret_name(d) for d in DEPLOYMENTS] == [
        "ngc",
        "other",
        None,
        None,
        "ngc",
    ]


@pytest.fixture
def converged(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    index = {(d["metadata"]["namespace"], d["metadata"]["name"]): [d] for d in DEPLOYMENTS}
    world = reconcile.World(index, {}, {}, {}, {})
    monkeypatch.setattr(reconcile, "_world_seen", [world])
    monkeypatch.setattr(reconcile, "converge", lambda ns, name, _: calls.append((ns, name)))
    return calls


def test_a_changed_secret_converges_only_the_deployments_that_read_it(
    converged: list[tuple[str, str]],
) -> None:
    reconcile.key_secret_changed("team-a", "ngc")
    assert converged == [("team-a", "reads-ngc")]


def test_a_secret_no_deployment_reads_converges_nothing(
    converged: list[tuple[str, str]],
) -> None:
    reconcile.key_secret_changed("team-a", "default-token")
    reconcile.key_secret_changed("team-c", "ngc")
    assert converged == []


def test_after_a_gap_in_the_watch_every_reader_in_the_namespace_is_converged(
    converged: list[tuple[str, str]],
) -> None:
    reconcile.key_secret_changed("team-a", None)
    assert converged == [("team-a", "reads-ngc"), ("team-a", "reads-other")]


def test_a_namespace_whose_deployments_no_longer_read_a_key_is_not_watched() -> None:
    changes: list[tuple[str, str | None]] = []
    watches = KeySecretWatches(lambda ns, secret: changes.append((ns, secret)), lambda ns: False)
    watches.follow("team-a")
    deadline = time.monotonic() + 5
    while watches.followed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watches.followed == set()  # the watch ended before asking the API server anything
    assert changes == []
