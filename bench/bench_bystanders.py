"""What the cluster's other workloads cost the operator: pods that belong to no
NemotronDeployment, in the namespaces it serves (issue 17). A real cluster holds many more of them
than NemotronDeployments, and Kopf filters by label in the operator, not in the API server: every
pod event of a served namespace is sent to the operator and decoded.

    .venv/bin/python bench/bench_bystanders.py [--pods 1000] [--out bench/results]

Run it with PYTHONPATH=<a checkout>/operator to measure that checkout's operator.

On a cluster of its own, with CPU nodes for --pods pods, and the operator serving the whole
cluster (the chart's default): creates a Deployment of --pods plain pods (kwok plays them
running), waits until all run, then deletes it and waits until all are gone; then as many plain
Services, created one by one and deleted. Reports, for each phase, the pod events a watch of the
namespace saw (the operator is sent the same), the operator's CPU seconds per object beside those
of kube-controller-manager (which made the pods) and of the whole cluster, and the operator's
resident memory after it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from bench_load import Operator, kubeconfig_of, own_cluster, remove_cluster, report
from benchkit import REPO, cluster_cpu_seconds, cluster_cpu_since, load_average
from kubernetes import client, watch
from urllib3.exceptions import ProtocolError

from nemotron_operator.core.render import DEFAULT_PAUSE_IMAGE

NAMESPACE = "bystanders"
PODS_PER_NODE = 100  # the local cluster's nodes take 110 pods each


def bystanders(pods: int) -> client.V1Deployment:
    """A Deployment of `pods` plain pods on the CPU pool, labelled as nothing of the operator's."""
    labels = {"app": "bystander"}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name="bystander", labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=pods,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    node_selector={"nemotron.dev/node-pool": "cpu"},
                    containers=[
                        client.V1Container(
                            name="pause",
                            image=DEFAULT_PAUSE_IMAGE,
                            resources=client.V1ResourceRequirements(requests={"cpu": "10m"}),
                        )
                    ],
                ),
            ),
        ),
    )


class PodEvents:
    """Counts the pod watch events of the namespace, and knows which pods run."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.events = 0
        self.running: set[str] = set()
        self.present: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        try:
            self._stream()
        except (ProtocolError, client.ApiException):
            if not self._stop.is_set():
                raise  # the cluster stops after the watch is told to: only then is it expected

    def _stream(self) -> None:
        while not self._stop.is_set():
            stream = watch.Watch()
            # one stream for the whole run: a stream started again lists every pod again
            for event in stream.stream(
                self.core.list_namespaced_pod, NAMESPACE, timeout_seconds=3600
            ):
                pod = event["object"]
                self.events += 1
                name = pod.metadata.name
                if event["type"] == "DELETED":
                    self.present.discard(name)
                    self.running.discard(name)
                    continue
                self.present.add(name)
                if pod.status.phase == "Running":
                    self.running.add(name)
                if self._stop.is_set():
                    stream.stop()


class Services:
    """`count` plain Services (no selector, headless) in the namespace: objects of a kind the
    operator watches for its own children, none of them its own."""

    def __init__(self, core: client.CoreV1Api, count: int) -> None:
        self.core, self.count = core, count

    def create(self) -> None:
        for index in range(self.count):
            self.core.create_namespaced_service(
                NAMESPACE,
                client.V1Service(
                    metadata=client.V1ObjectMeta(name=f"bystander-{index}"),
                    spec=client.V1ServiceSpec(
                        cluster_ip="None", ports=[client.V1ServicePort(port=80)]
                    ),
                ),
            )

    def delete(self) -> None:
        self.core.delete_collection_namespaced_service(NAMESPACE)

    def _present(self) -> int:
        return len(self.core.list_namespaced_service(NAMESPACE).items)

    def all_there(self) -> bool:
        return self._present() >= self.count

    def none_left(self) -> bool:
        return self._present() == 0


def wait_for(done: Any, what: str, seconds: float) -> float:
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > seconds:
            raise RuntimeError(f"{what}: not within {seconds:.0f} s")
        time.sleep(1)
    return time.monotonic() - start


def measure(pods: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-bystanders-"))
    nodes = work / "nodes.yaml"
    count = math.ceil(pods / PODS_PER_NODE)
    nodes.write_text(
        yaml.safe_dump({"pools": [{"name": "cpu", "count": count, "cpu": "64", "memory": "256Gi"}]})
    )
    figures: dict[str, Any] = {"pods": pods, "load average at start": load_average()}
    state, api = own_cluster(work, nodes)
    operator = Operator(
        kubeconfig_of(state),
        work / "operator.log",
        {"NEMOTRON_NGC_REGISTRY_URL": "http://127.0.0.1:9"},
        ("*",),
    )
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    seen = PodEvents(api)
    try:
        operator.start()
        seen.start()
        time.sleep(5)  # the operator's watches listed what there is
        figures["operator RSS before (MiB)"] = round(operator.rss_mib(), 1)
        services = Services(core, pods)
        phases = (
            (
                "creating pods",
                lambda: apps.create_namespaced_deployment(NAMESPACE, bystanders(pods)),
                lambda: len(seen.running) >= pods,
            ),
            (
                "deleting pods",
                lambda: apps.delete_namespaced_deployment("bystander", NAMESPACE),
                lambda: not seen.present,
            ),
            ("creating services", services.create, services.all_there),
            ("deleting services", services.delete, services.none_left),
        )
        for phase, act, done in phases:
            cpu, cluster, events = operator.cpu_seconds(), cluster_cpu_seconds(state), seen.events
            act()
            figures[f"{phase}: seconds"] = round(wait_for(done, phase, 900), 1)
            time.sleep(5)  # the last events
            used = cluster_cpu_since(state, cluster)
            figures[f"{phase}: pod events"] = seen.events - events
            figures[f"{phase}: operator CPU s per object"] = round(
                (operator.cpu_seconds() - cpu) / pods, 5
            )
            figures[f"{phase}: kube-controller-manager CPU s per object"] = round(
                used.get("kube-controller-manager", 0.0) / pods, 5
            )
            figures[f"{phase}: cluster CPU s per object"] = round(sum(used.values()) / pods, 5)
            figures[f"{phase}: operator RSS after (MiB)"] = round(operator.rss_mib(), 1)
        figures["operator peak RSS (MiB)"] = round(operator.peak_mib(), 1)
    finally:
        figures["operator log"] = remove_cluster(
            work, state, "bench-bystanders-operator.log", (seen.stop, operator.stop, api.close)
        )
        figures["load average at end"] = load_average()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    figures = measure(args.pods)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    report("bench_bystanders (issue 17)", figures, args.out / f"bystanders-{stamp}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
