"""When a NIM will not start, the NemotronDeployment says why and what to change (issue 5).

Each cause is produced on the real pod: by the fake kubelet writing what a kubelet writes (the
container state, the log tail NIM leaves with FallbackToLogsOnError, the kubelet's Events), or
by the real scheduler. The user-visible result is checked: `Degraded` and `Ready` carry the
reason, the message quotes the evidence and says what to change, one Event per new cause, and
the status recovers once the cause is gone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from nemotron_operator.api import names
from nemotron_operator.core.diagnose import CLAIM_BINDING_GRACE_SECONDS
from tests.standins.registry import VALID_KEY

from .conftest import Cluster, OperatorProcess, wait_until
from .fake_kubelet import FakeKubelet
from .harness import gpu_node_manifest
from .nemotron import NemotronDeployments
from .observed import (
    EVENT_WAIT,
    KEY_SECRET,
    events_about,
    failing,
    nim_pod,
    pods_of,
    posted_once,
    put_key_secret,
    recovered,
)
from .private_operator import PrivateOperator, private_operator

H100 = "NVIDIA-H100-80GB-HBM3"
NANO_ON_H100 = {"model": "nemotron-3-nano", "gpu": {"product": H100}}
WITH_KEY = {**NANO_ON_H100, "ngc": {"apiKeySecret": {"name": KEY_SECRET}}}
# a user's own variable from a Secret that is not there (the kubelet: CreateContainerConfigError)
WITH_HF_TOKEN = {
    **NANO_ON_H100,
    "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "t"}}}],
}


@pytest.fixture
def nds(cluster: Cluster, namespace: str, operator: OperatorProcess) -> NemotronDeployments:
    return NemotronDeployments(cluster, namespace)


# --- the log tails NIM leaves (FallbackToLogsOnError copies them into the pod status) ---------

PROFILE = "8c91cce8a3a5c1bd3ad1b7d8b8d1d1ca2a7f7c2b3e0e8a0d0a4e0d5b4c1f2e3d"
SELECTED = (
    f"INFO 2026-03-01 11:02:11.403 ngc_injector.py:322] Selected profile: {PROFILE} "
    "(vllm-fp8-tp1-pp1)"
)
AUTH_ERROR_LOG = "\n".join(
    [
        "INFO 2026-03-01 11:02:11.402 ngc_profile.py:222] Running NIM without LoRA. Only looking "
        "for compatible profiles that do not support LoRA.",
        SELECTED,
        "INFO 2026-03-01 11:02:11.911 ngc_injector.py:346] Preparing model workspace. This step "
        "might download additional files to run the model.",
        "ERROR 2026-03-01 11:02:12.710 nim_sdk.py:338] Download failed after 1 attempts. Last "
        "exception: Authentication Error",
        "Traceback (most recent call last):",
        '  File "/opt/nim/llm/nimlib/nim_sdk.py", line 330, in download_models',
        "nimlib.exceptions.ManifestDownloadError: Error downloading manifest: Authentication Error",
    ]
)

NOT_ENTITLED_JSONL = "\n".join(
    [
        '{"level": "INFO", "time": "2026-03-01 11:02:11,403", "file_name": "ngc_injector.py", '
        f'"line_number": 322, "message": "Selected profile: {PROFILE} (vllm-fp8-tp1-pp1)"}}',
        '{"level": "ERROR", "time": "2026-03-01 11:02:12,710", "file_name": "nim_sdk.py", '
        '"line_number": 338, "message": "Download failed after 1 attempts. Last exception: '
        "Permission error: The requested operation requires permissions that the user does not "
        "have. This may be due to the user not being a member of the organization that owns the "
        'repo."}',
        '{"level": "ERROR", "time": "2026-03-01 11:02:12,711", "file_name": "entrypoint.py", '
        '"line_number": 61, "message": "nimlib.exceptions.ManifestDownloadError: Error '
        'downloading manifest: Permission error: ...", "exc_info": "Traceback (most recent call '
        'last): ..."}',
    ]
)

NO_RUNNABLE_PROFILE_LOG = "\n".join(
    [
        SELECTED,
        "INFO 2026-03-01 11:02:13.001 ngc_injector.py:401] Checking free GPU memory: 31.2 GiB of "
        "79.1 GiB free on GPU 0",
        "ERROR 2026-03-01 11:02:13.104 utils.py:21] Could not find a profile that is currently "
        "runnable with the detected hardware. Please check the system information below and make "
        "sure you have enough free GPUs.",
        "SYSTEM INFO",
        "- Free GPUs:",
        "  -  [2330:10de] (0) NVIDIA H100 80GB HBM3 (H100 80GB) [current utilization: 61%]",
    ]
)

CUDA_OOM_JSONL = "\n".join(
    [
        '{"level": "INFO", "time": "2026-03-01 11:04:40,002", "message": "Loading weights took '
        '31.44 GiB and 48.2 seconds; the model uses plenty of GPU memory"}',
        '{"level": "ERROR", "time": "2026-03-01 11:04:52,913", "message": "Engine core '
        'initialization failed.", "exc_info": "Traceback (most recent call last):\\n  File '
        '\\"/opt/nim/llm/vllm/worker.py\\", line 214, in determine_num_available_blocks\\n'
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 "
        'GiB total capacity; 77.02 GiB already allocated; 1.06 GiB free)"}',
    ]
)

CACHE_PERMISSION_LOG = "\n".join(
    [
        "INFO 2026-03-01 11:02:11.911 ngc_injector.py:346] Preparing model workspace. This step "
        "might download additional files to run the model.",
        "ERROR 2026-03-01 11:02:12.004 nim_sdk.py:301] Failed to create the model cache directory",
        "PermissionError: [Errno 13] Permission denied: "
        "'/opt/nim/.cache/ngc/hub/models--nim--nvidia--nemotron-3-nano'",
    ]
)

UNKNOWN_CRASH_LOG = "\n".join(
    [
        "INFO 2026-03-01 11:05:01.100 launch.py:88] Starting the OpenAI-compatible server on "
        "port 8000",
        "ERROR 2026-03-01 11:05:03.220 engine.py:512] Worker proc VllmWorker-0 died "
        "unexpectedly, shutting down executor.",
        "RuntimeError: Engine core initialization failed. See root cause above. Failed core "
        "proc(s): {'EngineCore_0': 1}",
    ]
)

UNKNOWN_CRASH_JSONL = "\n".join(
    [
        '{"level": "INFO", "message": "Starting the OpenAI-compatible server on port 8000"}',
        '{"level": "ERROR", "message": "RuntimeError: Engine core initialization failed. See root '
        "cause above. Failed core proc(s): {'EngineCore_0': 1}\"}",
    ]
)

RAY_GCS_JSONL = "\n".join(
    [
        '{"level": "INFO", "message": "Starting the OpenAI-compatible server on port 8000"}',
        '{"level": "ERROR", "message": "ray.exceptions.RaySystemError: System error: '
        'Failed to connect to GCS within 60 seconds"}',
    ]
)

# containerd's StartError when the NVIDIA runtime hook finds no driver (NVIDIA/nvidia-docker#1629)
NVML_DRIVER_NOT_LOADED = (
    "failed to create shim: OCI runtime create failed: container_linux.go:380: starting container "
    "process caused: process_linux.go:545: container init caused: Running hook #0:: error running "
    "hook: exit status 1, stdout: , stderr: nvidia-container-cli: initialization error: nvml "
    "error: driver not loaded: unknown"
)


def pull_403(image: str) -> str:
    """containerd's text for a pull from nvcr.io without usable credentials."""
    repository = image.split("/", 1)[1].rsplit(":", 1)[0].replace("/", "%2F")
    return (
        f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
        "failed to authorize: failed to fetch anonymous token: unexpected status from GET "
        f"request to https://nvcr.io/proxy_auth?scope=repository%3A{repository}%3Apull: "
        "403 Forbidden"
    )


