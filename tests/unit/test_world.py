"""What the operator keeps of a watched object in its indexes: a trimmed copy of what is read
field by field (world.kept_copy), compact JSON of what a converge reads whole (world.packed)."""

from __future__ import annotations

import copy
import json
from typing import Any

import kopf

from nemotron_operator.shell.world import World, kept_copy, packed, unpacked


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


def test_a_packed_child_comes_back_as_the_object_without_its_managed_fields() -> None:
    body = statefulset()
    expected = copy.deepcopy(body)
    del expected["metadata"]["managedFields"]

    assert unpacked(packed(kopf.Body(body))) == expected  # as Kopf hands it: a Mapping view


def test_a_later_change_of_the_watched_object_does_not_reach_the_packed_copy() -> None:
    body = statefulset()
    kept = packed(body)

    body["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "B"})
    mine = unpacked(kept)
    mine["spec"]["replicas"] = 3  # what a snapshot gets is its own

    assert unpacked(kept)["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A"}]
    assert unpacked(kept)["spec"]["replicas"] == 0


def test_a_snapshot_holds_the_children_pods_and_warnings_the_indexes_packed() -> None:
    child = statefulset()
    pod = {"metadata": {"namespace": "team-a", "name": "nd-1-0"}, "status": {"phase": "Running"}}
    warning = {"involvedObject": {"kind": "Pod", "name": "nd-1-0"}, "type": "Warning"}
    world = World(
        deployments={("team-a", "nd-1"): [{"metadata": {"name": "nd-1"}}]},
        gpu_nodes={},
        gpu_requests={},
        owned_pods={("team-a", "nd-1"): [packed(pod)]},
        pod_warnings={("team-a", "nd-1-0"): [packed(warning)]},
        children=[{("team-a", "nd-1", "StatefulSet"): [packed(child)]}],
    )

    snapshot = world.snapshot(("team-a", "nd-1"))

    del child["metadata"]["managedFields"]
    assert snapshot.children == {"StatefulSet": child}
    assert snapshot.pods == [pod] and snapshot.warnings == [warning]
