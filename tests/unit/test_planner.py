"""The planner against NVIDIA's published figures, the demo inventory, pins and properties."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nemotron_operator.api import names
from nemotron_operator.api.types import NemotronDeployment, NemotronDeploymentSpec, PlanStatus
from nemotron_operator.core.catalog import Catalog, load_catalog
from nemotron_operator.core.inventory import GpuPool, gpu_pools
from nemotron_operator.core.planner import (
    NCCL_GIB_PER_DOUBLING,
    estimated_memory_per_gpu_gib,
    plan,
    usable_gib,
)
from nemotron_operator.shell.ngc import PublishedProfile

REPO = Path(__file__).resolve().parents[2]
CATALOG = load_catalog()
H100 = "NVIDIA-H100-80GB-HBM3"

# NVIDIA's published minimum GPU memory per GPU (NIM 2.0.3 manifests, min_vram_per_device_gb,
# at the native 262144-token context), by tensor-parallel size 1, 2, 4, 8.
PUBLISHED = {
    ("nemotron-3-super", "bf16"): (237, 121, 63, 35),
    ("nemotron-3-super", "fp8"): (125, 65, 35, 21),
    ("nemotron-3-super", "nvfp4"): (80, 42, 24, 15),
    ("nemotron-3-nano", "bf16"): (63, 34, 19, 12),
    ("nemotron-3-nano", "fp8"): (34, 19, 12, 8),
    ("nemotron-3-nano", "nvfp4"): (21, 13, 9, 7),
}
TP_SIZES = (1, 2, 4, 8)
# Published figures are whole GB; the estimate agrees within rounding.
ESTIMATE_TOLERANCE_GIB = 1.1


def node(name: str, product: str, gpus: int, memory_mib: int, cc: tuple[int, int]) -> dict:
    return {
        "metadata": {
            "name": name,
            "labels": {
                names.GPU_PRODUCT_LABEL: product,
                names.GPU_MEMORY_LABEL: str(memory_mib),
                names.GPU_COMPUTE_MAJOR_LABEL: str(cc[0]),
                names.GPU_COMPUTE_MINOR_LABEL: str(cc[1]),
            },
        },
        "spec": {"taints": [{"key": names.GPU_TAINT_KEY, "effect": "NoSchedule"}]},
        "status": {"allocatable": {names.GPU_RESOURCE: str(gpus)}},
    }


def pool_of(product: str, gpus_per_node: int = 8, nodes: int = 1) -> list[GpuPool]:
    entry = CATALOG.gpus[product]
    cc = entry.compute_capability_tuple
    return gpu_pools(
        node(f"{product}-{i}", product, gpus_per_node, entry.memory_mib, cc) for i in range(nodes)
    )


def demo_inventory() -> list[GpuPool]:
    """The local cluster's fake nodes (hack/cluster/nodes.yaml), as the API returns them."""
    document = yaml.safe_load((REPO / "hack/cluster/nodes.yaml").read_text())
    nodes = []
    for pool in document["pools"]:
        for index in range(pool["count"]):
            gpu = pool.get("gpu")
            if gpu is None:
                nodes.append({"metadata": {"name": f"{pool['name']}-{index}"}, "status": {}})
                continue
            cc = (gpu["computeMajor"], gpu["computeMinor"])
            nodes.append(
                node(f"{pool['name']}-{index}", gpu["product"], gpu["count"], gpu["memoryMiB"], cc)
            )
    return gpu_pools(nodes)


def spec(**fields: Any) -> NemotronDeploymentSpec:
    return NemotronDeploymentSpec.model_validate(fields)


def without_published_figures(catalog: Catalog) -> Catalog:
    models = {
        name: model.model_copy(update={"published_memory_gib": {}})
        for name, model in catalog.models.items()
    }
    return catalog.model_copy(update={"models": models})


# --- NVIDIA's published table ------------------------------------------------------------------


def test_catalog_carries_nvidias_published_table() -> None:
    for (model, precision), row in PUBLISHED.items():
        published = CATALOG.models[model].published_memory_gib[precision]
        assert tuple(published[tp] for tp in TP_SIZES) == row


@pytest.mark.parametrize(("model", "precision"), list(PUBLISHED))
@pytest.mark.parametrize("tp_index", range(4))
def test_estimate_agrees_with_every_published_figure(
    model: str, precision: str, tp_index: int
) -> None:
    entry = CATALOG.models[model]
    published = PUBLISHED[(model, precision)][tp_index]
    estimate = estimated_memory_per_gpu_gib(
        entry, precision, entry.architecture.native_context_length, TP_SIZES[tp_index]
    )
    assert estimate == pytest.approx(published, abs=ESTIMATE_TOLERANCE_GIB)


def fewest_tp(figures: tuple[float, ...], usable: float) -> int | None:
    return next((tp for tp, need in zip(TP_SIZES, figures, strict=True) if need <= usable), None)