def pull_manifest_unknown(image: str) -> str:
    repository, tag = image.rsplit(":", 1)
    return (
        f"rpc error: code = NotFound desc = failed to pull and unpack image "
        f'"{image}": failed to resolve reference "{image}": {repository}:{tag}: not found: '
        "manifest unknown: manifest unknown"
    )


# --- causes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cause:
    id: str
    spec: dict[str, Any]
    act: Callable[[FakeKubelet, client.V1Pod], None]
    reason: str
    evidence: tuple[str, ...]  # quoted in the message
    remedy: tuple[str, ...]  # what to change, in the message


def _image(pod: client.V1Pod) -> str:
    return str(pod.spec.containers[0].image)


CAUSES = [
    Cause(
        "ngc-key-rejected",
        WITH_KEY,
        lambda k, pod: k.crash_loop(pod, restarts=3, message=AUTH_ERROR_LOG),
        "NGCAuthenticationFailed",
        ("Error downloading manifest: Authentication Error",),
        ("valid key",),
    ),
    Cause(
        "no-key-and-ngc-says-authentication",
        NANO_ON_H100,
        lambda k, pod: k.crash_loop(pod, restarts=1, message=AUTH_ERROR_LOG),
        "NGCKeyRequired",
        ("Authentication Error",),
        ("Create a Secret holding an NGC API key",),
    ),
    Cause(
        "not-entitled-jsonl",
        WITH_KEY,
        lambda k, pod: k.crash_loop(pod, restarts=2, message=NOT_ENTITLED_JSONL),
        "NGCNotEntitled",
        ("Permission error",),
        ("entitled to this NIM",),
    ),
    Cause(
        "image-pull-403",
        NANO_ON_H100,
        lambda k, pod: k.image_pull_failed(pod, message=pull_403(_image(pod))),
        "ImagePullUnauthorized",
        ("403 Forbidden",),
        ("$oauthtoken",),
    ),
    Cause(
        "image-pull-backoff-403",
        NANO_ON_H100,
        lambda k, pod: k.image_pull_failed(pod, message=pull_403(_image(pod)), backoff=True),
        "ImagePullUnauthorized",
        ("403 Forbidden",),
        ("$oauthtoken",),
    ),
    Cause(
        "image-manifest-unknown",
        NANO_ON_H100,
        lambda k, pod: k.image_pull_failed(pod, message=pull_manifest_unknown(_image(pod))),
        "ImageNotFound",
        ("manifest unknown",),
        ("repository and tag",),
    ),
    Cause(
        "no-runnable-profile",
        NANO_ON_H100,
        lambda k, pod: k.terminated(pod, exit_code=1, message=NO_RUNNABLE_PROFILE_LOG),
        "InsufficientGPUMemory",
        ("Could not find a profile that is currently runnable",),
        ("maxModelLength (now 262144)", "2 GPUs per replica", "34 GiB per GPU"),
    ),
    Cause(
        "cuda-out-of-memory-jsonl",
        NANO_ON_H100,
        lambda k, pod: k.crash_loop(pod, restarts=2, message=CUDA_OOM_JSONL),
        "InsufficientGPUMemory",
        ("CUDA out of memory",),
        ("lower maxModelLength", "2 GPUs per replica"),
    ),
    Cause(
        "cache-not-writable",
        NANO_ON_H100,
        lambda k, pod: k.crash_loop(pod, restarts=2, message=CACHE_PERMISSION_LOG),
        "CacheNotWritable",
        ("Permission denied: '/opt/nim/.cache",),
        ("writable by uid 1000",),
    ),
    Cause(
        "secret-missing",
        WITH_HF_TOKEN,
        lambda k, pod: k.config_error(pod, message='secret "hf-token" not found'),
        "SecretNotFound",
        ('secret "hf-token" not found',),
        ("Create the Secret",),
    ),
    Cause(
        "host-memory",
        NANO_ON_H100,
        lambda k, pod: k.oom_killed(pod, restarts=2),
        "HostMemoryExhausted",
        ("OOMKilled", "exit code 137", "2 restarts"),
        ("memory limit",),
    ),
    Cause(
        "unrecognised-crash",
        NANO_ON_H100,
        lambda k, pod: k.crash_loop(pod, restarts=5, message=UNKNOWN_CRASH_LOG),
        "CrashLoop",
        ("5 restarts", "Engine core initialization failed"),
        ("kubectl logs --previous",),
    ),
    Cause(
        "unrecognised-crash-jsonl",
        NANO_ON_H100,
        lambda k, pod: k.crash_loop(pod, restarts=1, message=UNKNOWN_CRASH_JSONL),
        "CrashLoop",
        ("Failed core proc(s)",),
        ("kubectl logs --previous",),
    ),
    Cause(
        "ray-cannot-reach-gcs-jsonl",
        NANO_ON_H100,
        lambda k, pod: k.crash_loop(pod, restarts=1, message=RAY_GCS_JSONL),
        "DistributedInitFailed",
        ("Failed to connect to GCS within 60 seconds",),
        ("reach each other",),
    ),
    Cause(
        "runtime-hook-finds-no-nvidia-driver",
        NANO_ON_H100,
        lambda k, pod: k.start_error(pod, message=NVML_DRIVER_NOT_LOADED),
        "GPUUnavailable",
        ("StartError", "nvml error: driver not loaded"),
        ("device plugin and container toolkit",),
    ),
    Cause(
        "exited-with-an-unknown-error",
        NANO_ON_H100,
        lambda k, pod: k.terminated(pod, exit_code=2, message=UNKNOWN_CRASH_LOG),
        "CrashLoop",
        ("exit code 2", "Engine core initialization failed"),
        ("kubectl logs --previous",),
    ),
]


