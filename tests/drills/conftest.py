"""Reliability drills (issue 7): every test here is marked `drill` and left out of `make test`.

Run them alone with `make drills` (`pytest -m drill -s tests/drills`); each prints what it
measured. They reuse the e2e fixtures (`cluster`, `crd_installed`, `registry`) and add:

- `drill_namespaces`: a factory of fresh namespaces named `<test prefix>-...`, deleted afterwards.
  Test prefixes start with DRILL_PREFIX, which differs from the e2e session's, so the e2e session
  operator never serves them.
- `operators`: a factory of operator processes (tests/e2e/conftest.py OperatorProcess) serving
  `<test prefix>-*` by default, stopped afterwards; `assert_never_crashed()` checks one is alive
  and logged no traceback other than a handler's error.
- `own_cluster`: a cluster of the session's own (hack/cluster `up --state-dir <tmp>`), for drills
  that stop the API server or etcd, or that must count every request; stopped at the end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from nemotron_operator.api import names
from tests.e2e import conftest as e2e
from tests.e2e.conftest import (
    CRD_FILE,
    HARNESS,
    SESSION_PREFIX,
    Cluster,
    OperatorProcess,
    _binaries,
    wait_until,
)
from tests.e2e.harness import local_cluster
from tests.standins.registry import VALID_KEY

# The e2e fixtures, reused (not copied): the shared cluster, its CRD, the NGC registry stand-in.
cluster = e2e.cluster
crd_installed = e2e.crd_installed
registry = e2e.registry

DRILL_PREFIX = f"d{SESSION_PREFIX[1:]}"
HERE = Path(__file__).parent
# Operator logs outlive pytest's rotating temporary directories: read them after a failed drill.
LOG_DIR = Path(os.environ.get("DRILL_LOG_DIR", f"/tmp/nemotron-drills/{DRILL_PREFIX}"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.drill)


def report(title: str, figures: Mapping[str, Any]) -> None:
    """Print what a drill measured (run with -s to see it), one figure per line."""
    print(f"\n=== drill: {title}")
    for key, value in figures.items():
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"    {key}: {shown}")


def ngc_secret(
    api: client.ApiClient, namespace: str, key: str = VALID_KEY, name: str = "ngc-api"
) -> dict[str, Any]:
    """A Secret holding an NGC key (the stand-in registry's valid one by default); returns the
    spec.ngc that refers to it."""
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={"NGC_API_KEY": key}),
    )
    return {"apiKeySecret": {"name": name}}


# --- namespaces ---------------------------------------------------------------------------------


@pytest.fixture
def drill_prefix() -> str:
    """This test's own namespace prefix: its operators serve `<prefix>-*` only, so an operator
    of one test never acts on another test's namespaces (still being deleted, say)."""
    return f"{DRILL_PREFIX}{uuid.uuid4().hex[:3]}"


@pytest.fixture
def drill_namespaces(cluster: Cluster, drill_prefix: str) -> Iterator[Callable[..., str]]:
    """make(stem, api=None, wait_for_account=True) -> a fresh namespace `<prefix>-stem-xxxx`."""
    made: list[tuple[client.ApiClient, str]] = []

    def make(stem: str, api: client.ApiClient | None = None, wait_for_account: bool = True) -> str:
        api = api or cluster.api
        name = e2e.create_namespace(api, stem, drill_prefix, wait_for_account)
        made.append((api, name))
        return name

    yield make
    for api, name in made:
        try:
            client.CoreV1Api(api).delete_namespace(name, propagation_policy="Background")
        except Exception as error:  # the API of a drill's own cluster may be gone already
            print(f"could not delete namespace {name}: {error}")


# --- operators ------------------------------------------------------------------------------------

# Kopf logs a handler's failure with its traceback and goes on ("Handler ... failed"); the resync
# loop logs its own failures the same way. Any other traceback is an unhandled error.
HANDLED = re.compile(
    r"Handler '[^']+' failed|converging \S+ failed; trying again|a resync round failed|"
    r"Error processing event|"
    r"Request attempt #\d+ failed|Unexpected error in peering|Ignoring"
)


CHAINED = ("The above exception was the direct cause", "During handling of the above exception")


@dataclass
class LoggedError:
    handled: bool  # announced by a handler-error line (Kopf or the resync loop)
    announced_by: str
    kind: str  # the last exception line of the (possibly chained) traceback
    text: str


def logged_errors(log: str) -> list[LoggedError]:
    """Every traceback in an operator log (chained ones as one), with the log line before it."""
    errors: list[LoggedError] = []
    records: deque[str] = deque(maxlen=6)  # the lines before a traceback (a message may be long)
    chained = in_traceback = False
    block: list[str] = []
    for line in log.splitlines():
        if line.startswith("Traceback"):
            if chained and errors:
                errors[-1].text += "\n" + line
            else:
                announced = next((r for r in records if HANDLED.search(r)), None)
                shown = announced or (records[-1] if records else "")
                errors.append(LoggedError(announced is not None, shown, "", line))
            in_traceback, chained, block = True, False, []
        elif in_traceback and line.startswith(" "):
            block.append(line)
        elif in_traceback:
            errors[-1].kind = line[:120]
            errors[-1].text += "\n" + "\n".join(block[-6:]) + "\n" + line
            in_traceback = False
        elif line.startswith(CHAINED):
            chained = True
        elif line.strip() and not chained:
            records.append(line)
    return errors


def unhandled_tracebacks(log: str) -> list[str]:
    """Tracebacks in an operator log that no handler-error line announced."""
    return [f"{e.announced_by}\n{e.text}" for e in logged_errors(log) if not e.handled]


def handled_errors(log: str) -> Counter[str]:
    """How many handler errors of each kind the log shows (the exception's type)."""
    return Counter(e.kind.split(":")[0] for e in logged_errors(log) if e.handled)


class DrillOperator(OperatorProcess):
    """An operator process that also reports its pid and whether it crashed."""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def assert_never_crashed(self) -> None:
        assert self.alive(), f"the operator exited:\n{self.logs()[-3000:]}"
        unhandled = unhandled_tracebacks(self.logs())
        assert not unhandled, "unhandled tracebacks:\n" + "\n---\n".join(unhandled[:3])


@pytest.fixture
def operators(
    cluster: Cluster,
    crd_installed: None,
    registry: Any,
    drill_prefix: str,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., DrillOperator]]:
    """start(kubeconfig=None, namespaces=(<prefix>-*,), env={}, args=(), name=...) -> a running
    DrillOperator against the shared cluster (or the given kubeconfig's)."""
    started: list[DrillOperator] = []
    log_dir = LOG_DIR / request.node.name[:80]
    log_dir.mkdir(parents=True, exist_ok=True)

    def start(
        kubeconfig: Path | None = None,
        namespaces: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        name: str = "operator",
    ) -> DrillOperator:
        process = DrillOperator(
            kubeconfig or cluster.kubeconfig,
            log_dir / f"{name}-{len(started)}.log",
            {
                "NEMOTRON_NGC_REGISTRY_URL": registry.url,
                "NEMOTRON_NGC_METADATA_URL": registry.url,
                **(env or {}),
            },
            namespaces=namespaces or (f"{drill_prefix}-*",),
            args=args,
        )
        started.append(process)
        process.start()
        return process

    yield start
    for process in started:
        process.stop()
    print(f"operator logs: {log_dir}")


