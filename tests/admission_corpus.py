"""What the API server must accept and refuse: the examples and the invalid corpus
(tests/e2e/invalid_nemotrondeployments.yaml), shared by the admission tests of both tiers:
tests/e2e/test_admission.py sends them to a real API server, tests/unit/test_admission_rules.py
through pydantic, as `nemotron-operator plan FILE` reads a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nemotron_operator.api import names

REPO = Path(__file__).resolve().parents[1]
CORPUS_FILE = REPO / "tests" / "e2e" / "invalid_nemotrondeployments.yaml"
CORPUS: list[dict[str, Any]] = yaml.safe_load(CORPUS_FILE.read_text())
EXAMPLES = [
    (path.name, doc)
    for path in sorted((REPO / "examples").glob("*.yaml"))
    for doc in yaml.safe_load_all(path.read_text())
    if doc
]


def nemotron_deployment(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": "invalid", **metadata},
        "spec": spec,
    }


def invalid_object(entry: dict[str, Any]) -> dict[str, Any]:
    """The whole object a corpus entry stands for."""
    if "object" in entry:
        return dict(entry["object"])
    return nemotron_deployment(entry["spec"], **entry.get("metadata", {}))
