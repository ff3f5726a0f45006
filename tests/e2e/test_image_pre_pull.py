"""cache.prePullImage on the local cluster (issue 14, item 5): the DaemonSet's pods land on the
GPU nodes of the planned product only (kwok runs them: the image "pulled" is kwok's pretence),
ImagePrePulled counts them, and turning the flag off removes the DaemonSet."""

from __future__ import annotations

from kubernetes import client

from nemotron_operator.api import names

from .conftest import Cluster, wait_until
from .nemotron import NemotronDeployments
from .observed import gone
from .test_model_cache import NANO_ON_H100
from .test_model_cache import nds as nds  # a fixture: the NemotronDeployments of the namespace


def pulling_pods(cluster: Cluster, namespace: str) -> list[client.V1Pod]:
    selector = f"{names.IMAGE_PULL_LABEL}=nano"
    return list(
        client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector=selector).items
    )


def nodes_of(cluster: Cluster, product: str) -> set[str]:
    listed = client.CoreV1Api(cluster.api).list_node(
        label_selector=f"{names.GPU_PRODUCT_LABEL}={product}"
    )
    return {n.metadata.name for n in listed.items}


def test_the_image_is_pulled_on_the_planned_products_nodes_only_and_the_status_counts_them(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    nds.create("nano", {**NANO_ON_H100, "replicas": 1, "cache": {"prePullImage": True}})
    pulled = nds.wait_condition("nano", "ImagePrePulled", "True", "ImageOnNodes", timeout=90)
    h100 = nodes_of(cluster, NANO_ON_H100["gpu"]["product"])
    assert len(h100) >= 2  # hack/cluster/nodes.yaml: two H100 nodes among other GPUs
    pods = pulling_pods(cluster, namespace)
    assert {p.spec.node_name for p in pods} == h100  # one per H100 node, none elsewhere
    assert all(p.status.phase == "Running" for p in pods)
    image = nds.get("nano")["status"]["plan"]["image"]
    assert {p.spec.init_containers[0].image for p in pods} == {image}
    assert pulled["message"] == (
        f"{image} is on all {len(h100)} nodes of {NANO_ON_H100['gpu']['product']} "
        "the pods may run on"
    )
    nds.wait_condition("nano", "Ready", "True", timeout=90)  # the replica is not held back
    # the pulling pods are not replicas
    assert nds.get("nano")["status"]["readyReplicas"] == 1
    shown = cluster.kubectl("get", "nd", "nano", "-n", namespace).stdout
    conditions = cluster.kubectl(
        "get",
        "nd",
        "nano",
        "-n",
        namespace,
        "-o",
        "jsonpath={range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{'\\n'}{end}",
    ).stdout
    where = cluster.kubectl(
        "get", "pods", "-l", f"{names.IMAGE_PULL_LABEL}=nano", "-n", namespace, "-o", "wide"
    ).stdout
    print(f"\n{shown}{conditions}{where}")

    apps = client.AppsV1Api(cluster.api)
    nds.patch_spec("nano", {"cache": {"prePullImage": False}})
    wait_until(
        lambda: gone(lambda: apps.read_namespaced_daemon_set("nano-image-pull", namespace)),
        "the DaemonSet to be removed",
        30,
    )
    wait_until(
        lambda: nds.condition("nano", "ImagePrePulled") is None,
        "ImagePrePulled to leave the status",
        30,
    )