# --- a cluster of one's own -----------------------------------------------------------------------


@dataclass
class OwnCluster(Cluster):
    state: Path

    def stop_component(self, name: str) -> None:
        local_cluster.stop(self.state, name)

    def start_component(self, name: str) -> None:
        local_cluster.restart(self.state, name)

    def api_ready(self) -> bool:
        try:
            server = (self.state / "server").read_text()
            return local_cluster.api_get(server, "/readyz", self.state / "pki") == b"ok"
        except OSError:
            return False


def own_cluster_up(state: Path) -> OwnCluster:
    subprocess.run([sys.executable, str(HARNESS), "up", "--state-dir", str(state)], check=True)
    kubeconfig = state / "kubeconfig"
    own = OwnCluster(
        kubeconfig=kubeconfig,
        api=config.new_client_from_config(config_file=str(kubeconfig)),
        binaries=_binaries(),
        state=state,
    )
    own.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    own.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD_FILE))
    return own


def own_cluster_down(own: OwnCluster) -> None:
    own.api.close()
    down = [sys.executable, str(HARNESS), "down", "--state-dir", str(own.state)]
    subprocess.run(down, check=False)


@pytest.fixture(scope="session")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnCluster]:
    own = own_cluster_up(tmp_path_factory.mktemp("own-cluster") / "state")
    try:
        yield own
    finally:
        own_cluster_down(own)


