"""The model cache as rendered for each access mode, replica count and nodes per replica: no
ReadWriteOnce claim is ever mounted by pods that may land on different nodes (issue 14)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import ValidationError

from nemotron_operator.api import names
from nemotron_operator.api.types import NemotronDeploymentSpec, PlanStatus
from nemotron_operator.core import render
from nemotron_operator.core.catalog import load_catalog
from nemotron_operator.core.inventory import gpu_pools
from nemotron_operator.core.planner import plan
from nemotron_operator.core.status import cache_ready
from nemotron_operator.shell.converge import Converger
from nemotron_operator.shell.credentials import Credentials
from nemotron_operator.shell.world import Snapshot

from .test_controller import Clock, FakeCluster, FakeRegistry, deployment
from .test_inventory import node

OWNER = render.Owner(name="nano", namespace="ns", uid="u")
H100 = "NVIDIA-H100-80GB-HBM3"
CACHES = {
    "default": {},
    "read-write-once": {"accessMode": "ReadWriteOnce", "storageClass": "ebs-gp3"},
    "read-write-many": {"accessMode": "ReadWriteMany", "storageClass": "efs"},
    "existing read-only-many": {"existingClaim": "preloaded", "accessMode": "ReadOnlyMany"},
    "existing read-write-many": {"existingClaim": "preloaded", "accessMode": "ReadWriteMany"},
    "existing read-write-once": {"existingClaim": "preloaded"},
}


def planned(nodes_per_replica: int) -> PlanStatus:
    return PlanStatus(
        fits=True,
        reason="Fits",
        message="fits",
        gpus_per_replica=8 * nodes_per_replica,
        nodes_per_replica=nodes_per_replica,
        gpu_product=H100,
        image="nvcr.io/nim/nvidia/nemotron-3-nano:2.1.5",
        cache_size="40Gi",
    )


def rendered(cache: Mapping[str, Any], replicas: int, nodes: int) -> list[dict[str, Any]]:
    spec = NemotronDeploymentSpec.model_validate(
        {"model": "nemotron-3-nano", "replicas": replicas, "cache": dict(cache)}
    ).model_dump(by_alias=True, mode="json")
    return render.render_children(OWNER, spec, planned(nodes), key_given=False)


def of_kind(children: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for c in children if c["kind"] == kind]


def workload_of(children: list[dict[str, Any]]) -> dict[str, Any]:
    (workload,) = [c for c in children if c["kind"] in render.WORKLOAD_KINDS]
    return workload


def pod_templates(workload: Mapping[str, Any]) -> list[dict[str, Any]]:
    if workload["kind"] == render.LEADER_WORKER_SET:
        template = workload["spec"]["leaderWorkerTemplate"]
        return [template["leaderTemplate"]["spec"], template["workerTemplate"]["spec"]]
    return [workload["spec"]["template"]["spec"]]


def cache_mount(pod: Mapping[str, Any]) -> dict[str, Any]:
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "model-cache"]
    return dict(mount)


def claims_mounted(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v]


# --- the safety property, over every mode, replica count and nodes per replica ----------------


@pytest.mark.parametrize("nodes", [1, 2])
@pytest.mark.parametrize("replicas", [0, 1, 2, 5])
@pytest.mark.parametrize("mode", list(CACHES))
def test_no_read_write_once_claim_is_mounted_by_pods_on_several_nodes(
    mode: str, replicas: int, nodes: int
) -> None:
    cache = CACHES[mode]
    try:
        children = rendered(cache, replicas, nodes)
    except ValidationError:  # refused at admission: a ReadWriteOnce existing claim, 2+ replicas
        assert cache.get("existingClaim") and replicas > 1 and "accessMode" not in cache
        return
    except render.RenderError as error:  # a replica on several nodes cannot share it either
        assert cache.get("existingClaim") and nodes > 1 and "accessMode" not in cache
        assert "attaches to one node" in str(error)
        return
    modes = {
        c["metadata"]["name"]: c["spec"]["accessModes"]
        for c in of_kind(children, "PersistentVolumeClaim")
    }
    if cache.get("existingClaim"):
        modes[cache["existingClaim"]] = [cache.get("accessMode", "ReadWriteOnce")]
    workload = workload_of(children)
    pods_per_template = workload["spec"]["replicas"] * (nodes if nodes > 1 else 1)
    for pod in pod_templates(workload):
        assert cache_mount(pod)["mountPath"] == render.CACHE_PATH  # every pod has the model
        for claim in claims_mounted(pod):
            if modes[claim["claimName"]] == ["ReadWriteOnce"]:
                assert pods_per_template <= 1, (mode, replicas, nodes)
    for template in workload["spec"].get("volumeClaimTemplates") or (
        workload["spec"].get("leaderWorkerTemplate", {}).get("volumeClaimTemplates") or ()
    ):
        assert template["spec"]["accessModes"] == ["ReadWriteOnce"]  # one claim per pod


# --- what each mode renders ------------------------------------------------------------------


def test_read_write_once_gives_each_replica_its_own_claim_from_a_statefulset() -> None:
    children = rendered(CACHES["read-write-once"], replicas=2, nodes=1)
    assert [c["kind"] for c in children] == ["StatefulSet", "Service"]  # no shared claim
    statefulset = workload_of(children)
    (template,) = statefulset["spec"]["volumeClaimTemplates"]
    assert template["metadata"]["name"] == render.CACHE_VOLUME == "model-cache"
    assert template["metadata"]["labels"][names.DEPLOYMENT_LABEL] == "nano"
    assert template["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "ebs-gp3",
        "resources": {"requests": {"storage": "40Gi"}},
    }
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"  # replicas start together
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Delete",
        "whenScaled": "Retain",
    }
    (pod,) = pod_templates(statefulset)
    assert claims_mounted(pod) == []  # the template's claim, not a shared one
    assert "readOnly" not in cache_mount(pod)  # NIM downloads into it


def test_a_kept_cache_outlives_the_statefulset() -> None:
    children = rendered({"keepOnDelete": True}, replicas=2, nodes=1)
    policy = workload_of(children)["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert policy["whenDeleted"] == "Retain"


def test_read_write_many_is_one_claim_every_replica_mounts() -> None:
    children = rendered(CACHES["read-write-many"], replicas=3, nodes=1)
    assert [c["kind"] for c in children] == ["PersistentVolumeClaim", "Deployment", "Service"]
    (claim,) = of_kind(children, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "nano-cache"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "efs"
    assert "ownerReferences" in claim["metadata"]  # deleted with the NemotronDeployment
    (pod,) = pod_templates(workload_of(children))
    assert claims_mounted(pod) == [{"claimName": "nano-cache"}]


def test_an_existing_claim_is_mounted_read_only_and_nothing_is_created_for_it() -> None:
    children = rendered(CACHES["existing read-only-many"], replicas=4, nodes=1)
    assert [c["kind"] for c in children] == ["Deployment", "Service"]
    (pod,) = pod_templates(workload_of(children))
    assert claims_mounted(pod) == [{"claimName": "preloaded", "readOnly": True}]
    assert cache_mount(pod)["readOnly"] is True


def test_an_existing_claim_needs_no_ngc_key() -> None:
    spec = NemotronDeploymentSpec.model_validate(
        {
            "model": "nemotron-3-nano",
            "version": "2.0.4-pb6.0",
            "cache": CACHES["existing read-only-many"],
        }
    )
    pools = gpu_pools([node("h100-0", product=H100, memory_mib=81559)])
    without_claim = plan(
        spec.model_copy(update={"cache": type(spec.cache)()}), load_catalog(), pools
    )
    with_claim = plan(spec, load_catalog(), pools)
    assert without_claim.key_required  # a Production Branch image downloads with a key
    assert with_claim.fits and not with_claim.key_required
    assert "existingClaim" in str(with_claim.key_required_reason)


def test_leader_and_workers_each_get_a_claim_when_a_replica_spans_nodes() -> None:
    children = rendered({}, replicas=2, nodes=2)
    assert [c["kind"] for c in children] == ["LeaderWorkerSet", "Service"]
    group = workload_of(children)["spec"]["leaderWorkerTemplate"]
    (template,) = group["volumeClaimTemplates"]
    assert template["metadata"]["name"] == "model-cache"
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert group["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    for pod in pod_templates(workload_of(children)):
        assert claims_mounted(pod) == []
        assert cache_mount(pod)["mountPath"] == render.CACHE_PATH


def test_leader_and_workers_share_a_read_write_many_claim() -> None:
    children = rendered(CACHES["read-write-many"], replicas=1, nodes=2)
    assert [c["kind"] for c in children] == ["PersistentVolumeClaim", "LeaderWorkerSet", "Service"]
    group = workload_of(children)["spec"]["leaderWorkerTemplate"]
    assert "volumeClaimTemplates" not in group
    for pod in pod_templates(workload_of(children)):
        assert claims_mounted(pod) == [{"claimName": "nano-cache"}]


def test_read_only_many_needs_an_existing_claim() -> None:
    with pytest.raises(ValidationError, match=r"ReadOnlyMany needs cache\.existingClaim"):
        NemotronDeploymentSpec.model_validate(
            {"model": "nemotron-3-nano", "cache": {"accessMode": "ReadOnlyMany"}}
        )


# --- the claim templates a StatefulSet was created with are kept -----------------------------


def test_a_new_cache_size_leaves_the_created_claim_templates_alone() -> None:
    first = workload_of(rendered({}, replicas=1, nodes=1))
    observed = {**first, "status": {"replicas": 1}}
    bigger = workload_of(rendered({"size": "80Gi"}, replicas=2, nodes=1))
    kept = render.with_created_claim_templates(bigger, observed)
    assert kept["spec"]["volumeClaimTemplates"] == first["spec"]["volumeClaimTemplates"]
    assert kept["spec"]["replicas"] == 2  # the rest is the new rendering
    assert bigger["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "80Gi"
    }  # not changed in place


# --- the converge: the workload of the old kind goes ------------------------------------------


def converger(cluster: FakeCluster) -> Converger:
    credentials = Credentials(
        FakeRegistry(),
        lambda ns, name, key: (None, "none"),
        lambda ns, name: None,
        recheck_seconds=600,
        clock=Clock(),
    )
    return Converger(load_catalog(), credentials, cluster)


@pytest.mark.parametrize(
    ("cache", "old", "new"),
    [
        ({}, "Deployment", "StatefulSet"),  # before claims per replica, or from ReadWriteMany
        ({"accessMode": "ReadWriteMany"}, "StatefulSet", "Deployment"),
    ],
)
def test_changing_the_access_mode_replaces_the_workload(
    cache: dict[str, Any], old: str, new: str
) -> None:
    cluster = FakeCluster()
    body = deployment("nano", gpu={"product": "NVIDIA-L40S"}, cache=cache)
    pools = gpu_pools([node("gpu-1", product="NVIDIA-L40S", memory_mib=46068)])
    stale = {"kind": old, "metadata": {"name": "nano"}, "spec": {}}
    snapshot = Snapshot(body, children={old: stale, "Service": {}}, pools=pools)
    converger(cluster).converge(snapshot, dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    writes = [w for w in cluster.writes if w[0] in ("apply", "delete")]
    assert ("apply", new) in writes
    assert ("delete", old) in writes
    assert writes.index(("apply", new)) < writes.index(("delete", old))


# --- the download Job fills a shared cache before the pods start from it ------------------------

PROFILE = "vllm-fp8-tp1-pp1-l40s"  # an exact description: NIM takes it as given
L40S = "NVIDIA-L40S"


def exact(plan_: PlanStatus, profile: str = PROFILE) -> PlanStatus:
    return plan_.model_copy(update={"profile": profile, "profile_source": "spec"})


def rendered_with(
    cache: Mapping[str, Any], plan_: PlanStatus, key_given: bool = True, **spec: Any
) -> list[dict[str, Any]]:
    wire = NemotronDeploymentSpec.model_validate(
        {"model": "nemotron-3-nano", "replicas": 2, "cache": dict(cache), **spec}
    ).model_dump(by_alias=True, mode="json")
    return render.render_children(OWNER, wire, plan_, key_given=key_given)


def test_a_shared_cache_is_filled_by_a_job_downloading_the_planned_profile() -> None:
    children = rendered_with(
        CACHES["read-write-many"],
        exact(planned(1)),
        ngc={"apiKeySecret": {"name": "ngc-api"}},
        nodeSelector={"pool": "cpu"},
    )
    assert [c["kind"] for c in children] == [
        "PersistentVolumeClaim",
        "Job",
        "Deployment",
        "Service",
    ]
    (job,) = of_kind(children, "Job")
    assert job["metadata"]["annotations"][names.CACHE_CONTENT_ANNOTATION] == (
        f"nvcr.io/nim/nvidia/nemotron-3-nano:2.1.5 {PROFILE}"
    )
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["download-to-cache", "--profiles", PROFILE]
    assert container["image"] == "nvcr.io/nim/nvidia/nemotron-3-nano:2.1.5"
    assert {e["name"] for e in container["env"]} == {"NGC_API_KEY", "NIM_CACHE_PATH"}
    assert "resources" not in container  # no GPU
    assert pod["nodeSelector"] == {"pool": "cpu"}  # where the user lets it run
    assert claims_mounted(pod) == [{"claimName": "nano-cache"}]
    assert "readOnly" not in container["volumeMounts"][0]
    # the Service selects the NIM pods, never the download pod
    (service,) = of_kind(children, "Service")
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert not set(service["spec"]["selector"].items()) <= set(pod_labels.items())


@pytest.mark.parametrize(
    ("cache", "plan_", "spec"),
    [
        (CACHES["read-write-many"], planned(1), {}),  # a derived profile: only NIM can choose
        ({}, exact(planned(1)), {}),  # a claim per pod: each pod downloads into its own
        (CACHES["existing read-only-many"], exact(planned(1)), {}),  # preloaded
        (
            CACHES["existing read-only-many"],
            exact(planned(1)),
            {"ngc": {"offline": True}},
        ),
    ],
    ids=["derived-profile", "claim-per-pod", "existing-claim", "offline"],
)
def test_no_download_job_where_none_can_or_need_fill_the_cache(
    cache: dict[str, Any], plan_: PlanStatus, spec: dict[str, Any]
) -> None:
    assert not of_kind(rendered_with(cache, plan_, **spec), "Job")


def job(content: str, condition: str | None = None, message: str = "") -> dict[str, Any]:
    status = {"conditions": [{"type": condition, "status": "True", "message": message}]}
    return {
        "kind": "Job",
        "metadata": {
            "name": "nano-download",
            "annotations": {names.CACHE_CONTENT_ANNOTATION: content},
        },
        "status": status if condition else {},
    }


CONTENT = f"nvcr.io/nim/nvidia/nemotron-3-nano:2.1.5 {PROFILE}"


def test_cache_ready_follows_the_job_for_the_planned_files() -> None:
    assert cache_ready(None, None) is None  # no Job fills this cache: no such condition

    def ready(job_: dict[str, Any] | None) -> tuple[bool | None, str]:
        fill = cache_ready(CONTENT, job_)
        assert fill is not None
        return fill.condition.status, fill.condition.reason

    assert ready(None) == (False, "CacheDownloading")
    older = job("nvcr.io/nim/nvidia/nemotron-3-nano:2.1.4 x", "Complete")
    assert ready(older) == (False, "CacheDownloading")  # done, but other files
    assert ready(job(CONTENT)) == (False, "CacheDownloading")
    assert ready(job(CONTENT, "Complete")) == (True, "CacheDownloaded")
    failed = cache_ready(CONTENT, job(CONTENT, "Failed", "Job has reached the backoff limit"))
    assert failed is not None and (failed.condition.status, failed.condition.reason) == (
        False,
        "CacheDownloadFailed",
    )
    assert failed.failing and failed.gave_up  # its pods are gone: the Job's word, and the log
    assert "backoff limit" in failed.condition.message
    assert "kubectl logs job/nano-download" in failed.condition.message


def converge_download(
    children: dict[str, Any],
) -> tuple[list[tuple[str, Any]], dict[str, dict[str, Any]]]:
    """One converge of a NemotronDeployment on a shared cache with an exact profile: the writes,
    and the conditions written (by type)."""
    cluster = FakeCluster()
    body = deployment(
        "nano", gpu={"product": L40S}, profile=PROFILE, cache={"accessMode": "ReadWriteMany"}
    )
    pools = gpu_pools([node("gpu-1", product=L40S, memory_mib=46068)])
    snapshot = Snapshot(body, children=children, pools=pools)
    converger(cluster).converge(snapshot, dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    (status,) = [s for what, s in cluster.writes if what == "status"]
    return cluster.writes, {c["type"]: c for c in status["conditions"]}


def test_the_pods_are_created_only_once_the_job_has_filled_the_cache() -> None:
    writes, conditions = converge_download({})
    applied = [kind for what, kind in writes if what == "apply"]
    assert applied == ["PersistentVolumeClaim", "Job", "Service"]  # no Deployment yet
    assert conditions["CacheReady"]["reason"] == "CacheDownloading"
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == (
        "False",
        "CacheDownloading",
    )

    image = _planned_image()
    claim = {"kind": "PersistentVolumeClaim", "metadata": {"name": "nano-cache"}}
    writes, conditions = converge_download(
        {"PersistentVolumeClaim": claim, "Job": job(f"{image} {PROFILE}", "Complete")}
    )
    assert ("apply", "Deployment") in writes
    assert conditions["CacheReady"]["status"] == "True"


def test_a_new_version_downloads_before_the_rollout_and_the_old_replicas_keep_serving() -> None:
    image = _planned_image()
    serving = {
        "kind": "Deployment",
        "metadata": {"name": "nano"},
        "spec": {},
        "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1},
    }
    claim = {"kind": "PersistentVolumeClaim", "metadata": {"name": "nano-cache"}}
    older = job("nvcr.io/nim/nvidia/nemotron-3-nano:2.0.9 vllm-fp8-tp1-pp1-l40s", "Complete")
    writes, conditions = converge_download(
        {"PersistentVolumeClaim": claim, "Job": older, "Deployment": serving}
    )
    assert ("delete", "Job") in writes  # replaced: a Job's pod template cannot change
    assert ("apply", "Deployment") not in writes and ("merge-patch", "Deployment") not in writes
    assert conditions["Progressing"]["reason"] == "CacheDownloading"
    assert "running replicas serve meanwhile" in conditions["Progressing"]["message"]
    assert image in conditions["CacheReady"]["message"]


def _planned_image() -> str:
    spec = NemotronDeploymentSpec.model_validate(
        {"model": "nemotron-3-nano", "gpu": {"product": L40S}, "profile": PROFILE}
    )
    found = plan(spec, load_catalog(), gpu_pools([node("gpu-1", product=L40S, memory_mib=46068)]))
    return str(found.image)
