"""A download's progress in bytes on the local cluster (issue 14, item 3): the operator reads the
last line of the download pod's cache-size sidecar through the API server (pods/log), as it would
from a real kubelet, and CacheReady says how much of the planned download is written.

kwok runs no containers, but serves the fake nodes' kubelet API: a pod's log is the file a
`Logs` object names (hack/cluster/cluster.py), here written by the test as the sidecar's script
would print it, in the CRI log format a kubelet keeps."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from kubernetes import client

from nemotron_operator.core import cache_size
from nemotron_operator.shell.converge import CACHE_PROGRESS_READ_SECONDS
from tests.standins.registry import VALID_KEY

from .conftest import Cluster, wait_until
from .fake_kubelet import FakeKubelet
from .nemotron import NemotronDeployments
from .observed import EVENT_WAIT, put_key_secret
from .test_model_cache import (
    WITH_KEY_ON_A_SHARED_CACHE,
    cordoned_cpu_nodes,
    download_pods,
)
from .test_model_cache import nds as nds  # a fixture: the NemotronDeployments of the namespace

KIB_PER_GIB = 2**20


class SidecarLog:
    """The cache-size sidecar's log of one pod, served by kwok from a file the test appends to."""

    def __init__(self, cluster: Cluster, namespace: str, pod: str, path: Path) -> None:
        self.path = path
        path.write_text("")
        client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            "kwok.x-k8s.io",
            "v1alpha1",
            namespace,
            "logs",
            {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "Logs",
                "metadata": {"name": pod},
                "spec": {"logs": [{"containers": [cache_size.CONTAINER], "logsFile": str(path)}]},
            },
        )

    def report(self, since: dt.datetime, at: dt.datetime, gib: float) -> None:
        """One line as the script prints it (into an empty cache), in the CRI log format."""
        line = (
            f"nemotron-cache-size v1 since={int(since.timestamp())} sinceKiB=0 "
            f"at={int(at.timestamp())} KiB={int(gib * KIB_PER_GIB)}"
        )
        with self.path.open("a") as log:
            log.write(f"{at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')} stdout F {line}\n")


def cache_message(nds: NemotronDeployments) -> str:
    return str((nds.condition("nano", "CacheReady") or {}).get("message", ""))


def test_the_cache_ready_message_shows_the_bytes_the_sidecar_measures(
    cluster: Cluster, namespace: str, nds: NemotronDeployments, tmp_path: Path
) -> None:
    put_key_secret(cluster, namespace, VALID_KEY)
    kubelet = FakeKubelet(cluster.api, namespace)
    with cordoned_cpu_nodes(cluster) as node:
        nds.create("nano", WITH_KEY_ON_A_SHARED_CACHE)
        (pod,) = wait_until(lambda: download_pods(cluster, namespace, "nano"), "a download pod")
        plan = wait_until(lambda: nds.get("nano").get("status", {}).get("plan"), "the plan")
        gib = float(plan["downloadGiB"])
        log = SidecarLog(cluster, namespace, pod.metadata.name, tmp_path / "cache-size.log")
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=100)
        log.report(since, since + dt.timedelta(seconds=100), 0.305 * gib)
        kubelet.bind(pod, node)
        kubelet.ready(pod, container="download")

        first = wait_until(
            lambda: f"30% of {gib:g} GiB written" in cache_message(nds) and cache_message(nds),
            "the measured progress in CacheReady",
            EVENT_WAIT,
        )
        assert f"downloading on node {node} since" in first
        assert "measured on the cache volume" in first and "an estimate" not in first
        assert VALID_KEY not in str(nds.get("nano")["status"])
        tail = cluster.kubectl(
            "logs", pod.metadata.name, "-c", cache_size.CONTAINER, "--tail=1", "-n", namespace
        ).stdout
        assert tail.startswith("nemotron-cache-size v1 since=")  # what `kubectl logs` shows too

        # the next report, a whole step on: shown at the next read, within its period (once
        # the converges the pod's start caused are over)
        time.sleep(3)
        log.report(since, since + dt.timedelta(seconds=130), 0.405 * gib)
        asked = time.monotonic()
        later = wait_until(
            lambda: f"40% of {gib:g} GiB written" in cache_message(nds) and cache_message(nds),
            "the next step in CacheReady",
            CACHE_PROGRESS_READ_SECONDS + EVENT_WAIT,
            interval=0.5,
        )
        waited = time.monotonic() - asked
        shown = cluster.kubectl("get", "nd", "nano", "-n", namespace).stdout
        assert "CacheDownloading" in shown, shown
        print(f"\n{tail}{shown}{later}\nshown {waited:.1f} s after the report")
