"""The failure classifier on pod statuses and events shaped like the real ones."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemotron_operator.api.types import PlanStatus
from nemotron_operator.core.diagnose import (
    DIAGNOSIS_REASONS,
    Diagnosis,
    Reason,
    diagnose,
    diagnose_pods,
    format_diagnosis,
    pods_and_events,
    redact,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IMAGE = "nvcr.io/nim/nvidia/nemotron-3-super-120b-a12b:2.0.3"
CANARY = "nvapi-CANARY7f3c9b1e2d4a6c8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c"
L40S_PLAN = {
    "image": IMAGE,
    "precision": "bf16",
    "tensorParallelSize": 2,
    "pipelineParallelSize": 1,
    "gpusPerReplica": 2,
    "nodesPerReplica": 1,
    "gpuProduct": "NVIDIA-L40S",
    "memoryPerGPUGiB": 42.0,
    "usablePerGPUGiB": 41.0,
    "memorySource": "published",
    "maxModelLength": 131072,
    "fits": False,
    "reason": "InsufficientGPUMemory",
    "message": "does not fit",
}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def nim_pod(
    name: str = "super-0",
    *,
    state: dict[str, Any] | None = None,
    last_state: dict[str, Any] | None = None,
    restarts: int = 0,
    ready: bool = False,
    env: tuple[str, ...] = ("NGC_API_KEY",),
    node: str | None = "gpu-node-1",
    conditions: list[dict[str, Any]] | None = None,
    phase: str = "Running",
    gpus: int = 2,
) -> dict[str, Any]:
    """A NIM pod as `kubectl get pod -o json` shows it."""
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "nim",
                "image": IMAGE,
                "env": [
                    {"name": n, "valueFrom": {"secretKeyRef": {"name": "ngc-api", "key": n}}}
                    for n in env
                ],
                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
            }
        ],
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    }
    if node:
        spec["nodeName"] = node
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions
        if conditions is not None
        else [{"type": "PodScheduled", "status": "True"}],
    }
    if state is not None:
        status["containerStatuses"] = [
            {
                "name": "nim",
                "image": IMAGE,
                "ready": ready,
                "restartCount": restarts,
                "state": state,
                "lastState": last_state or {},
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "llm", "uid": f"uid-{name}"},
        "spec": spec,
        "status": status,
    }


def crashed(message: str, restarts: int = 3, exit_code: int = 1, **pod: Any) -> dict[str, Any]:
    """A pod in CrashLoopBackOff whose last run left `message` as its log tail."""
    return nim_pod(
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}},
        last_state={
            "terminated": {
                "exitCode": exit_code,
                "reason": "Error",
                "message": message,
                "finishedAt": iso(NOW - timedelta(seconds=30)),
            }
        },
        restarts=restarts,
        **pod,
    )


def pulling(waiting_reason: str, message: str) -> dict[str, Any]:
    return nim_pod(state={"waiting": {"reason": waiting_reason, "message": message}})


def event(pod: str, reason: str, message: str, age_seconds: int = 10, **extra: Any) -> dict:
    return {
        "kind": "Event",
        "metadata": {"name": f"{pod}.{reason}", "namespace": "llm"},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": "llm", "uid": f"uid-{pod}"},
        "reason": reason,
        "message": message,
        "type": "Warning",
        "lastTimestamp": iso(NOW - timedelta(seconds=age_seconds)),
        **extra,
    }


def jsonl(*records: dict[str, Any]) -> str:
    return "\n".join(json.dumps(r) for r in records)


# ---------------------------------------------------------------------------------------------
# NGC access from inside the container

NGC_PERMISSION_ERROR = (
    "INFO 2026-03-01 11:58:01.113 ngc_injector.py:152] Valid profile: vllm-bf16-tp2-pp1\n"
    "ERROR 2026-03-01 11:58:02.410 nim_sdk.py:338] Download failed after 1 attempts. Last "
    "exception: Permission error: The requested operation requires permissions that the user "
    "does not have. This may be due to the user not being a member of the organization that "
    "owns the repo.\n"
    "Traceback (most recent call last):\n"
    '  File "/opt/nim/llm/nimlib/nim_sdk.py", line 340, in download\n'
    "nimlib.exceptions.ManifestDownloadError: Error downloading manifest: Permission error: "
    "The requested operation requires permissions that the user does not have."
)


def test_rejected_ngc_key_is_named_and_quoted() -> None:
    pod = crashed(
        "INFO 2026-03-01 11:58:01 Downloading manifest\n"
        "nimlib.exceptions.ManifestDownloadError: Error downloading manifest: Authentication Error"
    )
    found = diagnose(pod, [], now=NOW)
    assert found is not None
    assert found.reason == Reason.NGC_AUTHENTICATION_FAILED
    assert "Authentication Error" in found.message
    assert (found.pod, found.container) == ("super-0", "nim")
    assert "key" in found.hint


def test_key_without_entitlement_is_not_entitled() -> None:
    found = diagnose(crashed(NGC_PERMISSION_ERROR), [], now=NOW)
    assert found is not None
    assert found.reason == Reason.NGC_NOT_ENTITLED
    assert "requires permissions that the user does not have" in found.message


def test_ngc_refusal_without_any_key_in_the_pod_says_a_key_is_required() -> None:
    found = diagnose(crashed(NGC_PERMISSION_ERROR, env=()), [], now=NOW)
    assert found is not None
    assert found.reason == Reason.NGC_KEY_REQUIRED
    assert "Secret" in found.hint


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (
            jsonl(
                {"level": "INFO", "message": "Selected profile vllm-fp8-tp2-pp1"},
                {
                    "level": "ERROR",
                    "logger": "nim_sdk",
                    "message": "Download failed after 1 attempts. Last exception: Permission "
                    "error: The requested operation requires permissions that the user does not "
                    "have.",
                },
            ),
            Reason.NGC_NOT_ENTITLED,
        ),
        (
            jsonl(
                {"severity": "error", "msg": "Error downloading manifest: Authentication Error"},
            ),
            Reason.NGC_AUTHENTICATION_FAILED,
        ),
        (
            jsonl(
                {"level": "INFO", "message": "Detected 2 compatible GPUs"},
                {
                    "level": "ERROR",
                    "message": "Could not find a profile that is currently runnable with the "
                    "detected hardware. Please check the system information below and make sure "
                    "you have enough free GPUs.",
                },
            ),
            Reason.NO_PROFILE_FOR_GPU,
        ),
        (
            jsonl(
                {
                    "level": "ERROR",
                    "message": "Engine core initialization failed",
                    "exc_info": "Traceback (most recent call last):\n  File x\n"
                    "ValueError: No available memory for the cache blocks. Try increasing "
                    "`gpu_memory_utilization` when initializing the engine.",
                }
            ),
            Reason.INSUFFICIENT_GPU_MEMORY,
        ),
    ],
)
def test_json_log_lines_are_read_by_their_message(tail: str, reason: Reason) -> None:
    found = diagnose(crashed(tail), [], now=NOW)
    assert found is not None
    assert found.reason == reason
    assert "{" not in found.message, "the quote is the message, not the JSON record"


def test_requests_style_401_from_ngc_is_an_authentication_failure() -> None:
    tail = (
        "requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: "
        "https://api.ngc.nvidia.com/v2/org/nim/team/nvidia/models/nemotron-3-super/files"
    )
    found = diagnose(crashed(tail), [], now=NOW)
    assert found is not None and found.reason == Reason.NGC_AUTHENTICATION_FAILED


def test_unknown_profile_name_is_reported_with_how_to_name_it() -> None:
    tail = (
        "ERROR 2026-03-01 11:58:02 Model download failed: Environment variable NIM_MODEL_PROFILE "
        "is set to vllm-fp8-tp2, but no matching profile_id or profile description is found in "
        "manifest."
    )
    found = diagnose(crashed(tail), [], now=NOW)
    assert found is not None
    assert found.reason == Reason.MODEL_PROFILE_NOT_FOUND
    assert "64-hex" in found.hint


# ---------------------------------------------------------------------------------------------
# Image pulls

CONTAINERD_ANONYMOUS_403 = (
    f'Failed to pull image "{IMAGE}": failed to pull and unpack image "{IMAGE}": failed to '
    f'resolve reference "{IMAGE}": failed to authorize: failed to fetch anonymous token: '
    "unexpected status from GET request to https://nvcr.io/proxy_auth?scope=repository%3Anim%2F"
    "nvidia%2Fnemotron-3-super-120b-a12b%3Apull: 403 Forbidden"
)


@pytest.mark.parametrize(
    "message",
    [
        CONTAINERD_ANONYMOUS_403,
        f'Failed to pull image "{IMAGE}": rpc error: code = Unknown desc = failed to pull and '
        f'unpack image "{IMAGE}": failed to resolve reference "{IMAGE}": unexpected status from '
        f"HEAD request to https://nvcr.io/v2/nim/nvidia/nemotron-3-super-120b-a12b/manifests/"
        f"2.0.3: 401 Unauthorized",
        f'Failed to pull image "{IMAGE}": initializing source docker://{IMAGE}: reading manifest '
        "2.0.3 in nvcr.io/nim/nvidia/nemotron-3-super-120b-a12b: unauthorized: authentication "
        "required",
        f'Failed to pull image "{IMAGE}": failed to resolve reference "{IMAGE}": unexpected status '
        "from HEAD request to https://nvcr.io/v2/nim/nvidia/nemotron-3-super-120b-a12b/manifests/"
        "2.0.3: 402 Payment Required",
        'Failed to pull image "docker.io/acme/nim-mirror:2.0.3": Error response from daemon: '
        "payment required",
        f'Failed to pull image "{IMAGE}": reading manifest 2.0.3 in '
        "nvcr.io/nim/nvidia/nemotron-3-super-120b-a12b: insufficient_scope: authorization failed",
        'Failed to pull image "acme/nim:1": pull access denied for acme/nim, repository does not '
        "exist or may require 'docker login': denied: requested access to the resource is denied",
    ],
)
def test_refused_pulls_are_unauthorized(message: str) -> None:
    found = diagnose(pulling("ErrImagePull", message), [], now=NOW)
    assert found is not None
    assert found.reason == Reason.IMAGE_PULL_UNAUTHORIZED
    assert "$oauthtoken" in found.hint


def test_back_off_reads_the_cause_from_the_kubelet_event() -> None:
    pod = pulling("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"')
    events = [
        event("super-0", "BackOff", f'Back-off pulling image "{IMAGE}"', age_seconds=5),
        event("super-0", "Failed", "Error: ImagePullBackOff", age_seconds=5),
        event("super-0", "Failed", CONTAINERD_ANONYMOUS_403, age_seconds=30),
    ]
    found = diagnose(pod, events, now=NOW)
    assert found is not None
    assert found.reason == Reason.IMAGE_PULL_UNAUTHORIZED
    assert "403 Forbidden" in found.message
    assert "failed to fetch anonymous token: unexpected status" in found.message


def test_the_current_pull_error_outranks_an_older_attempts_refusal() -> None:
    missing = (
        f'failed to pull and unpack image "{IMAGE}": failed to resolve reference "{IMAGE}": '
        f"{IMAGE}: not found"
    )
    pod = pulling("ErrImagePull", missing)
    events = [
        event("super-0", "Failed", f'Failed to pull image "{IMAGE}": {missing}', age_seconds=5),
        event("super-0", "Failed", CONTAINERD_ANONYMOUS_403, age_seconds=300),
    ]
    found = diagnose(pod, events, now=NOW)
    assert found is not None
    assert found.reason == Reason.IMAGE_NOT_FOUND
    back_off = pulling("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"')
    found = diagnose(back_off, events, now=NOW)
    assert found is not None and found.reason == Reason.IMAGE_NOT_FOUND, "the newest Event"


def test_events_about_other_pods_are_ignored() -> None:
    pod = pulling("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"')
    found = diagnose(pod, [event("other-0", "Failed", CONTAINERD_ANONYMOUS_403)], now=NOW)
    assert found is not None
    assert found.reason == Reason.IMAGE_PULL_FAILED


@pytest.mark.parametrize(
    ("waiting", "message"),
    [
        (
            "ErrImagePull",
            'failed to pull and unpack image "nvcr.io/nim/nvidia/nemotron-3-nano:9.9.9": failed to '
            'resolve reference "nvcr.io/nim/nvidia/nemotron-3-nano:9.9.9": '
            "nvcr.io/nim/nvidia/nemotron-3-nano:9.9.9: not found",
        ),
        (
            "ErrImagePull",
            "initializing source docker://nvcr.io/nim/nvidia/nemotron-3-nano:9.9.9: reading "
            "manifest 9.9.9 in nvcr.io/nim/nvidia/nemotron-3-nano: manifest unknown",
        ),
    ],
)
def test_missing_images_are_not_found(waiting: str, message: str) -> None:
    found = diagnose(pulling(waiting, message), [], now=NOW)
    assert found is not None
    assert found.reason == Reason.IMAGE_NOT_FOUND
    assert "tag" in found.hint


@pytest.mark.parametrize(
    "message",
    [
        'failed to pull and unpack image "x": failed to resolve reference "x": failed to do '
        "request: Head https://nvcr.io/v2/nim/nvidia/x/manifests/2.0.3: dial tcp: lookup nvcr.io "
        "on 10.96.0.10:53: no such host",
        "pinging container registry nvcr.io: Get https://nvcr.io/v2/: dial tcp 1.2.3.4:443: "
        "i/o timeout",
    ],
)
def test_network_pull_failures_are_not_blamed_on_credentials(message: str) -> None:
    found = diagnose(pulling("ErrImagePull", message), [], now=NOW)
    assert found is not None
    assert found.reason == Reason.IMAGE_PULL_FAILED
    assert "network" in found.hint


# ---------------------------------------------------------------------------------------------
# Secrets


@pytest.mark.parametrize(
    "message",
    ['secret "ngc-api" not found', "couldn't find key NGC_API_KEY in Secret llm/ngc-api"],
)
def test_missing_secret_or_key(message: str) -> None:
    found = diagnose(pulling("CreateContainerConfigError", message), [], now=NOW)
    assert found is not None
    assert found.reason == Reason.SECRET_NOT_FOUND
    assert message in found.message


def test_other_container_config_errors_are_not_called_a_missing_secret() -> None:
    pod = pulling("CreateContainerConfigError", 'configmap "nim-config" not found')
    found = diagnose(pod, [], now=NOW)
    assert found is not None
    assert found.reason == Reason.CONTAINER_CONFIG_ERROR


def test_unmountable_secret_volume_keeps_pod_creating() -> None:
    pod = nim_pod(state={"waiting": {"reason": "ContainerCreating"}}, phase="Pending")
    events = [
        event(
            "super-0",
            "FailedMount",
            'MountVolume.SetUp failed for volume "ngc-pull" : secret "ngc-pull" not found',
        )
    ]
    found = diagnose(pod, events, now=NOW)
    assert found is not None
    assert found.reason == Reason.SECRET_NOT_FOUND


def test_missing_pull_secret_explains_the_refused_pull() -> None:
    pod = pulling("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"')
    events = [
        event(
            "super-0",
            "FailedToRetrieveImagePullSecret",
            "Unable to retrieve some image pull secrets (ngc-pull); attempting to pull the image "
            "may not succeed.",
        ),
        event("super-0", "Failed", CONTAINERD_ANONYMOUS_403),
    ]
    found = diagnose(pod, events, now=NOW)
    assert found is not None
    assert found.reason == Reason.SECRET_NOT_FOUND
    assert "ngc-pull" in found.message


# ---------------------------------------------------------------------------------------------
# GPU memory


@pytest.mark.parametrize(
    "tail",
    [
        "ERROR 2026-03-01 11:59:01.2 utils.py:21] Could not find a profile that is currently "
        "runnable with the detected hardware. Please check the system information below and make "
        "sure you have enough free GPUs.\nSYSTEM INFO\n- Free GPUs: <None>\n- Non-free GPUs:\n"
        "  -  [2330:10de] (0) NVIDIA H100 80GB HBM3 (H100 80GB) [current utilization: 91%]",
        "ValueError: No available memory for the cache blocks. Try increasing "
        "`gpu_memory_utilization` when initializing the engine.",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB "
        "total capacity; 77.02 GiB already allocated; 1.06 GiB free)",
        "RuntimeError: CUDA driver error: out of memory",
        "ValueError: The model's max seq len (262144) is larger than the maximum number of tokens "
        "that can be stored in KV cache (118528). Try increasing `gpu_memory_utilization` or "
        "decreasing `max_model_len` when initializing the engine.",
        "ValueError: To serve at least one request with the models's max seq len (262144), "
        "(12.0 GiB KV cache is needed, which is larger than the available KV cache memory (3.2 "
        "GiB). Try increasing `gpu_memory_utilization` or decreasing `max_model_len`",
        "ValueError: Free memory on device (30.5/44.39 GiB) on startup is less than desired GPU "
        "memory utilization (0.9, 39.95 GiB). Decrease GPU memory utilization or reduce GPU "
        "memory used by other processes.",
        "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.",
        "[TensorRT-LLM][ERROR] CUDA runtime error in cudaMalloc: cudaErrorMemoryAllocation",
    ],
)
def test_gpu_memory_shortage_is_recognised_across_engines(tail: str) -> None:
    found = diagnose(crashed(tail), [], plan=PlanStatus.model_validate(L40S_PLAN), now=NOW)
    assert found is not None
    assert found.reason == Reason.INSUFFICIENT_GPU_MEMORY


def test_gpu_memory_hint_uses_the_plans_numbers() -> None:
    tail = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    found = diagnose(crashed(tail), [], plan=PlanStatus.model_validate(L40S_PLAN), now=NOW)
    assert found is not None
    assert found.hint == (
        "Needs ~42 GiB per GPU on 2 x NVIDIA-L40S with 41 GiB usable: lower maxModelLength "
        "(now 131072), use fp8, or 4 GPUs per replica."
    )


def test_gpu_memory_hint_when_the_plan_expected_a_fit() -> None:
    plan = PlanStatus.model_validate({**L40S_PLAN, "memoryPerGPUGiB": 35.0, "precision": "fp8"})
    found = diagnose(crashed("CUDA out of memory"), [], plan=plan, now=NOW)
    assert found is not None
    assert "expected ~35 GiB per GPU to fit" in found.hint
    assert "nvfp4" in found.hint


def test_gpu_memory_hint_without_a_plan_is_still_actionable() -> None:
    found = diagnose(crashed("CUDA out of memory"), [], now=NOW)
    assert found is not None
    assert "maxModelLength" in found.hint and "more GPUs" in found.hint


# ---------------------------------------------------------------------------------------------
# Scheduling

BRIEF_FAILED_SCHEDULING = (
    "0/8 nodes are available: 3 Insufficient nvidia.com/gpu, 1 node(s) had untolerated taint "
    "{nvidia.com/gpu: present}, 4 node(s) didn't match Pod's node affinity/selector. "
    "preemption: 0/8 nodes are available: 3 No preemption victims found for incoming pod, "
    "5 Preemption is not helpful for scheduling."
)


def test_unschedulable_pod_quotes_the_scheduler_and_says_what_to_change() -> None:
    pod = nim_pod(
        node=None,
        phase="Pending",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": BRIEF_FAILED_SCHEDULING,
            }
        ],
    )
    found = diagnose(pod, [event("super-0", "FailedScheduling", BRIEF_FAILED_SCHEDULING)], now=NOW)
    assert found is not None
    assert found.reason == Reason.UNSCHEDULABLE
    assert "3 Insufficient nvidia.com/gpu" in found.message
    assert "preemption" not in found.message
    assert "the pod asks for 2 nvidia.com/gpu" in found.hint
    assert "{nvidia.com/gpu: present}" in found.hint
    assert "toleration" in found.hint
    # 4 of 8 nodes have other GPUs: the selector doing its job, not a cause to fix
    assert "no node has the labels" not in found.hint


def test_only_the_schedulers_reasons_are_quoted() -> None:
    message = (
        "0/9 nodes are available: 1 Insufficient nvidia.com/gpu, 8 node(s) didn't match Pod's "
        "node affinity/selector. no new claims to deallocate, preemption: 0/9 nodes are "
        "available: 1 No preemption victims found for incoming pod, 8 Preemption is not helpful "
        "for scheduling."
    )
    pod = nim_pod(node=None, phase="Pending", conditions=[])
    found = diagnose(pod, [event("super-0", "FailedScheduling", message)], now=NOW)
    assert found is not None
    assert found.message == (
        'No node can run the pod: "0/9 nodes are available: 1 Insufficient nvidia.com/gpu, '
        "8 node(s) didn't match Pod's node affinity/selector.\""
    )


def test_a_selector_no_node_matches_is_the_cause() -> None:
    message = "0/8 nodes are available: 8 node(s) didn't match Pod's node affinity/selector."
    pod = nim_pod(node=None, phase="Pending", conditions=[])
    found = diagnose(pod, [event("super-0", "FailedScheduling", message)], now=NOW)
    assert found is not None and found.reason == Reason.UNSCHEDULABLE
    assert "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3" in found.hint


UNBOUND_CLAIM = "0/8 nodes are available: pod has unbound immediate PersistentVolumeClaims."


def test_a_new_pod_waiting_for_its_cache_volume_is_not_yet_a_failure() -> None:
    pod = nim_pod(node=None, phase="Pending", conditions=[])
    pod["metadata"]["creationTimestamp"] = iso(NOW - timedelta(seconds=5))
    assert diagnose(pod, [event("super-0", "FailedScheduling", UNBOUND_CLAIM)], now=NOW) is None
    later = NOW + timedelta(minutes=2)
    found = diagnose(pod, [event("super-0", "FailedScheduling", UNBOUND_CLAIM)], now=later)
    assert found is not None and found.reason == Reason.UNSCHEDULABLE
    assert "PersistentVolumeClaim is not bound" in found.hint


def test_scheduler_event_alone_is_enough() -> None:
    pod = nim_pod(node=None, phase="Pending", conditions=[])
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    found = diagnose(pod, [event("super-0", "FailedScheduling", message)], now=NOW)
    assert found is not None and found.reason == Reason.UNSCHEDULABLE


def test_old_scheduling_failure_of_a_scheduled_pod_is_history() -> None:
    pod = nim_pod(state={"running": {"startedAt": iso(NOW - timedelta(minutes=2))}})
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    assert diagnose(pod, [event("super-0", "FailedScheduling", message, 600)], now=NOW) is None


# ---------------------------------------------------------------------------------------------
# Host memory, cache volume


def test_oom_killed_is_host_memory_not_gpu_memory() -> None:
    pod = nim_pod(
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        last_state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
        restarts=2,
    )
    found = diagnose(pod, [], now=NOW)
    assert found is not None
    assert found.reason == Reason.HOST_MEMORY_EXHAUSTED
    assert "OOMKilled" in found.message and "2 restarts" in found.message


@pytest.mark.parametrize(
    "tail",
    [
        "PermissionError: [Errno 13] Permission denied: '/opt/nim/.cache/ngc/hub/models--nim'",
        "OSError: [Errno 30] Read-only file system: '/cache/ngc'",
        "ERROR nim_sdk.py:120] Cache directory /data/nim is not writable by the current user",
    ],
)
def test_unwritable_or_full_cache(tail: str) -> None:
    found = diagnose(crashed(tail), [], now=NOW)
    assert found is not None
    assert found.reason == Reason.CACHE_NOT_WRITABLE
    assert "uid 1000" in found.hint


def test_full_shared_memory_is_not_blamed_on_the_cache() -> None:
    tail = "RuntimeError: NCCL error: unhandled system error: No space left on device (/dev/shm)"
    found = diagnose(crashed(tail), [], now=NOW)
    assert found is not None and found.reason == Reason.SHARED_MEMORY_TOO_SMALL
    assert "medium: Memory" in found.hint


# ---------------------------------------------------------------------------------------------
# Crash loops, startup time, and what must not be misread


def test_unrecognised_crash_is_an_honest_crash_loop_with_the_last_lines() -> None:
    tail = "\n".join(
        [
            "INFO 03-01 11:59:40 Loading safetensors checkpoint shards: 100% 49/49",
            "ERROR 03-01 11:59:58 [core.py:700] EngineCore failed to start.",
            "RuntimeError: CUDA error: an illegal memory access was encountered",
            "CUDA kernel errors might be asynchronously reported at some other API call",
        ]
    )
    found = diagnose(crashed(tail, restarts=4), [], now=NOW)
    assert found is not None
    assert found.reason == Reason.CRASH_LOOP
    assert "an illegal memory access" in found.message
    assert "4 restarts" in found.message and "exit code 1" in found.message
    assert "Loading safetensors" not in found.message


def test_healthy_lines_about_memory_and_permissions_are_not_evidence() -> None:
    tail = "\n".join(
        [
            "INFO 03-01 11:59:01 [gpu_worker.py:227] Available KV cache memory: 20.12 GiB",
            "INFO 03-01 11:59:01 [config.py:1200] gpu_memory_utilization=0.9, not enough memory "
            "headroom warnings disabled",
            "WARNING 03-01 11:59:02 [cuda_graph.py:40] Not enough memory for all CUDA graph sizes;"
            " capturing fewer",
            '{"level": "INFO", "message": "Checking cache permissions: Permission denied errors '
            'would appear here; /opt/nim/.cache is writable"}',
            '{"level": "warning", "message": "NGC returned 403 Forbidden for an optional '
            'telemetry manifest; continuing"}',
            "GPU KV cache size: 412,416 tokens",
            "Maximum concurrency for 131,072 tokens per request: 3.15x",
            "RuntimeError: NCCL error in: /pytorch/torch/csrc/distributed/c10d/NCCLUtils.hpp:268, "
            "unhandled system error",
        ]
    )
    found = diagnose(crashed(tail), [], now=NOW)
    assert found is not None
    assert found.reason == Reason.DISTRIBUTED_INIT_FAILED
    assert "NCCL error" in found.message


def test_ready_pod_with_an_old_crash_is_healthy() -> None:
    pod = nim_pod(
        state={"running": {"startedAt": iso(NOW - timedelta(hours=1))}},
        last_state={"terminated": {"exitCode": 1, "message": "CUDA out of memory"}},
        restarts=1,
        ready=True,
    )
    assert diagnose(pod, [], now=NOW) is None


def test_loading_pod_within_its_allowance_is_healthy() -> None:
    pod = nim_pod(state={"running": {"startedAt": iso(NOW - timedelta(minutes=5))}})
    assert diagnose(pod, [], now=NOW) is None


def test_not_ready_after_the_startup_allowance_is_a_startup_timeout() -> None:
    pod = nim_pod(state={"running": {"startedAt": iso(NOW - timedelta(minutes=25))}})
    found = diagnose(pod, [], now=NOW, startup_allowance_seconds=1200)
    assert found is not None
    assert found.reason == Reason.STARTUP_TIMEOUT
    assert "started at 2026-03-01T11:35:00Z" in found.message
    assert "allowance of 20 min" in found.message
    later = diagnose(pod, [], now=NOW + timedelta(minutes=7), startup_allowance_seconds=1200)
    assert later == found, "an unchanged cause gives an unchanged message"


@pytest.mark.parametrize(
    ("allowance", "shown"), [(45, "45 s"), (90, "90 s"), (3600, "1 h"), (5400, "1 h 30 min")]
)
def test_a_startup_allowance_is_shown_in_whole_units(allowance: int, shown: str) -> None:
    pod = nim_pod(state={"running": {"startedAt": iso(NOW - timedelta(hours=3))}})
    found = diagnose(pod, [], now=NOW, startup_allowance_seconds=allowance)
    assert found is not None and f"allowance of {shown}." in found.message


def test_startup_probe_restart_is_a_startup_timeout() -> None:
    pod = nim_pod(
        state={"running": {"startedAt": iso(NOW - timedelta(minutes=1))}},
        last_state={"terminated": {"exitCode": 137, "reason": "Error"}},
        restarts=1,
    )
    events = [event("super-0", "Killing", "Container nim failed startup probe, will be restarted")]
    found = diagnose(pod, events, now=NOW)
    assert found is not None and found.reason == Reason.STARTUP_TIMEOUT


def test_pod_without_status_has_nothing_to_say() -> None:
    assert diagnose({"metadata": {"name": "new"}}, [], now=NOW) is None


# ---------------------------------------------------------------------------------------------
# Secrets never leak into what the classifier says


@pytest.mark.parametrize(
    "tail",
    [
        f"ERROR Error downloading manifest: Authentication Error for key {CANARY}",
        f"ERROR environment: NGC_API_KEY={CANARY[6:]} NIM_CACHE_PATH=/opt/nim/.cache\n"
        "RuntimeError: engine died",
        jsonl({"level": "ERROR", "message": f"bad header Authorization: Bearer {CANARY[6:]}"}),
        jsonl({"level": "ERROR", "message": f'config {{"NGC_API_KEY": "{CANARY[6:]}"}}'}),
    ],
)
def test_keys_in_log_lines_are_redacted(tail: str) -> None:
    found = diagnose(crashed(tail), [], now=NOW)
    assert found is not None
    for output in ("text", "json"):
        assert CANARY[6:] not in format_diagnosis(found, output)


def test_redact_keeps_profile_ids_and_digests() -> None:
    profile = "8c91cce8a0b3e2f9d6f2f7c1b8d83a0b5b9e3d4c6f7a8b9c0d1e2f3a4b5c6d7e"
    text = f"profile {profile} image@sha256:{profile} key {CANARY} token: unexpected status"
    assert (
        redact(text) == f"profile {profile} image@sha256:{profile} key *** token: unexpected status"
    )
    assert redact(f"password={CANARY[6:]}") == "password=***"


# ---------------------------------------------------------------------------------------------
# Many pods


def test_many_pods_give_the_most_decisive_cause_whatever_their_order() -> None:
    pods = [
        crashed("RuntimeError: engine died", name="super-2"),
        crashed("Error downloading manifest: Authentication Error", name="super-1"),
        nim_pod("super-3", state={"running": {"startedAt": iso(NOW)}}, ready=True),
        crashed("Error downloading manifest: Authentication Error", name="super-0"),
    ]
    answers = set()
    for seed in range(5):
        random.Random(seed).shuffle(pods)
        answers.add(diagnose_pods(pods, [], plan=None, now=NOW))
    assert len(answers) == 1
    (found,) = answers
    assert found is not None
    assert found.reason == Reason.NGC_AUTHENTICATION_FAILED
    assert found.pod == "super-0"
    assert found.message.endswith("(2 of 4 pods)")


def test_pods_being_deleted_do_not_count() -> None:
    old = crashed("CUDA out of memory", name="old-0")
    old["metadata"]["deletionTimestamp"] = iso(NOW)
    assert diagnose_pods([old], [], now=NOW) is None


def test_all_healthy_pods_give_none() -> None:
    ready = nim_pod(state={"running": {"startedAt": iso(NOW)}}, ready=True)
    assert diagnose_pods([ready, ready], [], now=NOW) is None


# ---------------------------------------------------------------------------------------------
# Command-line input and output


def test_kubectl_list_of_pods_and_events_is_split() -> None:
    pod = pulling("ImagePullBackOff", "Back-off pulling image")
    document = {
        "kind": "List",
        "items": [pod, event("super-0", "Failed", CONTAINERD_ANONYMOUS_403)],
    }
    pods, events = pods_and_events(document)
    assert [p["metadata"]["name"] for p in pods] == ["super-0"]
    assert len(events) == 1
    assert pods_and_events(pod) == ([pod], [])


def test_json_output_has_reason_message_hint() -> None:
    found = Diagnosis(Reason.CRASH_LOOP, "It crashed.", "Look at the logs.", "p", "nim")
    fields = json.loads(format_diagnosis(found, "json"))
    assert fields == {
        "reason": "CrashLoop",
        "message": "It crashed.",
        "hint": "Look at the logs.",
        "pod": "p",
        "container": "nim",
    }
    assert json.loads(format_diagnosis(None, "json"))["reason"] is None


def test_text_output_reads_as_a_sentence() -> None:
    found = Diagnosis(Reason.CRASH_LOOP, "It crashed.", "Look at the logs.", "p", "nim")
    assert format_diagnosis(found) == "CrashLoop (p/nim)\n  It crashed.\n  Hint: Look at the logs."
    assert format_diagnosis(None) == "No problem found."
    with pytest.raises(ValueError, match="text, json"):
        format_diagnosis(found, "yaml")


# ---------------------------------------------------------------------------------------------
# Whatever comes in, the classifier answers


json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
words = st.sampled_from(
    [
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "CreateContainerConfigError",
        "InvalidImageName",
        "OOMKilled",
        "Unschedulable",
        "Evicted",
        "FailedScheduling",
        "Failed",
        "FailedMount",
        "Killing",
        "CUDA out of memory",
        "Authentication Error",
        "[Errno 13] Permission denied: '/opt/nim/.cache'",
        '{"level": "ERROR", "message": "Permission error"}',
        "2026-03-01T11:00:00Z",
        "not-a-date",
        "True",
        "False",
    ]
)
anything = json_values | words


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return value | anything


container_status = st.fixed_dictionaries(
    {},
    optional={
        "name": maybe(st.just("nim")),
        "image": anything,
        "ready": maybe(st.booleans()),
        "restartCount": maybe(st.integers(-3, 10)),
        "state": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "waiting": maybe(
                        st.fixed_dictionaries({}, optional={"reason": words, "message": anything})
                    ),
                    "running": maybe(st.fixed_dictionaries({}, optional={"startedAt": anything})),
                    "terminated": maybe(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "exitCode": anything,
                                "reason": words,
                                "message": anything,
                            },
                        )
                    ),
                },
            )
        ),
        "lastState": anything,
    },
)
pod_like = st.fixed_dictionaries(
    {},
    optional={
        "kind": maybe(st.just("Pod")),
        "metadata": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": anything,
                    "namespace": anything,
                    "uid": anything,
                    "deletionTimestamp": anything,
                },
            )
        ),
        "spec": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "nodeName": anything,
                    "nodeSelector": anything,
                    "containers": maybe(st.lists(anything, max_size=2)),
                },
            )
        ),
        "status": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "phase": anything,
                    "reason": words,
                    "message": anything,
                    "conditions": maybe(st.lists(anything, max_size=2)),
                    "containerStatuses": maybe(st.lists(container_status, max_size=2)),
                    "initContainerStatuses": anything,
                },
            )
        ),
    },
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "involvedObject": maybe(
            st.fixed_dictionaries({}, optional={"kind": anything, "name": anything})
        ),
        "reason": words,
        "message": anything,
        "lastTimestamp": anything,
    },
)
plan_like = st.none() | st.builds(
    lambda changes: PlanStatus.model_validate({**L40S_PLAN, **changes}),
    st.dictionaries(
        st.sampled_from(["memoryPerGPUGiB", "usablePerGPUGiB", "gpusPerReplica", "maxModelLength"]),
        st.none() | st.integers(1, 200),
        max_size=4,
    ),
)


def assert_valid(found: object) -> None:
    assert found is None or isinstance(found, Diagnosis)
    if isinstance(found, Diagnosis):
        assert found.reason in DIAGNOSIS_REASONS
        assert found.message and found.hint
        assert isinstance(found.pod, str) and isinstance(found.container, str)
        json.loads(format_diagnosis(found, "json"))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(pods=st.lists(pod_like | anything, max_size=3), events=st.lists(event_like | anything))
def test_any_pod_shaped_input_gives_a_valid_answer(pods: list, events: list) -> None:
    for pod in pods:
        assert_valid(diagnose(pod, events, now=NOW))
    assert_valid(diagnose_pods(pods, events, now=NOW))


@settings(max_examples=200)
@given(pod=anything, events=anything, plan=plan_like)
def test_any_value_at_all_gives_a_valid_answer(pod: Any, events: Any, plan: Any) -> None:
    assert_valid(diagnose(pod, events, plan, now=NOW))
    assert_valid(diagnose_pods(pod, events, plan, now=NOW))


# ---------------------------------------------------------------------------------------------
# Causes of issue 12, as different engines, runtimes and releases word them


def runtime_refused(message: str, restarts: int = 2) -> dict[str, Any]:
    """A container containerd could not start: StartError (exit 128) then a back-off."""
    return nim_pod(
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting"}},
        last_state={"terminated": {"exitCode": 128, "reason": "StartError", "message": message}},
        restarts=restarts,
    )


NVML_NOT_LOADED = (
    "failed to create containerd task: failed to create shim task: OCI runtime create failed: "
    "runc create failed: unable to start container process: error during container init: error "
    "running hook #0: error running hook: exit status 1, stdout: , stderr: Auto-detected mode as "
    "'legacy'\nnvidia-container-cli: initialization error: nvml error: driver not loaded: unknown"
)


@pytest.mark.parametrize(
    ("tail", "reason", "quoted"),
    [
        (
            "RuntimeError: The NVIDIA driver on your system is too old (found version 11040). "
            "Please update your GPU driver",
            Reason.GPU_DRIVER_INCOMPATIBLE,
            "too old",
        ),
        (
            "[TensorRT-LLM][ERROR] CUDA runtime error in ::cudaGetDeviceCount(&device_count): CUDA "
            "driver version is insufficient for CUDA runtime version",
            Reason.GPU_DRIVER_INCOMPATIBLE,
            "insufficient for CUDA runtime",
        ),
        (
            "RuntimeError: Unexpected error from cudaGetDeviceCount(). Did you run some cuda "
            "functions before calling NumCudaDevices() that might have already set an error? "
            "Error 804: forward compatibility was attempted on non supported HW",
            Reason.GPU_DRIVER_INCOMPATIBLE,
            "forward compatibility",
        ),
        ("RuntimeError: No CUDA GPUs are available", Reason.GPU_UNAVAILABLE, "No CUDA GPUs"),
        (
            "RuntimeError: CUDA error: uncorrectable ECC error encountered",
            Reason.GPU_UNAVAILABLE,
            "ECC",
        ),
        (
            "RuntimeError: Found no NVIDIA driver on your system. Please check that you have an "
            "NVIDIA GPU and installed a driver",
            Reason.GPU_UNAVAILABLE,
            "no NVIDIA driver",
        ),
        (
            "DEBUG 08-29 04:29:54 [__init__.py:99] CUDA platform is not available because: NVML "
            "Shared Library Not Found\nRuntimeError: Device string must not be empty",
            Reason.GPU_UNAVAILABLE,
            "Device string",
        ),
        (
            "huggingface_hub.errors.GatedRepoError: 401 Client Error. Cannot access gated repo for "
            "url https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/resolve/main/config.json.",
            Reason.HUGGING_FACE_ACCESS_DENIED,
            "gated repo",
        ),
        (
            "requests.exceptions.HTTPError: 403 Client Error: Forbidden for url: "
            "https://huggingface.co/api/models/meta-llama/Llama-3.1-8B-Instruct",
            Reason.HUGGING_FACE_ACCESS_DENIED,
            "403",
        ),
        (
            "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='api.ngc.nvidia.com', "
            "port=443): Max retries exceeded with url: /v2/org/nim (Caused by NameResolutionError("
            "\"Failed to resolve 'api.ngc.nvidia.com' ([Errno -3] Temporary failure in name "
            'resolution)"))',
            Reason.MODEL_SOURCE_UNREACHABLE,
            "name resolution",
        ),
        (
            "requests.exceptions.SSLError: HTTPSConnectionPool(host='huggingface.co', port=443): "
            "(Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] "
            "certificate verify failed: self signed certificate in certificate chain')))",
            Reason.MODEL_SOURCE_UNREACHABLE,
            "CERTIFICATE_VERIFY_FAILED",
        ),
        (
            'Traceback (most recent call last):\n  File "/venv/lib/urllib3/connection.py", line '
            "174, in _new_conn\nConnectionRefusedError: [Errno 111] Connection refused",
            Reason.MODEL_SOURCE_UNREACHABLE,
            "Connection refused",
        ),
        (
            "host:221:221 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.5<0>\n"
            "host:221:221 [0] NCCL WARN Error while creating shared memory segment "
            "/dev/shm/nccl-vzIpS6 (size 9637888)\n"
            "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1269, "
            "unhandled system error",
            Reason.SHARED_MEMORY_TOO_SMALL,
            "/dev/shm/nccl-",
        ),
        (
            "RuntimeError: DataLoader worker (pid 412) is killed by signal: Bus error. It is "
            "possible that dataloader's workers are out of shared memory.",
            Reason.SHARED_MEMORY_TOO_SMALL,
            "Bus error",
        ),
        (
            "OSError: [Errno 28] No space left on device: '/model-store/ngc/hub/blobs/3c44f4ef'",
            Reason.DISK_FULL,
            "No space left",
        ),
        (
            "ERROR 2026-03-01 11:59:01.2 utils.py:21] Could not find a profile that is currently "
            "runnable with the detected hardware. Please check the system information below and "
            "make sure you have enough free GPUs.\nSYSTEM INFO\n- Free GPUs:\n"
            "  -  [1eb8:10de] (0) Tesla T4 [current utilization: 0%]",
            Reason.NO_PROFILE_FOR_GPU,
            "currently runnable",
        ),
        (
            "ValueError: Bfloat16 is only supported on GPUs with compute capability of at least "
            "8.0. Your Tesla T4 GPU has compute capability 7.5.",
            Reason.NO_PROFILE_FOR_GPU,
            "compute capability",
        ),
        (
            "ValueError: Model architectures ['FooForCausalLM'] are not supported for now. "
            "Supported architectures: ['LlamaForCausalLM']",
            Reason.MODEL_NOT_SUPPORTED,
            "not supported",
        ),
        (
            "ValueError: Total number of attention heads (40) must be divisible by tensor "
            "parallel size (3).",
            Reason.MODEL_NOT_SUPPORTED,
            "divisible",
        ),
        (
            "torch.distributed.DistStoreError: Timed out after 601 seconds waiting for clients. "
            "1/2 clients joined.",
            Reason.DISTRIBUTED_INIT_FAILED,
            "clients joined",
        ),
        (
            "ray.exceptions.RaySystemError: System error: Failed to connect to GCS within 60 "
            "seconds",
            Reason.DISTRIBUTED_INIT_FAILED,
            "GCS",
        ),
        (
            "standard_init_linux.go:219: exec user process caused: exec format error",
            Reason.CONTAINER_START_FAILED,
            "exec format error",
        ),
    ],
)
def test_new_causes_are_named_from_the_log_tail(tail: str, reason: Reason, quoted: str) -> None:
    found = diagnose(crashed(tail), [], now=NOW)
    assert found is not None
    assert found.reason == reason, found.message
    assert quoted in found.message
    assert found.hint


def test_an_engine_dying_of_sigbus_with_nothing_said_ran_out_of_shared_memory() -> None:
    found = diagnose(crashed("INFO Loading weights", exit_code=135), [], now=NOW)
    assert found is not None and found.reason == Reason.SHARED_MEMORY_TOO_SMALL
    assert "SIGBUS (exit code 135" in found.message


def test_a_warning_line_is_no_evidence_unless_nothing_louder_says_why() -> None:
    warning = (
        "WARNING services.py:1996 -- WARNING: The object store is using /tmp instead of /dev/shm "
        "because /dev/shm has only 67108864 bytes available."
    )
    found = diagnose(crashed(warning), [], now=NOW)
    assert found is not None and found.reason == Reason.SHARED_MEMORY_TOO_SMALL
    louder = f"{warning}\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    found = diagnose(crashed(louder), [], now=NOW)
    assert found is not None and found.reason == Reason.INSUFFICIENT_GPU_MEMORY


# --- a container that never starts is never healthy -------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (NVML_NOT_LOADED, Reason.GPU_UNAVAILABLE),
        (
            "failed to create containerd task: OCI runtime create failed: nvidia-container-cli: "
            "requirement error: unsatisfied condition: cuda>=12.4, please update your driver to a "
            "newer version, or use an earlier cuda container: unknown",
            Reason.GPU_DRIVER_INCOMPATIBLE,
        ),
        (
            "failed to create containerd task: failed to create shim task: OCI runtime create "
            'failed: runc create failed: unable to start container process: exec: "/opt/nim/'
            'start_server.sh": stat /opt/nim/start_server.sh: no such file or directory: unknown',
            Reason.CONTAINER_START_FAILED,
        ),
    ],
)
def test_a_container_the_runtime_cannot_start_is_never_healthy(
    message: str, reason: Reason
) -> None:
    found = diagnose(runtime_refused(message), [], now=NOW)
    assert found is not None
    assert found.reason == reason
    assert "StartError" in found.message


@pytest.mark.parametrize(
    ("waiting", "message", "reason"),
    [
        ("RunContainerError", NVML_NOT_LOADED, Reason.GPU_UNAVAILABLE),
        (
            "CreateContainerError",
            'Error: failed to reserve container name "nim_super-0_llm_uid-super-0_0": name is '
            "reserved",
            Reason.CONTAINER_START_FAILED,
        ),
        (
            "InvalidImageName",
            'Failed to apply default image tag "nvcr.io/nim/nvidia/Nemotron:2.0": couldn\'t parse '
            "image reference: invalid reference format: repository name must be lowercase",
            Reason.CONTAINER_START_FAILED,
        ),
        ("PreStartHookError", "", Reason.CONTAINER_START_FAILED),
    ],
)
def test_every_waiting_reason_but_creating_is_a_failure_to_start(
    waiting: str, message: str, reason: Reason
) -> None:
    found = diagnose(pulling(waiting, message), [], now=NOW)
    assert found is not None
    assert found.reason == reason
    assert waiting in found.message or "image reference" in found.message


def test_a_runtime_error_only_in_the_kubelet_event_is_quoted() -> None:
    pod = pulling("RunContainerError", "")
    events = [
        event("super-0", "Failed", "Error: RunContainerError", age_seconds=2),
        event("super-0", "Failed", f"Error: failed to start container: {NVML_NOT_LOADED}", 5),
    ]
    found = diagnose(pod, events, now=NOW)
    assert found is not None and found.reason == Reason.GPU_UNAVAILABLE
    assert "driver not loaded" in found.message


def test_pulling_a_large_image_is_not_a_failure() -> None:
    pod = nim_pod(state={"waiting": {"reason": "ContainerCreating"}}, phase="Pending")
    events = [event("super-0", "Pulling", f'Pulling image "{IMAGE}"', age_seconds=180)]
    assert diagnose(pod, events, now=NOW) is None


def test_a_sandbox_without_the_nvidia_runtime_means_no_usable_gpu() -> None:
    pod = nim_pod(state={"waiting": {"reason": "ContainerCreating"}}, phase="Pending")
    events = [
        event(
            "super-0",
            "FailedCreatePodSandBox",
            "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox "
            'runtime: no runtime for "nvidia" is configured',
        )
    ]
    found = diagnose(pod, events, now=NOW)
    assert found is not None and found.reason == Reason.GPU_UNAVAILABLE


def test_a_pull_that_fills_the_disk_is_disk_full_not_a_network_problem() -> None:
    pod = pulling(
        "ErrImagePull",
        f'failed to pull and unpack image "{IMAGE}": failed to extract layer sha256:ba31: write '
        "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/604/fs/usr/lib/"
        "libLLVM.so.20.1: no space left on device: unknown",
    )
    events = [event("super-0", "Failed", "Error: ErrImagePull", age_seconds=1)]
    found = diagnose(pod, events, now=NOW)
    assert found is not None and found.reason == Reason.DISK_FULL
    assert "no space left on device" in found.message


# --- pods the kubelet failed whole --------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, "
            "available: 9Gi. Container nim was using 61Gi, which exceeds its request of 0.",
            Reason.DISK_FULL,
        ),
        ("Pod ephemeral local storage usage exceeds the total limit of containers 20Gi.", None),
        ("The node was low on resource: memory. Container nim was using 60Gi.", None),
    ],
)
def test_an_eviction_names_the_resource_that_ran_out(message: str, reason: Reason | None) -> None:
    pod = nim_pod(phase="Failed")
    pod["status"].update(reason="Evicted", message=message)
    found = diagnose(pod, [], now=NOW)
    assert found is not None
    expected = reason or (Reason.HOST_MEMORY_EXHAUSTED if "memory" in message else Reason.DISK_FULL)
    assert found.reason == expected
    assert "evicted" in found.message


def test_a_gpu_the_device_plugin_cannot_allocate_fails_admission() -> None:
    pod = nim_pod(phase="Failed")
    pod["status"].update(
        reason="UnexpectedAdmissionError",
        message="Pod Allocate failed due to device plugin GetPreferredAllocation rpc failed with "
        "err: rpc error: code = Unknown desc = error creating nvml.Device 5: nvml: GPU is lost",
    )
    found = diagnose(pod, [], now=NOW)
    assert found is not None and found.reason == Reason.GPU_UNAVAILABLE
    assert "UnexpectedAdmissionError" in found.message


# --- volumes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_reason", "message"),
    [
        (
            "FailedAttachVolume",
            'Multi-Attach error for volume "pvc-1c2d" Volume is already used by pod(s) '
            "super-7d9c5b6f4-abcde",
        ),
        (
            "FailedMount",
            "Unable to attach or mount volumes: unmounted volumes=[nim-cache], unattached "
            "volumes=[nim-cache kube-api-access]: timed out waiting for the condition",
        ),
    ],
)
def test_a_volume_that_cannot_be_attached_or_mounted(event_reason: str, message: str) -> None:
    pod = nim_pod(state={"waiting": {"reason": "ContainerCreating"}}, phase="Pending")
    found = diagnose(pod, [event("super-0", event_reason, message)], now=NOW)
    assert found is not None and found.reason == Reason.VOLUME_MOUNT_FAILED
    assert message[:30] in found.message


# --- the newest evidence wins -------------------------------------------------------------------

UNBOUND = (
    "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 "
    "nodes are available: 2 Preemption is not helpful for scheduling."
)
NO_FREE_GPU = (
    "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) were unschedulable."
)


def pending(age_seconds: int, condition_message: str) -> dict[str, Any]:
    pod = nim_pod(
        node=None,
        phase="Pending",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": condition_message,
            }
        ],
    )
    pod["metadata"]["creationTimestamp"] = iso(NOW - timedelta(seconds=age_seconds))
    return pod


def series_event(message: str, first_seconds_ago: int, last_seconds_ago: int) -> dict[str, Any]:
    """A FailedScheduling Event of the scheduler's events.k8s.io recorder, read through core/v1:
    the first attempt's note, its eventTime, and a series that counts the later attempts."""
    return {
        **event("super-0", "FailedScheduling", message),
        "lastTimestamp": None,
        "eventTime": iso(NOW - timedelta(seconds=first_seconds_ago)),
        "series": {"count": 6, "lastObservedTime": iso(NOW - timedelta(seconds=last_seconds_ago))},
    }


