"""NemotronDeployments in each state the operator reports, as a GitOps tool reads them.

Every status here is the one the operator's own code writes: `core.status.desired_status` of an
`Observed` built the way the converge loop builds it (the planner's plan, the credentials check,
`cache_ready` of a download Job, `diagnose_pods` of the pods, `kube.ChildRejected`'s message).
Only the inputs are written here: specs from examples/, a GPU node, a Job and pods as the API
returns them. The kstatus test (tests/unit/test_kstatus.py) and the Argo CD health check's testdata
(hack/gitops/argocd.py) read the same list.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))

from nemotron_operator.api import names  # noqa: E402
from nemotron_operator.api.types import NemotronDeploymentSpec, PlanStatus  # noqa: E402
from nemotron_operator.core import diagnose, render  # noqa: E402
from nemotron_operator.core.catalog import load_catalog  # noqa: E402
from nemotron_operator.core.inventory import gpu_pools  # noqa: E402
from nemotron_operator.core.planner import plan  # noqa: E402
from nemotron_operator.core.status import (  # noqa: E402
    Blocker,
    Observed,
    cache_ready,
    desired_status,
)
from nemotron_operator.shell.credentials import Credentials  # noqa: E402
from nemotron_operator.shell.kube import ChildRejected  # noqa: E402

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
NAMESPACE = "llm"
GPU = "NVIDIA-H100-80GB-HBM3"
CATALOG = load_catalog()
Why = names.StatusReason


class State(StrEnum):
    """What a person watching a GitOps sync should conclude."""

    SERVING = "serving"  # done: nothing left to wait for
    WORKING = "working"  # the operator is still getting there: wait
    NEEDS_A_PERSON = "needs-a-person"  # waiting longer changes nothing: fail the sync now
    DELETING = "deleting"


@dataclass(frozen=True)
class Scenario:
    name: str  # also the testdata file's name
    state: State
    what: str
    object: dict[str, Any]  # the NemotronDeployment as `kubectl get -o json` shows it


def gpu_node(name: str, gpus: int = 8) -> dict[str, Any]:
    """An H100 node as the API returns it, labelled by NVIDIA's GPU feature discovery."""
    entry = CATALOG.gpus[GPU]
    major, minor = entry.compute_capability_tuple
    return {
        "metadata": {
            "name": name,
            "labels": {
                names.GPU_PRODUCT_LABEL: GPU,
                names.GPU_MEMORY_LABEL: str(entry.memory_mib),
                names.GPU_COMPUTE_MAJOR_LABEL: str(major),
                names.GPU_COMPUTE_MINOR_LABEL: str(minor),
            },
        },
        "status": {"allocatable": {names.GPU_RESOURCE: str(gpus)}},
    }


POOLS = gpu_pools([gpu_node("h100-0"), gpu_node("h100-1")])


def example_spec(example: str, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((REPO / "examples" / f"{example}.yaml").read_text())[
        "spec"
    ]
    return {**spec, **changes}


def planned(spec: Mapping[str, Any]) -> PlanStatus:
    return plan(NemotronDeploymentSpec.model_validate(spec), CATALOG, POOLS)


def observed(
    spec: Mapping[str, Any],
    generation: int = 1,
    workload: Mapping[str, Any] | None = None,
    **fields: Any,
) -> Observed:
    """What the converge loop observes for `spec`: planned on two H100 nodes, no blocker, the
    Service created (the endpoint), and whatever `fields` say instead."""
    name = "nd"
    base: dict[str, Any] = {
        "generation": generation,
        "plan": planned(spec),
        "blocker": None,
        "credentials": None,
        "replicas": int(spec.get("replicas", 1)),
        "workload": workload,
        "diagnosis": None,
        "endpoint": f"http://{name}.{NAMESPACE}.svc:8000/v1",
        "selector": f"{names.DEPLOYMENT_LABEL}={name}",
    }
    return Observed(**{**base, **fields})


def deployment(replicas: int, ready: int, updated: int) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "status": {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": updated},
    }


def nemotron_deployment(
    name: str, spec: Mapping[str, Any], status: Mapping[str, Any] | None, generation: int = 1
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": NAMESPACE, "generation": generation},
        "spec": dict(spec),
    }
    if status is not None:
        body["status"] = dict(status)
    return body


def nim_pod(name: str, status: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}"},
        "spec": {"containers": [{"name": "nim", "image": "nvcr.io/nim/nvidia/nim:1"}]},
        "status": status,
    }


