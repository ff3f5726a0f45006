"""The local cluster is a real Kubernetes: scheduler, controllers, admission and fake GPU nodes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import Cluster, wait_until
from .fake_kubelet import FakeKubelet

GPU_TOLERATION = client.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")


def gpu_pod_spec(gpus: int, product: str | None = None) -> client.V1PodSpec:
    return client.V1PodSpec(
        containers=[
            client.V1Container(
                name="nim",
                image="nvcr.io/nim/nvidia/nemotron-3-nano:2.0.12",
                resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}),
            )
        ],
        node_selector={"nvidia.com/gpu.product": product} if product else None,
        tolerations=[GPU_TOLERATION],
    )


def pods_of(cluster: Cluster, namespace: str, selector: str) -> list[client.V1Pod]:
    return list(
        client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector=selector).items
    )


def test_gpu_nodes_carry_gpu_feature_discovery_labels(cluster: Cluster) -> None:
    nodes = client.CoreV1Api(cluster.api).list_node().items
    by_product: dict[str, int] = {}
    for node in nodes:
        product = node.metadata.labels.get("nvidia.com/gpu.product")
        if product:
            by_product[product] = by_product.get(product, 0) + 1
            assert (
                node.status.allocatable["nvidia.com/gpu"]
                == node.metadata.labels["nvidia.com/gpu.count"]
            )
            assert any(t.key == "nvidia.com/gpu" for t in node.spec.taints)
    assert by_product == {
        "NVIDIA-H100-80GB-HBM3": 2,
        "NVIDIA-H200": 1,
        "NVIDIA-L40S": 2,
        "NVIDIA-A100-SXM4-40GB": 1,
        "NVIDIA-B200": 1,
    }
    assert len(nodes) == 8  # and one CPU-only node


def test_deployment_for_two_h100_gpus_runs_on_an_h100_node(
    cluster: Cluster, namespace: str
) -> None:
    labels = {"app": "nim"}
    client.AppsV1Api(cluster.api).create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="nim"),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=gpu_pod_spec(2, "NVIDIA-H100-80GB-HBM3"),
                ),
            ),
        ),
    )

    def running_pod() -> client.V1Pod | None:
        pods = pods_of(cluster, namespace, "app=nim")
        return next((p for p in pods if p.status.phase == "Running"), None)

    pod = wait_until(running_pod, "a Running pod of the Deployment")
    node = client.CoreV1Api(cluster.api).read_node(pod.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def test_pod_asking_for_nine_gpus_stays_pending_with_failed_scheduling(
    cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(
        namespace, client.V1Pod(metadata=client.V1ObjectMeta(name="too-big"), spec=gpu_pod_spec(9))
    )

    def failed_scheduling() -> list[client.CoreV1Event]:
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=too-big,reason=FailedScheduling"
        ).items
        return [e for e in events if "Insufficient nvidia.com/gpu" in e.message]

    events = wait_until(failed_scheduling, "a FailedScheduling event")
    assert events[0].type == "Warning"
    pod = core.read_namespaced_pod("too-big", namespace)
    assert pod.status.phase == "Pending" and not pod.spec.node_name


def test_pod_owned_by_a_deleted_object_is_garbage_collected(
    cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(
                name="owned",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
                    )
                ],
            ),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
        ),
    )
    core.delete_namespaced_config_map("owner", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("owned", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_until(gone, "the garbage collector to delete the owned pod", 60)


@pytest.fixture
def widget_crd(cluster: Cluster) -> Iterator[str]:
    group = f"t{uuid.uuid4().hex[:8]}.example.com"
    extensions = client.ApiextensionsV1Api(cluster.api)
    extensions.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"widgets.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": {
                                        "type": "object",
                                        "x-kubernetes-validations": [
                                            {
                                                "rule": "self.min <= self.max",
                                                "message": "min must not exceed max",
                                            }
                                        ],
                                        "properties": {
                                            "min": {"type": "integer"},
                                            "max": {"type": "integer"},
                                        },
                                    }
                                },
                            }
                        },
                    }
                ],
            },
        }
    )
    wait_until(
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in (
                extensions.read_custom_resource_definition(f"widgets.{group}").status.conditions
                or []
            )
        ),
        "the CRD to be established",
    )
    yield group
    extensions.delete_custom_resource_definition(f"widgets.{group}")


def test_crd_with_a_cel_rule_rejects_a_bad_object(
    cluster: Cluster, namespace: str, widget_crd: str
) -> None:
    objects = client.CustomObjectsApi(cluster.api)

    def widget(name: str, low: int, high: int) -> dict:
        return {
            "apiVersion": f"{widget_crd}/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"min": low, "max": high},
        }

    objects.create_namespaced_custom_object(
        widget_crd, "v1", namespace, "widgets", widget("good", 1, 2)
    )
    with pytest.raises(ApiException) as rejected:
        objects.create_namespaced_custom_object(
            widget_crd, "v1", namespace, "widgets", widget("bad", 3, 2)
        )
    assert rejected.value.status == 422
    assert "min must not exceed max" in rejected.value.body


def test_fake_kubelet_holds_a_crash_loop_that_kwok_does_not_undo(
    cluster: Cluster, namespace: str, kubelet: FakeKubelet
) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(metadata=client.V1ObjectMeta(name="nim"), spec=gpu_pod_spec(1, "NVIDIA-L40S")),
    )
    wait_until(
        lambda: core.read_namespaced_pod("nim", namespace).status.phase == "Running",
        "kwok to run the pod",
    )

    kubelet.crash_loop("nim", restarts=3, message="Authentication Error")
    time.sleep(1.0)  # kwok would have re-marked the pod Ready by now if it still managed it
    status = core.read_namespaced_pod("nim", namespace).status
    container = status.container_statuses[0]
    assert container.state.waiting.reason == "CrashLoopBackOff"
    assert container.restart_count == 3
    assert container.last_state.terminated.message == "Authentication Error"
    assert not container.ready
    backoff = core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=nim,reason=BackOff"
    ).items
    assert backoff and backoff[0].source.component == "kubelet"


def test_fake_kubelet_image_pull_failure_keeps_the_registry_message(
    cluster: Cluster, namespace: str, kubelet: FakeKubelet
) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(
        namespace, client.V1Pod(metadata=client.V1ObjectMeta(name="nim"), spec=gpu_pod_spec(1))
    )
    wait_until(lambda: core.read_namespaced_pod("nim", namespace).spec.node_name, "scheduling")

    kubelet.image_pull_failed("nim", message="403 Forbidden", backoff=True)
    container = core.read_namespaced_pod("nim", namespace).status.container_statuses[0]
    assert container.state.waiting.reason == "ImagePullBackOff"
    failed = core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=nim,reason=Failed"
    ).items
    assert any("403 Forbidden" in e.message for e in failed)


def test_claim_of_the_default_storage_class_binds_and_its_pod_runs(
    cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_persistent_volume_claim(
        namespace,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="cache"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "120Gi"}),
            ),
        ),
    )
    spec = gpu_pod_spec(1)
    spec.volumes = [
        client.V1Volume(
            name="cache",
            persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name="cache"),
        )
    ]
    core.create_namespaced_pod(
        namespace, client.V1Pod(metadata=client.V1ObjectMeta(name="nim"), spec=spec)
    )
    wait_until(
        lambda: (
            core.read_namespaced_persistent_volume_claim("cache", namespace).status.phase == "Bound"
        ),
        "the claim to bind",
    )
    wait_until(
        lambda: core.read_namespaced_pod("nim", namespace).status.phase == "Running",
        "the pod using the claim to run",
    )