@pytest.mark.parametrize("age_seconds", [30, 300])
def test_the_pods_condition_outranks_a_stale_scheduling_event(age_seconds: int) -> None:
    """A young pod too: the claim's grace period must not hold back what the condition says."""
    found = diagnose(
        pending(age_seconds, NO_FREE_GPU),
        [series_event(UNBOUND, age_seconds - 1, 2)],
        now=NOW,
    )
    assert found is not None and found.reason == Reason.UNSCHEDULABLE
    assert "Insufficient nvidia.com/gpu" in found.message
    assert "unbound" not in found.message and "not bound" not in found.hint
    assert "Not enough free GPUs" in found.hint


def test_without_a_condition_message_the_event_seen_last_speaks() -> None:
    pod = pending(300, "")
    events = [
        series_event(NO_FREE_GPU, 200, 100),
        {**event("super-0", "FailedScheduling", UNBOUND, age_seconds=290)},
    ]
    found = diagnose(pod, events, now=NOW)
    assert found is not None and "Insufficient nvidia.com/gpu" in found.message


def test_a_claim_being_provisioned_is_not_reported_within_its_grace() -> None:
    pod = pending(20, UNBOUND)
    assert diagnose(pod, [series_event(UNBOUND, 19, 3)], now=NOW) is None
    later = pending(120, UNBOUND)
    found = diagnose(later, [series_event(UNBOUND, 119, 3)], now=NOW)
    assert found is not None and found.reason == Reason.UNSCHEDULABLE
    assert "not bound" in found.hint


