"""What the API server says about NemotronDeployments before the operator sees them (issue 3).

The CRD installs; every example in examples/ is accepted (server-side dry run: test_examples.py
applies them for real); each object in invalid_nemotrondeployments.yaml is refused with the field
and the words a person needs to fix it; `kubectl explain` documents the fields; `kubectl get`
shows the printer columns; `kubectl scale` works through the scale subresource.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from nemotron_operator.api import names
from nemotron_operator.api.types import GpuSelection, NemotronDeploymentSpec
from tests.admission_corpus import CORPUS, EXAMPLES, invalid_object, nemotron_deployment

from .conftest import Cluster, OperatorProcess, create_namespace, wait_until
from .nemotron import NemotronDeployments

H100 = "NVIDIA-H100-80GB-HBM3"
NANO_ON_H100 = {"model": "nemotron-3-nano", "gpu": {"product": H100}}
PRINTER_COLUMNS = ["NAME", "MODEL", "PRECISION", "GPUS", "GPU", "READY", "REASON", "AGE"]


@pytest.fixture(scope="module")
def dry_run_namespace(cluster: Cluster, crd_installed: None) -> Iterator[str]:
    """One namespace for the dry runs of this module: nothing is stored in it."""
    name = create_namespace(cluster.api, "admission", wait_for_account=False)
    yield name
    client.CoreV1Api(cluster.api).delete_namespace(name, propagation_policy="Background")


def dry_run_create(
    cluster: Cluster, namespace: str, body: dict[str, Any], validation: str = "Strict"
) -> dict[str, Any]:
    """Create `body` as `kubectl apply` would (strict field validation), storing nothing."""
    return dict(
        client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            names.GROUP,
            names.VERSION,
            namespace,
            names.PLURAL,
            body,
            dry_run="All",
            field_validation=validation,
        )
    )


# --- the CRD and the examples ------------------------------------------------------------------


def test_the_crd_installs_with_its_names(cluster: Cluster, crd_installed: None) -> None:
    crd = client.ApiextensionsV1Api(cluster.api).read_custom_resource_definition(names.CRD_NAME)
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    assert sorted(crd.status.accepted_names.short_names or ()) == sorted(names.SHORT_NAMES)
    listed = cluster.kubectl("get", "nd", "--all-namespaces", "-o", "name")
    assert listed.returncode == 0


@pytest.mark.parametrize(
    ("file", "example"), EXAMPLES, ids=[f"{f}:{e['metadata']['name']}" for f, e in EXAMPLES]
)
def test_every_example_is_accepted(
    cluster: Cluster, dry_run_namespace: str, file: str, example: dict[str, Any]
) -> None:
    applied = cluster.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        dry_run_namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump(example),
    )
    name = example["metadata"]["name"]
    assert f"{names.SINGULAR}.{names.GROUP}/{name} serverside-applied" in applied.stdout
    assert not applied.stderr, applied.stderr  # not even a warning


# --- the corpus of invalid objects -------------------------------------------------------------


def test_the_corpus_holds_at_least_30_distinct_refusals_each_explained() -> None:
    assert len(CORPUS) >= 30
    assert len({entry["name"] for entry in CORPUS}) == len(CORPUS)
    for entry in CORPUS:
        assert {"name", "why", "field", "expect"} <= set(entry), entry
        assert ("spec" in entry) != ("object" in entry), entry["name"]


def test_the_corpus_base_object_is_valid(cluster: Cluster, dry_run_namespace: str) -> None:
    """Every refusal below comes from what its entry changes, not from the object around it."""
    created = dry_run_create(cluster, dry_run_namespace, nemotron_deployment(NANO_ON_H100))
    assert created["spec"]["model"] == "nemotron-3-nano"


@pytest.mark.parametrize("entry", CORPUS, ids=[entry["name"] for entry in CORPUS])
def test_an_invalid_object_is_refused_with_a_message_a_person_can_act_on(
    cluster: Cluster, dry_run_namespace: str, entry: dict[str, Any]
) -> None:
    with pytest.raises(ApiException) as refused:
        dry_run_create(cluster, dry_run_namespace, invalid_object(entry))
    status = json.loads(refused.value.body or "{}")
    message = status["message"]
    assert refused.value.status == entry.get("status", 422), message
    # what kubectl prints: the field and what to change
    assert entry["field"] in message, message
    assert entry["expect"] in message, message
    # and the words are about that field, not another one refused alongside
    causes = (status.get("details") or {}).get("causes") or []
    if causes:
        assert any(
            cause.get("field", "").startswith(entry["field"])
            and entry["expect"] in cause.get("message", "")
            for cause in causes
        ), causes


def test_unknown_fields_are_refused_by_kubectl_and_pruned_for_lenient_clients(
    cluster: Cluster, dry_run_namespace: str
) -> None:
    typo = yaml.safe_dump(nemotron_deployment({"model": "nemotron-3-nano", "maxModelLenght": 8192}))
    # kubectl validates strictly by default
    refused = cluster.kubectl(
        "apply", "--dry-run=server", "-n", dry_run_namespace, "-f", "-", stdin=typo, check=False
    )
    assert refused.returncode != 0
    assert 'unknown field "spec.maxModelLenght"' in refused.stderr
    # a client that asks only for warnings is warned, and the API server drops the field
    warned = cluster.kubectl(
        "create", "--dry-run=server", "--validate=warn", "-n", dry_run_namespace,
        "-o", "json", "-f", "-", stdin=typo,
    )  # fmt: skip
    assert 'unknown field "spec.maxModelLenght"' in warned.stderr
    stored = json.loads(warned.stdout)["spec"]
    assert stored == {"model": "nemotron-3-nano", "precision": "auto", "replicas": 1}


# --- kubectl explain, get, scale ---------------------------------------------------------------


def words(text: str) -> str:
    return " ".join(text.split())


def explained(cluster: Cluster, path: str, fields: Iterable[str]) -> str | None:
    """`kubectl explain nemotrondeployment.<path>`, once it lists all `fields`."""
    output = cluster.kubectl(
        "explain", f"{names.SINGULAR}.{path}", f"--api-version={names.API_VERSION}"
    ).stdout
    return words(output) if all(f"{field} <" in words(output) for field in fields) else None


@pytest.mark.parametrize(
    ("path", "model"),
    [("spec", NemotronDeploymentSpec), ("spec.gpu", GpuSelection)],
)
def test_kubectl_explain_documents_every_field(
    cluster: Cluster, crd_installed: None, path: str, model: type[Any]
) -> None:
    fields = {
        info.alias or name: info.description or "" for name, info in model.model_fields.items()
    }
    # the API server publishes a changed schema's OpenAPI a moment after the CRD changes
    text = wait_until(
        lambda: explained(cluster, path, fields), f"kubectl explain {path} to list {sorted(fields)}"
    )
    assert f"GROUP: {names.GROUP} KIND: {names.KIND} VERSION: {names.VERSION}" in text
    for field, description in fields.items():
        assert re.search(rf"\b{field} <", text), f"{field} missing from explain {path}"
        assert words(description) in text, f"{field}: {description!r} missing from:\n{text}"


def table(output: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in output.strip().splitlines()]


def test_kubectl_get_shows_the_plan_in_printer_columns(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    nds = NemotronDeployments(cluster, namespace)
    nds.create("nano", NANO_ON_H100)
    ready = nds.wait_condition("nano", "Ready", "True", timeout=90)
    plan = nds.get("nano")["status"]["plan"]
    for resource in (names.PLURAL, names.SHORT_NAMES[0]):
        header, row = table(cluster.kubectl("get", resource, "-n", namespace).stdout)
        assert header == PRINTER_COLUMNS
        assert row[:7] == [
            "nano",
            "nemotron-3-nano",
            plan["precision"],
            str(plan["gpusPerReplica"]),
            H100,
            "True",
            ready["reason"],
        ]
        assert re.fullmatch(r"\d+(s|m\d*s?)", row[7]), row[7]
    assert (plan["precision"], plan["gpusPerReplica"]) == ("fp8", 1)  # what H100 runs natively


def test_kubectl_scale_rolls_out_more_replicas(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    nds = NemotronDeployments(cluster, namespace)
    nds.create("nano", NANO_ON_H100)
    nds.wait_condition("nano", "Ready", "True", timeout=90)

    scaled = cluster.kubectl("scale", names.SINGULAR, "nano", "--replicas=2", "-n", namespace)
    assert f"{names.SINGULAR}.{names.GROUP}/nano scaled" in scaled.stdout
    apps = client.AppsV1Api(cluster.api)
    wait_until(
        lambda: apps.read_namespaced_stateful_set("nano", namespace).spec.replicas == 2,
        "the operator to scale the NIM StatefulSet to 2",
        60,
    )
    nds.wait_condition("nano", "Ready", "True", timeout=90)
    wait_until(
        lambda: (nds.get("nano").get("status") or {}).get("readyReplicas") == 2,
        "2 ready replicas in the status",
        60,
    )
    scale = json.loads(
        cluster.kubectl(
            "get",
            "--raw",
            f"/apis/{names.API_VERSION}/namespaces/{namespace}/{names.PLURAL}/nano/scale",
        ).stdout
    )
    assert scale["spec"]["replicas"] == 2 and scale["status"]["replicas"] == 2
    assert scale["status"]["selector"] == f"{names.DEPLOYMENT_LABEL}=nano"  # what an HPA uses

    too_many = cluster.kubectl(
        "scale", names.SINGULAR, "nano", "--replicas=5000", "-n", namespace, check=False
    )
    assert too_many.returncode != 0
    assert "spec.replicas" in too_many.stderr
    assert "should be less than or equal to 1024" in too_many.stderr