def over_pcie(figures: tuple[float, ...]) -> tuple[float, ...]:
    """NVIDIA's figures (one per TP for any GPU) hold the buffers an NVSwitch system's
    tensor-parallel group adds; GPUs on PCIe lack them."""
    return tuple(
        need - NCCL_GIB_PER_DOUBLING * math.log2(tp)
        for need, tp in zip(figures, TP_SIZES, strict=True)
    )


@pytest.mark.parametrize("product", sorted(CATALOG.gpus))
@pytest.mark.parametrize(("model", "precision"), list(PUBLISHED))
def test_planner_gpu_count_matches_nvidias_on_every_gpu(
    model: str, precision: str, product: str
) -> None:
    """For every row and every catalog GPU, planning from the estimate alone picks the GPU
    count NVIDIA's published figures imply (or refuses where they do), less the NVSwitch
    buffers on PCIe GPUs; planning from the figures picks what they imply."""
    gpu = CATALOG.gpus[product]
    usable = usable_gib(gpu.memory_mib)
    figures = PUBLISHED[(model, precision)]
    expected = fewest_tp(figures, usable)
    expected_estimated = fewest_tp(figures if gpu.nvlink_switch else over_pcie(figures), usable)
    pinned = spec(model=model, precision=precision, gpu={"product": product})
    estimated = plan(pinned, without_published_figures(CATALOG), pool_of(product))
    published = plan(pinned, CATALOG, pool_of(product))
    runs_it = precision in (gpu.native_precisions + gpu.weight_only_precisions)
    assert published.fits == (expected is not None and runs_it)
    assert estimated.fits == (expected_estimated is not None and runs_it)
    if published.fits:
        assert published.memory_source == "published"
        assert published.tensor_parallel_size == expected
    if estimated.fits:
        assert estimated.memory_source == "estimated"
        assert estimated.tensor_parallel_size == expected_estimated


def test_over_pcie_the_estimate_drops_only_the_nvswitch_buffers() -> None:
    """Super fp8 at TP8 on L4s: NVIDIA's 21 GiB is above an L4's usable 19.7 GiB; over PCIe
    there are no NVLink SHARP or NVLink all-reduce buffers, and the estimate fits."""
    super_fp8 = CATALOG.models["nemotron-3-super"]
    length = super_fp8.architecture.native_context_length
    over_nvswitch = estimated_memory_per_gpu_gib(super_fp8, "fp8", length, 8)
    over_pcie_gib = estimated_memory_per_gpu_gib(super_fp8, "fp8", length, 8, nvlink_switch=False)
    assert over_nvswitch - over_pcie_gib == pytest.approx(3 * NCCL_GIB_PER_DOUBLING)
    assert over_pcie_gib < usable_gib(CATALOG.gpus["NVIDIA-L4"].memory_mib) < over_nvswitch
    pinned = spec(model="nemotron-3-super", precision="fp8", gpu={"product": "NVIDIA-L4"})
    assert plan(pinned, without_published_figures(CATALOG), pool_of("NVIDIA-L4")).fits
    assert not plan(pinned, CATALOG, pool_of("NVIDIA-L4")).fits  # NVIDIA's figure rules


# --- NVIDIA's other published statements -------------------------------------------------------


def test_super_bf16_needs_four_h100s() -> None:
    result = plan(spec(model="nemotron-3-super", precision="bf16"), CATALOG, pool_of(H100))
    assert (result.gpus_per_replica, result.memory_per_gpu_gib) == (4, 63.0)


def test_super_fp8_runs_on_two_h100s_at_128k_like_the_rag_blueprint() -> None:
    result = plan(
        spec(model="nemotron-3-super", precision="fp8", max_model_length=131072),
        CATALOG,
        pool_of(H100),
    )
    assert result.fits and result.gpus_per_replica == 2
    assert result.profile == "vllm-fp8-tp2-pp1"
    assert result.memory_per_gpu_gib is not None and result.memory_per_gpu_gib < 65


def test_ultra_nvfp4_needs_four_b200s_or_eight_h100s() -> None:
    on_b200 = plan(spec(model="nemotron-3-ultra"), CATALOG, pool_of("NVIDIA-B200"))
    assert (on_b200.precision, on_b200.gpus_per_replica) == ("nvfp4", 4)
    on_h100 = plan(spec(model="nemotron-3-ultra", precision="nvfp4"), CATALOG, pool_of(H100))
    assert (on_h100.precision, on_h100.gpus_per_replica) == ("nvfp4", 8)