# --- NemotronDeployments in bulk ------------------------------------------------------------------


def nd_body(name: str, spec: Mapping[str, Any], **metadata: Any) -> dict[str, Any]:
    """A NemotronDeployment whose cache is shared (ReadWriteMany) unless the spec says otherwise:
    the drills count one Deployment, one Service and one claim per object (with a claim per
    replica, the default, the workload is a StatefulSet whose claims its controller makes)."""
    cache = spec.get("cache")
    shared = {"accessMode": "ReadWriteMany", **cache} if isinstance(cache, Mapping) else cache
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, **metadata},
        "spec": {**spec, "cache": shared if cache is not None else {"accessMode": "ReadWriteMany"}},
    }


def list_nds(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    return list(
        client.CustomObjectsApi(api).list_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL
        )["items"]
    )


def condition(body: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def converged(body: Mapping[str, Any]) -> bool:
    """Planned=True for the current generation, every condition current, and Ready=True when
    replicas are asked for."""
    generation = body["metadata"].get("generation")
    status = body.get("status") or {}
    conditions = status.get("conditions") or []
    if status.get("observedGeneration") != generation or not conditions:
        return False
    if any(c.get("observedGeneration") != generation for c in conditions):
        return False
    planned = condition(body, "Planned")
    if not planned or planned["status"] != "True":
        return False
    if body["spec"].get("replicas", 1) > 0:
        ready = condition(body, "Ready")
        return bool(ready and ready["status"] == "True")
    return True


def stale_conditions(body: Mapping[str, Any]) -> list[str]:
    generation = body["metadata"].get("generation")
    status = body.get("status") or {}
    stale = [
        c["type"]
        for c in status.get("conditions") or []
        if c.get("observedGeneration") != generation
    ]
    if status.get("observedGeneration") != generation:
        stale.append("status.observedGeneration")
    return stale


@dataclass
class ChildCensus:
    """The children found in some namespaces, by kind and owner."""

    per_owner: dict[tuple[str, str, str], int]  # (namespace, owner name, kind) -> count
    orphans: list[str]  # children whose owner NemotronDeployment is gone (or has another uid)
    unowned: list[str]  # children carrying our label but no owner reference

    def duplicates(self) -> dict[tuple[str, str, str], int]:
        return {key: n for key, n in self.per_owner.items() if n > 1}

    def count(self, kind: str) -> int:
        return sum(n for (_, _, k), n in self.per_owner.items() if k == kind)


def census(api: client.ApiClient, namespaces: Sequence[str]) -> ChildCensus:
    """Count the operator's Deployments, Services and PVCs per owning NemotronDeployment."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    selector = f"{names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE}"
    per_owner: Counter[tuple[str, str, str]] = Counter()
    orphans: list[str] = []
    unowned: list[str] = []
    for namespace in namespaces:
        owners = {nd["metadata"]["uid"]: nd["metadata"]["name"] for nd in list_nds(api, namespace)}
        children = [
            ("Deployment", apps.list_namespaced_deployment(namespace, label_selector=selector)),
            ("Service", core.list_namespaced_service(namespace, label_selector=selector)),
            (
                "PersistentVolumeClaim",
                core.list_namespaced_persistent_volume_claim(namespace, label_selector=selector),
            ),
        ]
        for kind, listed in children:
            for child in listed.items:
                refs = [r for r in child.metadata.owner_references or () if r.kind == names.KIND]
                where = f"{kind} {namespace}/{child.metadata.name}"
                if not refs:
                    unowned.append(where)
                    continue
                if child.metadata.deletion_timestamp:
                    continue  # being garbage-collected
                owner = owners.get(refs[0].uid)
                if owner is None:
                    orphans.append(where)
                else:
                    per_owner[(namespace, owner, kind)] += 1
    return ChildCensus(dict(per_owner), orphans, unowned)


def poll(check: Callable[[], Any], what: str, timeout: float, interval: float = 1.0) -> float:
    """Poll until check() is truthy; return the seconds it took."""
    started = time.monotonic()
    wait_until(check, what, timeout, interval)
    return time.monotonic() - started
