"""CacheReady while a download Job fills the shared cache: its pods' failures named with the NIM's
own reasons (the classifier that names a NIM pod's), Stalled or retried by the same rule, and the
progress it can tell without reading a log."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from nemotron_operator.api import names
from nemotron_operator.api.types import PlanStatus
from nemotron_operator.core.diagnose import CLAIM_BINDING_GRACE_SECONDS
from nemotron_operator.core.inventory import gpu_pools
from nemotron_operator.core.recheck import MARGIN_SECONDS
from nemotron_operator.core.status import (
    RETRIED,
    CacheFill,
    Observed,
    cache_ready,
    changed_reasons,
    desired_status,
    event_for,
    seconds_until_stalled,
)
from nemotron_operator.shell.world import Snapshot, World, packed
from tests.diagnosis_corpus import load_cases
from tests.nim_download_logs import NGC_PERMISSION_DENIED

from . import test_cache_layout as layout
from .test_inventory import node

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
IMAGE = "nvcr.io/nim/nvidia/nemotron-3-nano:2.0.12"
PROFILE = "vllm-fp8-tp1-pp1-h100"
CONTENT = f"{IMAGE} {PROFILE}"
JOB_UID = "uid-job-2"
PLAN = PlanStatus.model_validate(
    {"fits": True, "reason": "Fits", "message": "fits", "image": IMAGE, "downloadGiB": 40}
)


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def job(*finished: tuple[str, str], failed: int = 0, uid: str = JOB_UID) -> dict[str, Any]:
    return {
        "kind": "Job",
        "metadata": {
            "name": "nano-download",
            "uid": uid,
            "annotations": {names.CACHE_CONTENT_ANNOTATION: CONTENT},
        },
        "spec": {"backoffLimit": 3},
        "status": {
            "failed": failed,
            "conditions": [
                {"type": kind, "status": "True", "reason": why, "message": f"Job {why}"}
                for kind, why in finished
            ],
        },
    }


def pod(
    name: str,
    state: dict[str, Any] | None = None,
    *,
    phase: str = "Running",
    node: str | None = "cpu-0",
    created: dt.datetime = NOW - dt.timedelta(minutes=3),
    owner: str = JOB_UID,
    key: bool = True,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A pod of the download Job as the API server lists it."""
    env = [{"name": "NGC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "ngc", "key": "k"}}}]
    statuses = [{"name": "download", "image": IMAGE, "ready": False, "state": state}]
    return {
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "llm",
            "uid": f"uid-{name}",
            "creationTimestamp": iso(created),
            "labels": {names.CACHE_DOWNLOAD_LABEL: "nano"},
            "ownerReferences": [{"kind": "Job", "name": "nano-download", "uid": owner}],
        },
        "spec": {
            **({"nodeName": node} if node else {}),
            "restartPolicy": "Never",
            "containers": [{"name": "download", "image": IMAGE, "env": env if key else []}],
        },
        "status": {
            "phase": phase,
            "conditions": conditions or [],
            **({"containerStatuses": statuses} if state is not None else {}),
        },
    }


def exited(name: str, log_tail: str, **rest: Any) -> dict[str, Any]:
    """A download pod whose container exited 1 (restartPolicy Never: the pod Failed)."""
    ended = {
        "exitCode": 1,
        "reason": "Error",
        "message": log_tail,
        "startedAt": iso(NOW - dt.timedelta(minutes=2)),
        "finishedAt": iso(NOW - dt.timedelta(minutes=1)),
    }
    return pod(name, {"terminated": ended}, phase="Failed", **rest)


def running(name: str, since: dt.datetime, **rest: Any) -> dict[str, Any]:
    found = pod(name, {"running": {"startedAt": iso(since)}}, **rest)
    found["status"]["containerStatuses"][0]["ready"] = True  # no probe: ready once running
    found["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return found


def fill(
    job_: dict[str, Any], pods: list[dict[str, Any]], events: list[dict[str, Any]] | None = None
) -> CacheFill:
    found = cache_ready(CONTENT, job_, pods, events or [], PLAN, NOW)
    assert found is not None
    return found


def status_of(
    cache: CacheFill | None,
    previous: dict[str, Any] | None = None,
    now: dt.datetime = NOW,
    workload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The status with the download `cache` says, before (`workload` None) or while the
    replicas of an earlier version serve."""
    observed = Observed(
        generation=1,
        plan=PLAN,
        blocker=None,
        credentials=None,
        replicas=1,
        workload=workload,
        diagnosis=None,
        endpoint=None,
        selector=f"{names.DEPLOYMENT_LABEL}=nano",
        cache=cache,
    )
    return desired_status(observed, previous, now)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_a_key_without_access_to_the_model_is_named_and_stalls_while_the_job_retries() -> None:
    cache = fill(job(failed=1), [exited("nano-download-a", NGC_PERMISSION_DENIED)])
    assert (cache.condition.status, cache.condition.reason) == (False, "NGCNotEntitled")
    assert cache.failing and not cache.gave_up
    message = cache.condition.message
    assert "Permission error" in message  # the NIM's own words
    assert "nano-download" in message and PROFILE in message
    found = conditions(status_of(cache))
    for kind in ("CacheReady", "Ready"):
        assert found[kind] == ("False", "NGCNotEntitled")
    assert found["Degraded"] == ("True", "NGCNotEntitled")
    assert found["Stalled"] == ("True", "NGCNotEntitled")  # a person must grant the access
    assert found["Reconciling"][0] == "False"


def test_without_a_key_in_the_download_pod_the_refusal_says_a_key_is_required() -> None:
    cache = fill(job(), [exited("nano-download-a", NGC_PERMISSION_DENIED, key=False)])
    assert cache.condition.reason == "NGCKeyRequired"


def test_a_cause_that_may_mend_is_retried_until_the_progress_deadline() -> None:
    pulling = pod(
        "nano-download-a",
        {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
        phase="Pending",
    )
    timeout = {
        "kind": "Event",
        "metadata": {"name": "nano-download-a.1", "namespace": "llm"},
        "involvedObject": {"kind": "Pod", "name": "nano-download-a", "uid": "uid-nano-download-a"},
        "reason": "Failed",
        "type": "Warning",
        "message": f'Failed to pull image "{IMAGE}": dial tcp 1.2.3.4:443: i/o timeout',
        "lastTimestamp": iso(NOW - dt.timedelta(seconds=20)),
    }
    cache = fill(job(), [pulling], [timeout])
    assert cache.condition.reason == "ImagePullFailed" and cache.condition.reason in RETRIED
    first = status_of(cache)
    found = conditions(first)
    assert found["Reconciling"] == ("True", "ImagePullFailed")
    assert found["Stalled"][0] == "False"
    assert seconds_until_stalled(first, NOW) == 600
    later = conditions(status_of(cache, first, NOW + dt.timedelta(minutes=11)))
    assert later["Stalled"] == ("True", "ImagePullFailed")


def test_a_failed_job_stalls_with_its_pods_cause_even_one_a_retry_could_mend() -> None:
    (case,) = [c for c in load_cases() if c.id == "nim-ngc-files-request-error-70b-nim-deploy-92"]
    statuses = case.pod["status"]["containerStatuses"]
    tail = statuses[0]["lastState"]["terminated"]["message"]  # NIM cannot reach api.ngc
    cache = fill(
        job(("Failed", "BackoffLimitExceeded"), failed=4),
        [exited(f"nano-download-{n}", tail) for n in "abcd"],
    )
    assert cache.condition.reason == "ModelSourceUnreachable" and cache.gave_up
    assert "delete job nano-download" in cache.condition.message
    assert "BackoffLimitExceeded" in cache.condition.message
    assert conditions(status_of(cache))["Stalled"] == ("True", "ModelSourceUnreachable")


def test_a_failed_job_whose_pods_are_gone_says_what_the_job_says() -> None:
    cache = fill(job(("Failed", "BackoffLimitExceeded"), failed=4), [])
    assert cache.condition.reason == "CacheDownloadFailed" and cache.gave_up
    assert "kubectl logs job/nano-download" in cache.condition.message


def test_the_pods_of_a_replaced_job_are_not_this_ones() -> None:
    stale = exited("nano-download-old", NGC_PERMISSION_DENIED, owner="uid-job-1")
    cache = fill(job(), [stale])
    assert cache.condition.reason == "CacheDownloading" and not cache.failing


def test_a_completed_job_is_downloaded_whatever_an_earlier_attempt_said() -> None:
    failed_first = exited("nano-download-a", NGC_PERMISSION_DENIED)
    cache = fill(job(("Complete", "Completed"), failed=1), [failed_first])
    assert (cache.condition.status, cache.condition.reason) == (True, "CacheDownloaded")
    assert conditions(status_of(cache))["CacheReady"] == ("True", "CacheDownloaded")


@pytest.mark.parametrize(
    ("pods", "says"),
    [
        ([], "its pod is not created yet"),
        ([pod("nano-download-a", None, phase="Pending", node=None)], "waits to be scheduled"),
        (
            [pod("nano-download-a", {"waiting": {"reason": "ContainerCreating"}}, phase="Pending")],
            "its pod starts on node cpu-0 (the NIM image is pulled",
        ),
        (
            [pod("nano-download-a", {"terminated": {"exitCode": 0}}, phase="Succeeded")],
            "its pod on node cpu-0 has finished, the Job completes",
        ),
        (
            [running("nano-download-a", dt.datetime(2026, 12, 2, 11, 58, tzinfo=dt.UTC))],
            # 40 GiB at 100 MB/s: 429.5 s after the start
            "downloading on node cpu-0 since 2026-12-02T11:58:00Z, 40 GiB expected; at an "
            "assumed 100 MB/s it would be done about 2026-12-02T12:05:09Z (an estimate",
        ),
    ],
    ids=["no-pod", "unscheduled", "starting", "finished", "downloading"],
)
def test_the_progress_says_how_far_the_download_is(pods: list[dict[str, Any]], says: str) -> None:
    cache = fill(job(), pods)
    assert cache.condition.reason == "CacheDownloading" and not cache.failing
    assert says in cache.condition.message
    later = cache_ready(CONTENT, job(), pods, [], PLAN, NOW + dt.timedelta(minutes=3))
    assert later == cache  # no clock in the text: a running download costs no status writes
    found = conditions(status_of(cache))
    assert found["Ready"] == ("False", "CacheDownloading")
    assert found["Reconciling"] == ("True", "CacheDownloading")


def test_a_retry_running_after_a_failed_attempt_counts_the_attempts() -> None:
    since = NOW - dt.timedelta(minutes=1)
    first = exited("nano-download-a", NGC_PERMISSION_DENIED, created=NOW - dt.timedelta(minutes=5))
    second = running("nano-download-b", since, created=NOW - dt.timedelta(minutes=2))
    cache = fill(job(failed=1), [first, second])
    assert cache.condition.reason == "CacheDownloading"  # the running retry supersedes it
    assert "attempt 2 of 4, downloading on node cpu-0" in cache.condition.message


def test_the_world_gives_a_converge_the_download_pods_and_their_warnings() -> None:
    downloading = running("nano-download-a", NOW)
    warning = {"involvedObject": {"kind": "Pod", "name": "nano-download-a"}, "type": "Warning"}
    world = World(
        deployments={},
        gpu_nodes={},
        gpu_requests={},
        owned_pods={},
        pod_warnings={("llm", "nano-download-a"): [packed(warning)]},
        download_pods={("llm", "nano"): [packed(downloading)]},
    )
    snapshot = world.snapshot(("llm", "nano"))
    assert snapshot.download_pods == [downloading] and snapshot.warnings == [warning]
    assert snapshot.pods == []  # not a NIM pod: no replica, no GPUs counted


def test_a_new_version_downloading_shows_in_the_ready_reason_and_posts_no_event() -> None:
    serving = {"status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}}

    def status(cache: CacheFill | None, previous: dict[str, Any] | None) -> dict[str, Any]:
        return status_of(cache, previous, workload=serving)

    before = status(None, None)
    downloading = status(fill(job(), [running("nano-download-a", NOW)]), before)
    ready = next(c for c in downloading["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "CacheDownloading")  # kubectl get
    assert "1/1 replicas serve" in ready["message"] and PROFILE in ready["message"]
    done = status(fill(job(("Complete", "Completed")), []), downloading)
    assert conditions(done)["Ready"] == ("True", "Ready")
    for previous, current in ((before, downloading), (downloading, done)):
        news = [
            event_for(c) for c in changed_reasons(previous["conditions"], current["conditions"])
        ]
        assert [n for n in news if n] == []


def snapshot_with_download_pods(pods: list[dict[str, Any]]) -> Snapshot:
    """What a converge sees of a NemotronDeployment whose download Job runs, given its pods."""
    layout_job = job()
    layout_job["metadata"]["annotations"] = {
        names.CACHE_CONTENT_ANNOTATION: f"{layout._planned_image()} {layout.PROFILE}"
    }
    body = layout.deployment(
        "nano",
        gpu={"product": layout.L40S},
        profile=layout.PROFILE,
        cache={"accessMode": "ReadWriteMany"},
    )
    claim = {"kind": "PersistentVolumeClaim", "metadata": {"name": "nano-cache"}}
    return Snapshot(
        body,
        children={"PersistentVolumeClaim": claim, "Job": layout_job},
        pools=gpu_pools([node("gpu-1", product=layout.L40S, memory_mib=46068)]),
        download_pods=pods,
    )


def converge_with_download_pods(pods: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    """One converge (the shell, with a fake cluster) of a NemotronDeployment whose download Job
    runs, given its pods: the outcome, and the CacheReady condition written."""
    cluster = layout.FakeCluster()
    outcome = layout.converger(cluster).converge(snapshot_with_download_pods(pods), NOW)
    (status,) = [s for what, s in cluster.writes if what == "status"]
    (cache,) = [c for c in status["conditions"] if c["type"] == "CacheReady"]
    return outcome, cache


def test_the_operator_feeds_the_download_pods_to_cache_ready() -> None:
    _, cache = converge_with_download_pods([exited("nano-download-a", NGC_PERMISSION_DENIED)])
    assert (cache["status"], cache["reason"]) == ("False", "NGCNotEntitled")


def test_a_download_pod_waiting_for_its_claim_is_looked_at_again_when_its_grace_ends() -> None:
    waiting = pod(
        "nano-download-a", None, phase="Pending", node=None, created=NOW - dt.timedelta(seconds=10)
    )
    outcome, cache = converge_with_download_pods([waiting])
    assert cache["reason"] == "CacheDownloading"
    assert outcome.requeue_after == CLAIM_BINDING_GRACE_SECONDS - 10 + MARGIN_SECONDS