def test_ultra_bf16_spans_two_h100_nodes_and_says_so_with_one() -> None:
    ultra = spec(model="nemotron-3-ultra", precision="bf16")
    two_nodes = plan(ultra, CATALOG, pool_of(H100, nodes=2))
    assert (two_nodes.tensor_parallel_size, two_nodes.pipeline_parallel_size) == (8, 2)
    assert (two_nodes.gpus_per_replica, two_nodes.nodes_per_replica) == (16, 2)
    assert two_nodes.profile == "vllm-bf16-tp8-pp2"
    one_node = plan(ultra, CATALOG, pool_of(H100, nodes=1))
    assert one_node.reason == names.PlanReason.NOT_ENOUGH_NODES
    assert "needs 2 nodes of 8 GPUs; 1 match" in one_node.message


def test_pipeline_parallel_only_when_one_node_cannot_hold_a_replica() -> None:
    result = plan(spec(model="nemotron-3-super", precision="bf16"), CATALOG, pool_of(H100, 8, 4))
    assert result.pipeline_parallel_size == 1
    l40s = plan(
        spec(model="nemotron-3-super", precision="bf16"), CATALOG, pool_of("NVIDIA-L40S", 4, 2)
    )
    assert (l40s.tensor_parallel_size, l40s.pipeline_parallel_size) == (4, 2)


# --- precision ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "model", "precision"),
    [
        ("NVIDIA-B200", "nemotron-3-super", "nvfp4"),
        (H100, "nemotron-3-super", "fp8"),  # NVFP4 on Hopper is only a weight-only fallback
        ("NVIDIA-H200", "nemotron-3-nano", "fp8"),
        ("NVIDIA-L40S", "nemotron-3-nano", "fp8"),
        ("NVIDIA-A100-SXM4-80GB", "nemotron-3-super", "bf16"),
        (H100, "nemotron-3-ultra", "bf16"),  # Ultra ships no FP8
        ("NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition", "nemotron-3-super", "nvfp4"),
    ],
)
def test_auto_precision_is_the_lowest_native_one_the_release_ships(
    product: str, model: str, precision: str
) -> None:
    result = plan(spec(model=model), CATALOG, pool_of(product, nodes=2))
    assert result.fits and result.precision == precision


def test_gpu_not_in_catalog_gets_precisions_from_compute_capability() -> None:
    pools = gpu_pools([node("n", "NVIDIA-H20", 8, 97871, (9, 0))])
    result = plan(spec(model="nemotron-3-nano"), CATALOG, pools)
    assert (result.precision, result.gpu_product, result.gpus_per_replica) == (
        "fp8",
        "NVIDIA-H20",
        1,
    )


# --- product choice ---------------------------------------------------------------------------


def test_demo_inventory_nano_lands_on_one_l40s_the_smallest_gpu_that_holds_it() -> None:
    result = plan(spec(model="nemotron-3-nano"), CATALOG, demo_inventory())
    assert (result.gpu_product, result.precision, result.gpus_per_replica) == (
        "NVIDIA-L40S",
        "fp8",
        1,
    )
    assert "chosen among 5 GPU products" in result.message


def test_product_choice_prefers_fewest_gpus_before_smaller_gpus() -> None:
    result = plan(spec(model="nemotron-3-super"), CATALOG, demo_inventory())
    assert (result.gpus_per_replica, result.gpu_product) == (1, "NVIDIA-H200")


# --- pins refused with numbers ----------------------------------------------------------------


def test_precision_pin_too_big_for_the_gpu_is_refused_with_numbers_and_a_way_out() -> None:
    result = plan(
        spec(
            model="nemotron-3-super", precision="bf16", gpu={"product": "NVIDIA-L40S", "count": 2}
        ),
        CATALOG,
        pool_of("NVIDIA-L40S", 4, 1),
    )
    assert not result.fits
    assert result.reason == names.PlanReason.INSUFFICIENT_GPU_MEMORY
    assert "bf16 on 2 GPUs needs 121.0 GiB per GPU, 39.9 GiB usable" in result.message
    assert "fp8 on 4 GPUs of NVIDIA-L40S" in result.message


def test_count_pin_is_honoured_even_when_fewer_gpus_would_do() -> None:
    result = plan(spec(model="nemotron-3-nano", gpu={"count": 4}), CATALOG, pool_of(H100))
    assert result.fits and result.gpus_per_replica == 4
    assert result.memory_per_gpu_gib == 12.0


