"""Fixtures for tests that need Kubernetes: every test in tests/e2e is marked `e2e`.

- `cluster` (session): the local cluster from hack/cluster (started here when it is not already
  running, and stopped again at the end if this session started it), or the one behind
  `--kubeconfig`/`KUBECONFIG`, or with `--cluster=kind` a kind cluster from pytest-kind with kwok's
  fake GPU nodes attached (needs Docker, so this repository's CI cannot run it).
- `namespace`: a fresh namespace per test, deleted afterwards.
- `kubelet`: a FakeKubelet (tests/e2e/fake_kubelet.py) for the test's namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from .fake_kubelet import FakeKubelet

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "hack" / "cluster" / "cluster.py"
LOCAL_STATE = REPO / ".cluster"


@dataclass
class Cluster:
    kubeconfig: Path
    api: client.ApiClient
    binaries: dict[str, Path]  # kubectl, helm, ... built for this cluster's version

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binaries["kubectl"]), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def _harness(*args: str) -> None:
    subprocess.run([sys.executable, str(HARNESS), *args], check=True)


def _binaries() -> dict[str, Path]:
    sys.path.insert(0, str(HARNESS.parent))
    import cluster as local_cluster

    return dict(local_cluster.binaries())


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    backend = request.config.getoption("--cluster")
    given = request.config.getoption("--kubeconfig") or os.environ.get("KUBECONFIG")
    stop_at_end: Callable[[], None] | None = None
    binaries = _binaries()
    if backend == "kind":
        from pytest_kind import KindCluster

        kind = KindCluster("nemotron-e2e")
        kind.create()
        state = REPO / ".cluster-kind"
        _harness("attach", "--kubeconfig", str(kind.kubeconfig_path), "--state-dir", str(state))
        kubeconfig = state / "kubeconfig"

        def stop_kind() -> None:
            _harness("down", "--state-dir", str(state))
            kind.delete()

        stop_at_end = stop_kind
    elif given:
        kubeconfig = Path(given)
    else:
        if (
            subprocess.run(
                [sys.executable, str(HARNESS), "status"], capture_output=True, check=False
            ).returncode
            != 0
        ):
            _harness("up")
            stop_at_end = lambda: _harness("down")  # noqa: E731
        kubeconfig = LOCAL_STATE / "kubeconfig"
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield Cluster(kubeconfig=kubeconfig, api=api, binaries=binaries)
    finally:
        api.close()
        if stop_at_end is not None:
            stop_at_end()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    core = client.CoreV1Api(cluster.api)
    stem = request.node.name.lower().replace("_", "-")
    stem = "".join(ch for ch in stem if ch.isalnum() or ch == "-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"nemotron.dev/test": "true"})
        )
    )
    # Pods need the namespace's default ServiceAccount, which the controller-manager creates.
    wait_until(
        lambda: bool(
            core.list_namespaced_service_account(name, field_selector="metadata.name=default").items
        ),
        "default ServiceAccount",
        30,
    )
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def kubelet(cluster: Cluster, namespace: str) -> FakeKubelet:
    return FakeKubelet(cluster.api, namespace)


def wait_until(
    check: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.1
) -> Any:
    """Poll until check() returns something truthy, and return it; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
