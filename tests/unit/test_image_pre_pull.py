"""cache.prePullImage (issue 14, item 5): a DaemonSet pulls the NIM image on the nodes the NIM
pods may run on before a replica needs it, and ImagePrePulled says on how many it is."""

from __future__ import annotations

import datetime as dt
from typing import Any

from nemotron_operator.api import names
from nemotron_operator.api.types import NemotronDeploymentSpec
from nemotron_operator.core import render
from nemotron_operator.core.inventory import gpu_pools
from nemotron_operator.core.status import image_pre_pulled
from nemotron_operator.shell.settings import Settings
from nemotron_operator.shell.world import Snapshot

from . import test_cache_layout as layout
from .test_inventory import node

NOW = dt.datetime(2026, 12, 3, 4, 0, tzinfo=dt.UTC)
PLAN = layout.planned(1)
MIRROR_PAUSE = "registry.example.internal/pause:3.10.2"
AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
            ]
        }
    },
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 1,
                "podAffinityTerm": {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app": "nim"}},
                },
            }
        ]
    },
}


def children(pre_pull: bool = True, **spec: Any) -> list[dict[str, Any]]:
    wire = NemotronDeploymentSpec.model_validate(
        {"model": "nemotron-3-nano", "cache": {"prePullImage": pre_pull}, **spec}
    ).model_dump(by_alias=True, mode="json")
    return render.render_children(layout.OWNER, wire, PLAN, False, MIRROR_PAUSE)


def test_the_daemonset_pulls_the_nim_image_where_the_nim_pods_may_run() -> None:
    rendered = children(
        nodeSelector={"pool": "gpu"},
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "llm"}],
        affinity=AFFINITY,
        ngc={"pullSecrets": ["nvcr"]},
    )
    assert rendered[0]["kind"] == "DaemonSet"  # first: the pulls run while the rest starts
    (daemonset,) = layout.of_kind(rendered, "DaemonSet")
    (statefulset,) = layout.of_kind(rendered, "StatefulSet")
    nim = statefulset["spec"]["template"]["spec"]
    pod = daemonset["spec"]["template"]["spec"]
    assert daemonset["metadata"]["name"] == "nano-image-pull"
    assert daemonset["metadata"]["ownerReferences"][0]["uid"] == layout.OWNER.uid
    assert (
        pod["nodeSelector"]
        == nim["nodeSelector"]
        == {
            "pool": "gpu",
            names.GPU_PRODUCT_LABEL: layout.H100,
        }
    )
    assert pod["tolerations"] == nim["tolerations"]
    assert pod["imagePullSecrets"] == nim["imagePullSecrets"] == [{"name": "nvcr"}]
    assert pod["affinity"] == {"nodeAffinity": AFFINITY["nodeAffinity"]}  # nodes, not pods
    (pull,) = pod["initContainers"]
    assert (pull["image"], pull["command"]) == (PLAN.image, ["true"])
    (pause,) = pod["containers"]
    assert pause["image"] == MIRROR_PAUSE
    for container in (pull, pause):
        assert names.GPU_RESOURCE not in str(container["resources"])
        assert container["resources"]["requests"] == {"cpu": "1m", "memory": "8Mi"}


def test_its_pods_are_not_replicas() -> None:
    rendered = children()
    (daemonset,) = layout.of_kind(rendered, "DaemonSet")
    (service,) = layout.of_kind(rendered, "Service")
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert labels == {names.IMAGE_PULL_LABEL: "nano", names.MANAGED_BY_LABEL: "nemotron-operator"}
    assert daemonset["spec"]["selector"]["matchLabels"] == labels
    assert not set(service["spec"]["selector"].items()) <= set(labels.items())
    assert names.DEPLOYMENT_LABEL not in labels  # not counted nor diagnosed as NIM pods
    # the DaemonSet itself is a child: watched and indexed with the others
    assert daemonset["metadata"]["labels"][names.DEPLOYMENT_LABEL] == "nano"