@pytest.mark.parametrize(
    ("fields", "reason", "words"),
    [
        ({"model": "nemotron-3-mega"}, "UnknownModel", "not in the catalog"),
        ({"model": "nemotron-3-ultra", "precision": "fp8"}, "PrecisionNotShipped", "bf16"),
        (
            {"model": "nemotron-3-nano", "version": "1.7.0", "precision": "nvfp4"},
            "PrecisionNotShipped",
            "1.7.0 ship fp8, bf16",
        ),
        (
            {"model": "nemotron-3-nano", "gpu": {"product": "NVIDIA-GB300"}},
            "GPUProductNotFound",
            "available: NVIDIA-H100-80GB-HBM3",
        ),
        (
            {"model": "nemotron-3-nano", "maxModelLength": 2_000_000},
            "MaxModelLengthTooLong",
            "1048576",
        ),
        (
            {"model": "nemotron-3-super", "cache": {"size": "50Gi"}},
            "CacheTooSmall",
            "120 GiB",
        ),
        (
            {"model": "nemotron-3-super", "profile": "vllm-fp8-tp2-pp1", "gpu": {"count": 4}},
            "ProfileConflict",
            "uses 2 GPUs",
        ),
        (
            {"model": "nemotron-3-super", "profile": "a" * 64},
            "ProfileUnresolvable",
            "pin precision and gpu.count",
        ),
        (
            {"model": "nemotron-3-super", "nodeSelector": {"pool": "reserved"}},
            "NoGPUNodes",
            "nodeSelector",
        ),
        (
            {"model": "llama-3.2-nv-embedqa-1b-v2", "gpu": {"count": 2}},
            "UnsupportedGPUCount",
            "1 GPU per replica",
        ),
    ],
)
def test_unworkable_specs_are_refused_with_a_reason(fields: dict, reason: str, words: str) -> None:
    result = plan(spec(**fields), CATALOG, pool_of(H100))
    assert (result.fits, result.reason) == (False, reason)
    assert words in result.message


def test_profile_pin_fixes_precision_and_parallelism() -> None:
    result = plan(
        spec(model="nemotron-3-super", profile="vllm-bf16-tp8-pp1"), CATALOG, pool_of(H100)
    )
    assert (result.precision, result.gpus_per_replica) == ("bf16", 8)
    # NIM 2.x takes only an exact id or description: a bare name just fixes the layout
    assert (result.profile, result.profile_source) == ("vllm-bf16-tp8-pp1", "derived")
    described = plan(
        spec(model="nemotron-3-super", profile="vllm-bf16-tp8-pp1-35.0"), CATALOG, pool_of(H100)
    )
    assert (described.profile, described.profile_source) == ("vllm-bf16-tp8-pp1-35.0", "spec")


