"""What the operator keeps of a watched object in its indexes (world.kept_copy)."""

from __future__ import annotations

import copy
import json
from typing import Any

from nemotron_operator.shell.world import kept_copy


def statefulset() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "nd-1",
            "namespace": "team-a",
            "labels": {"app.kubernetes.io/managed-by": "nemotron-operator"},
            "managedFields": [
                {"manager": "nemotron-operator", "operation": "Apply", "fieldsV1": {"f:spec": {}}}
            ],
        },
        "spec": {
            "replicas": 0,
            "template": {"spec": {"containers": [{"name": "nim", "env": [{"name": "A"}]}]}},
        },
        "status": {"replicas": 0, "conditions": []},
    }


def test_the_kept_copy_is_the_object_without_its_managed_fields() -> None:
    body = statefulset()
    expected = copy.deepcopy(body)
    del expected["metadata"]["managedFields"]

    assert kept_copy(body) == expected


def test_a_later_change_of_the_watched_object_does_not_reach_the_kept_copy() -> None:
    body = statefulset()
    kept = kept_copy(body)

    body["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "B"})
    body["metadata"]["labels"]["extra"] = "yes"

    assert kept["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A"}]
    assert "extra" not in kept["metadata"]["labels"]


def test_copies_of_many_objects_share_their_repeated_strings() -> None:
    # as a watch delivers them: each decoded on its own, its strings its own
    first, second = (kept_copy(json.loads(json.dumps(statefulset()))) for _ in range(2))

    assert first["apiVersion"] is second["apiVersion"]
    assert next(iter(first["metadata"])) is next(iter(second["metadata"]))
