"""Drill 5: hostile and broken input. Specs that pass the schema but cannot work, children
deleted and edited by hand, objects deleted while their first reconcile is in flight, a stale
finalizer: the operator never crashes, says why for each, and leaves nothing half-built.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from nemotron_operator.api import names
from tests.e2e.conftest import operator_writes

from .conftest import (
    Cluster,
    DrillOperator,
    census,
    condition,
    converged,
    handled_errors,
    list_nds,
    nd_body,
    ngc_secret,
    poll,
    report,
    stale_conditions,
    wait_until,
)

H100 = "NVIDIA-H100-80GB-HBM3"
KEY = {"apiKeySecret": {"name": "ngc-api"}}

# Catalog entries that load (the schema of the catalog accepts them) but cannot work.
BROKEN_CATALOG = {
    "models": {
        # a release the registry never published (a typo in an override)
        "broken-unpublished-tag": {
            "displayName": "Broken: unpublished tag",
            "kind": "llm",
            "image": "nvcr.io/nim/nvidia/nemotron-3-nano",
            "keylessFrom": "2.0.10",
            "architecture": {
                "parameters": 1_000_000_000,
                "activeParameters": 1_000_000_000,
                "attentionLayers": 16,
                "kvHeads": 8,
                "headDim": 64,
                "nativeContextLength": 8192,
            },
            "releases": [{"tag": "2.1.55", "precisions": ["fp8", "bf16"]}],
        },
        # an image the registry does not have
        "broken-missing-image": {
            "displayName": "Broken: missing image",
            "kind": "llm",
            "image": "nvcr.io/nim/acme/no-such-model",
            "keylessFrom": "2.0.10",
            "architecture": {
                "parameters": 1_000_000_000,
                "activeParameters": 1_000_000_000,
                "attentionLayers": 16,
                "kvHeads": 8,
                "headDim": 64,
                "nativeContextLength": 8192,
            },
            "releases": [{"tag": "2.1.5", "precisions": ["fp8", "bf16"]}],
            "downloadGiB": {"fp8": 2, "bf16": 3},
        },
        # a quadrillion parameters: no GPU holds it
        "broken-absurd-size": {
            "displayName": "Broken: absurd size",
            "kind": "llm",
            "image": "nvcr.io/nim/nvidia/nemotron-3-nano",
            "keylessFrom": "2.0.10",
            "architecture": {
                "parameters": 10**15,
                "activeParameters": 10**15,
                "attentionLayers": 1000,
                "kvHeads": 64,
                "headDim": 256,
                "nativeContextLength": 4194304,
            },
            "releases": [{"tag": "2.1.5", "precisions": ["fp8", "bf16"]}],
            "downloadGiB": {"fp8": 1000000, "bf16": 2000000},
        },
    }
}

NAME_AT_LIMIT = (
    "n" * 47
)  # the longest metadata.name the CRD allows (api.MAX_DEPLOYMENT_NAME_LENGTH)
UNICODE = {
    "note.example.com/owner": "Zoë Ñúñez — 模型团队 🚀",
    "note.example.com/empty": "",
    "note.example.com/long": "é" * 4000,
}

# name -> (spec, extra metadata, what the status must say: (condition, status, reason))
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], tuple[str, str, str]]] = {
    "catalog-unpublished-tag": (
        {"model": "broken-unpublished-tag", "gpu": {"product": H100}, "ngc": KEY},
        {},
        ("CredentialsValid", "False", "ImageNotFound"),
    ),
    "catalog-missing-image": (
        {"model": "broken-missing-image", "gpu": {"product": H100}, "ngc": KEY},
        {},
        ("CredentialsValid", "False", "ImageNotFound"),
    ),
    "catalog-absurd-size": (
        {"model": "broken-absurd-size"},
        {},
        ("Planned", "False", "InsufficientGPUMemory"),
    ),
    "secret-without-the-key": (
        {
            "model": "nemotron-3-nano",
            "gpu": {"product": H100},
            "ngc": {"apiKeySecret": {"name": "ngc-api", "key": "NO_SUCH_KEY"}},
        },
        {},
        ("CredentialsValid", "False", "SecretNotFound"),
    ),
    "secret-missing": (
        {
            "model": "nemotron-3-nano",
            "gpu": {"product": H100},
            "ngc": {"apiKeySecret": {"name": "no-such-secret"}},
        },
        {},
        ("CredentialsValid", "False", "SecretNotFound"),
    ),
    "no-such-gpu": (
        {"model": "nemotron-3-nano", "gpu": {"product": "NVIDIA-GB300"}},
        {},
        ("Planned", "False", "GPUProductNotFound"),
    ),
    "absurd-context": (
        {"model": "nemotron-3-nano", "gpu": {"product": H100}, "maxModelLength": 4194304},
        {},
        ("Planned", "False", "MaxModelLengthTooLong"),
    ),
    "absurd-context-custom": (
        {
            "model": "custom",
            "customModel": {
                "image": "nvcr.io/nim/nvidia/llm-nim:2.1.6",
                "parameters": 8_000_000_000,
                "attentionLayers": 128,  # 8 MiB of KV cache a token: 32 TiB for the context
                "kvHeads": 64,
                "headDim": 256,
                "nativeContextLength": 4194304,
                "precisions": ["bf16"],
            },
            "maxModelLength": 4194304,
            "ngc": KEY,
        },
        {},
        ("Planned", "False", "InsufficientGPUMemory"),
    ),
    "affinity-the-api-refuses": (
        {
            "model": "llama-3.2-nv-embedqa-1b-v2",
            "gpu": {"product": H100},
            "ngc": KEY,
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
                }
            },
        },
        {},
        ("Progressing", "False", "ChildRejected"),
    ),
    NAME_AT_LIMIT: (
        {"model": "llama-3.2-nv-embedqa-1b-v2", "gpu": {"product": H100}, "ngc": KEY},
        {"annotations": UNICODE},
        ("Ready", "True", "Ready"),
    ),
    "unicode-service-annotations": (
        {
            "model": "llama-3.2-nv-embedqa-1b-v2",
            "gpu": {"product": "NVIDIA-L40S"},
            "ngc": KEY,
            "replicas": 0,
            "service": {"annotations": UNICODE},
        },
        {"annotations": UNICODE},
        ("Planned", "True", "Planned"),
    ),
}


def children_of(cluster: Cluster, namespace: str, name: str) -> dict[str, bool]:
    apps, core = client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)

    def exists(read: Callable[[], Any]) -> bool:
        try:
            found = read()
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return found.metadata.deletion_timestamp is None

    return {
        "Deployment": exists(lambda: apps.read_namespaced_deployment(name, namespace)),
        "Service": exists(lambda: core.read_namespaced_service(name, namespace)),
        "PersistentVolumeClaim": exists(
            lambda: core.read_namespaced_persistent_volume_claim(f"{name}-cache", namespace)
        ),
    }


def hostile_operator(operators, tmp_path: Path) -> DrillOperator:
    overrides = tmp_path / "catalog-overrides.yaml"
    overrides.write_text(yaml.safe_dump(BROKEN_CATALOG))
    return operators(env={"NEMOTRON_CATALOG_OVERRIDES": str(overrides)}, name="hostile")


@pytest.mark.timeout(900)
def test_specs_that_pass_the_schema_but_cannot_work_say_why_and_build_nothing(
    cluster: Cluster, drill_namespaces, operators, tmp_path: Path
) -> None:
    namespace = drill_namespaces("hostile")
    ngc_secret(cluster.api, namespace)
    operator = hostile_operator(operators, tmp_path)
    objects = client.CustomObjectsApi(cluster.api)
    for name, (spec, metadata, _) in CASES.items():
        objects.create_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL, nd_body(name, spec, **metadata)
        )

    def settled(name: str, expected: tuple[str, str, str]) -> bool:
        body = next(b for b in list_nds(cluster.api, namespace) if b["metadata"]["name"] == name)
        found = condition(body, expected[0])
        return bool(
            found
            and found["status"] == expected[1]
            and found["reason"] == expected[2]
            and not stale_conditions(body)
        )

    outcome: dict[str, str] = {}
    for name, (_, _, expected) in CASES.items():
        with contextlib.suppress(AssertionError):
            poll(lambda n=name, e=expected: settled(n, e), f"{name}: {expected}", 90, 0.5)
        body = next(b for b in list_nds(cluster.api, namespace) if b["metadata"]["name"] == name)
        ready = condition(body, "Ready") or {}
        built = children_of(cluster, namespace, name)
        outcome[name[:30]] = (
            f"Ready={ready.get('status')} {ready.get('reason')}: "
            f"{(ready.get('message') or '')[:110]} | children {sum(built.values())}/3"
        )

    # 47 characters, unicode everywhere: every child exists and carries the annotations whole
    service = client.CoreV1Api(cluster.api).read_namespaced_service(
        "unicode-service-annotations", namespace
    )
    assert (
        service.metadata.annotations["note.example.com/owner"] == UNICODE["note.example.com/owner"]
    )
    assert children_of(cluster, namespace, NAME_AT_LIMIT) == dict.fromkeys(
        ("Deployment", "Service", "PersistentVolumeClaim"), True
    )
    # longer names are refused at admission, in words
    refused = {}
    for length in (48, 63):
        with pytest.raises(ApiException) as error:
            objects.create_namespaced_custom_object(
                names.GROUP,
                names.VERSION,
                namespace,
                names.PLURAL,
                nd_body("n" * length, CASES[NAME_AT_LIMIT][0]),
            )
        refused[length] = error.value.status
        assert "at most 47 characters" in str(error.value.body)

    report(
        "hostile specs",
        {**outcome, "names of 48 and 63 characters refused with HTTP": refused},
    )
    failures = []
    for name, (_, _, expected) in CASES.items():
        if not settled(name, expected):
            failures.append(f"{name}: expected {expected}, got {outcome[name[:30]]}")
        built = children_of(cluster, namespace, name)
        builds = expected[:2] == ("Ready", "True") or name == "unicode-service-annotations"
        if not builds and any(built.values()):
            failures.append(f"{name}: half-built {built}")
    assert failures == []
    operator.assert_never_crashed()


@pytest.mark.timeout(600)
def test_children_deleted_and_edited_by_hand_are_repaired(
    cluster: Cluster, drill_namespaces, operators
) -> None:
    namespace = drill_namespaces("handedits")
    operator = operators()
    ngc_secret(cluster.api, namespace)
    client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
        names.GROUP,
        names.VERSION,
        namespace,
        names.PLURAL,
        nd_body(
            "nd", {"model": "llama-3.2-nv-embedqa-1b-v2", "gpu": {"product": H100}, "ngc": KEY}
        ),
    )
    poll(lambda: all(converged(b) for b in list_nds(cluster.api, namespace)), "converged", 120)
    apps, core = client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)
    timings = {}

    # every child at once
    started = time.monotonic()
    apps.delete_namespaced_deployment("nd", namespace)
    core.delete_namespaced_service("nd", namespace)
    core.delete_namespaced_persistent_volume_claim("nd-cache", namespace)
    timings["all three deleted: back after (s)"] = poll(
        lambda: all(children_of(cluster, namespace, "nd").values()), "children recreated", 120, 0.2
    )
    poll(lambda: all(converged(b) for b in list_nds(cluster.api, namespace)), "Ready again", 120)
    timings["all three deleted: Ready again after (s)"] = time.monotonic() - started

    # edits of managed fields: image, GPU limit, a label the selector uses, the Service port
    original = apps.read_namespaced_deployment("nd", namespace)
    image = original.spec.template.spec.containers[0].image
    apps.patch_namespaced_deployment(
        "nd",
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": original.spec.template.spec.containers[0].name,
                                "image": "nvcr.io/evil/miner:1",
                                "resources": {"limits": {"nvidia.com/gpu": "8"}},
                            },
                            {"name": "sidecar", "image": "nvcr.io/evil/miner:1"},
                        ]
                    }
                }
            }
        },
    )
    core.patch_namespaced_service(
        "nd", namespace, [{"op": "replace", "path": "/spec/ports/0/port", "value": 9999}]
    )

    def restored() -> bool:
        deployment = apps.read_namespaced_deployment("nd", namespace)
        nim = deployment.spec.template.spec.containers[0]
        service = core.read_namespaced_service("nd", namespace)
        return (
            len(deployment.spec.template.spec.containers) == 1
            and nim.image == image
            and nim.resources.limits["nvidia.com/gpu"] == "1"
            and [p.port for p in service.spec.ports] == [8000]
        )

    try:
        timings["hand edits (image, GPUs, a sidecar, Service port) undone after (s)"] = poll(
            restored, "hand edits undone", 60, 0.2
        )
    finally:
        deployment = apps.read_namespaced_deployment("nd", namespace)
        service = core.read_namespaced_service("nd", namespace)
        print([(c.name, c.image) for c in deployment.spec.template.spec.containers])
        print([(p.name, p.port) for p in service.spec.ports])
    # once repaired, nothing more: the operator does not fight on
    time.sleep(3)
    since = time.time()
    time.sleep(10)
    writes = [
        w["requestURI"]
        for w in operator_writes(cluster, since)
        if f"/namespaces/{namespace}/" in w["requestURI"]
    ]
    timings["writes in the 10 s after the repair"] = len(writes)
    report("children deleted and edited by hand", timings)
    assert writes == []
    operator.assert_never_crashed()


@pytest.mark.timeout(900)
def test_objects_deleted_while_their_first_reconcile_is_in_flight_leave_nothing(
    cluster: Cluster, drill_namespaces, operators
) -> None:
    namespace = drill_namespaces("inflight")
    operator = operators()
    ngc_secret(cluster.api, namespace)
    objects = client.CustomObjectsApi(cluster.api)
    spec = {"model": "nemotron-3-nano", "gpu": {"product": H100}, "replicas": 0, "ngc": KEY}
    rounds = 40

    def churn(worker: int) -> None:
        for i in range(rounds):
            name = f"churn-{worker}-{i % 5}"  # names come back: create, delete, create again
            for attempt in range(50):
                try:
                    objects.create_namespaced_custom_object(
                        names.GROUP, names.VERSION, namespace, names.PLURAL, nd_body(name, spec)
                    )
                    break
                except ApiException as error:
                    if error.status != 409 or attempt == 49:  # the previous one still goes
                        raise
                    time.sleep(0.05)
            time.sleep(0.01 * (i % 7))  # 0..60 ms: somewhere in the first reconcile
            objects.delete_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, name
            )

    errors: list[BaseException] = []

    def churning(worker: int) -> None:
        try:
            churn(worker)
        except BaseException as error:  # reported below: a thread's exception is lost otherwise
            errors.append(error)

    workers = [threading.Thread(target=churning, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(600)
    assert errors == [] and not any(w.is_alive() for w in workers), errors
    # one survivor per name, created last
    survivors = [f"churn-0-{i}" for i in range(5)]
    for name in survivors:
        wait_until(
            lambda n=name: (
                not any(b["metadata"]["name"] == n for b in list_nds(cluster.api, namespace))
            ),
            f"{name} gone",
            60,
        )
        objects.create_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL, nd_body(name, spec)
        )
    poll(
        lambda: (
            len(list_nds(cluster.api, namespace)) == len(survivors)
            and all(converged(b) for b in list_nds(cluster.api, namespace))
        ),
        "the survivors converged",
        120,
    )

    def no_leftovers() -> bool:
        found = census(cluster.api, [namespace])
        complete = all(
            found.count(kind) == len(survivors)
            for kind in ("Deployment", "Service", "PersistentVolumeClaim")
        )
        return complete and not found.orphans and not found.duplicates() and not found.unowned

    try:
        settle_s = poll(
            no_leftovers, "the deleted ones' children gone, the survivors' complete", 180, 1
        )
    finally:
        found = census(cluster.api, [namespace])
    report(
        "objects deleted while their first reconcile is in flight",
        {
            "created and deleted": 4 * rounds,
            "children of deleted objects left (orphans)": len(found.orphans),
            "orphans gone, survivors complete after (s)": settle_s,
            "survivors' children (Deployments/Services/PVCs)": (
                f"{found.count('Deployment')}/{found.count('Service')}/"
                f"{found.count('PersistentVolumeClaim')}"
            ),
            "handler errors logged": dict(handled_errors(operator.logs())),
        },
    )
    for kind in ("Deployment", "Service", "PersistentVolumeClaim"):
        assert found.count(kind) == len(survivors)
    operator.assert_never_crashed()


@pytest.mark.timeout(300)
def test_a_stale_finalizer_does_not_keep_an_object_forever(
    cluster: Cluster, drill_namespaces, operators
) -> None:
    """An object an older operator version gave the finalizer to (or a person did): deleting it
    must not hang in Terminating forever now that the operator uses none."""
    namespace = drill_namespaces("finalizer")
    operator = operators()
    objects = client.CustomObjectsApi(cluster.api)
    spec = {"model": "nemotron-3-nano", "gpu": {"product": H100}, "replicas": 0}
    objects.create_namespaced_custom_object(
        names.GROUP,
        names.VERSION,
        namespace,
        names.PLURAL,
        nd_body("old", spec, finalizers=[names.FINALIZER]),
    )
    poll(lambda: all(converged(b) for b in list_nds(cluster.api, namespace)), "converged", 120)
    before = list_nds(cluster.api, namespace)[0]["metadata"].get("finalizers")
    objects.delete_namespaced_custom_object(
        names.GROUP, names.VERSION, namespace, names.PLURAL, "old"
    )
    try:
        gone_s = poll(lambda: not list_nds(cluster.api, namespace), "the object gone", 60, 0.5)
    finally:
        left = list_nds(cluster.api, namespace)
        if left:  # do not leave it behind for the namespace's deletion
            objects.patch_namespaced_custom_object(
                names.GROUP,
                names.VERSION,
                namespace,
                names.PLURAL,
                "old",
                {"metadata": {"finalizers": None}},
            )
    report(
        "a stale finalizer",
        {
            "finalizers when deleted (Kopf drops its own when unused)": before,
            "gone after (s)": gone_s,
        },
    )
    operator.assert_never_crashed()