def test_partitioned_gpus_serve_embeddings_but_not_llms() -> None:
    pools = gpu_pools([node("mig", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", 7, 40960, (8, 0))])
    llm = plan(spec(model="nemotron-3-nano"), CATALOG, pools)
    assert llm.reason == names.PlanReason.PARTITIONED_GPUS_ONLY
    embedding = plan(spec(model="llama-3.2-nv-embedqa-1b-v2"), CATALOG, pools)
    assert embedding.fits and embedding.usable_per_gpu_gib == 4.0


def test_tainted_nodes_count_only_when_tolerated() -> None:
    tainted = node("h100", H100, 8, 81559, (9, 0))
    tainted["spec"]["taints"].append({"key": "team", "value": "a", "effect": "NoSchedule"})
    pools = gpu_pools([tainted])
    assert plan(spec(model="nemotron-3-nano"), CATALOG, pools).reason == "NoGPUNodes"
    tolerating = spec(
        model="nemotron-3-nano",
        tolerations=[{"key": "team", "operator": "Equal", "value": "a", "effect": "NoSchedule"}],
    )
    assert plan(tolerating, CATALOG, pools).fits


# --- version, key, cache ----------------------------------------------------------------------


def test_default_version_is_the_newest_feature_branch_release() -> None:
    ultra = plan(spec(model="nemotron-3-ultra"), CATALOG, pool_of("NVIDIA-B200"))
    assert ultra.image == "nvcr.io/nim/nvidia/nemotron-3-ultra-550b-a55b:2.1.5"
    assert ultra.key_required is False


def test_key_requirement_follows_the_planned_tag_and_offline_needs_none() -> None:
    pinned_old = plan(spec(model="nemotron-3-super", version="2.0.9"), CATALOG, pool_of(H100))
    assert pinned_old.key_required is True
    assert pinned_old.key_required_reason is not None
    assert "older than 2.0.10" in pinned_old.key_required_reason
    production = plan(spec(model="nemotron-3-nano", version="2.0.4-pb6.0"), CATALOG, pool_of(H100))
    assert production.fits and production.key_required is True
    assert production.image == "nvcr.io/nim/nvidia/nemotron-3-nano-pb6:2.0.4-pb6.0"
    assert "not in the catalog" not in production.message
    unlisted = plan(spec(model="nemotron-3-nano", version="2.1.5-pb7"), CATALOG, pool_of(H100))
    assert unlisted.fits and unlisted.key_required is True
    assert unlisted.image == "nvcr.io/nim/nvidia/nemotron-3-nano-pb7:2.1.5-pb7"
    assert "not in the catalog" in unlisted.message
    mirrored = plan(
        spec(model="nemotron-3-nano", version="2.1.5-pb7", image="mirror.example.com/nim/nano"),
        CATALOG,
        pool_of(H100),
    )
    assert mirrored.image == "mirror.example.com/nim/nano:2.1.5-pb7"  # the spec's, as given
    offline = plan(
        spec(
            model="nemotron-3-nano",
            version="2.0.9",
            ngc={"offline": True},
            cache={"existingClaim": "preloaded"},
        ),
        CATALOG,
        pool_of(H100),
    )
    assert (offline.key_required, offline.cache_size) == (False, None)


def test_image_override_keeps_the_planned_tag() -> None:
    result = plan(
        spec(model="nemotron-3-nano", image="mirror.local:5000/nim/nvidia/nemotron-3-nano"),
        CATALOG,
        pool_of(H100),
    )
    assert result.image == "mirror.local:5000/nim/nvidia/nemotron-3-nano:2.1.5"


def test_cache_is_sized_from_the_download_with_headroom() -> None:
    result = plan(spec(model="nemotron-3-super", precision="fp8"), CATALOG, pool_of(H100))
    assert result.cache_size == "150Gi"  # 120 GiB download x 1.2, in steps of 10 Gi
    pinned = plan(
        spec(model="nemotron-3-super", precision="fp8", cache={"size": "200Gi"}),
        CATALOG,
        pool_of(H100),
    )
    assert pinned.cache_size == "200Gi"


def test_custom_model_is_sized_from_its_facts() -> None:
    custom = spec(
        model="custom",
        customModel={
            "image": "nvcr.io/nim/nvidia/llm-nim:2.1.6",
            "parameters": 70_600_000_000,
            "attentionLayers": 80,
            "kvHeads": 8,
            "headDim": 128,
            "nativeContextLength": 131072,
            "precisions": ["bf16", "fp8"],
        },
        maxModelLength=32768,
    )
    result = plan(custom, CATALOG, pool_of(H100))
    assert (result.precision, result.gpus_per_replica) == ("fp8", 2)
    assert result.image == "nvcr.io/nim/nvidia/llm-nim:2.1.6"
    assert result.memory_source == "estimated"
    assert result.key_required is True


# --- live profiles (NIM Metadata API) ----------------------------------------------------------


def live(
    precision: str, tp: int, gb: float, suffix: str = "", gpus: tuple[str, ...] = ()
) -> PublishedProfile:
    """A profile as the NIM Metadata API client (ngc.py) hands it to the planner."""
    return PublishedProfile(
        profile_id=f"{precision}{tp}{suffix}".ljust(64, "0"),
        description=f"vllm-{precision}-tp{tp}-pp1{suffix}-{gb}",
        precision=precision,
        tensor_parallel_size=tp,
        pipeline_parallel_size=1,
        min_memory_per_gpu_gb=gb,
        gpus=gpus,
    )


def test_live_profiles_replace_the_static_figures_and_name_the_exact_profile() -> None:
    nano = spec(model="nemotron-3-nano")
    static = plan(nano, CATALOG, pool_of(H100))
    assert static.gpus_per_replica == 1
    profiles = [live("fp8", 1, 90.0), live("fp8", 2, 50.0), live("bf16", 2, 40.0, "-lora")]
    result = plan(nano, CATALOG, pool_of(H100), profiles)
    assert (result.precision, result.gpus_per_replica) == ("fp8", 2)
    assert result.profile == profiles[1].profile_id
    assert (result.profile_source, result.memory_source) == ("metadata", "published")
    assert result.memory_per_gpu_gib == 50.0


def test_live_profiles_for_other_gpus_or_saying_too_little_are_not_planned_with() -> None:
    nano = spec(model="nemotron-3-nano")
    for_b200 = live("fp8", 1, 20.0, gpus=("B200",))
    for_h100 = live("fp8", 2, 30.0, gpus=("H100",))
    silent = PublishedProfile(profile_id="c" * 64, description="vllm-fp8-tp1-pp1")
    result = plan(nano, CATALOG, pool_of(H100), [for_b200, for_h100, silent])
    assert (result.gpus_per_replica, result.profile) == (2, for_h100.profile_id)
    only_silent = plan(nano, CATALOG, pool_of(H100), [silent])
    assert (only_silent.memory_source, only_silent.profile_source) == ("published", "derived")


def test_engines_shipped_without_a_memory_figure_still_bound_the_gpu_count() -> None:
    """NIM 1.x's prebuilt engines (one per GPU, precision and TP) state no memory: a NIM runs
    none it does not ship, so the plan takes the fewest GPUs an engine ships at, sized as
    without the list, and names that engine."""
    nano = spec(model="nemotron-3-nano")
    assert plan(nano, CATALOG, pool_of(H100)).gpus_per_replica == 1  # memory alone: 1
    engines = [
        PublishedProfile(
            profile_id=f"{tp}".ljust(64, "e"),
            description=f"tensorrt_llm-h100-fp8-tp{tp}-pp1-throughput",
            precision="fp8",
            tensor_parallel_size=tp,
            pipeline_parallel_size=1,
            gpus=("H100",),
        )
        for tp in (2, 4)
    ]
    result = plan(nano, CATALOG, pool_of(H100), engines)
    assert (result.precision, result.gpus_per_replica) == ("fp8", 2)
    assert (result.profile, result.profile_source) == (engines[0].profile_id, "metadata")
    without = plan(spec(model="nemotron-3-nano", gpu={"count": 2}), CATALOG, pool_of(H100))
    assert result.memory_per_gpu_gib == without.memory_per_gpu_gib
    refused = plan(nano, CATALOG, pool_of("NVIDIA-L40S"), engines)  # no engine for an L40S
    assert not refused.fits


def test_live_profiles_pin_by_description() -> None:
    profiles = [live("fp8", 1, 34.0), live("fp8", 2, 19.0)]
    result = plan(
        spec(model="nemotron-3-nano", profile="vllm-fp8-tp2-pp1-19.0"),
        CATALOG,
        pool_of(H100),
        profiles,
    )
    assert result.gpus_per_replica == 2 and result.profile == "vllm-fp8-tp2-pp1-19.0"
    assert result.profile_source == "spec"
    by_name = plan(
        spec(model="nemotron-3-nano", profile="vllm-fp8-tp2-pp1"), CATALOG, pool_of(H100), profiles
    )
    assert (by_name.profile, by_name.profile_source) == (profiles[1].profile_id, "metadata")


# --- notes ------------------------------------------------------------------------------------


def test_busy_nodes_and_too_many_replicas_are_noted_not_refused() -> None:
    pools = gpu_pools([node("h100", H100, 8, 81559, (9, 0))], {"h100": 8})
    result = plan(spec(model="nemotron-3-super", replicas=5), CATALOG, pools)
    assert result.fits
    assert "the matching nodes hold 4 replicas, 5 requested" in result.message
    assert "no room right now" in result.message


# --- examples against the demo inventory ------------------------------------------------------

EXPECTED_EXAMPLES = {
    "nano": (True, "NVIDIA-L40S", 1),
    "super-fp8": (True, H100, 2),
    "super-nvfp4": (True, "NVIDIA-B200", 1),
    "ultra-bf16": (True, H100, 16),
    "llama-8b": (True, "NVIDIA-A100-SXM4-40GB", 1),  # bf16: the smallest GPU that holds it
    "embedqa": (True, "NVIDIA-A100-SXM4-40GB", 1),
    "rerankqa": (True, "NVIDIA-A100-SXM4-40GB", 1),
    "nano-airgapped": (True, "NVIDIA-L40S", 1),
    "nano-pb": (True, "NVIDIA-L40S", 1),
    "ultra-bf16-4gpu": (False, None, None),
    "super-unentitled": (True, H100, 2),
}


def example_deployments() -> list[NemotronDeployment]:
    return [
        NemotronDeployment.model_validate(document)
        for path in sorted((REPO / "examples").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
    ]


def test_every_example_validates_and_plans_as_intended_on_the_demo_inventory() -> None:
    inventory = demo_inventory()
    outcomes = {}
    for deployment in example_deployments():
        result = plan(deployment.spec, CATALOG, inventory)
        outcomes[deployment.metadata["name"]] = (
            result.fits,
            result.gpu_product,
            result.gpus_per_replica,
        )
    assert outcomes == EXPECTED_EXAMPLES


def test_examples_show_the_key_rules() -> None:
    by_name = {d.metadata["name"]: d for d in example_deployments()}
    inventory = demo_inventory()
    keyless = plan(by_name["nano"].spec, CATALOG, inventory)
    assert keyless.key_required is False
    assert plan(by_name["super-unentitled"].spec, CATALOG, inventory).key_required is True
    assert plan(by_name["nano-airgapped"].spec, CATALOG, inventory).key_required is False
    refused = plan(by_name["ultra-bf16-4gpu"].spec, CATALOG, inventory)
    assert refused.reason == names.PlanReason.INSUFFICIENT_GPU_MEMORY
    assert "nvfp4 on 4 GPUs of NVIDIA-B200" in refused.message


# --- properties -------------------------------------------------------------------------------

PRODUCTS = [*sorted(CATALOG.gpus), "NVIDIA-H20", "Tesla-T4", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"]
REASON = re.compile(r"^[A-Z][A-Za-z0-9]*$")


@st.composite
def inventories(draw: st.DrawFn) -> list[GpuPool]:
    nodes = []
    for index in range(draw(st.integers(0, 4))):
        product = draw(st.sampled_from(PRODUCTS))
        memory = draw(st.integers(4096, 300_000))
        cc = draw(st.sampled_from([(7, 5), (8, 0), (8, 9), (9, 0), (10, 0), (12, 0)]))
        gpus = draw(st.integers(1, 8))
        for copy in range(draw(st.integers(1, 3))):
            nodes.append(node(f"n{index}-{copy}", product, gpus, memory, cc))
    return gpu_pools(nodes)


CUSTOM = st.fixed_dictionaries(
    {
        "image": st.just("nvcr.io/nim/nvidia/llm-nim:2.1.6"),
        "parameters": st.integers(10**8, 10**12),
        "attentionLayers": st.integers(0, 128),
        "kvHeads": st.integers(1, 64),
        "headDim": st.sampled_from([64, 128, 256]),
        "nativeContextLength": st.integers(1024, 1_048_576),
        "precisions": st.lists(st.sampled_from(["nvfp4", "fp8", "bf16"]), min_size=1, unique=True),
    }
)


def sometimes(draw: st.DrawFn, percent: int) -> bool:
    return draw(st.integers(0, 99)) < percent


@st.composite
def specs(draw: st.DrawFn) -> NemotronDeploymentSpec:
    """Mostly plausible specs (so that many fit), with every kind of pin now and then."""
    models = sorted(CATALOG.models)
    model = draw(st.sampled_from(models * 4 + ["custom", "custom", "not-a-model"]))
    fields: dict[str, Any] = {"model": model, "gpu": {}}
    if model == "custom":
        fields["customModel"] = draw(CUSTOM)
    if sometimes(draw, 40):
        fields["precision"] = draw(st.sampled_from(["nvfp4", "fp8", "bf16"]))
    if sometimes(draw, 30):
        fields["gpu"]["count"] = draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64]))
    if sometimes(draw, 30):
        fields["gpu"]["product"] = draw(st.sampled_from(PRODUCTS))
    if sometimes(draw, 40):
        fields["maxModelLength"] = draw(st.integers(1, 2_000_000))
    if sometimes(draw, 15):
        fields["version"] = draw(st.sampled_from(["2.0.9", "2.1.5", "2.1.5-pb7", "9.9.9", "x1"]))
    if sometimes(draw, 10):
        fields["profile"] = draw(
            st.sampled_from(["vllm-fp8-tp2-pp1", "vllm-bf16-tp8-pp2", "b" * 64, "weird"])
        )
    try:
        return NemotronDeploymentSpec.model_validate(fields)
    except ValidationError:  # e.g. a profile of another precision: the API server refuses it
        reject()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), inventories())
