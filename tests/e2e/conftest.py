"""Fixtures for tests that need Kubernetes: every test in tests/e2e is marked `e2e`.

- `cluster` (session): the local cluster from hack/cluster (started here when it is not already
  running, and stopped again at the end if this session started it), or the one behind
  `--kubeconfig`/`KUBECONFIG`, or with `--cluster=kind` a kind cluster from pytest-kind with kwok's
  fake GPU nodes attached (needs Docker, so this repository's CI cannot run it).
- `namespace`: a fresh namespace per test, deleted afterwards.
- `kubelet`: a FakeKubelet (tests/e2e/fake_kubelet.py) for the test's namespace.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.standins.registry import RegistryStandin, catalog_config

from .fake_kubelet import FakeKubelet
from .harness import local_cluster

free_port = local_cluster.free_port

REPO = Path(__file__).resolve().parents[2]
# Every namespace of this test session starts with this, and the session's operator serves only
# those: several sessions (and developers) can share one cluster without meeting.
SESSION_PREFIX = f"e{uuid.uuid4().hex[:5]}"
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
    name = create_namespace(cluster.api, request.node.name)
    yield name
    client.CoreV1Api(cluster.api).delete_namespace(name, propagation_policy="Background")


def create_namespace(
    api: client.ApiClient, what: str, prefix: str = SESSION_PREFIX, wait_for_account: bool = True
) -> str:
    """A new namespace named <prefix>-<what>-<random> (the session's operator serves those of
    SESSION_PREFIX), labelled as a test's; by default with the default ServiceAccount pods need,
    which the controller-manager creates."""
    core = client.CoreV1Api(api)
    stem = what.lower().replace("_", "-")
    stem = "".join(ch for ch in stem if ch.isalnum() or ch == "-")[:40].strip("-")
    name = f"{prefix}-{stem}-{uuid.uuid4().hex[:4]}".replace("--", "-")
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"nemotron.dev/test": "true"})
        )
    )
    if wait_for_account:
        wait_until(
            lambda: bool(
                core.list_namespaced_service_account(
                    name, field_selector="metadata.name=default"
                ).items
            ),
            f"the default ServiceAccount of {name}",
            60,
        )
    return name


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


# --- the operator under test ------------------------------------------------------------------

CRD_FILE = REPO / "crds" / "nemotron.dev_nemotrondeployments.yaml"
OPERATOR_USER_AGENTS = ("nemotron-operator", "kopf/")


class OperatorProcess:
    """`nemotron-operator run` as a person runs it, against the test cluster.

    It serves this session's namespaces unless given others (`namespaces`: names or globs, or
    `("*",)` for the whole cluster); `args` are more flags of `run` (e.g. --peering NAME)."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        env: Mapping[str, str],
        namespaces: Sequence[str] = (f"{SESSION_PREFIX}-*",),
        args: Sequence[str] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.env = dict(env)
        self.namespaces = tuple(namespaces)
        self.args = tuple(args)
        self.process: subprocess.Popen[bytes] | None = None
        self.health_url = ""  # the liveness endpoint, once started
        self.metrics_url = ""  # /metrics, once started

    def start(self) -> None:
        port = free_port()
        self.health_url = f"http://127.0.0.1:{port}/healthz"
        metrics_port = free_port()  # several operators run side by side here
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        scope = (
            ["--all-namespaces"]
            if self.namespaces == ("*",)
            else [f"--namespace={n}" for n in self.namespaces]
        )
        command = [
            str(Path(sys.executable).parent / "nemotron-operator"),
            "run",
            *scope,
            "--liveness",
            self.health_url,
            *self.args,
        ]
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "NEMOTRON_METRICS_PORT": str(metrics_port),
            **self.env,
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

        def alive() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the operator exited:\n{self.logs()[-3000:]}")
            try:
                with urllib.request.urlopen(self.health_url, timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_until(alive, "the operator's liveness endpoint", 60)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture(scope="session")
def crd_installed(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD_FILE))


@pytest.fixture(scope="session")
def registry() -> Iterator[Any]:
    """The NGC registry and Metadata API stand-in, on loopback (tests/standins/registry.py)."""
    with RegistryStandin(catalog_config()) as standin:
        yield standin


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, crd_installed: None, registry: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        {"NEMOTRON_NGC_REGISTRY_URL": registry.url, "NEMOTRON_NGC_METADATA_URL": registry.url},
    )
    process.start()
    yield process
    process.stop()


def operator_requests(
    audit: Path, since: float = 0.0, until: float = math.inf
) -> list[dict[str, Any]]:
    """The operator's requests in the API server's audit log `audit`, received in [since, until)
    (epoch seconds): one entry per request (a watch is logged when it starts and when it ends).
    The local cluster logs writes, and reads too when started with --audit-reads."""
    found: dict[str, dict[str, Any]] = {}
    with audit.open() as lines:
        for line in lines:
            entry = json.loads(line)
            if not entry.get("userAgent", "").startswith(OPERATOR_USER_AGENTS):
                continue
            received = entry["requestReceivedTimestamp"].replace("Z", "+00:00")
            if since <= dt.datetime.fromisoformat(received).timestamp() < until:
                found[entry["auditID"]] = entry
    return list(found.values())


def operator_writes(cluster: Cluster, since: float = 0.0) -> list[dict[str, Any]]:
    """The write requests the operator sent since `since` (epoch seconds); only the local
    cluster keeps an audit log to find them in."""
    audit = cluster.kubeconfig.parent / "audit.log"
    if not audit.exists():
        pytest.skip("this cluster keeps no audit log to count requests in")
    return operator_requests(audit, since)
