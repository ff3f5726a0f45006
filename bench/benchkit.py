"""What every benchmark starts from: the local cluster, running, with the CRD installed."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.watch.watch import iter_resp_lines
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "hack" / "cluster"))

import cluster as local_cluster  # noqa: E402
from tests.e2e.conftest import OPERATOR_USER_AGENTS, OperatorProcess  # noqa: E402

from nemotron_operator.api import names  # noqa: E402


def local_cluster_with_crd() -> tuple[Path, client.ApiClient]:
    """Start the local cluster unless it runs, apply crds/, and return its kubeconfig and a
    client for it."""
    local_cluster.up(local_cluster.DEFAULT_STATE, local_cluster.DEFAULT_NODES)
    kubeconfig = local_cluster.DEFAULT_STATE / "kubeconfig"
    kubectl = str(local_cluster.binaries()["kubectl"])
    subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(kubeconfig),
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(REPO / "crds"),
        ],
        check=True,
        capture_output=True,
    )
    return kubeconfig, config.new_client_from_config(config_file=str(kubeconfig))


def create_nemotron_deployment(
    api: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    """Creates it; returns it as the API server stored it."""
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        names.GROUP,
        names.VERSION,
        namespace,
        names.PLURAL,
        {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": name},
            "spec": spec,
        },
    )
    return created


def percentile(values: list[float], q: float) -> float:
    """The value below which a fraction q of the values lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def started_operator(
    kubeconfig: Path, prefix: str, registry_url: str = "http://127.0.0.1:9"
) -> OperatorProcess:
    """The operator, as the tests run it, serving only the namespaces named `<prefix>-*`; by
    default with no registry to ask (its credentials checks say Unknown, which blocks nothing).
    Its log goes to .cluster/."""
    operator = OperatorProcess(
        kubeconfig,
        REPO / ".cluster" / f"{prefix}-operator.log",
        {"NEMOTRON_NGC_REGISTRY_URL": registry_url},
        namespaces=(f"{prefix}-*",),
    )
    operator.start()
    return operator


def memory_mib(pid: int, field: str = "VmHWM") -> float:
    """A memory figure of a process from /proc (VmHWM: its peak resident size, VmRSS: now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no {field} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def converges(operator: OperatorProcess) -> float:
    """How many converges the operator has run: nemotron_operator_converges_total, all outcomes."""
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "nemotron_operator_converges"
        for sample in family.samples
        if sample.name == "nemotron_operator_converges_total"
    )


def cluster_cpu_seconds(state: Path) -> dict[str, float]:
    """CPU seconds used so far by each program of the local cluster kept in `state` (etcd,
    kube-apiserver, kube-controller-manager, kube-scheduler, kwok): its processes name that
    directory on their command lines."""
    used: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if str(state).encode() not in b" ".join(argv):
                continue
            program = Path(argv[0].decode()).name
            used[program] = used.get(program, 0.0) + cpu_seconds(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
    return used


def cluster_cpu_since(state: Path, before: dict[str, float]) -> dict[str, float]:
    """CPU seconds each program of the local cluster in `state` used since `before` (a
    cluster_cpu_seconds reading)."""
    return {
        program: seconds - before.get(program, 0.0)
        for program, seconds in cluster_cpu_seconds(state).items()
    }


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine have been busy since boot (/proc/stat: all but idle
    and iowait), whatever ran."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def load_average() -> tuple[float, float, float]:
    """The machine's load average over 1, 5 and 15 minutes (the machine is shared: say it)."""
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def watch_events(http: Any, url: str, timeout: float) -> Iterator[dict[str, Any]]:
    """The events of one watch request (`url` asks for watch=true), as the API server sent them:
    decoding each into the typed client's models would cost the benchmark's process CPU that the
    programs it measures share."""
    response = http.request("GET", url, preload_content=False, timeout=timeout)
    try:
        for line in iter_resp_lines(response):
            yield json.loads(line)
    finally:
        response.release_conn()


def delete_namespaces(api: client.ApiClient, namespaces: list[str], timeout: float = 300) -> None:
    """Delete `namespaces` and wait until they are gone: the garbage collector and the namespace
    controller keep the API server busy for a while after a run, and the next run would share
    the machine with that."""
    core = client.CoreV1Api(api)
    for namespace in namespaces:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(namespace)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {n.metadata.name for n in core.list_namespace().items} & set(namespaces)
        if not left:
            return
        time.sleep(1)
    print(f"namespaces not gone after {timeout:.0f} s: {sorted(left)}", file=sys.stderr)


class AuditTail:
    """The operator's requests in an API server audit log, read on from where the last call
    stopped (the log of a few thousand objects holds millions of lines: read each once)."""

    def __init__(self, audit: Path) -> None:
        self._audit = audit
        self._offset = 0
        self.requests: list[tuple[float, dict[str, Any]]] = []  # (received, entry)
        self._index: dict[str, int] = {}  # audit ID -> its place in requests

    def read(self) -> None:
        if not self._audit.exists():
            return
        with self._audit.open("rb") as lines:
            lines.seek(self._offset)
            for line in lines:
                if not line.endswith(b"\n"):
                    break  # a line being written: read it next time
                self._offset += len(line)
                if not any(agent.encode() in line for agent in OPERATOR_USER_AGENTS):
                    continue
                entry = json.loads(line)
                if not entry.get("userAgent", "").startswith(OPERATOR_USER_AGENTS):
                    continue
                received = dt.datetime.fromisoformat(
                    entry["requestReceivedTimestamp"].replace("Z", "+00:00")
                ).timestamp()
                # a watch is logged when it starts and when it ends: one request
                place = self._index.setdefault(entry["auditID"], len(self.requests))
                if place == len(self.requests):
                    self.requests.append((received, entry))
                else:
                    self.requests[place] = (received, entry)

    def between(self, since: float, until: float) -> list[dict[str, Any]]:
        """The requests received in [since, until) (epoch seconds), read up to now."""
        self.read()
        return [entry for received, entry in self.requests if since <= received < until]