def test_any_spec_and_inventory_give_a_plan_or_a_reasoned_refusal(
    spec_: NemotronDeploymentSpec, inventory: list[GpuPool]
) -> None:
    result = plan(spec_, CATALOG, inventory)
    assert isinstance(result, PlanStatus)
    assert REASON.match(result.reason) and result.message
    if result.fits:
        assert result.reason == "Fits"
        assert result.tensor_parallel_size and result.pipeline_parallel_size
        assert result.gpus_per_replica == result.tensor_parallel_size * (
            result.pipeline_parallel_size
        )
        assert result.memory_per_gpu_gib is not None and result.usable_per_gpu_gib is not None
        assert result.memory_per_gpu_gib <= result.usable_per_gpu_gib + 0.05
        assert result.image and result.key_required is not None
    else:
        assert result.reason != "Fits"


@settings(max_examples=300, deadline=None)
@given(
    specs(),
    st.sampled_from(sorted(CATALOG.gpus)),
    st.integers(4096, 200_000),
    st.integers(1, 200_000),
    st.sampled_from([1, 2, 4, 8]),
    st.integers(1, 4),
)
def test_more_gpu_memory_never_means_more_gpus(
    spec_: NemotronDeploymentSpec,
    product: str,
    memory_mib: int,
    extra_mib: int,
    gpus_per_node: int,
    node_count: int,
) -> None:
    cc = CATALOG.gpus[product].compute_capability_tuple

    def inventory(memory: int) -> list[GpuPool]:
        return gpu_pools(
            node(f"n{i}", product, gpus_per_node, memory, cc) for i in range(node_count)
        )

    smaller = plan(spec_, CATALOG, inventory(memory_mib))
    larger = plan(spec_, CATALOG, inventory(memory_mib + extra_mib))
    if smaller.fits:
        assert larger.fits
        assert larger.gpus_per_replica is not None and smaller.gpus_per_replica is not None
        assert larger.gpus_per_replica <= smaller.gpus_per_replica