def test_a_scheduled_pod_is_not_held_to_its_old_scheduling_events() -> None:
    pod = nim_pod(state={"running": {"startedAt": iso(NOW - timedelta(minutes=3))}})
    assert diagnose(pod, [series_event(UNBOUND, 400, 300)], now=NOW) is None


def test_an_evicted_pod_counts_until_a_newer_pod_is_ready() -> None:
    evicted = nim_pod("super-old", phase="Failed")
    evicted["metadata"]["creationTimestamp"] = iso(NOW - timedelta(hours=2))
    evicted["status"].update(
        reason="Evicted", message="The node was low on resource: ephemeral-storage."
    )
    replacement = nim_pod("super-new", state={"running": {"startedAt": iso(NOW)}})
    replacement["metadata"]["creationTimestamp"] = iso(NOW - timedelta(minutes=3))
    found = diagnose_pods([evicted, replacement], [], now=NOW)
    assert found is not None and found.reason == Reason.DISK_FULL, "the new pod still loads"
    assert found.pod == "super-old" and found.message.endswith("(1 of 2 pods)")

    replacement["status"]["conditions"].append({"type": "Ready", "status": "True"})
    replacement["status"]["containerStatuses"][0]["ready"] = True
    assert diagnose_pods([evicted, replacement], [], now=NOW) is None