@pytest.mark.parametrize("cause", CAUSES, ids=[c.id for c in CAUSES])
def test_each_cause_is_named_with_its_evidence_and_remedy_then_recovers(
    cluster: Cluster,
    namespace: str,
    nds: NemotronDeployments,
    kubelet: FakeKubelet,
    cause: Cause,
) -> None:
    if cause.spec is WITH_KEY:
        put_key_secret(cluster, namespace, VALID_KEY)
    nds.create("nano", cause.spec)
    nds.wait_condition("nano", "Ready", "True")
    pod = nim_pod(cluster, namespace, "nano")

    cause.act(kubelet, pod)
    degraded = failing(nds, "nano", cause.reason)
    message = degraded["message"]
    for text in (*cause.evidence, *cause.remedy):
        assert text in message, f"{text!r} not in {message!r}"
    posted_once(cluster, namespace, "nano", cause.reason)

    kubelet.ready(pod)
    recovered(nds, "nano")


def test_an_unchanged_cause_posts_one_event_and_keeps_its_transition_time(
    cluster: Cluster, namespace: str, nds: NemotronDeployments, kubelet: FakeKubelet
) -> None:
    nds.create("nano", NANO_ON_H100)
    nds.wait_condition("nano", "Ready", "True")
    pod = nim_pod(cluster, namespace, "nano")

    kubelet.crash_loop(pod, restarts=1, message=UNKNOWN_CRASH_LOG)
    first = failing(nds, "nano", "CrashLoop")
    ready_since = nds.condition("nano", "Ready")["lastTransitionTime"]  # type: ignore[index]
    for restarts in (2, 3, 4, 5, 6):
        time.sleep(1.1)  # transition times have whole seconds: a new one would show
        kubelet.crash_loop(pod, restarts=restarts, message=UNKNOWN_CRASH_LOG)
        wait_until(
            lambda r=restarts: f"{r} restarts" in nds.condition("nano", "Degraded")["message"],  # type: ignore[index]
            f"the message to count {restarts} restarts",
        )
    degraded = nds.condition("nano", "Degraded")
    ready = nds.condition("nano", "Ready")
    assert degraded is not None and ready is not None
    assert degraded["lastTransitionTime"] == first["lastTransitionTime"]
    assert ready["lastTransitionTime"] == ready_since
    assert (degraded["status"], degraded["reason"]) == ("True", "CrashLoop")
    posted_once(cluster, namespace, "nano", "CrashLoop")

    # a new cause is news: one Event for it; and the same log again after it is not a flap
    kubelet.oom_killed(pod, restarts=7)
    failing(nds, "nano", "HostMemoryExhausted")
    kubelet.oom_killed(pod, restarts=7)
    time.sleep(2)  # nothing may happen: prove it did not
    posted_once(cluster, namespace, "nano", "HostMemoryExhausted")
    posted_once(cluster, namespace, "nano", "CrashLoop")


