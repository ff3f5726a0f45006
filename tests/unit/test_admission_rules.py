"""The API server's admission, without one: pydantic refuses what the CRD refuses, on the same
field and in the same words, and each rule's CEL (evaluated by cel-python) and Python forms
agree.

tests/e2e/test_admission.py sends the same corpus to a real API server; this tier checks that
`nemotron-operator plan FILE` (and the operator reading an object stored before a CRD upgrade)
says what the API server says.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from celpy import celtypes
from pydantic import BaseModel, ValidationError

from nemotron_operator.api.crd import nemotron_deployment_crd
from nemotron_operator.api.rules import Rule, admission_errors
from nemotron_operator.api.types import (
    DEPLOYMENT_NAME_RULES,
    QUANTITY_PATTERN,
    ApiObject,
    NemotronDeployment,
    NemotronDeploymentSpec,
    quantity_bytes,
)
from nemotron_operator.cli import main
from tests.admission_corpus import CORPUS, EXAMPLES, invalid_object, nemotron_deployment

H100 = ["--gpu-product", "NVIDIA-H100-80GB-HBM3", "--gpus-per-node", "8", "--nodes", "2"]
ROOT_SCHEMA = nemotron_deployment_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


# --- pydantic refuses the corpus as the API server does ----------------------------------------


@pytest.mark.parametrize("entry", CORPUS, ids=[entry["name"] for entry in CORPUS])
def test_plan_file_refuses_what_the_api_server_refuses_in_its_words(
    entry: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nd.yaml"
    path.write_text(yaml.safe_dump(invalid_object(entry)))
    code = main(["plan", str(path), *H100])
    message = capsys.readouterr().err
    assert code == 2, message  # refused before planning, as kubectl apply would be
    # what test_admission.py asserts of the API server's answer
    assert entry["field"] in message, message
    assert entry["expect"] in message, message


@pytest.mark.parametrize("entry", CORPUS, ids=[entry["name"] for entry in CORPUS])
def test_pydantic_refuses_on_the_field_the_api_server_names(entry: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as refused:
        NemotronDeployment.model_validate(invalid_object(entry))
    causes = admission_errors(refused.value)
    assert any(
        cause.field.startswith(entry["field"]) and entry["expect"] in cause.message
        for cause in causes
    ), causes


def test_the_spec_alone_is_refused_on_the_same_field_below_spec() -> None:
    """The operator validates the spec it reads: the same rule, on the same path below spec."""
    spec = {"model": "nemotron-3-nano", "cache": {"existingClaim": "preloaded", "size": "1Gi"}}
    with pytest.raises(ValidationError) as refused:
        NemotronDeploymentSpec.model_validate(spec)
    [cause] = admission_errors(refused.value, ("spec",))
    assert cause.field == "spec.cache"
    assert "cache.existingClaim and cache.size are mutually exclusive" in cause.message


@pytest.mark.parametrize(
    ("file", "example"), EXAMPLES, ids=[f"{f}:{e['metadata']['name']}" for f, e in EXAMPLES]
)
def test_every_example_is_accepted(file: str, example: dict[str, Any]) -> None:
    accepted = NemotronDeployment.model_validate(example)
    assert accepted.metadata["name"] == example["metadata"]["name"]


# --- each rule's CEL and Python forms agree ----------------------------------------------------


def kubernetes_cel_library() -> dict[str, Any]:
    """The Kubernetes CEL quantity functions the rules call (k8s.io/apiserver/pkg/cel/library),
    over the quantity syntax of the API server's own schemas."""

    def is_quantity(value: celtypes.StringType) -> celtypes.BoolType:
        return celtypes.BoolType(re.fullmatch(QUANTITY_PATTERN, str(value)) is not None)

    def quantity(value: celtypes.StringType) -> celtypes.DoubleType:
        return celtypes.DoubleType(quantity_bytes(str(value)))

    return {
        "isQuantity": is_quantity,
        "quantity": quantity,
        "isLessThan": lambda a, b: celtypes.BoolType(a < b),
        "isGreaterThan": lambda a, b: celtypes.BoolType(a > b),
    }


CEL = celpy.Environment()
PROGRAMS: dict[str, Any] = {}


def cel_allows(rule: Rule[Any], value: Any) -> bool:
    if rule.cel not in PROGRAMS:
        PROGRAMS[rule.cel] = CEL.program(CEL.compile(rule.cel), functions=kubernetes_cel_library())
    verdict = PROGRAMS[rule.cel].evaluate({"self": celpy.json_to_cel(value)})
    assert isinstance(verdict, celtypes.BoolType), f"{rule.cel} on {value}: {verdict}"
    return bool(verdict)


def declared_rules(annotation: Any, owner: type[BaseModel] | None = None) -> Iterator[Any]:
    """(rule, the model it guards or None for a value) for every Rule reachable from a type."""
    if isinstance(annotation, type) and issubclass(annotation, ApiObject):
        yield from ((rule, annotation) for rule in annotation.rules)
        for field in annotation.model_fields.values():
            yield from ((rule, None) for rule in field.metadata if isinstance(rule, Rule))
            yield from declared_rules(field.annotation)
    for argument in typing.get_args(annotation):
        if isinstance(argument, Rule):
            yield argument, None
        else:
            yield from declared_rules(argument)