@pytest.mark.parametrize(
    ("message", "age_seconds"),
    [
        (
            'MountVolume.SetUp failed for volume "kube-api-access-8x2lq" : object '
            '"llm"/"kube-root-ca.crt" not registered',
            5,
        ),
        (
            'MountVolume.SetUp failed for volume "nim-config" : configmap "nim-config" not found',
            900,
        ),
    ],
)
def test_a_mount_failure_retried_away_is_not_reported(message: str, age_seconds: int) -> None:
    """The kubelet's cache race, or a failure no longer posted: the pod now pulls its image."""
    pod = nim_pod(state={"waiting": {"reason": "ContainerCreating"}}, phase="Pending")
    events = [event("super-0", "FailedMount", message, age_seconds=age_seconds)]
    assert diagnose(pod, events, now=NOW) is None


@pytest.mark.parametrize(
    ("why", "message", "reason"),
    [
        (
            "OutOfnvidia.com/gpu",
            "Pod was rejected: Node didn't have enough resource: nvidia.com/gpu, requested: 1, "
            "used: 0, capacity: 0",
            Reason.GPU_UNAVAILABLE,
        ),
        ("NodeAffinity", "Pod was rejected: Predicate NodeAffinity failed", None),
        ("Terminated", "Pod was terminated in response to imminent node shutdown.", None),
    ],
)
def test_a_pod_the_kubelet_rejected_never_started(
    why: str, message: str, reason: Reason | None
) -> None:
    pod = nim_pod(phase="Failed")
    pod["status"].update(reason=why, message=message)
    found = diagnose(pod, [], now=NOW)
    if why == "Terminated":  # the node went away: the pod's replacement runs elsewhere
        assert found is None
        return
    assert found is not None
    assert found.reason == (reason or Reason.CONTAINER_START_FAILED)
    assert why in found.message


