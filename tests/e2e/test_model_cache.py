"""The model cache on the local cluster (issue 14): each access mode as the API server stores the
children, and the claims the scheduled pods really mount.

kwok's volume provisioner binds any claim and has no attach semantics, so a Multi-Attach error
cannot happen here: what is checked is that it could not happen on real storage, i.e. that no
ReadWriteOnce claim is mounted by two pods."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from nemotron_operator.api import names
from tests.diagnosis_corpus import load_cases
from tests.nim_download_logs import NGC_PERMISSION_DENIED
from tests.standins.registry import VALID_KEY

from .conftest import Cluster, OperatorProcess, wait_until
from .fake_kubelet import FakeKubelet
from .nemotron import NemotronDeployments
from .observed import EVENT_WAIT, KEY_SECRET, create_claim, failing, gone, pods_of, put_key_secret

H100 = "NVIDIA-H100-80GB-HBM3"
NANO_ON_H100 = {"model": "nemotron-3-nano", "gpu": {"product": H100}}


@pytest.fixture
def nds(cluster: Cluster, namespace: str, operator: OperatorProcess) -> NemotronDeployments:
    return NemotronDeployments(cluster, namespace)


def scheduled_pods(cluster: Cluster, namespace: str, name: str, count: int) -> list[client.V1Pod]:
    def all_scheduled() -> list[client.V1Pod] | None:
        pods = pods_of(cluster, namespace, name)
        return pods if len(pods) == count and all(p.spec.node_name for p in pods) else None

    return wait_until(all_scheduled, f"{count} scheduled pods of {name}", 60)


def cache_claim_of(pod: client.V1Pod) -> client.V1PersistentVolumeClaimVolumeSource:
    (volume,) = [v for v in pod.spec.volumes if v.name == "model-cache"]
    return volume.persistent_volume_claim


def claim(cluster: Cluster, namespace: str, name: str) -> client.V1PersistentVolumeClaim:
    return client.CoreV1Api(cluster.api).read_namespaced_persistent_volume_claim(name, namespace)


def test_two_replicas_on_read_write_once_storage_get_a_claim_each_and_scale_to_three(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    nds.create("nano", {**NANO_ON_H100, "replicas": 2})
    nds.wait_condition("nano", "Ready", "True", timeout=90)

    statefulset = client.AppsV1Api(cluster.api).read_namespaced_stateful_set("nano", namespace)
    (template,) = statefulset.spec.volume_claim_templates
    assert template.spec.access_modes == ["ReadWriteOnce"]
    pods = scheduled_pods(cluster, namespace, "nano", 2)
    claims = [cache_claim_of(p).claim_name for p in pods]
    assert len(set(claims)) == 2, claims  # each pod its own claim
    for name in claims:
        assert claim(cluster, namespace, name).spec.access_modes == ["ReadWriteOnce"]
    assert gone(lambda: claim(cluster, namespace, "nano-cache"))  # no shared claim

    # the scale subresource: a third replica, a third claim
    cluster.kubectl("scale", names.SINGULAR, "nano", "--replicas=3", "-n", namespace)
    wait_until(
        lambda: (nds.get("nano").get("status") or {}).get("readyReplicas") == 3,
        "3 ready replicas",
        90,
    )
    pods = scheduled_pods(cluster, namespace, "nano", 3)
    mounted = Counter(cache_claim_of(p).claim_name for p in pods)
    assert len(mounted) == 3 and set(mounted.values()) == {1}, mounted


def test_read_write_many_storage_is_one_claim_every_replica_mounts(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    nds.create("nano", {**NANO_ON_H100, "replicas": 2, "cache": {"accessMode": "ReadWriteMany"}})
    nds.wait_condition("nano", "Ready", "True", timeout=90)

    shared = claim(cluster, namespace, "nano-cache")
    assert shared.spec.access_modes == ["ReadWriteMany"]
    assert shared.metadata.owner_references[0].name == "nano"
    pods = scheduled_pods(cluster, namespace, "nano", 2)
    assert {cache_claim_of(p).claim_name for p in pods} == {"nano-cache"}
    assert client.AppsV1Api(cluster.api).read_namespaced_deployment("nano", namespace)


def test_an_existing_claim_is_mounted_read_only_by_every_replica(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    create_claim(cluster, namespace, "preloaded", "ReadOnlyMany", "100Gi")
    nds.create(
        "nano",
        {
            **NANO_ON_H100,
            "replicas": 2,
            "cache": {"existingClaim": "preloaded", "accessMode": "ReadOnlyMany"},
        },
    )
    nds.wait_condition("nano", "Ready", "True", timeout=90)

    for pod in scheduled_pods(cluster, namespace, "nano", 2):
        volume = cache_claim_of(pod)
        assert (volume.claim_name, volume.read_only) == ("preloaded", True)
        (mount,) = [m for m in pod.spec.containers[0].volume_mounts if m.name == "model-cache"]
        assert mount.read_only is True
        env = {e.name for e in pod.spec.containers[0].env}
        assert "NGC_API_KEY" not in env
    listed = client.CoreV1Api(cluster.api).list_namespaced_persistent_volume_claim(namespace).items
    assert [c.metadata.name for c in listed] == ["preloaded"]  # nothing created beside it
    assert not (listed[0].metadata.owner_references or [])  # and it is not the operator's


def test_a_read_write_once_existing_claim_for_two_replicas_is_refused(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    with pytest.raises(ApiException) as refused:
        nds.create("nano", {**NANO_ON_H100, "replicas": 2, "cache": {"existingClaim": "rwo"}})
    assert refused.value.status == 422
    assert "attaches to one node" in str(refused.value.body)


@pytest.mark.parametrize(
    ("cache", "claim_name"),
    [({}, "model-cache-{}-0"), ({"accessMode": "ReadWriteMany"}, "{}-cache")],
    ids=["claim-per-replica", "shared-claim"],
)
def test_deleting_keeps_the_cache_only_when_asked(
    cluster: Cluster,
    namespace: str,
    nds: NemotronDeployments,
    cache: dict[str, str],
    claim_name: str,
) -> None:
    nds.create("dropped", {**NANO_ON_H100, "cache": cache})
    nds.create("kept", {**NANO_ON_H100, "cache": {**cache, "keepOnDelete": True}})
    for name in ("dropped", "kept"):
        nds.wait_condition(name, "Ready", "True", timeout=90)
        wait_until(
            lambda n=name: not gone(lambda: claim(cluster, namespace, claim_name.format(n))),
            f"{name}'s cache claim",
        )
        nds.delete(name)
    wait_until(
        lambda: gone(lambda: claim(cluster, namespace, claim_name.format("dropped"))),
        "the dropped cache to be garbage-collected",
        90,
    )
    wait_until(lambda: not pods_of(cluster, namespace, "kept"), "the kept one's pods to go", 60)
    time.sleep(2)
    kept = claim(cluster, namespace, claim_name.format("kept"))
    assert kept.metadata.deletion_timestamp is None


# --- the download Job ---------------------------------------------------------------------------

PROFILE = "vllm-fp8-tp1-pp1-h100"  # an exact description: the Job downloads what NIM will load


def nim_images(cluster: Cluster, namespace: str, name: str) -> set[str]:
    deployment = client.AppsV1Api(cluster.api).read_namespaced_deployment(name, namespace)
    return {c.image for c in deployment.spec.template.spec.containers}


def finished_download(cluster: Cluster, namespace: str, version: str) -> client.V1Job:
    """The download Job for `version`, once complete (kwok completes a Job's pod at once)."""

    def complete() -> client.V1Job | None:
        job = client.BatchV1Api(cluster.api).read_namespaced_job("nano-download", namespace)
        content = (job.metadata.annotations or {}).get(names.CACHE_CONTENT_ANNOTATION, "")
        done = job.status.completion_time is not None
        return job if done and f":{version} " in content else None

    return wait_until(complete, f"the download Job of {version} to complete", 60)


def test_the_download_job_fills_a_shared_cache_before_the_pods_and_each_new_version(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    spec = {
        **NANO_ON_H100,
        "version": "2.0.12",
        "replicas": 2,
        "profile": PROFILE,
        "cache": {"accessMode": "ReadWriteMany"},
    }
    nds.create("nano", spec)
    nds.wait_condition("nano", "Ready", "True", timeout=90)
    assert nds.condition("nano", "CacheReady")["reason"] == "CacheDownloaded"

    first = finished_download(cluster, namespace, "2.0.12")
    (container,) = first.spec.template.spec.containers
    assert container.command == ["download-to-cache", "--profiles", PROFILE]
    assert not container.resources.limits  # no GPU
    (volume,) = first.spec.template.spec.volumes
    assert volume.persistent_volume_claim.claim_name == "nano-cache"
    pods = scheduled_pods(cluster, namespace, "nano", 2)  # the Job's pod is not one of them
    assert {cache_claim_of(p).claim_name for p in pods} == {"nano-cache"}
    # the NIM pods were created once the files were in the cache, not before
    assert all(p.metadata.creation_timestamp >= first.status.completion_time for p in pods)
    served = nds.get("nano")["status"]["plan"]["image"]
    assert nim_images(cluster, namespace, "nano") == {served}

    # a new version: its files first, then the rollout
    nds.patch_spec("nano", {"version": "2.1.5"})
    newer = wait_until(
        lambda: (
            (nds.get("nano")["status"]["plan"]["image"] or "").endswith(":2.1.5")
            and nds.get("nano")["status"]["plan"]["image"]
        ),
        "the plan of 2.1.5",
    )
    wait_until(lambda: nim_images(cluster, namespace, "nano") == {newer}, "the rollout", 60)
    second = finished_download(cluster, namespace, "2.1.5")
    assert second.metadata.uid != first.metadata.uid
    replica_sets = client.AppsV1Api(cluster.api).list_namespaced_replica_set(namespace).items
    (rolled,) = [r for r in replica_sets if r.spec.template.spec.containers[0].image == newer]
    assert rolled.metadata.creation_timestamp >= second.status.completion_time
    nds.wait_condition("nano", "CacheReady", "True", "CacheDownloaded", timeout=60)


# a key the registry stand-in lets pull the image (what the model's files answer is played)
WITH_KEY_ON_A_SHARED_CACHE = {
    **NANO_ON_H100,
    "version": "2.0.12",
    "profile": PROFILE,
    "cache": {"accessMode": "ReadWriteMany"},
    "ngc": {"apiKeySecret": {"name": KEY_SECRET}},
}


@contextmanager
def cordoned_cpu_nodes(cluster: Cluster) -> Iterator[str]:
    """Cordon the nodes without GPUs (the GPU nodes' taint keeps the download pod off them), so
    that a download pod waits unscheduled: kwok, which completes a Job's pod the moment it is
    bound, never sees it, and the test plays its kubelet. Yields a node to bind it to."""
    core = client.CoreV1Api(cluster.api)
    cpu = [n.metadata.name for n in core.list_node().items if not _has_gpus(n)]
    for node in cpu:
        core.patch_node(node, {"spec": {"unschedulable": True}})
    try:
        yield cpu[0]
    finally:
        for node in cpu:
            core.patch_node(node, {"spec": {"unschedulable": False}})


def _has_gpus(node: client.V1Node) -> bool:
    return names.GPU_PRODUCT_LABEL in (node.metadata.labels or {})


def download_pods(cluster: Cluster, namespace: str, name: str) -> list[client.V1Pod]:
    selector = f"{names.CACHE_DOWNLOAD_LABEL}={name}"
    listed = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector=selector)
    return sorted(listed.items, key=lambda p: p.metadata.creation_timestamp)


def test_a_download_refused_by_ngc_is_named_stalls_and_a_successful_retry_serves(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    """The key pulls the image but has no access to the model's files: the download Job's pod
    fails as NIM does, with NGC's refusal, and the status names it as it would for a NIM pod."""
    put_key_secret(cluster, namespace, VALID_KEY)
    kubelet = FakeKubelet(cluster.api, namespace)
    with cordoned_cpu_nodes(cluster) as node:
        nds.create("nano", WITH_KEY_ON_A_SHARED_CACHE)
        (first,) = wait_until(lambda: download_pods(cluster, namespace, "nano"), "a download pod")
        kubelet.bind(first, node)
        kubelet.ready(first, container="download")
        downloading = nds.wait_condition("nano", "CacheReady", "False", "CacheDownloading")
        wait_until(
            lambda: (
                f"downloading on node {node} since"
                in nds.condition("nano", "CacheReady")["message"]
            ),
            "the download's progress in CacheReady",
            EVENT_WAIT,
        )
        progress = nds.condition("nano", "CacheReady")["message"]
        assert "GiB expected" in progress and "(an estimate" in progress, downloading

        kubelet.failed(first, message=NGC_PERMISSION_DENIED, container="download")
        nds.wait_condition("nano", "CacheReady", "False", "NGCNotEntitled", timeout=EVENT_WAIT)
        degraded = failing(nds, "nano", "NGCNotEntitled")
        assert "Permission error" in degraded["message"]  # NIM's own words, quoted
        assert "entitled" in degraded["message"]  # and what to do
        stalled = nds.wait_condition("nano", "Stalled", "True", "NGCNotEntitled")
        assert VALID_KEY not in stalled["message"]
        shown = cluster.kubectl("get", "nd", "nano", "-n", namespace).stdout
        assert "NGCNotEntitled" in shown, shown  # the REASON column
        assert gone(
            lambda: client.AppsV1Api(cluster.api).read_namespaced_deployment("nano", namespace)
        )  # no NIM pod starts from a cache that is not filled

    # the access granted (here: the next attempt is bound, and kwok completes it)
    nds.wait_condition("nano", "CacheReady", "True", "CacheDownloaded", timeout=90)
    nds.wait_condition("nano", "Ready", "True", timeout=90)
    nds.wait_condition("nano", "Stalled", "False")
    job = client.BatchV1Api(cluster.api).read_namespaced_job("nano-download", namespace)
    assert job.status.failed == 1 and job.status.succeeded == 1


def unreachable_ngc_tail() -> str:
    """What NIM prints when it cannot reach api.ngc.nvidia.com for the model's files (the
    diagnosis corpus's case from NVIDIA/nim-deploy#92): a cause a retry may mend."""
    (case,) = [c for c in load_cases() if c.id == "nim-ngc-files-request-error-70b-nim-deploy-92"]
    (status,) = case.pod["status"]["containerStatuses"]
    return str(status["lastState"]["terminated"]["message"])


@pytest.mark.slow  # the Job controller's back-off between the four attempts: 70 s
def test_a_download_job_that_gives_up_stalls_and_runs_again_once_deleted(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    put_key_secret(cluster, namespace, VALID_KEY)
    kubelet = FakeKubelet(cluster.api, namespace)
    jobs = client.BatchV1Api(cluster.api)
    tail = unreachable_ngc_tail()
    with cordoned_cpu_nodes(cluster) as node:
        nds.create("nano", WITH_KEY_ON_A_SHARED_CACHE)
        wait_until(lambda: download_pods(cluster, namespace, "nano"), "a download pod")
        played: set[str] = set()

        def fail_each_attempt_until_the_job_gives_up() -> bool:
            for attempt in download_pods(cluster, namespace, "nano"):
                if attempt.metadata.name not in played and attempt.status.phase == "Pending":
                    kubelet.bind(attempt, node)
                    kubelet.failed(attempt, message=tail, container="download")
                    played.add(attempt.metadata.name)
            job = jobs.read_namespaced_job("nano-download", namespace)
            return any(
                c.type == "Failed" and c.status == "True" for c in job.status.conditions or ()
            )

        # the Job controller waits 10, 20 and 40 s before the 2nd, 3rd and 4th attempt
        wait_until(fail_each_attempt_until_the_job_gives_up, "the Job to give up", 150, 0.5)
        assert len(played) == 4  # backoffLimit 3
        # unreachable NGC may mend by itself, but the Job retries no more: Stalled at once
        stalled = nds.wait_condition("nano", "Stalled", "True", "ModelSourceUnreachable")
        assert "kubectl delete job nano-download" in stalled["message"]
        cache = nds.condition("nano", "CacheReady")
        assert (cache["status"], cache["reason"]) == ("False", "ModelSourceUnreachable")

    time.sleep(2)  # uncordoned: the failed Job stays failed, nothing runs again by itself
    assert nds.condition("nano", "Stalled")["status"] == "True"
    failed_uid = jobs.read_namespaced_job("nano-download", namespace).metadata.uid
    jobs.delete_namespaced_job("nano-download", namespace, propagation_policy="Background")
    nds.wait_condition("nano", "CacheReady", "True", "CacheDownloaded", timeout=60)
    nds.wait_condition("nano", "Ready", "True", timeout=90)
    assert jobs.read_namespaced_job("nano-download", namespace).metadata.uid != failed_uid
