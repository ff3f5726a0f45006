"""NemotronDeployment in, GPU-scheduled NIM pods out: the operator against the real API server."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from .conftest import Cluster, OperatorProcess, operator_writes, wait_until
from .harness import gpu_node_manifest
from .nemotron import NemotronDeployments
from .observed import EVENT_WAIT, gone, workload
from .private_operator import NO_REGISTRY, PrivateOperator

H100 = "NVIDIA-H100-80GB-HBM3"
NANO_ON_H100 = {"model": "nemotron-3-nano", "gpu": {"product": H100}}


@pytest.fixture
def nds(cluster: Cluster, namespace: str, operator: OperatorProcess) -> NemotronDeployments:
    return NemotronDeployments(cluster, namespace)


def read_workload(
    cluster: Cluster, namespace: str, name: str
) -> client.V1StatefulSet | client.V1Deployment:
    return wait_until(lambda: workload(cluster, namespace, name), f"the workload {name}")


def test_nim_deployment_has_the_planned_gpus_environment_probes_and_volumes(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    nds.create("nano", {**NANO_ON_H100, "maxModelLength": 65536})
    nds.wait_condition("nano", "Planned", "True")
    plan = nds.get("nano")["status"]["plan"]
    statefulset = read_workload(cluster, namespace, "nano")  # a cache claim per replica

    owner = statefulset.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("NemotronDeployment", "nano", True)
    assert statefulset.spec.update_strategy.type == "RollingUpdate"
    pod = statefulset.spec.template.spec
    assert pod.node_selector["nvidia.com/gpu.product"] == H100
    assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in pod.tolerations)
    assert pod.security_context.run_as_user == 1000 and pod.security_context.fs_group
    nim = pod.containers[0]
    assert nim.image == plan["image"]
    assert nim.image.startswith("nvcr.io/nim/nvidia/nemotron-3-nano:")
    assert nim.resources.limits["nvidia.com/gpu"] == str(plan["gpusPerReplica"])
    env = {e.name: e.value for e in nim.env}
    assert env["NIM_MAX_MODEL_LEN"] == "65536"
    assert env["NIM_TENSOR_PARALLEL_SIZE"] == str(plan["tensorParallelSize"])
    assert env["NIM_JSONL_LOGGING"] == "1"
    assert env["NIM_SERVED_MODEL_NAME"]
    assert env["NIM_CACHE_PATH"] == "/opt/nim/.cache"
    assert env["NIM_PIPELINE_PARALLEL_SIZE"] == str(plan["pipelineParallelSize"])
    # NIM 2.x stops on a profile name it does not know: only exact ids are passed on
    assert "NIM_MODEL_PROFILE" not in env or plan["profileSource"] != "derived"
    assert nim.termination_message_policy == "FallbackToLogsOnError"
    assert nim.startup_probe.http_get.path == "/v1/health/ready"
    assert nim.startup_probe.period_seconds * nim.startup_probe.failure_threshold >= 1200
    assert nim.readiness_probe.http_get.path == "/v1/health/ready"
    assert nim.liveness_probe.http_get.path == "/v1/health/live"
    volumes = {v.name: v for v in pod.volumes}
    assert volumes["dshm"].empty_dir.medium == "Memory"
    assert "model-cache" not in volumes  # the claim template's: model-cache-<pod>
    assert any(m.name == "model-cache" for m in nim.volume_mounts)
    pvc = wait_until(
        lambda: client.CoreV1Api(cluster.api).read_namespaced_persistent_volume_claim(
            "model-cache-nano-0", namespace
        ),
        "the first replica's cache claim",
    )
    assert pvc.spec.resources.requests["storage"] == plan["cacheSize"]
    nds.wait_condition("nano", "Ready", "True")
    service = client.CoreV1Api(cluster.api).read_namespaced_service("nano", namespace)
    assert service.spec.ports[0].port == 8000
    endpoint = f"http://nano.{namespace}.svc:8000/v1"
    wait_until(lambda: nds.get("nano")["status"].get("endpoint") == endpoint, "the endpoint")
    assert nds.get("nano")["status"]["readyReplicas"] == 1


def test_more_replicas_and_a_new_precision_roll_out(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    nds.create("nano", {**NANO_ON_H100, "precision": "fp8"})
    nds.wait_condition("nano", "Ready", "True")
    nds.patch_spec("nano", {"replicas": 2, "precision": "bf16"})
    nds.wait_condition("nano", "Ready", "True")
    status = nds.get("nano")["status"]
    assert status["plan"]["precision"] == "bf16" and status["readyReplicas"] == 2
    statefulset = read_workload(cluster, namespace, "nano")
    assert statefulset.spec.replicas == 2
    nim = statefulset.spec.template.spec.containers[0]
    assert nim.image == status["plan"]["image"]
    assert nim.resources.limits["nvidia.com/gpu"] == str(status["plan"]["gpusPerReplica"])


def test_an_update_that_changes_nothing_sends_no_write(
    cluster: Cluster, namespace: str, nds: NemotronDeployments, tmp_path: Path
) -> None:
    # A node of its own (a taint only this deployment tolerates): other tests' pods coming and
    # going elsewhere change the plan's "no room right now" note, which is a real change.
    pool = f"noop-{namespace[:6]}"
    node = gpu_node_manifest(
        tmp_path,
        pool,
        {
            "product": H100,
            "count": 8,
            "memoryMiB": 81559,
            "computeMajor": 9,
            "computeMinor": 0,
            "family": "hopper",
        },
        cpu="96",
        memory="1Ti",
    )
    node["metadata"]["labels"]["nemotron.dev/test-pool"] = pool
    node["spec"].setdefault("taints", []).append(
        {"key": "nemotron.dev/test-pool", "value": pool, "effect": "NoSchedule"}
    )
    spec = {
        **NANO_ON_H100,
        "nodeSelector": {"nemotron.dev/test-pool": pool},
        "tolerations": [{"key": "nemotron.dev/test-pool", "value": pool, "effect": "NoSchedule"}],
    }
    core = client.CoreV1Api(cluster.api)
    core.create_node(node)
    try:
        created = time.time()
        nds.create("nano", spec)
        nds.wait_condition("nano", "Ready", "True")

        def writes_since(moment: float) -> list[str]:
            uris = [w["requestURI"] for w in operator_writes(cluster, moment)]
            return [uri for uri in uris if f"/namespaces/{namespace}/" in uri]

        # the count sees the operator's writes: creating the children and the status took some
        assert any("/statefulsets/nano" in uri for uri in writes_since(created))
        time.sleep(2)  # let the last status write and its echoes settle
        since = time.time()
        nds.patch_spec("nano", spec)  # the same spec again, as a GitOps sync would
        cluster.kubectl("annotate", "nemotrondeployment", "nano", "-n", namespace, "note=unrelated")
        time.sleep(5)
        assert writes_since(since) == []
    finally:
        core.delete_node(node["metadata"]["name"])


def test_hand_edits_and_deleted_children_are_repaired(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    nds.create("nano", NANO_ON_H100)
    nds.wait_condition("nano", "Ready", "True")
    apps, core = client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)
    apps.patch_namespaced_stateful_set("nano", namespace, {"spec": {"replicas": 5}})
    core.delete_namespaced_service("nano", namespace)
    wait_until(
        lambda: apps.read_namespaced_stateful_set("nano", namespace).spec.replicas == 1,
        "the replica count to be restored",
    )
    wait_until(
        lambda: not gone(lambda: core.read_namespaced_service("nano", namespace)),
        "the Service to be recreated",
    )


def test_deleting_removes_children_but_a_kept_cache_stays(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    nds.create("dropped", NANO_ON_H100)
    nds.create("kept", {**NANO_ON_H100, "cache": {"keepOnDelete": True}})
    nds.wait_condition("dropped", "Ready", "True")
    nds.wait_condition("kept", "Ready", "True")
    nds.delete("dropped")
    nds.delete("kept")
    apps, core = client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)
    for name in ("dropped", "kept"):
        wait_until(
            lambda n=name: gone(lambda: apps.read_namespaced_stateful_set(n, namespace)),
            f"{name}'s StatefulSet to be garbage-collected",
            60,
        )
        wait_until(
            lambda n=name: gone(lambda: core.read_namespaced_service(n, namespace)),
            f"{name}'s Service to be garbage-collected",
            60,
        )
    wait_until(
        lambda: gone(
            lambda: core.read_namespaced_persistent_volume_claim("model-cache-dropped-0", namespace)
        ),
        "the dropped cache to be garbage-collected",
        60,
    )
    time.sleep(2)
    assert core.read_namespaced_persistent_volume_claim("model-cache-kept-0", namespace)


def test_operator_killed_mid_reconcile_converges_without_duplicates(
    cluster: Cluster, namespace: str, nds: NemotronDeployments, operator: OperatorProcess
) -> None:
    names = [f"nano-{i}" for i in range(8)]
    for name in names:
        nds.create(name, NANO_ON_H100)
    operator.stop(signal.SIGKILL)
    operator.start()
    for name in names:
        nds.wait_condition(name, "Ready", "True", timeout=60)
    apps, core = client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)
    assert sorted(
        s.metadata.name for s in apps.list_namespaced_stateful_set(namespace).items
    ) == sorted(names)
    assert len(core.list_namespaced_service(namespace).items) == len(names)
    assert len(core.list_namespaced_persistent_volume_claim(namespace).items) == len(names)


def test_a_model_no_node_can_hold_is_refused_with_the_gpus_it_needs(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    nds.create(
        "ultra",
        {"model": "nemotron-3-ultra", "precision": "bf16", "gpu": {"product": "NVIDIA-L40S"}},
    )
    refused = nds.wait_condition("ultra", "Planned", "False")
    assert "32 GPUs" in refused["message"] and "NVIDIA-L40S" in refused["message"]
    ready = nds.wait_condition("ultra", "Ready", "False")
    assert ready["reason"] == refused["reason"]
    time.sleep(1)
    assert workload(cluster, namespace, "ultra") is None


def test_a_deployment_waiting_for_gpus_is_planned_when_a_gpu_node_joins(
    cluster: Cluster, namespace: str, nds: NemotronDeployments, tmp_path
) -> None:
    nds.create("nano", {"model": "nemotron-3-nano", "gpu": {"product": "NVIDIA-GB200"}})
    nds.wait_condition("nano", "Planned", "False", "GPUProductNotFound")
    pool = f"gb200-{namespace[:6]}"
    node = gpu_node_manifest(
        tmp_path,
        pool,
        {
            "product": "NVIDIA-GB200",
            "count": 4,
            "memoryMiB": 189471,
            "computeMajor": 10,
            "computeMinor": 0,
            "family": "blackwell",
        },
        cpu="144",
        memory="1Ti",
    )
    core = client.CoreV1Api(cluster.api)
    core.create_node(node)
    try:
        planned = nds.wait_condition("nano", "Planned", "True")
        assert "NVIDIA-GB200" in planned["message"]
        nds.wait_condition("nano", "Ready", "True")
    finally:
        core.delete_node(node["metadata"]["name"])


def test_namespaces_going_away_as_the_operator_starts_hold_nothing_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Served namespaces created and deleted while the operator starts go away while Kopf starts
    their watchers. With Kopf 1.45.2 alone (kopf_workarounds says why), some starts never ran a
    handler again, in any namespace; here each of five starts must plan at once."""
    core = client.CoreV1Api(cluster.api)
    operator = PrivateOperator(
        cluster, "gone", tmp_path, {"NEMOTRON_NGC_REGISTRY_URL": NO_REGISTRY}
    )

    def short_lived_namespaces(start: int) -> None:
        for i in range(20):
            name = f"{operator.prefix}-gone-{start}-{i}"
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
            core.delete_namespace(name)
            time.sleep(0.05)

    try:
        for start in range(5):
            churn = threading.Thread(target=short_lived_namespaces, args=(start,))
            churn.start()
            operator.process.start()
            churn.join()
            nds = NemotronDeployments(cluster, operator.namespace(f"after-{start}"))
            nds.create("nano", {"model": "nemotron-3-nano", "replicas": 0})
            nds.wait_condition("nano", "Planned", "True", timeout=EVENT_WAIT)
            operator.process.stop()
    finally:
        operator.close()


def test_the_liveness_probe_says_the_handlers_run(operator: OperatorProcess) -> None:
    """What the kubelet asks (the chart's livenessProbe); it fails when Kopf holds every handler
    back for minutes (kopf_workarounds.HOLD_LIMIT_SECONDS; the unit tests show that side)."""
    with urllib.request.urlopen(operator.health_url, timeout=5) as answer:
        assert answer.status == 200
        assert json.load(answer) == {"handlers": "running"}