def test_while_the_claim_binds_the_freshest_other_cause_speaks() -> None:
    """The scheduler's retries pass through the claim's binding ("bound to non-existent
    persistentvolume") and back: that is no failure, the GPUs still are."""
    binding = (
        '0/9 nodes are available: persistentvolumeclaim "nano-cache" bound to non-existent '
        'persistentvolume "".'
    )
    pod = pending(20, binding)
    events = [event("super-0", "FailedScheduling", NO_FREE_GPU, age_seconds=4)]
    found = diagnose(pod, events, now=NOW)
    assert found is not None and "Insufficient nvidia.com/gpu" in found.message
    assert diagnose(pod, [], now=NOW) is None, "the claim alone, within its grace"


def test_a_sandbox_failure_followed_by_the_pull_was_overcome() -> None:
    pod = nim_pod(state={"waiting": {"reason": "ContainerCreating"}}, phase="Pending")
    sandbox = event(
        "super-0",
        "FailedCreatePodSandBox",
        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network "
        'for sandbox "3f2a": plugin type="calico" failed (add): connection is unauthorized',
        age_seconds=60,
    )
    pulling = {**event("super-0", "Pulling", f'Pulling image "{IMAGE}"', 40), "type": "Normal"}
    found = diagnose(pod, [sandbox], now=NOW)
    assert found is not None and found.reason == Reason.CONTAINER_START_FAILED
    assert diagnose(pod, [sandbox, pulling], now=NOW) is None


def test_a_clean_exit_then_running_again_is_no_crash() -> None:
    pod = nim_pod(
        state={"running": {"startedAt": iso(NOW - timedelta(minutes=2))}},
        last_state={"terminated": {"exitCode": 0, "reason": "Completed"}},
        restarts=1,
    )
    assert diagnose(pod, [], now=NOW) is None