def test_a_failure_on_one_of_several_pods_is_counted(
    cluster: Cluster, namespace: str, nds: NemotronDeployments, kubelet: FakeKubelet
) -> None:
    nds.create("nano", {**NANO_ON_H100, "replicas": 3})
    nds.wait_condition("nano", "Ready", "True")
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(
        namespace, label_selector=f"{names.DEPLOYMENT_LABEL}=nano"
    )
    assert len(pods.items) == 3
    kubelet.crash_loop(pods.items[0], restarts=2, message=CACHE_PERMISSION_LOG)
    degraded = failing(nds, "nano", "CacheNotWritable")
    assert "(1 of 3 pods)" in degraded["message"]
    kubelet.ready(pods.items[0])
    recovered(nds, "nano")


# --- Unschedulable: the real scheduler says it -----------------------------------------------


@pytest.fixture
def private_h100_node(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[str]:
    """An H100 node of this test's own: labelled and tainted so that only this namespace's
    NemotronDeployment (which selects and tolerates it) goes there. Yields the pool label."""
    pool = f"diag-{uuid.uuid4().hex[:6]}"
    node = gpu_node_manifest(
        tmp_path,
        pool,
        {
            "product": H100,
            "count": 4,
            "memoryMiB": 81559,
            "computeMajor": 9,
            "computeMinor": 0,
            "family": "hopper",
        },
        cpu="208",
        memory="2Ti",
    )
    node["spec"]["taints"].append(
        {"key": "e2e.nemotron.dev/private", "value": pool, "effect": "NoSchedule"}
    )
    core = client.CoreV1Api(cluster.api)
    core.create_node(node)
    try:
        yield pool
    finally:
        core.delete_node(node["metadata"]["name"])


def gpu_hog(namespace: str, pool: str, gpus: int) -> dict[str, Any]:
    """Another tenant's pod holding GPUs of the private node."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gpu-hog", "namespace": namespace},
        "spec": {
            "nodeSelector": {"nemotron.dev/node-pool": pool},
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "train",
                    "image": "nvcr.io/nvidia/pytorch:25.01-py3",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


PRIVATE_TOLERATION = {
    "key": "e2e.nemotron.dev/private",
    "operator": "Exists",
    "effect": "NoSchedule",
}


def on_private_node(pool: str) -> dict[str, Any]:
    return {
        **NANO_ON_H100,
        "nodeSelector": {"nemotron.dev/node-pool": pool},
        "tolerations": [PRIVATE_TOLERATION],
    }


def test_no_free_gpu_of_the_pinned_product_is_unschedulable_until_one_is_freed(
    cluster: Cluster, namespace: str, nds: NemotronDeployments, private_h100_node: str
) -> None:
    pool = private_h100_node
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, gpu_hog(namespace, pool, 4))
    wait_until(
        lambda: core.read_namespaced_pod("gpu-hog", namespace).spec.node_name,
        "the other tenant's pod to take every GPU of the node",
    )
    nds.create("nano", on_private_node(pool))
    degraded = failing(nds, "nano", "Unschedulable")
    assert "1 Insufficient nvidia.com/gpu" in degraded["message"]
    assert "Not enough free GPUs (the pod asks for 1 nvidia.com/gpu)" in degraded["message"]
    assert "no node has the labels" not in degraded["message"]  # the other nodes: not selected
    posted_once(cluster, namespace, "nano", "Unschedulable")

    core.delete_namespaced_pod("gpu-hog", namespace, grace_period_seconds=0)
    recovered(nds, "nano")


# --- StartupTimeout: an operator with a short allowance, really honoured ----------------------

SHORT_ALLOWANCE_SECONDS = 4


@pytest.fixture(scope="module")
def impatient_operator(
    cluster: Cluster, crd_installed: None, registry: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivateOperator]:
    with private_operator(
        cluster,
        "slow",
        tmp_path_factory.mktemp("impatient-operator"),
        {
            "NEMOTRON_NGC_REGISTRY_URL": registry.url,
            "NEMOTRON_STARTUP_ALLOWANCE_SECONDS": str(SHORT_ALLOWANCE_SECONDS),
        },
    ) as private:
        yield private


def test_a_nim_not_ready_past_its_startup_allowance_is_a_startup_timeout(
    cluster: Cluster, impatient_operator: PrivateOperator, request: pytest.FixtureRequest
) -> None:
    namespace = impatient_operator.namespace(request.node.name)
    nds, kubelet = NemotronDeployments(cluster, namespace), FakeKubelet(cluster.api, namespace)
    nds.create("nano", NANO_ON_H100)
    nds.wait_condition("nano", "Ready", "True")
    pod = nim_pod(cluster, namespace, "nano")

    kubelet.not_ready(pod)  # the container (re)started and loads the model
    started = time.monotonic()
    starting = nds.wait_condition("nano", "Ready", "False", "Starting")
    assert nds.condition("nano", "Degraded")["status"] == "False"  # type: ignore[index]
    assert "can take many minutes" in starting["message"]

    # no event says the allowance ran out: the operator looks again at that moment itself
    degraded = failing(nds, "nano", "StartupTimeout", timeout=SHORT_ALLOWANCE_SECONDS + EVENT_WAIT)
    # counted from the kubelet's startedAt, which has whole seconds
    assert time.monotonic() - started >= SHORT_ALLOWANCE_SECONDS - 1
    assert f"allowance of {SHORT_ALLOWANCE_SECONDS} s" in degraded["message"]
    assert "pre-fill the cache" in degraded["message"]
    posted_once(cluster, namespace, "nano", "StartupTimeout")

    kubelet.ready(pod)
    recovered(nds, "nano")


# --- pods failed whole, and what the scheduler says now ------------------------------------------

# The kubelet's eviction message (LMCache/LMCache#1399, in the corpus: engines.yaml)
EPHEMERAL_STORAGE_EVICTION = (
    "The node was low on resource: ephemeral-storage. Threshold quantity: 638834513199, "
    "available: 434266920Ki."
)
# The scheduler's note while a claim is not bound yet (open-metadata/openmetadata-helm-charts#417)
UNBOUND_CLAIM_NOTE = (
    "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 "
    "nodes are available: 2 Preemption is not helpful for scheduling."
)


NIM_ANCHOR = {"e2e.nemotron.dev/nim-anchor": "true"}


def anchor_pod(namespace: str, pool: str) -> dict[str, Any]:
    """A pod the NIM must run beside (its pod affinity): without it no NIM pod is placed."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "anchor", "namespace": namespace, "labels": NIM_ANCHOR},
        "spec": {
            "nodeSelector": {"nemotron.dev/node-pool": pool},
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "sleep", "image": "busybox:1.36"}],
        },
    }


