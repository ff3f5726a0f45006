"""Text that becomes YAML: the body of a server-side apply is JSON that a YAML reader (the API
server's) reads back unchanged; and the children rendered carry the spec's text exactly."""

from __future__ import annotations

import yaml
from hypothesis import given
from hypothesis import strategies as st

from nemotron_operator.api.types import NemotronDeploymentSpec, PlanStatus
from nemotron_operator.core import render
from nemotron_operator.core.render import json_for_yaml
from nemotron_operator.shell.kube import apply_body

UNICODE = "Zoë 模型 🚀 \x7f end"


def test_characters_beyond_the_basic_plane_use_yamls_escape_not_a_surrogate_pair() -> None:
    body = apply_body({"a": "Zoë 模型 🚀"})
    assert "\\ud83d" not in body and "\\U0001f680" in body
    assert yaml.safe_load(body) == {"a": "Zoë 模型 🚀"}


def test_a_backslash_before_what_looks_like_an_escape_stays_a_backslash() -> None:
    for text in ("\\ud83d\\ude80", "\\🚀", "\\\\🚀", "\\\\\\ud83d"):
        assert yaml.safe_load(json_for_yaml({"a": text})) == {"a": text}


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=4))
def test_any_text_reads_back_unchanged(annotations: dict[str, str]) -> None:
    child = {"metadata": {"annotations": annotations}, "spec": {"n": 1, "b": True, "l": [None]}}
    assert yaml.safe_load(json_for_yaml(child)) == child


def test_rendered_children_carry_the_specs_text_exactly() -> None:
    """An emoji in an annotation once came out of the templates as two lone surrogates: the
    child never matched what the API server stored, so every event re-applied it."""
    spec = NemotronDeploymentSpec.model_validate(
        {
            "model": "nemotron-3-nano",
            "service": {"annotations": {"note.example.com/owner": UNICODE}},
            "env": [{"name": "NOTE", "value": UNICODE}],
        }
    ).model_dump(by_alias=True, mode="json")
    plan = PlanStatus(
        fits=True,
        reason="Fits",
        message="fits",
        gpus_per_replica=1,
        nodes_per_replica=1,
        gpu_product="NVIDIA-H100-80GB-HBM3",
        image="nvcr.io/nim/nvidia/nemotron-3-nano:2.1.5",
        cache_size="40Gi",
    )
    owner = render.Owner(name="nano", namespace="ns", uid="u")
    children = {c["kind"]: c for c in render.render_children(owner, spec, plan, key_given=False)}
    assert children["Service"]["metadata"]["annotations"]["note.example.com/owner"] == UNICODE
    env = children["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert next(e for e in env if e["name"] == "NOTE")["value"] == UNICODE