RULES = {
    (rule.cel, rule.message): (rule, owner)
    for rule, owner in [
        *declared_rules(NemotronDeploymentSpec),
        *((rule, None) for rule in DEPLOYMENT_NAME_RULES),
    ]
}


def defaulted(schema: dict[str, Any], value: Any) -> Any:
    """`value` with the schema's defaults filled in, as the API server does before CEL runs."""
    if isinstance(value, dict) and "properties" in schema:
        filled = {
            name: sub["default"]
            for name, sub in schema["properties"].items()
            if "default" in sub and name not in value
        }
        return {
            **{k: defaulted(schema["properties"].get(k, {}), v) for k, v in value.items()},
            **filled,
        }
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {k: defaulted(schema["additionalProperties"], v) for k, v in value.items()}
    if isinstance(value, list) and "items" in schema:
        return [defaulted(schema["items"], item) for item in value]
    return value


def guarded_values(schema: dict[str, Any], value: Any) -> Iterator[tuple[dict[str, str], Any]]:
    """(x-kubernetes-validations entry, the value it guards) down an object, as the API server
    walks it."""
    for validation in schema.get("x-kubernetes-validations", []):
        yield validation, value
    if isinstance(value, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name in value:
                yield from guarded_values(sub, value[name])
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for item in value.values():
            yield from guarded_values(schema["additionalProperties"], item)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            yield from guarded_values(schema["items"], item)


def python_allows(
    rule: Rule[Any], owner: type[BaseModel] | None, value: Any, monkeypatch: pytest.MonkeyPatch
) -> bool | None:
    """The Python form's verdict on the value as pydantic hands it over: the value itself, or
    the model it guards validated without this model's rules. None when pydantic refuses the
    value for another reason (it never reaches this rule)."""
    if owner is None:
        return rule.check(value)
    with monkeypatch.context() as suspended:
        suspended.setattr(owner, "rules", ())
        try:
            model = owner.model_validate(value)
        except ValidationError:
            return None
    return rule.check(model)


# Beside the corpus and the examples: values at the edge of a rule, on either side.
EDGES = [
    nemotron_deployment({"model": "nemotron-3-nano", **fields})
    for fields in [
        {"precision": "fp8", "profile": "a" * 64},
        {"precision": "fp8", "profile": "vllm-fp8-tp1-pp1"},
        {"env": [{"name": "X", "value": "", "valueFrom": {}}]},
        {"ngc": {"offline": True}, "cache": {"existingClaim": "c"}},
        {"ngc": {"apiKeySecret": {"name": "ngc", "key": "NGC KEY"}}},
        {"resources": {"requests": {"cpu": 8}, "limits": {"cpu": "8000m"}}},
        {"resources": {"requests": {"cpu": "8001m"}, "limits": {"cpu": 8}}},
        {"resources": {"limits": {"hugepages-2Mi": "1Gi", "example.com/fpga": 1}}},
        {"resources": {"requests": {"memroy": "1Gi"}}},
        {"cache": {"size": "1e9"}},
        {"cache": {"size": "0.0"}},
        {"tolerations": [{"operator": "Exists"}]},
        {"tolerations": [{"key": "k", "effect": "NoExecute", "tolerationSeconds": 5}]},
        {"tolerations": [{"key": "Bad Key"}]},
        {"tolerations": [{"key": "k", "value": "ai"}]},
        {"tolerations": [{"key": "k", "value": "a i"}]},
        {"gpu": {"count": 64}},
        {"version": "latest-but-pinned"},
        {"service": {"annotations": {"example.com/lb": "internal"}}},
        {"priorityClassName": "high", "runtimeClassName": "nvidia"},
        *(
            {
                "model": "custom",
                "customModel": {
                    "image": "nvcr.io/nim/nvidia/llm-nim:2.1.6",
                    "precisions": ["fp8"],
                    "configMapRef": reference,
                },
            }
            for reference in (
                {"name": "llama-config", "key": "config.json"},
                {"name": "Llama_Config", "key": "config json"},
            )
        ),
    ]
]


def test_each_rules_cel_and_python_forms_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = [invalid_object(e) for e in CORPUS] + [e for _, e in EXAMPLES] + EDGES
    verdicts: dict[tuple[str, str], set[bool]] = {key: set() for key in RULES}
    for obj in objects:
        for validation, value in guarded_values(ROOT_SCHEMA, defaulted(ROOT_SCHEMA, obj)):
            key = (validation["rule"], validation["message"])
            rule, owner = RULES[key]  # every rule in the CRD is a declared Rule
            assert validation == rule.validation()
            python = python_allows(rule, owner, value, monkeypatch)
            if python is None:
                continue
            assert cel_allows(rule, value) == python, (rule.cel, value)
            verdicts[key].add(python)
    untried = [message for (_, message), seen in verdicts.items() if seen != {True, False}]
    assert not untried, f"no object both passes and breaks these rules: {untried}"