Key = tuple[str, str]
CHILD_PATHS = {
    "Deployment": "/apis/apps/v1/deployments",
    "StatefulSet": "/apis/apps/v1/statefulsets",
    "Service": "/api/v1/services",
}
WORKLOADS = ("Deployment", "StatefulSet")  # a StatefulSet when each pod keeps its own cache


@dataclass
class Observed:
    """What the watches last saw of one NemotronDeployment and its children."""

    generation: int = 0
    observed_generation: int | None = None  # status.observedGeneration
    planned: bool = False  # Planned=True for this generation
    ready: bool = False
    replicas: int = 1
    exists: bool = True
    children: dict[str, int | None] = field(default_factory=dict)  # kind -> its spec.replicas

    def converged(self) -> bool:
        """Planned for its generation, with its workload (Deployment or StatefulSet) of the asked
        replicas and its Service."""
        return (
            self.exists
            and self.planned
            and self.observed_generation == self.generation
            and "Service" in self.children
            and any(self.children.get(kind, -1) == self.replicas for kind in WORKLOADS)
        )

    def gone(self) -> bool:
        return not self.exists and not self.children


class ClusterWatch:
    """Every NemotronDeployment and the children the operator labels, followed by watches of
    the whole cluster (raw JSON: the typed client would spend the benchmark's CPU on models).
    `on_change(key, observed, at)` is called from the watch threads under `self.lock` each time
    what is known of a key changes."""

    def __init__(
        self,
        api: client.ApiClient,
        on_change: Callable[[Key, Observed, float], None] = lambda *_: None,
    ) -> None:
        self._http = api.rest_client.pool_manager
        self._host = api.configuration.host
        self.on_change = on_change
        self.lock = threading.Condition()
        self.objects: dict[Key, Observed] = {}
        self.converged: set[Key] = set()  # the keys whose Observed.converged() holds
        self._stop = threading.Event()
        self._synced: set[str] = set()
        selector = f"{names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE}"
        self._watches = [
            (names.KIND, f"/apis/{names.GROUP}/{names.VERSION}/{names.PLURAL}", ""),
            *((kind, path, selector) for kind, path in CHILD_PATHS.items()),
        ]

    def start(self) -> ClusterWatch:
        for kind, path, selector in self._watches:
            threading.Thread(target=self._follow, args=(kind, path, selector), daemon=True).start()
        with self.lock:
            self.lock.wait_for(lambda: len(self._synced) == len(self._watches), 60)
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until `done()` (called under the lock) holds, at most `timeout` seconds."""
        with self.lock:
            return self.lock.wait_for(done, timeout)

    def count(self, test: Callable[[Observed], bool]) -> int:
        with self.lock:
            return sum(1 for o in self.objects.values() if test(o))

    def _follow(self, kind: str, path: str, selector: str) -> None:
        version = None
        while not self._stop.is_set():
            query = {"labelSelector": selector} if selector else {}
            try:
                if version is None:
                    listing = self._get(path, query)
                    for item in listing["items"]:
                        self._seen(kind, "ADDED", item)
                    version = listing["metadata"]["resourceVersion"]
                    with self.lock:
                        self._synced.add(kind)
                        self.lock.notify_all()
                query |= {
                    "watch": "true",
                    "resourceVersion": version,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": "60",
                }
                for event in watch_events(self._http, self._url(path, query), 90):
                    if event["type"] == "ERROR":
                        version = None  # 410 Gone: list again
                        break
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._seen(kind, event["type"], event["object"])
                    if self._stop.is_set():
                        break
            except Exception:  # the connection broke: watch again from where it stopped
                time.sleep(0.5)

    def _url(self, path: str, query: dict[str, str]) -> str:
        return f"{self._host}{path}?{urllib.parse.urlencode(query)}" if query else self._host + path

    def _get(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        response = self._http.request("GET", self._url(path, query), timeout=60)
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status}")
        return dict(json.loads(response.data))

    def _seen(self, kind: str, type_: str, body: dict[str, Any]) -> None:
        at = time.monotonic()
        meta = body["metadata"]
        if kind == names.KIND:
            owner = meta["name"]
        else:
            owner = (meta.get("labels") or {}).get(names.DEPLOYMENT_LABEL, "")
        key = (meta["namespace"], owner)
        with self.lock:
            observed = self.objects.setdefault(key, Observed(exists=False))
            if kind == names.KIND:
                self._deployment_seen(observed, type_, body)
            elif type_ == "DELETED":
                observed.children.pop(kind, None)
            else:
                observed.children[kind] = (body.get("spec") or {}).get("replicas")
            if observed.converged():
                self.converged.add(key)
            else:
                self.converged.discard(key)
            self.on_change(key, observed, at)
            self.lock.notify_all()

    @staticmethod
    def _deployment_seen(observed: Observed, type_: str, body: dict[str, Any]) -> None:
        observed.exists = type_ != "DELETED"
        observed.generation = body["metadata"].get("generation", 0)
        observed.replicas = body["spec"].get("replicas", 1)
        status = body.get("status") or {}
        observed.observed_generation = status.get("observedGeneration")
        conditions = {c["type"]: c for c in status.get("conditions") or ()}
        planned = conditions.get("Planned") or {}
        observed.planned = (
            planned.get("status") == "True"
            and planned.get("observedGeneration") == observed.generation
        )
        observed.ready = (conditions.get("Ready") or {}).get("status") == "True"
