"""The body of a server-side apply: JSON the API server's YAML reader takes back unchanged."""

from __future__ import annotations

import yaml
from hypothesis import given
from hypothesis import strategies as st

from nemotron_operator.kube import apply_body


def test_characters_beyond_the_basic_plane_use_yamls_escape_not_a_surrogate_pair() -> None:
    body = apply_body({"a": "Zoë 模型 🚀"})
    assert "\\ud83d" not in body and "\\U0001f680" in body
    assert yaml.safe_load(body) == {"a": "Zoë 模型 🚀"}


def test_a_backslash_before_what_looks_like_an_escape_stays_a_backslash() -> None:
    for text in ("\\ud83d\\ude80", "\\🚀", "\\\\🚀", "\\\\\\ud83d"):
        assert yaml.safe_load(apply_body({"a": text})) == {"a": text}


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=4))
def test_any_text_reads_back_unchanged(annotations: dict[str, str]) -> None:
    child = {"metadata": {"annotations": annotations}, "spec": {"n": 1, "b": True, "l": [None]}}
    assert yaml.safe_load(apply_body(child)) == child