def diagnosed(pod: Mapping[str, Any], reason: str, **context: Any) -> diagnose.Diagnosis:
    found = diagnose.diagnose_pods([pod], now=NOW, **context)
    if found is None or found.reason != reason:
        raise AssertionError(f"diagnose_pods says {found}, the scenario needs {reason}")
    return found


def unauthorized_pull(image: str) -> diagnose.Diagnosis:
    """A pod whose image pull the registry refused."""
    message = (
        f'Failed to pull image "{image}": unexpected status from HEAD request: 401 Unauthorized'
    )
    pod = nim_pod(
        "nd-0",
        {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "nim",
                    "image": image,
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ErrImagePull", "message": message}},
                }
            ],
        },
    )
    return diagnosed(pod, names.NimReason.IMAGE_PULL_UNAUTHORIZED)


def unschedulable() -> diagnose.Diagnosis:
    """A pod the scheduler cannot place: the GPUs are taken (an autoscaler may add some)."""
    pod = nim_pod(
        "nd-1",
        {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
                }
            ],
        },
    )
    return diagnosed(pod, names.NimReason.UNSCHEDULABLE)


def secret_not_found(spec: Mapping[str, Any], plan_: PlanStatus) -> dict[str, Any]:
    """The credentials check's fact (shell/credentials.py) when the key's Secret does not exist,
    with the words the API client (shell/kube.py) gives for that, and the blocker the converge
    loop makes of it."""
    credentials = Credentials(
        registry=None,  # type: ignore[arg-type]  # never asked: there is no key to ask with
        read_secret=lambda ns, name, key: (
            None,
            f'Secret "{name}" does not exist in namespace "{ns}"',
        ),
        secret_version=lambda ns, name: None,
        recheck_seconds=300,
    )
    fact = credentials.check(
        NAMESPACE, "nd", NemotronDeploymentSpec.model_validate(spec), plan_
    ).condition
    blocker = Blocker(names.ConditionType.CREDENTIALS_VALID, fact.reason, fact.message)
    return {"credentials": fact, "blocker": blocker}


def failed(content: str) -> dict[str, Any]:
    """The download Job of `content` ("<image> <profile>") after its pod failed every retry."""
    return {
        "kind": "Job",
        "metadata": {
            "name": "nd-cache-download",
            "annotations": {names.CACHE_CONTENT_ANNOTATION: content},
        },
        "status": {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ]
        },
    }