# --- suggestions that save GPUs ---------------------------------------------------------------


def test_a_context_that_alone_keeps_a_model_off_fewer_gpus_is_named() -> None:
    million = spec(model="nemotron-3-super", precision="fp8", maxModelLength=1_048_576)
    result = plan(million, CATALOG, pool_of("NVIDIA-H200"))
    assert result.gpus_per_replica == 2
    assert "fits on 1 x NVIDIA-H200 with maxModelLength <= 262144" in result.message
    shorter = plan(
        million.model_copy(update={"max_model_length": 262144}), CATALOG, pool_of("NVIDIA-H200")
    )
    assert shorter.gpus_per_replica == 1  # the suggestion holds
    twice = plan(
        million.model_copy(update={"max_model_length": 524288}), CATALOG, pool_of("NVIDIA-H200")
    )
    assert twice.gpus_per_replica == 2  # and is the longest power of two that does


def test_a_precision_that_halves_the_gpus_is_named() -> None:
    bf16 = plan(spec(model="nemotron-3-super", precision="bf16"), CATALOG, pool_of(H100))
    assert bf16.gpus_per_replica == 4
    assert "fp8 fits on 2 x NVIDIA-H100-80GB-HBM3, half the GPUs or fewer" in bf16.message
    fp8 = plan(spec(model="nemotron-3-super", precision="fp8"), CATALOG, pool_of(H100))
    assert fp8.gpus_per_replica == 2
    assert "fits on" not in fp8.message  # bf16 needs more, and no context gets it onto 1