def test_an_evicted_pod_is_disk_full_until_its_replacement_serves(
    cluster: Cluster,
    namespace: str,
    nds: NemotronDeployments,
    kubelet: FakeKubelet,
    private_h100_node: str,
) -> None:
    pool = private_h100_node
    core = client.CoreV1Api(cluster.api)
    # The NIM runs only beside the anchor pod (the scheduler checks that when it places a pod,
    # the planner does not): with the anchor gone, the evicted pod's replacement waits.
    beside_the_anchor = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": NIM_ANCHOR},
                    "topologyKey": "nemotron.dev/node-pool",
                }
            ]
        }
    }
    core.create_namespaced_pod(namespace, anchor_pod(namespace, pool))
    # a shared cache: the pods are a Deployment's, whose evicted pod stays beside its
    # replacement (a StatefulSet's would be deleted and made again under the same name)
    shared_cache = {"accessMode": "ReadWriteMany"}
    nds.create(
        "nano", {**on_private_node(pool), "affinity": beside_the_anchor, "cache": shared_cache}
    )
    nds.wait_condition("nano", "Ready", "True")
    pod = nim_pod(cluster, namespace, "nano")
    core.delete_namespaced_pod("anchor", namespace, grace_period_seconds=0)
    wait_until(
        lambda: (
            not [
                p for p in core.list_namespaced_pod(namespace).items if p.metadata.name == "anchor"
            ]
        ),
        "the anchor pod to go",
    )

    kubelet.evicted(pod, message=EPHEMERAL_STORAGE_EVICTION)
    degraded = failing(nds, "nano", "DiskFull")
    assert "The pod was evicted" in degraded["message"]
    assert "low on resource: ephemeral-storage" in degraded["message"]
    assert "PersistentVolumeClaim large enough" in degraded["message"]
    wait_until(lambda: len(pods_of(cluster, namespace, "nano")) == 2, "the replacement pod")
    posted_once(cluster, namespace, "nano", "DiskFull")

    core.create_namespaced_pod(namespace, anchor_pod(namespace, pool))
    recovered(nds, "nano", timeout=30)  # the evicted pod stays listed: its replacement serves
    evicted = core.read_namespaced_pod(pod.metadata.name, namespace)
    assert (evicted.status.phase, evicted.status.reason) == ("Failed", "Evicted")


