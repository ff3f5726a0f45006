"""What the operator keeps of a watched object in its indexes: a trimmed copy of what is read
field by field (world.kept_copy), compact JSON of what a converge reads whole (world.packed)."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from typing import Any

import kopf
import pytest

from nemotron_operator.shell.world import (
    EventLoopReads,
    World,
    kept_copy,
    kept_deployment,
    packed,
    unpacked,
)

from .test_controller import deployment, rig, work


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
    body = statefulset()
    body["status"]["conditions"] = [{"message": "1/1 replicas serve " + "a-long-image-name" * 5}]
    first, second = (kept_copy(json.loads(json.dumps(body))) for _ in range(2))

    assert first["apiVersion"] is second["apiVersion"]
    assert next(iter(first["metadata"])) is next(iter(second["metadata"]))
    said = [copy["status"]["conditions"][0]["message"] for copy in (first, second)]
    assert said[0] is said[1]  # conditions' messages too, however long


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


def test_a_deployment_is_kept_without_the_metadata_nothing_reads() -> None:
    body = deployment("nano", ngc={"apiKeySecret": {"name": "ngc-api"}})
    body["metadata"] |= {
        "labels": {"team": "a"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": json.dumps(body)},
        "finalizers": ["example.com/keep"],
        "creationTimestamp": "2026-03-01T12:00:00Z",
    }

    kept = kept_deployment(body)

    assert set(kept["metadata"]) == {"name", "namespace", "uid", "resourceVersion", "generation"}
    assert kept["spec"] == body["spec"] and kept["status"] == body["status"]


def test_a_converge_from_the_kept_deployment_writes_what_it_writes_from_the_whole_object() -> None:
    body = deployment("nano", ngc={"apiKeySecret": {"name": "ngc-api"}})
    body["metadata"] |= {"labels": {"team": "a"}, "creationTimestamp": "2026-03-01T12:00:00Z"}
    writes = []
    for given in (body, kept_deployment(body)):
        r = rig(given)
        r.controller.enqueue(("team-a", "nano"))
        work(r)
        writes.append(r.cluster.writes)
    assert writes[0] == writes[1] and writes[0]


def test_a_deployment_being_deleted_is_kept_as_such() -> None:
    body = deployment("nano")
    body["metadata"]["deletionTimestamp"] = "2026-03-01T12:00:00Z"
    r = rig(kept_deployment(body))
    r.controller.enqueue(("team-a", "nano"))
    work(r)
    assert r.cluster.writes == []  # the garbage collector takes its children


def test_a_worker_reads_on_the_loop_and_meets_what_the_read_raised() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        reads = asyncio.run_coroutine_threadsafe(_made_on_the_loop(), loop).result()
        assert reads(threading.get_ident) == thread.ident  # ran on the loop's thread
        with pytest.raises(KeyError, match="gone"):
            reads(lambda: {}["gone"])
        assert reads(lambda: "after the error") == "after the error"  # the loop carries on
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def _made_on_the_loop() -> EventLoopReads:
    return EventLoopReads(asyncio.get_running_loop())  # as the startup handler makes it
