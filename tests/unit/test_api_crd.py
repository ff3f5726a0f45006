"""The API models and the CRD generated from them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from nemotron_operator.api import names
from nemotron_operator.api.crd import CRD_FILE, crd_yaml, nemotron_deployment_crd
from nemotron_operator.api.types import (
    NemotronDeployment,
    NemotronDeploymentSpec,
    PlanStatus,
    quantity_bytes,
)

REPO = Path(__file__).resolve().parents[2]
CRD = nemotron_deployment_crd()
VERSION = CRD["spec"]["versions"][0]
ROOT = VERSION["schema"]["openAPIV3Schema"]
SPEC = ROOT["properties"]["spec"]
STATUS = ROOT["properties"]["status"]


def test_checked_in_crd_matches_the_generator() -> None:
    """Fails when the pydantic models changed without `nemotron-operator crd > crds/...`."""
    assert (REPO / CRD_FILE).read_text() == crd_yaml()


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural() -> None:
    for path, node in walk(ROOT):
        assert "$ref" not in node and "allOf" not in node and "oneOf" not in node, path
        assert "not" not in node and "title" not in node, path
        if "anyOf" in node:  # only the int-or-string form Kubernetes allows
            assert node.get("x-kubernetes-int-or-string") is True, path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if path == ".metadata":  # a CRD may only constrain metadata.name (and generateName)
            assert node["type"] == "object" and set(node["properties"]) == {"name"}
            continue
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        assert typed, f"{path} has no type"
        if path.endswith(("[]", "}")):
            continue  # list items and map values are described by their parent
        assert node.get("description"), f"{path} has no description"


def test_free_form_fields_are_only_the_truly_free_ones() -> None:
    free = [path for path, node in walk(ROOT) if node.get("x-kubernetes-preserve-unknown-fields")]
    assert sorted(free) == [".spec.affinity", ".spec.env[].valueFrom"]


def test_quantities_are_int_or_string() -> None:
    size = SPEC["properties"]["cache"]["properties"]["size"]
    assert size["x-kubernetes-int-or-string"] is True
    limits = SPEC["properties"]["resources"]["properties"]["limits"]
    assert limits["additionalProperties"]["x-kubernetes-int-or-string"] is True


def test_optional_fields_are_nullable_and_pins_default_sensibly() -> None:
    version = SPEC["properties"]["version"]
    assert version["nullable"] is True and version["type"] == "string"
    assert SPEC["properties"]["precision"]["default"] == "auto"
    assert SPEC["properties"]["precision"]["enum"] == ["auto", "nvfp4", "fp8", "bf16"]
    assert SPEC["properties"]["replicas"]["default"] == 1
    assert SPEC["required"] == ["model"]


def test_model_is_a_pattern_not_an_enum_so_overrides_need_no_new_crd() -> None:
    model = SPEC["properties"]["model"]
    assert "enum" not in model and model["pattern"]


def rules(schema: dict[str, Any]) -> list[str]:
    return [v["rule"] for v in schema.get("x-kubernetes-validations", [])]


def test_cross_field_rules_are_cel() -> None:
    spec_rules = " ".join(rules(SPEC))
    assert "has(self.customModel)" in spec_rules
    assert "self.version != 'latest'" in spec_rules
    assert "NGC_API_KEY" in spec_rules
    cache = " ".join(rules(SPEC["properties"]["cache"]))
    assert "existingClaim" in cache and "self.size" in cache
    assert "self.count in [1, 2, 4, 8, 16, 32, 64]" in rules(SPEC["properties"]["gpu"])[0]
    assert names.GPU_RESOURCE in rules(SPEC["properties"]["resources"])[0]
    for _, node in walk(ROOT):
        for validation in node.get("x-kubernetes-validations", []):
            assert validation["message"], validation["rule"]


def test_subresources_names_and_printer_columns() -> None:
    assert CRD["metadata"]["name"] == "nemotrondeployments.nemotron.dev"
    assert CRD["spec"]["scope"] == "Namespaced"
    assert set(CRD["spec"]["names"]["shortNames"]) == {"nd", "nemotron"}
    assert VERSION["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    columns = {c["name"]: c["jsonPath"] for c in VERSION["additionalPrinterColumns"]}
    assert columns == {
        "Model": ".spec.model",
        "Precision": ".status.plan.precision",
        "GPUs": ".status.plan.gpusPerReplica",
        "GPU": ".status.plan.gpuProduct",
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Reason": '.status.conditions[?(@.type=="Ready")].reason',
        "Age": ".metadata.creationTimestamp",
    }
    # every column path exists in the schema
    plan_fields = STATUS["properties"]["plan"]["properties"]
    assert {"precision", "gpusPerReplica", "gpuProduct"} <= set(plan_fields)


def test_conditions_are_a_map_keyed_by_type_in_metav1_shape() -> None:
    conditions = STATUS["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_plan_status_carries_what_issue_3_and_8_ask_for() -> None:
    fields = set(STATUS["properties"]["plan"]["properties"])
    assert {
        "image",
        "precision",
        "tensorParallelSize",
        "pipelineParallelSize",
        "gpusPerReplica",
        "nodesPerReplica",
        "gpuProduct",
        "profile",
        "memoryPerGPUGiB",
        "usablePerGPUGiB",
        "memorySource",
        "keyRequired",
        "keyRequiredReason",
        "maxModelLength",
        "cacheSize",
        "fits",
        "reason",
        "message",
    } <= fields
    dumped = PlanStatus(fits=False, reason="NoGPUNodes", message="m").model_dump(by_alias=True)
    assert "memoryPerGPUGiB" in dumped


def test_spec_accepts_camel_and_snake_case_and_refuses_typos() -> None:
    camel = NemotronDeploymentSpec.model_validate({"model": "m", "maxModelLength": 8192})
    snake = NemotronDeploymentSpec.model_validate({"model": "m", "max_model_length": 8192})
    assert camel == snake
    with pytest.raises(ValidationError, match="maxModelLenght"):
        NemotronDeploymentSpec.model_validate({"model": "m", "maxModelLenght": 8192})


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "Nemotron Nano"},
        {"model": "nemotron-3-nano", "precision": "int4"},
        {"model": "nemotron-3-nano", "cache": {"size": "lots"}},
        {"model": "nemotron-3-nano", "image": "nvcr.io/nim/nvidia/nemotron-3-nano:2.0.12"},
        {"model": "nemotron-3-nano", "gpu": {"count": 0}},
        {"model": "nemotron-3-nano", "replicas": -1},
        {"model": "nemotron-3-nano", "cache": {"size": 0}},
        {"model": "nemotron-3-nano", "resources": {"requests": {"cpu": "-1"}}},
        {"model": "nemotron-3-nano", "gpu": {"product": "NVIDIA H100"}},
        {"model": "nemotron-3-nano", "priorityClassName": "High Priority"},
    ],
)
def test_spec_refuses_values_the_crd_refuses(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        NemotronDeploymentSpec.model_validate(fields)


@pytest.mark.parametrize("name", ["1nano", "nano.v2", "n" * 48])
def test_names_the_children_cannot_carry_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=r"metadata\.name must"):
        NemotronDeployment.model_validate(
            {"metadata": {"name": name}, "spec": {"model": "nemotron-3-nano"}}
        )


@pytest.mark.parametrize(
    ("quantity", "value"),
    [("150Gi", 150 * 2**30), ("2e9", 2e9), (1024, 1024), ("1.5T", 1.5e12), ("500m", 0.5)],
)
def test_quantities_parse_like_kubernetes(quantity: int | str, value: float) -> None:
    assert quantity_bytes(quantity) == pytest.approx(value)


def test_crd_yaml_round_trips() -> None:
    assert yaml.safe_load(crd_yaml()) == CRD