def test_off_by_default() -> None:
    assert not layout.of_kind(children(pre_pull=False), "DaemonSet")
    assert NemotronDeploymentSpec.model_validate({"model": "m"}).cache.pre_pull_image is False


def test_the_pause_image_is_a_setting() -> None:
    assert Settings.build({}).pause_image == render.DEFAULT_PAUSE_IMAGE
    assert Settings.build({"NEMOTRON_PAUSE_IMAGE": MIRROR_PAUSE}).pause_image == MIRROR_PAUSE


# --- ImagePrePulled -------------------------------------------------------------------------


def observed(
    desired: int, ready: int, updated: int, image: str | None = None, behind: bool = False
) -> dict[str, Any]:
    (daemonset,) = layout.of_kind(children(), "DaemonSet")
    if image is not None:
        daemonset["spec"]["template"]["spec"]["initContainers"][0]["image"] = image
    daemonset["metadata"]["generation"] = 2
    daemonset["status"] = {
        "observedGeneration": 1 if behind else 2,
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "updatedNumberScheduled": updated,
    }
    return daemonset


def test_image_pre_pulled_counts_the_nodes_with_the_planned_image() -> None:
    def said(daemonset: dict[str, Any] | None) -> tuple[bool | None, str, str]:
        found = image_pre_pulled(daemonset, PLAN, "nano")
        return found.status, found.reason, found.message

    assert said(observed(3, 3, 3)) == (
        True,
        "ImageOnNodes",
        f"{PLAN.image} is on all 3 nodes of {layout.H100} the pods may run on",
    )
    status, reason, message = said(observed(3, 3, 1))  # a new version: 1 node has it yet
    assert (status, reason) == (False, "ImagePulling")
    assert message.startswith(f"{PLAN.image} is on 1 of 3 nodes of {layout.H100}")
    assert "kubectl get pods -l nemotron.dev/image-pull=nano" in message
    assert said(observed(0, 0, 0))[1] == "NoNodesToPullOn"
    assert said(None)[:2] == (False, "ImagePulling")
    older = said(observed(3, 3, 3, image="nvcr.io/nim/nvidia/nemotron-3-nano:2.0.12"))
    assert older[:2] == (False, "ImagePulling") and "changes to pull" in older[2]
    assert said(observed(3, 3, 3, behind=True))[:2] == (False, "ImagePulling")


# --- the converge ---------------------------------------------------------------------------


def converge(
    spec: dict[str, Any], seen: dict[str, Any], status: dict[str, Any] | None = None
) -> layout.FakeCluster:
    cluster = layout.FakeCluster()
    body = layout.deployment("nano", gpu={"product": layout.L40S}, **spec)
    body["status"] = status or {}
    pools = gpu_pools([node("gpu-1", product=layout.L40S, memory_mib=46068)])
    layout.converger(cluster).converge(Snapshot(body, children=seen, pools=pools), NOW)
    return cluster


def test_turned_on_it_is_applied_and_the_status_says_how_far_without_holding_ready_back() -> None:
    cluster = converge({"cache": {"prePullImage": True}}, {})
    assert ("apply", "DaemonSet") in cluster.writes
    (status,) = [s for what, s in cluster.writes if what == "status"]
    found = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert found["ImagePrePulled"] == ("False", "ImagePulling")
    assert found["Ready"] == ("False", "Starting")  # as without it


def test_turned_off_the_daemonset_is_deleted_and_its_condition_leaves_the_status() -> None:
    (daemonset,) = layout.of_kind(children(), "DaemonSet")
    before = converge({"cache": {"prePullImage": True}}, {"DaemonSet": daemonset})
    (on,) = [s for what, s in before.writes if what == "status"]
    assert "ImagePrePulled" in {c["type"] for c in on["conditions"]}
    cluster = converge({"cache": {"prePullImage": False}}, {"DaemonSet": daemonset}, status=on)
    assert ("delete", "DaemonSet") in cluster.writes
    (status,) = [s for what, s in cluster.writes if what == "status"]
    assert "ImagePrePulled" not in {c["type"] for c in status["conditions"]}
