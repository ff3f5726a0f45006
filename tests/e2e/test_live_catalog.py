"""The live catalog (issue 8): with NEMOTRON_LIVE_CATALOG=1 the operator plans against the
profiles the NIM Metadata API publishes for the planned tag, and a broken API never blocks a
deployment.

An operator of this module's own runs with the live catalog on, against a stand-in (registry and
Metadata API in one) whose Metadata API answers differently per tag of nemotron-3-nano:

    2.1.5   profiles as NVIDIA publishes them, except fp8 on one GPU needs 78 GB (the catalog
            and the estimate say 34): more than an H100's usable memory
    2.0.12  answers after 20 s (the operator gives up after 5)
    2.0.9   400
    2.0.8   200 with broken JSON
    2.0.5   404, no metadata published for the tag
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from nemotron_operator.api import types as api
from nemotron_operator.core import planner
from nemotron_operator.core.catalog import load_catalog
from nemotron_operator.core.inventory import gpu_pools
from tests.standins.registry import VALID_KEY, RegistryStandin, catalog_config, metadata_document

from .conftest import Cluster
from .nemotron import NemotronDeployments
from .observed import KEY_SECRET, nim_env, nim_pod, put_key_secret, recovered, workload
from .private_operator import PrivateOperator, private_operator

H100 = "NVIDIA-H100-80GB-HBM3"
NANO_ON_H100 = {"model": "nemotron-3-nano", "gpu": {"product": H100}}
NANO = "nim/nvidia/nemotron-3-nano"
DEFAULT_TAG = "2.1.5"
PUBLISHED_FP8_ONE_GPU_GB = 78.0
SLOW_SECONDS = 20  # how long the stand-in takes to answer in its "timeout" mode
PLANNED_WAIT = 15  # the operator's Metadata API timeout (ngc, 5 s) and the rest of a converge
BROKEN = {"2.0.12": "timeout", "2.0.9": "bad-request", "2.0.8": "malformed", "2.0.5": None}


def published_profile_id(name: str) -> str:
    """The id the stand-in publishes for a profile name (as opaque as NVIDIA's)."""
    return hashlib.sha256(f"{NANO}/{name}".encode()).hexdigest()


def live_metadata() -> dict[str, Any]:
    document = metadata_document(NANO)
    for profile in document["profiles"]:
        if (profile["precision"], profile["tensor_parallel_size"]) == ("fp8", 1):
            profile["min_vram_per_device_gb"] = PUBLISHED_FP8_ONE_GPU_GB
    return document


@pytest.fixture(scope="module")
def metadata_api() -> Iterator[RegistryStandin]:
    config = catalog_config()
    config["metadata"] = {
        NANO: {
            DEFAULT_TAG: live_metadata(),
            **{tag: mode for tag, mode in BROKEN.items() if mode is not None},
        }
    }
    config["slow_seconds"] = SLOW_SECONDS
    with RegistryStandin(config) as standin:
        yield standin


@pytest.fixture(scope="module")
def live_operator(
    cluster: Cluster,
    crd_installed: None,
    metadata_api: RegistryStandin,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrivateOperator]:
    with private_operator(
        cluster,
        "live",
        tmp_path_factory.mktemp("live-catalog-operator"),
        {
            "NEMOTRON_LIVE_CATALOG": "1",
            "NEMOTRON_NGC_METADATA_URL": metadata_api.url,
            "NEMOTRON_NGC_REGISTRY_URL": metadata_api.url,
        },
    ) as private:
        yield private


def static_plan(spec: dict[str, Any]) -> dict[str, Any]:
    """What the planner says for `spec` on an H100 node without the live catalog."""
    node = {
        "metadata": {
            "name": "h100",
            "labels": {
                "nvidia.com/gpu.product": H100,
                "nvidia.com/gpu.memory": "81559",
                "nvidia.com/gpu.compute.major": "9",
                "nvidia.com/gpu.compute.minor": "0",
            },
        },
        "spec": {},
        "status": {"allocatable": {"nvidia.com/gpu": "8"}},
    }
    plan = planner.plan(
        api.NemotronDeploymentSpec.model_validate(spec), load_catalog(), gpu_pools([node])
    )
    return plan.model_dump(by_alias=True, mode="json", exclude_none=True)


def asked_about(standin: RegistryStandin, tag: str) -> bool:
    return any(
        r.path == "/v2/nim/metadata" and r.query == {"resourceId": NANO, "tag": tag}
        for r in standin.requests
    )


def test_published_memory_changes_the_plan_and_pins_the_exact_profile(
    cluster: Cluster,
    live_operator: PrivateOperator,
    metadata_api: RegistryStandin,
    request: pytest.FixtureRequest,
) -> None:
    namespace = live_operator.namespace(request.node.name)
    nds = NemotronDeployments(cluster, namespace)
    without = static_plan(NANO_ON_H100)
    assert (without["precision"], without["gpusPerReplica"]) == ("fp8", 1)
    assert without["memoryPerGPUGiB"] < PUBLISHED_FP8_ONE_GPU_GB

    nds.create("nano", NANO_ON_H100)
    planned = nds.wait_condition("nano", "Planned", "True")
    plan = nds.get("nano")["status"]["plan"]
    assert asked_about(metadata_api, DEFAULT_TAG)
    assert plan["image"].endswith(f"nemotron-3-nano:{DEFAULT_TAG}")
    # 78 GB does not fit the 71.7 GiB an H100 leaves usable: two GPUs, per NVIDIA's figure
    assert (plan["precision"], plan["gpusPerReplica"], plan["tensorParallelSize"]) == ("fp8", 2, 2)
    assert plan["memorySource"] == "published"
    assert plan["memoryPerGPUGiB"] == 19.0  # the published fp8 tp2 minimum
    assert (plan["profileSource"], plan["profile"]) == (
        "metadata",
        published_profile_id("vllm-fp8-tp2-pp1"),
    )
    assert "(published)" in planned["message"]

    recovered(nds, "nano")
    nim = workload(cluster, namespace, "nano").spec.template.spec.containers[0]
    assert nim.resources.limits["nvidia.com/gpu"] == "2"
    env = nim_env(nim_pod(cluster, namespace, "nano"))
    assert env["NIM_MODEL_PROFILE"].value == published_profile_id("vllm-fp8-tp2-pp1")
    assert env["NIM_TENSOR_PARALLEL_SIZE"].value == "2"


@pytest.mark.parametrize("tag", list(BROKEN), ids=[f"{t}-{m or 'none'}" for t, m in BROKEN.items()])
def test_a_broken_metadata_api_never_blocks_a_deployment(
    cluster: Cluster,
    live_operator: PrivateOperator,
    metadata_api: RegistryStandin,
    request: pytest.FixtureRequest,
    tag: str,
) -> None:
    namespace = live_operator.namespace(request.node.name)
    nds = NemotronDeployments(cluster, namespace)
    put_key_secret(cluster, namespace, VALID_KEY)  # releases before 2.0.10 need one
    spec = {**NANO_ON_H100, "version": tag, "ngc": {"apiKeySecret": {"name": KEY_SECRET}}}
    nds.create("nano", spec)
    # sooner than the stand-in's slow answer (slow_seconds): the operator gave up waiting on it
    assert PLANNED_WAIT < SLOW_SECONDS
    nds.wait_condition("nano", "Planned", "True", timeout=PLANNED_WAIT)
    plan = nds.get("nano")["status"]["plan"]
    assert asked_about(metadata_api, tag)
    # the static catalog's plan, saying where its figure came from
    assert plan["profileSource"] == "derived" and plan["profile"] == "vllm-fp8-tp1-pp1"
    assert plan["memorySource"] in ("published", "estimated")
    expected = static_plan(spec)
    assert (plan["gpusPerReplica"], plan["memoryPerGPUGiB"], plan["memorySource"]) == (
        expected["gpusPerReplica"],
        expected["memoryPerGPUGiB"],
        expected["memorySource"],
    )
    recovered(nds, "nano")
    env = nim_env(nim_pod(cluster, namespace, "nano"))
    assert "NIM_MODEL_PROFILE" not in env  # NIM 2.x would refuse a derived name
    assert client.AppsV1Api(cluster.api).read_namespaced_stateful_set("nano", namespace)
