"""`nemotron-operator render` prints what the operator's converge applies, for every example.

The converge here is the operator's own (Converger.converge), fed the example as the API server
would hold it and the GPUs the render flags describe, with a cluster fake that keeps what it is
asked to apply; a download Job it creates is then seen complete, as the workload waits for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from nemotron_operator import cli
from nemotron_operator.api.types import NemotronDeployment
from nemotron_operator.core.catalog import load_catalog
from nemotron_operator.core.render import ChildNames
from nemotron_operator.shell.converge import Converger
from nemotron_operator.shell.credentials import Credentials
from nemotron_operator.shell.world import Snapshot

from .test_cli_plan import run
from .test_controller import Clock, FakeCluster, FakeRegistry

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
H100 = "NVIDIA-H100-80GB-HBM3"


@dataclass
class KeepingCluster(FakeCluster):
    applied: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def apply(self, child: Mapping[str, Any], *, answer: bool = False) -> dict[str, Any] | None:
        self.applied[(child["kind"], child["metadata"]["name"])] = dict(child)
        return super().apply(child, answer=answer)


def inventory_flags(document: Mapping[str, Any]) -> list[str]:
    """Two nodes of eight of the GPU the example asks for (H100 when it names none)."""
    product = ((document.get("spec") or {}).get("gpu") or {}).get("product") or H100
    return ["--gpu-product", product, "--gpus-per-node", "8", "--nodes", "2"]


def converged_children(document: Mapping[str, Any], flags: list[str]) -> list[dict[str, Any]]:
    """What the operator applies for `document` on the GPUs of `flags`, until its pods may start."""
    args = cli.build_parser().parse_args(["render", "-", *flags])
    pools = cli._inventory(args, load_catalog()).pools(NemotronDeployment.model_validate(document))
    body = {
        **document,
        "metadata": {
            **document["metadata"],
            "namespace": "default",
            "uid": cli.UID_NOT_ASSIGNED,
            "generation": 1,
            "resourceVersion": "1",
        },
    }
    cluster = KeepingCluster()
    credentials = Credentials(
        FakeRegistry(),
        lambda namespace, name, key: ("nvapi-example", ""),
        lambda namespace, name: None,
        recheck_seconds=600,
        clock=Clock(),
    )
    converger = Converger(load_catalog(), credentials, cluster)
    converger.converge(Snapshot(body, pools=pools), NOW)
    child_names = ChildNames.of(body["metadata"]["name"])
    job = cluster.applied.get(("Job", child_names.download))
    if job is not None:
        done = {**job, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
        claim = cluster.applied[("PersistentVolumeClaim", child_names.cache)]
        seen = {"Job": done, "PersistentVolumeClaim": claim}
        converger.converge(Snapshot(body, children=seen, pools=pools), NOW)
    return list(cluster.applied.values())


def kind_and_name(child: Mapping[str, Any]) -> tuple[str, str]:
    return child["kind"], child["metadata"]["name"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_render_prints_what_the_converge_applies(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for index, document in enumerate(documents):
        flags = inventory_flags(document)
        single = tmp_path / f"{index}.yaml"
        single.write_text(yaml.safe_dump(document))
        code, out, err = run(["render", str(single), *flags], capsys)
        applied = converged_children(document, flags)
        if code == 1:  # does not fit: the refusal, no YAML, and the operator creates nothing
            assert out == "" and "does not fit" in err
            assert applied == []
            continue
        assert code == 0 and err == ""
        printed = [d for d in yaml.safe_load_all(out) if d]
        assert sorted(printed, key=kind_and_name) == sorted(applied, key=kind_and_name)
        assert {c["kind"] for c in printed} & {"Deployment", "StatefulSet", "LeaderWorkerSet"}


SHARED_CACHE = """
apiVersion: nemotron.dev/v1alpha1
kind: NemotronDeployment
metadata: {name: nano-shared}
spec:
  model: nemotron-3-nano
  precision: fp8
  profile: vllm-fp8-tp1-pp1-l40s
  replicas: 2
  gpu: {product: NVIDIA-L40S}
  cache: {accessMode: ReadWriteMany}
  ngc: {apiKeySecret: {name: ngc-api-key}}
"""


def test_a_shared_cache_renders_its_claim_and_download_job_as_the_converge_creates_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = yaml.safe_load(SHARED_CACHE)
    path = tmp_path / "nd.yaml"
    path.write_text(SHARED_CACHE)
    code, out, _ = run(["render", str(path), *inventory_flags(document)], capsys)
    printed = [d for d in yaml.safe_load_all(out) if d]
    assert code == 0
    assert [c["kind"] for c in printed] == ["PersistentVolumeClaim", "Job", "Deployment", "Service"]
    applied = converged_children(document, inventory_flags(document))
    assert sorted(printed, key=kind_and_name) == sorted(applied, key=kind_and_name)
    job_env = printed[1]["spec"]["template"]["spec"]["containers"][0]["env"]
    key_variable = next(e for e in job_env if e["name"] == "NGC_API_KEY")
    assert key_variable == {
        "name": "NGC_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "ngc-api-key", "key": "NGC_API_KEY"}},
    }


def test_an_invalid_deployment_exits_2_naming_the_field_as_the_api_server_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nd.yaml"
    path.write_text(SHARED_CACHE.replace("ReadWriteMany", "ReadWriteSometimes"))
    code, out, err = run(["render", str(path), "--gpu-product", "NVIDIA-L40S"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"nemotron-operator render: {path}: spec.cache.accessMode: ")
    assert 'Unsupported value: "ReadWriteSometimes"' in err


def test_a_deployment_that_does_not_fit_prints_no_yaml_even_beside_one_that_fits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "two.yaml"
    fits = (REPO / "examples" / "nano-1gpu.yaml").read_text()
    refused = (REPO / "examples" / "ultra-bf16-4gpu-does-not-fit.yaml").read_text()
    path.write_text(f"{fits}\n---\n{refused}")
    code, out, err = run(["render", str(path), "--gpu-product", H100], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("ultra-bf16-4gpu: does not fit (InsufficientGPUMemory)\n")
