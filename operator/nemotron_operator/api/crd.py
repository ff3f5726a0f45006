"""The NemotronDeployment CustomResourceDefinition, generated from the pydantic models.

Kubernetes wants a structural OpenAPI v3 schema: every `$ref` inlined, `nullable: true`
instead of `anyOf: [X, null]`, no `additionalProperties: false` (the API server prunes unknown
fields itself), `x-kubernetes-int-or-string` for quantities, a type and a description on every
property. `structural_schema` rewrites pydantic's JSON Schema into that shape;
`nemotron_deployment_crd` wraps it into the CRD with its subresources and printer columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from nemotron_operator.api import names
from nemotron_operator.api.types import (
    DEPLOYMENT_NAME_RULES,
    MAX_DEPLOYMENT_NAME_LENGTH,
    NemotronDeploymentSpec,
    NemotronDeploymentStatus,
)

CRD_FILE = Path(f"crds/{names.GROUP}_{names.PLURAL}.yaml")
# The Helm chart carries an identical copy (Helm installs charts/<name>/crds/ before the rest).
CHART_CRD_FILE = Path("charts/nemotron-operator") / CRD_FILE
CRD_FILES = (CRD_FILE, CHART_CRD_FILE)

# JSON Schema keywords pydantic emits that a CRD schema must not carry.
_DROPPED_KEYWORDS = {"title", "$defs", "additionalProperties", "default"}
# Defaults worth letting the API server fill in: scalars only (objects default to empty anyway).
_SCALAR_TYPES = (str, int, float, bool)

_READY = f'.status.conditions[?(@.type=="{names.ConditionType.READY}")]'
PRINTER_COLUMNS = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
    {"name": "Precision", "type": "string", "jsonPath": ".status.plan.precision"},
    {
        "name": "GPUs",
        "type": "integer",
        "description": "GPUs per replica",
        "jsonPath": ".status.plan.gpusPerReplica",
    },
    {"name": "GPU", "type": "string", "jsonPath": ".status.plan.gpuProduct"},
    {"name": "Ready", "type": "string", "jsonPath": f"{_READY}.status"},
    {"name": "Reason", "type": "string", "jsonPath": f"{_READY}.reason"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema in the structural form a CRD requires."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(schema, schema.get("$defs", {}))


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is not None:
        target = _structural(defs[ref.rsplit("/", 1)[-1]], defs)
        siblings = _structural({k: v for k, v in node.items() if k != "$ref"}, defs)
        return {**target, **siblings}

    options = node.get("anyOf")
    if options is not None and not node.get("x-kubernetes-int-or-string"):
        non_null = [option for option in options if option.get("type") != "null"]
        if len(non_null) != 1 or len(non_null) == len(options):
            raise ValueError(f"cannot express anyOf {options} in a structural schema")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return {**_structural(non_null[0], defs), **_structural(rest, defs), "nullable": True}

    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYWORDS:
            if key == "default" and isinstance(value, _SCALAR_TYPES):
                result[key] = value
            elif key == "additionalProperties" and isinstance(value, dict):
                result[key] = _structural(value, defs)
            continue
        if key == "properties":
            result[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            result[key] = _structural(value, defs)
        else:
            result[key] = value
    return result


def nemotron_deployment_crd() -> dict[str, Any]:
    """The CustomResourceDefinition of NemotronDeployment, as a dict ready for YAML."""
    root = {
        "type": "object",
        "description": "A Nemotron model served by NVIDIA NIM pods, sized to the cluster's "
        "GPUs: the operator plans image tag, precision, GPUs per replica and NIM profile, "
        "and says why when it does not fit.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "Versioned schema of this object (nemotron.dev/v1alpha1).",
            },
            "kind": {"type": "string", "description": "NemotronDeployment."},
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string",
                        "maxLength": 253,
                        "description": "Name of the NemotronDeployment, and of its Service "
                        "and workload: a DNS-1035 label of at most "
                        f"{MAX_DEPLOYMENT_NAME_LENGTH} characters.",
                        "x-kubernetes-validations": [
                            rule.validation() for rule in DEPLOYMENT_NAME_RULES
                        ],
                    }
                },
            },
            "spec": structural_schema(NemotronDeploymentSpec),
            # Before the operator's first status write, the API server reads the object as
            # `status: {observedGeneration: 0}`: generation 1 not yet observed, which kstatus
            # (Flux) reads as InProgress. With no status at all it would read Current at once.
            "status": {
                **structural_schema(NemotronDeploymentStatus),
                "default": {"observedGeneration": 0},
            },
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": names.CRD_NAME,
            "labels": {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE},
        },
        "spec": {
            "group": names.GROUP,
            "names": {
                "kind": names.KIND,
                "listKind": names.LIST_KIND,
                "plural": names.PLURAL,
                "singular": names.SINGULAR,
                "shortNames": list(names.SHORT_NAMES),
                "categories": list(names.CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": names.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML checked in at crds/ (and printed by `nemotron-operator crd`)."""
    header = (
        "# Generated from operator/nemotron_operator/api/types.py by `nemotron-operator crd`.\n"
        "# Do not edit: change the pydantic models and regenerate.\n"
    )
    return header + yaml.safe_dump(nemotron_deployment_crd(), sort_keys=False, width=100)


def write_crd_files(root: Path) -> list[Path]:
    """Write the CRD to every place the repository keeps it (`nemotron-operator crd --write`)."""
    text = crd_yaml()
    written = []
    for relative in CRD_FILES:
        path = root / relative
        if not path.parent.is_dir():
            raise FileNotFoundError(f"{path.parent} is not a directory: run at the repository root")
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