def test_no_saving_is_suggested_against_a_pinned_gpu_count() -> None:
    pinned = spec(model="nemotron-3-super", precision="bf16", gpu={"count": 8})
    result = plan(pinned, CATALOG, pool_of(H100))
    assert result.gpus_per_replica == 8 and "fits on" not in result.message


# --- custom models from a config.json (customModel.configMapRef) ------------------------------


def from_config(**custom: Any) -> NemotronDeploymentSpec:
    return spec(
        model="custom",
        customModel={
            "image": "nvcr.io/nim/nvidia/llm-nim:2.1.6",
            "configMapRef": {"name": "model-config"},
            "precisions": ["bf16", "fp8"],
            **custom,
        },
    )


def test_config_map_text_sizes_a_custom_model_like_the_typed_facts() -> None:
    from .test_hf_config import NANO

    config = json.dumps(NANO)
    counted = plan(from_config(), CATALOG, pool_of(H100), hf_config_text=config)
    assert counted.fits and (counted.precision, counted.gpus_per_replica) == ("fp8", 1)
    assert counted.max_model_length == 262144
    # typed facts replace the config's: a shorter context
    shorter = plan(
        from_config(nativeContextLength=8192), CATALOG, pool_of(H100), hf_config_text=config
    )
    assert shorter.max_model_length == 8192
    assert shorter.kv_cache_gib is not None and counted.kv_cache_gib is not None
    assert shorter.kv_cache_gib < counted.kv_cache_gib


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (None, "could not be read"),
        ("not json", "not valid JSON"),
        ('{"hidden_size": 4096}', "num_attention_heads"),
    ],
)
def test_an_unreadable_config_map_is_refused_with_where_and_why(
    text: str | None, words: str
) -> None:
    result = plan(from_config(), CATALOG, pool_of(H100), hf_config_text=text)
    assert (result.fits, result.reason) == (False, "ModelConfigInvalid")
    assert "ConfigMap model-config, key config.json" in result.message and words in result.message


def test_custom_model_needs_a_config_map_or_every_typed_fact() -> None:
    with pytest.raises(ValueError, match="configMapRef"):
        spec(model="custom", customModel={"image": "x.io/a/b:1", "precisions": ["bf16"]})
    typed = {
        "image": "x.io/a/b:1",
        "precisions": ["bf16"],
        "parameters": 10**9,
        "attentionLayers": 16,
        "kvHeads": 8,
        "headDim": 64,
    }
    with pytest.raises(ValueError, match="configMapRef"):
        spec(model="custom", customModel=typed)
    assert spec(model="custom", customModel={**typed, "nativeContextLength": 8192}).custom_model


def test_a_dense_70b_at_fp8_and_128k_fits_one_h200_and_the_parts_say_why() -> None:
    """Issue 15's first example: NVIDIA lists one H200; the old 0.3 GiB per active billion
    term asked for two."""
    from tests.calibrate import as_config, corpus_models

    config = json.dumps(as_config(corpus_models()["llama-3.1-70b-instruct"]))
    llama = from_config(precisions=["fp8"])
    result = plan(llama, CATALOG, pool_of("NVIDIA-H200"), hf_config_text=config)
    assert (result.gpus_per_replica, result.max_model_length) == (1, 131072)
    # fp8 weights with 16-bit embeddings and lm_head: (68.5e9 x 1 + 2.1e9 x 2) bytes
    assert result.weights_gib == pytest.approx(67.7, abs=0.1)
    # 80 layers x 2 x 8 KV heads x 128 x 2 bytes = 320 KiB per token, x 131072 tokens
    assert result.kv_cache_gib == pytest.approx(40.0, abs=0.05)
    # 8192 tokens x 3 bytes x 2 x 28672 (the SwiGLU MLP's gate and up projections)
    assert result.activations_gib == pytest.approx(1.3, abs=0.05)
    parts = (
        result.weights_gib,
        result.kv_cache_gib,
        result.activations_gib,
        result.overhead_gib,
    )
    assert result.memory_per_gpu_gib == pytest.approx(sum(p or 0 for p in parts), abs=0.2)
