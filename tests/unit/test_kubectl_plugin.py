"""`kubectl nemotron` pages, from what the operator's own functions produce: the planner's plan,
render's children, status.desired_status's conditions and diagnose's diagnosis."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from nemotron_operator import kubectl_plugin as plugin
from nemotron_operator.api import names
from nemotron_operator.api.types import NemotronDeploymentSpec, PlanStatus
from nemotron_operator.core.catalog import load_catalog
from nemotron_operator.core.diagnose import Diagnosis, diagnose_pods
from nemotron_operator.core.inventory import gpu_pools
from nemotron_operator.core.planner import plan
from nemotron_operator.core.status import Blocker, Observed, desired_status
from nemotron_operator.shell.cluster_view import world_of
from nemotron_operator.shell.converge import desired_children

from .test_diagnose import crashed, event, nim_pod
from .test_inventory import node

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CATALOG = load_catalog()
H100 = [node(f"h100-{i}") for i in range(2)]
B200 = [node("b200-0", product="NVIDIA-B200", memory_mib=183359)]


def nd(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": "llm", "uid": f"uid-{name}", "generation": 2},
        "spec": NemotronDeploymentSpec.model_validate(spec).model_dump(by_alias=True, mode="json"),
    }


def with_status(
    body: dict[str, Any],
    planned: PlanStatus,
    workload: dict[str, Any] | None = None,
    diagnosis: Diagnosis | None = None,
    blocker: Blocker | None = None,
) -> dict[str, Any]:
    """The body with the status the operator writes for what it observed, 5 minutes ago."""
    observed = Observed(
        generation=2,
        plan=planned,
        blocker=blocker,
        credentials=None,
        replicas=int(body["spec"]["replicas"]),
        workload=workload,
        diagnosis=diagnosis,
        endpoint=None,
        selector=f"{names.DEPLOYMENT_LABEL}={body['metadata']['name']}",
    )
    status = desired_status(observed, None, NOW - dt.timedelta(minutes=5))
    return {**body, "status": status}


def planned_for(body: dict[str, Any], nodes: list[dict[str, Any]]) -> PlanStatus:
    spec = NemotronDeploymentSpec.model_validate(body["spec"])
    return plan(spec, CATALOG, gpu_pools(nodes))


SUPER = {"model": "nemotron-3-super", "precision": "fp8", "gpu": {"count": 2}}


def test_a_serving_deployment_reads_ready_with_its_children_and_nothing_to_change() -> None:
    body = nd("super", SUPER)
    planned = planned_for(body, H100)
    children = {
        c["kind"]: c for c in desired_children(body, NemotronDeploymentSpec(**SUPER), planned)
    }
    children["StatefulSet"]["status"] = {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}
    body = with_status(body, planned, workload=children["StatefulSet"])
    pod = nim_pod("super-0", state={"running": {}}, ready=True, node="h100-0")
    page = plugin.explain_page(body, children, [pod], [], None, planned, NOW)
    assert page.startswith("NemotronDeployment llm/super: Ready\n")
    assert "  Ready=True  Ready  (for 5m)\n" in page
    assert "  StatefulSet/super: 1/1 ready, 1 up to date\n" in page
    assert "  Service/super: ClusterIP port 8000\n" in page
    assert "  super-0: Running, 1/1 ready, 0 restarts, on h100-0\n" in page
    assert "2 x NVIDIA-H100-80GB-HBM3 per replica" in page
    assert page.endswith("What to change:\n  nothing: every replica serves\n")
    assert plugin.is_ready(body)


def test_a_refusal_is_said_once_and_is_what_to_change() -> None:
    ultra = {"model": "nemotron-3-ultra", "precision": "bf16", "gpu": {"count": 4}}
    body = nd("ultra", ultra)
    refused = planned_for(body, H100)
    blocker = Blocker(names.ConditionType.PLANNED, refused.reason, refused.message)
    body = with_status(body, refused, blocker=blocker)
    page = plugin.explain_page(body, {}, [], [], None, refused, NOW)
    assert page.startswith("NemotronDeployment llm/ultra: not ready (InsufficientGPUMemory)\n")
    flat = " ".join(page.split())
    assert flat.count("268.5 GiB per GPU") == 2  # in Ready, then in What to change
    assert "  Planned=False  InsufficientGPUMemory  (for 5m)\n      (as Ready says)\n" in page
    assert "Plan:\n  does not fit (InsufficientGPUMemory)\n  (as Ready says)\n" in page
    assert "Children:\n  none\n" in page and "Pods:\n  none\n" in page
    assert "What to change:\n  InsufficientGPUMemory: Nemotron 3 Ultra" in page
    assert not plugin.is_ready(body)


def test_a_crashing_pod_shows_its_warning_and_the_diagnosis_hint() -> None:
    body = nd("super", SUPER)
    planned = planned_for(body, H100)
    pod = crashed("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    warnings = [
        event("super-0", "BackOff", "Back-off restarting failed container nim", 20, count=7),
        event("super-0", "BackOff", "Back-off restarting failed container nim", 80),
    ]
    diagnosis = diagnose_pods([pod], warnings, planned, now=NOW)
    assert diagnosis is not None
    body = with_status(body, planned, diagnosis=diagnosis)
    page = plugin.explain_page(body, {}, [pod], warnings, diagnosis, planned, NOW)
    assert "  super-0: CrashLoopBackOff, 0/1 ready, 3 restarts, on gpu-node-1\n" in page
    # the two events of the same reason and message: the newest, once
    assert page.count("Pod/super-0  BackOff") == 1
    assert "  20s ago  Pod/super-0  BackOff (x7)\n" in page
    change = page.split("What to change:\n", 1)[1]
    assert change.startswith(f"  {diagnosis.reason}: ")
    assert " ".join(change.split()).endswith(" ".join(diagnosis.hint.split()))


def test_what_stalls_it_is_what_to_change_before_a_pod_diagnosis() -> None:
    body = nd("super", SUPER)
    planned = planned_for(body, H100)
    message = "the key may not pull nvcr.io/nim/nvidia/nemotron-3-super-120b-a12b (HTTP 403)"
    not_entitled = Blocker(names.ConditionType.CREDENTIALS_VALID, "NGCNotEntitled", message)
    body = with_status(body, planned, blocker=not_entitled)
    stalled = plugin.condition(body["status"], names.ConditionType.STALLED)
    assert (stalled["status"], stalled["reason"]) == ("True", "NGCNotEntitled")
    older = diagnose_pods([crashed("Segmentation fault")], [], planned, now=NOW)
    assert plugin.what_to_change(body["status"], older) == f"NGCNotEntitled: {message}"
    page = plugin.explain_page(body, {}, [], [], older, planned, NOW)
    order = [
        line.split("=")[0].strip()
        for line in page.splitlines()
        if "=True" in line or "=False" in line
    ]
    assert order[:3] == ["Ready", "Stalled", "Reconciling"]


def test_plan_names_what_differs_from_status_plan() -> None:
    body = nd("super", {**SUPER, "precision": "auto", "gpu": {}})
    on_h100, on_b200 = planned_for(body, H100), planned_for(body, B200)
    written = on_h100.model_dump(by_alias=True, mode="json", exclude_none=True)
    same = plugin.plan_page("super", on_h100, written)
    assert same.endswith("  status.plan: the same decision\n")
    differs = plugin.plan_page("super", on_b200, written)
    assert "gpuProduct: NVIDIA-H100-80GB-HBM3 in status.plan, NVIDIA-B200 now" in differs
    assert "precision: fp8 in status.plan, nvfp4 now" in differs
    first = plugin.plan_page("super", on_b200, None)
    assert first.endswith(
        "  differs from status.plan (the operator plans again at its next converge):\n"
        "    status.plan: none yet (the operator has not planned it)\n"
    )


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0s"), (59, "59s"), (60, "1m"), (7200, "2h"), (3 * 86400, "3d")]
)
def test_ages_read_as_kubectl_writes_them(seconds: int, shown: str) -> None:
    assert plugin.age(NOW - dt.timedelta(seconds=seconds), NOW) == shown


def test_the_world_counts_a_deployments_own_gpus_free_as_the_operator_does() -> None:
    labels = {names.DEPLOYMENT_LABEL: "super", names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE}
    own = nim_pod("super-0", node="h100-0", gpus=8)
    own["metadata"]["labels"] = labels
    other = nim_pod("other-0", node="h100-1", gpus=8)
    per_pod_claim = {
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "model-cache-super-0", "namespace": "llm", "labels": labels},
    }
    world = world_of([], H100, [own, other], [], [per_pod_claim])
    snapshot = world.snapshot(("llm", "super"))
    assert [p["metadata"]["name"] for p in snapshot.pods] == ["super-0"]
    assert snapshot.children == {}  # the StatefulSet's claims are not the operator's children
    # its own pod's 8 GPUs count free, the other pod's do not
    assert {n.name: n.free_gpus for pool in snapshot.pools for n in pool.nodes} == {
        "h100-0": 8,
        "h100-1": 0,
    }


def test_a_context_the_kubeconfig_lacks_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "mine", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "mine",
            }
        )
    )
    code = plugin.main(["explain", "nano", "--kubeconfig", str(kubeconfig), "--context", "x"])
    assert code == 2
    assert capsys.readouterr().err == (
        f'kubectl nemotron explain: {kubeconfig} has no context "x"\n'
    )


@pytest.mark.parametrize(
    ("crd_installed", "expected"),
    [
        (True, 'NemotronDeployment "nano" not found in namespace "llm"'),
        (
            False,
            "the cluster has no NemotronDeployment API (CustomResourceDefinition "
            "nemotrondeployments.nemotron.dev not found): install the operator's CRD "
            "(kubectl apply --server-side -f crds/)",
        ),
    ],
)
def test_a_missing_object_or_api_is_said_as_such(
    monkeypatch: pytest.MonkeyPatch, crd_installed: bool, expected: str
) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from nemotron_operator.shell import cluster_view

    def not_found(*_: Any, **__: Any) -> Any:
        raise ApiException(status=404, reason="Not Found")

    monkeypatch.setattr(client.CustomObjectsApi, "get_namespaced_custom_object", not_found)
    monkeypatch.setattr(
        client.ApiextensionsV1Api,
        "read_custom_resource_definition",
        (lambda *_, **__: {}) if crd_installed else not_found,
    )
    with pytest.raises(cluster_view.CannotAsk) as raised:
        cluster_view.deployment(client.ApiClient(), "llm", "nano")
    assert str(raised.value) == expected
