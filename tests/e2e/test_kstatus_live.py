"""What Flux's `wait: true` sees of real NemotronDeployments (issue 13): the kstatus library
(hack/kstatus) run on the objects as the API server returns them, from the moment they are
created to the operator's verdict. tests/unit/test_kstatus.py covers every state on statuses the
code writes; this proves the API server's side: the CRD's status default, and the live objects.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kubernetes import client

from .conftest import Cluster, OperatorProcess, create_namespace
from .nemotron import NemotronDeployments

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "kstatus"))

import kstatus

NANO = {"model": "nemotron-3-nano", "gpu": {"product": "NVIDIA-L40S"}}
TOO_BIG = {"model": "nemotron-3-ultra", "precision": "bf16", "gpu": {"count": 4}}


def test_before_its_first_status_a_deployment_is_in_progress_not_done(
    cluster: Cluster, crd_installed: None
) -> None:
    """No operator serves this namespace: the object keeps the status the CRD defaults."""
    unserved = create_namespace(cluster.api, "kstatus", prefix="unserved", wait_for_account=False)
    try:
        nds = NemotronDeployments(cluster, unserved)
        nds.create("nano", NANO)
        body = nds.get("nano")
        assert body["status"] == {"observedGeneration": 0}
        (verdict,) = kstatus.compute([body])
        assert verdict["status"] == "InProgress"
        assert "latest observed generation is 0" in verdict["message"]
    finally:
        client.CoreV1Api(cluster.api).delete_namespace(unserved)


def test_flux_sees_current_when_ready_and_failed_with_our_message_when_refused(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    nds = NemotronDeployments(cluster, namespace)
    nds.create("nano", NANO)
    nds.create("ultra", TOO_BIG)
    nds.wait_condition("nano", "Ready", "True", timeout=60)
    nds.wait_condition("ultra", "Stalled", "True", "InsufficientGPUMemory")
    ready, refused = kstatus.compute([nds.get("nano"), nds.get("ultra")])
    assert ready["status"] == "Current"
    assert refused["status"] == "Failed"
    assert refused["message"] == nds.condition("ultra", "Stalled")["message"]  # type: ignore[index]
    assert "does not fit" in refused["message"]