def settled_news(cluster: Cluster, namespace: str, name: str) -> int:
    """How many Events the NemotronDeployment has once none came for a second and a half (the
    operator posts them just after its status writes)."""
    count, since = -1, time.monotonic()
    while time.monotonic() - since < 1.5:
        now = len(events_about(cluster, namespace, name))
        if now != count:
            count, since = now, time.monotonic()
        time.sleep(0.1)
    return count


def scheduled_condition(core: client.CoreV1Api, namespace: str, pod: str) -> str | None:
    """The message of the pod's PodScheduled condition."""
    conditions = core.read_namespaced_pod(pod, namespace).status.conditions or []
    return next((c.message for c in conditions if c.type == "PodScheduled"), None)


def test_a_stale_scheduling_event_does_not_outrank_the_pods_condition(
    cluster: Cluster,
    namespace: str,
    nds: NemotronDeployments,
    kubelet: FakeKubelet,
    private_h100_node: str,
) -> None:
    pool = private_h100_node
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(namespace, gpu_hog(namespace, pool, 4))
    wait_until(
        lambda: core.read_namespaced_pod("gpu-hog", namespace).spec.node_name,
        "the other tenant's pod to take every GPU of the node",
    )
    nds.create("nano", on_private_node(pool))
    (pod,) = wait_until(lambda: pods_of(cluster, namespace, "nano"), "the NIM pod")
    # the scheduler's own messages go through the claim's binding (unbound; bound to a volume
    # it has not seen yet) before they settle on the GPUs: let them settle
    wait_until(
        lambda: all(
            c.status.phase == "Bound"
            for c in core.list_namespaced_persistent_volume_claim(namespace).items
        ),
        "the cache claim to be bound",
    )
    wait_until(
        lambda: (
            "Insufficient nvidia.com/gpu"
            in (scheduled_condition(core, namespace, pod.metadata.name) or "")
        ),
        "the scheduler to say the GPUs are taken",
    )
    degraded = failing(nds, "nano", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in degraded["message"]

    # The scheduler's Event says the claim is not bound (its first attempt's note, counting
    # on); the pod's PodScheduled condition, rewritten on every attempt, says the GPUs are taken.
    news_before = settled_news(cluster, namespace, "nano")
    kubelet.first_scheduling_note(pod, UNBOUND_CLAIM_NOTE)
    wait_until(
        lambda: any(
            e.message == UNBOUND_CLAIM_NOTE
            for e in core.list_namespaced_event(namespace).items
            if e.involved_object.name == pod.metadata.name
        ),
        "the stale scheduling Event",
    )
    time.sleep(2)  # the operator converges on the Event: nothing may change
    age = time.time() - pod.metadata.creation_timestamp.timestamp()
    now = nds.condition("nano", "Degraded")
    assert now is not None and (now["status"], now["reason"]) == ("True", "Unschedulable")
    # (other tests' nodes coming and going may change the node counts the scheduler gives)
    assert "Insufficient nvidia.com/gpu" in now["message"]
    assert "unbound" not in now["message"] and "not bound" not in now["message"]
    assert "Not enough free GPUs" in now["message"]
    assert age < CLAIM_BINDING_GRACE_SECONDS, "within the claim's grace: reported all the same"
    assert len(events_about(cluster, namespace, "nano")) == news_before, "no news from it"

    core.delete_namespaced_pod("gpu-hog", namespace, grace_period_seconds=0)
    recovered(nds, "nano")
