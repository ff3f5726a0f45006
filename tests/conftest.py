"""Options shared by every test tier (the cluster fixtures live in tests/e2e/conftest.py)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nemotron", "nemotron-operator cluster")
    group.addoption(
        "--kubeconfig",
        default=None,
        help="use the running cluster behind this kubeconfig instead of starting the local one "
        "(KUBECONFIG is honoured too)",
    )
    group.addoption(
        "--cluster",
        choices=("local", "kind"),
        default="local",
        help="local: etcd + kube-apiserver + controllers + kwok built from the Go module proxy "
        "(hack/cluster); kind: a kind cluster via pytest-kind, for machines with Docker",
    )