def scenarios() -> list[Scenario]:
    """The states a GitOps tool must tell apart, each with the status the operator writes."""
    spec = example_spec("super-fp8-h100")  # 2 replicas of 2 H100 each
    plan_ = planned(spec)
    image = str(plan_.image)
    listed: list[Scenario] = []

    def add(
        name: str,
        state: State,
        what: str,
        facts: Observed,
        spec_: Mapping[str, Any] = spec,
        previous: Callable[[], Mapping[str, Any] | None] = lambda: None,
        generation: int | None = None,
        **metadata: Any,
    ) -> None:
        # as the API server returns it: plain JSON (the reasons are str enums here)
        status = json.loads(json.dumps(desired_status(facts, previous(), NOW)))
        body = nemotron_deployment(name, spec_, status, generation or facts.generation)
        body["metadata"].update(metadata)
        listed.append(Scenario(name, state, what, body))

    serving = observed(spec, workload=deployment(2, 2, 2))
    add("ready", State.SERVING, "every replica serves", serving)
    add("creating", State.WORKING, "the NIM pods are being created", observed(spec))
    add(
        "rolling-out",
        State.WORKING,
        "1 of 2 replicas is ready, the other loads the model",
        observed(spec, workload=deployment(2, 1, 2)),
    )
    shared = example_spec(
        "super-fp8-h100", cache={"accessMode": "ReadWriteMany"}, profile="vllm-fp8-tp2-pp1-h100"
    )
    layout = render.cache_layout(shared, planned(shared), "nd")
    content = render.download_content(shared, planned(shared), layout, "nd")
    if content is None:
        raise AssertionError("the shared-cache spec should be filled by a download Job")
    for name, state, what, job in (
        (
            "cache-downloading",
            State.WORKING,
            "a download Job fills the shared cache before the pods are created",
            None,
        ),
        ("cache-download-failed", State.NEEDS_A_PERSON, "the download Job failed", failed(content)),
    ):
        add(name, state, what, observed(shared, cache=cache_ready(content, job)), spec_=shared)
    add(
        "new-version-downloading",
        State.WORKING,
        "the replicas serve while a download Job fills the cache for a new version",
        observed(
            shared, workload=deployment(2, 2, 2), cache=cache_ready(content, None), generation=2
        ),
        spec_=shared,
    )
    zero = example_spec("super-fp8-h100", replicas=0)
    add("scaled-to-zero", State.SERVING, "0 replicas requested", observed(zero), spec_=zero)

    too_big = example_spec("ultra-bf16-4gpu-does-not-fit")
    refusal = planned(too_big)
    add(
        "plan-refused",
        State.NEEDS_A_PERSON,
        "the model does not fit the GPUs the spec allows",
        observed(
            too_big,
            plan=refusal,
            endpoint=None,
            blocker=Blocker(names.ConditionType.PLANNED, str(refusal.reason), refusal.message),
        ),
        spec_=too_big,
    )
    keyed = example_spec("super-fp8-h100", ngc={"apiKeySecret": {"name": "ngc-api"}})
    add(
        "credentials-secret-not-found",
        State.NEEDS_A_PERSON,
        "the NGC key's Secret does not exist",
        observed(keyed, endpoint=None, **secret_not_found(keyed, plan_)),
        spec_=keyed,
    )
    multinode = example_spec("ultra-multinode")
    add(
        "leaderworkerset-missing",
        State.NEEDS_A_PERSON,
        "a replica spans nodes and the LeaderWorkerSet API is not installed",
        observed(
            multinode,
            endpoint=None,
            blocker=Blocker(
                names.ConditionType.PROGRESSING,
                Why.LEADER_WORKER_SET_MISSING,
                "a replica of this model spans several nodes, which runs on a LeaderWorkerSet: "
                "install the LeaderWorkerSet API (sigs.k8s.io/lws) in the cluster",
            ),
        ),
        spec_=multinode,
    )
    quota = ChildRejected(
        {"kind": "Deployment", "metadata": {"name": "nd"}},
        403,
        'deployments.apps "nd" is forbidden: exceeded quota: gpus, requested: '
        "requests.nvidia.com/gpu=4, used: requests.nvidia.com/gpu=4, limited: "
        "requests.nvidia.com/gpu=4",
    )
    add(
        "child-rejected",
        State.NEEDS_A_PERSON,
        "the API server refuses a child (a ResourceQuota)",
        observed(
            spec,
            endpoint=None,
            blocker=Blocker(names.ConditionType.PROGRESSING, Why.CHILD_REJECTED, str(quota)),
        ),
    )
    add(
        "image-pull-unauthorized",
        State.NEEDS_A_PERSON,
        "the registry refuses the image pull (a diagnosis no retry mends)",
        observed(spec, workload=deployment(2, 0, 2), diagnosis=unauthorized_pull(image)),
    )
    waiting = observed(spec, workload=deployment(2, 1, 2), diagnosis=unschedulable())
    add(
        "unschedulable-within-deadline",
        State.WORKING,
        "a pod cannot be scheduled, for less than the progress deadline (it may mend)",
        waiting,
    )
    add(
        "unschedulable-past-deadline",
        State.NEEDS_A_PERSON,
        "a pod has been unschedulable for 11 minutes, past the 10-minute progress deadline",
        waiting,
        previous=lambda: desired_status(waiting, None, NOW - dt.timedelta(minutes=11)),
    )
    add(
        "generation-ahead",
        State.WORKING,
        "the spec was changed and the operator has not seen the change yet",
        serving,
        generation=serving.generation + 1,
    )
    add(
        "deleting",
        State.DELETING,
        "kubectl delete: the operator's finalizer is still on it",
        serving,
        deletionTimestamp="2026-01-01T12:00:00Z",
        finalizers=[names.FINALIZER],
    )
    return listed
