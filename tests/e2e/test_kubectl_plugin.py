"""`kubectl nemotron` as an SRE runs it: kubectl finds the plugin on PATH and runs it against the
cluster of its kubeconfig; what it prints about real NemotronDeployments (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Cluster, OperatorProcess
from .fake_kubelet import FakeKubelet
from .nemotron import NemotronDeployments
from .observed import nim_pod

PLUGIN = Path(sys.executable).parent / "kubectl-nemotron"  # the project script, pip-installed
CUDA_OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"


@pytest.fixture
def shell(cluster: Cluster) -> dict[str, str]:
    """An SRE's environment: the kubeconfig, kubectl and the package's scripts on PATH."""
    if not PLUGIN.exists():
        pytest.fail(f"{PLUGIN} is missing: install the package (pip install -e .)")
    path = os.pathsep.join(
        (str(PLUGIN.parent), str(cluster.binaries["kubectl"].parent), os.environ["PATH"])
    )
    return {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PATH": path}


def run(shell: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=shell, capture_output=True, text=True, check=False, timeout=60
    )


def test_kubectl_lists_the_plugin_and_explains_a_deployment_through_it(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    kubelet: FakeKubelet,
    shell: dict[str, str],
) -> None:
    listed = run(shell, "kubectl", "plugin", "list")
    assert str(PLUGIN) in listed.stdout.splitlines()

    nds = NemotronDeployments(cluster, namespace)
    nds.create("nano", {"model": "nemotron-3-nano", "gpu": {"product": "NVIDIA-L40S"}})
    nds.wait_condition("nano", "Ready", "True", timeout=60)
    serving = run(shell, "kubectl", "nemotron", "explain", "nano", "-n", namespace)
    assert serving.returncode == 0, serving.stderr
    page = serving.stdout
    assert page.startswith(f"NemotronDeployment {namespace}/nano: Ready\n")
    assert "  Ready=True  Ready  (for " in page
    assert "  Stalled=False  " in page
    assert "  StatefulSet/nano: 1/1 ready, 1 up to date\n" in page
    assert "  nano-0: Running, 1/1 ready, 0 restarts, on " in page
    assert "1 x NVIDIA-L40S per replica" in page
    assert page.endswith("What to change:\n  nothing: every replica serves\n")

    kubelet.crash_loop(nim_pod(cluster, namespace, "nano"), restarts=3, message=CUDA_OOM)
    nds.wait_condition("nano", "Degraded", "True", "InsufficientGPUMemory", timeout=60)
    failing = run(shell, "kubectl", "nemotron", "explain", "nano", "-n", namespace)
    assert failing.returncode == 1, failing.stderr
    page = failing.stdout
    assert page.startswith(
        f"NemotronDeployment {namespace}/nano: not ready (InsufficientGPUMemory)"
    )
    assert "  Stalled=True  InsufficientGPUMemory  (for " in page  # no retry mends it
    assert "  Degraded=True  InsufficientGPUMemory  (for " in page
    assert "  nano-0: CrashLoopBackOff, 0/1 ready, 3 restarts, on " in page
    assert "  Pod/nano-0  BackOff\n" in page
    assert "CUDA out of memory" in page
    assert "What to change:\n  InsufficientGPUMemory: " in page

    diagnosed = run(shell, "kubectl", "nemotron", "diagnose", "nano", "-n", namespace)
    assert diagnosed.returncode == 1
    assert diagnosed.stdout.startswith("InsufficientGPUMemory (nano-0/nim)\n")


def test_the_plugin_plans_against_the_clusters_gpus_and_compares_with_status(
    cluster: Cluster, namespace: str, operator: OperatorProcess, shell: dict[str, str]
) -> None:
    nds = NemotronDeployments(cluster, namespace)
    ultra = {"model": "nemotron-3-ultra", "precision": "bf16", "gpu": {"count": 4}}
    nds.create("ultra", ultra)
    nds.wait_condition("ultra", "Planned", "False", "InsufficientGPUMemory")
    refused = run(shell, "kubectl-nemotron", "plan", "ultra", "-n", namespace)
    assert refused.returncode == 1, refused.stderr
    assert refused.stdout.startswith("ultra: does not fit (InsufficientGPUMemory)\n")
    assert refused.stdout.endswith("  status.plan: the same decision\n")

    missing = run(shell, "kubectl", "nemotron", "explain", "absent", "-n", namespace)
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == (
        f'kubectl nemotron explain: NemotronDeployment "absent" not found in namespace '
        f'"{namespace}"\n'
    )
