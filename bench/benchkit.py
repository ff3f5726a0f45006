"""What every benchmark starts from: the local cluster, running, with the CRD installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubernetes import client, config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "hack" / "cluster"))

import cluster as local_cluster  # noqa: E402
from tests.e2e.conftest import OperatorProcess  # noqa: E402

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
) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
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
