"""The sizing planner: (spec, catalog, GPU pools) -> a plan, or a refusal that says what to change.

Rules, in order:

* Every pin is honoured (precision, gpu.product, gpu.count, version, profile, cache.size); a pin
  that cannot work is refused with the numbers, and the refusal suggests what would fit.
* Precision, like NIM: the lowest precision the release ships and the GPU runs natively
  (nvfp4 < fp8 < bf16). Hopper's NVFP4 is a weight-only fallback: never chosen, but a pin of it
  is honoured.
* GPUs per replica: the fewest (tensor parallel 1, 2, 4, 8 within a node) whose per-GPU need
  fits the usable memory (0.9 of the GPU); pipeline parallel across nodes (2, 4, 8 nodes of the
  widest tensor parallel) only when one node cannot hold a replica.
* Layouts: when the live Metadata API gives the tag's profiles, only those it ships for the
  GPU (NIM 1.x's prebuilt engines exist per GPU, precision and TP, with no memory figure).
* Memory per GPU: NVIDIA's published minimum when known (memorySource=published: the live
  Metadata API's profiles when given, else the catalog's table), adjusted for maxModelLength
  by the KV-cache difference; otherwise the physical estimate (memorySource=estimated,
  memory_need): the weights at the precision's bytes (the 16-bit layers apart), the KV cache
  and Mamba state of one sequence of maxModelLength, activations for the engine's batch of
  tokens, and overhead (CUDA context and cuBLAS, CUDA graphs, NCCL buffers that grow with the
  tensor-parallel group over NVSwitch, allocator slack). Within 1.1 GiB of every figure of
  NVIDIA's published table for Nano and Super; tests/calibrate.py scores it against NVIDIA's
  public configurations.
* Among GPU products that fit: fewest GPUs per replica, then the least GPU memory per replica
  (keeps big GPUs for big models), then the lower precision, then the product name.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

from nemotron_operator.api import names
from nemotron_operator.api.types import (
    CUSTOM_MODEL_FACTS_MESSAGE,
    NemotronDeploymentSpec,
    PlanStatus,
    quantity_bytes,
)
from nemotron_operator.core.catalog import (
    Architecture,
    Catalog,
    KeyRequirement,
    ModelEntry,
    Release,
    key_requirement,
    parameter_counts,
    precisions_for_compute_capability,
)
from nemotron_operator.core.hf_config import HfConfigError, architecture_from_hf_config_text
from nemotron_operator.core.inventory import GpuPool, restrict_pools

Reason = names.PlanReason

GIB = 2**30
MIB = 2**20
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
PIPELINE_PARALLEL_SIZES = (2, 4, 8)
PRECISION_PREFERENCE = ("nvfp4", "fp8", "bf16", "fp16")  # lowest first, as NIM prefers
CACHE_HEADROOM = 1.2
CACHE_STEP_GIB = 10
SHORTEST_SUGGESTED_CONTEXT = 4096

# --- the physical memory model's facts ----------------------------------------------------------
# Bytes per parameter of the weights a precision quantizes, scales included: NVFP4 keeps one
# FP8 scale per 16 values, MXFP4 one 8-bit exponent per 32, FP8 one scale per tensor or channel.
QUANTIZED_BYTES_PER_PARAMETER = {
    "nvfp4": 0.5 + 1 / 16,
    "mxfp4": 0.5 + 1 / 32,
    "fp8": 1.0,
    "int8_wo": 1.0,  # weight-only INT8, one scale per output channel
    "bf16": 2.0,
    "fp16": 2.0,
}
# Embeddings, lm_head, norms, MoE routers and Mamba mixers stay 16-bit in the engines'
# quantized checkpoints; MXFP4 checkpoints (gpt-oss) quantize only the routed experts.
SIXTEEN_BIT_BYTES = 2
EXPERTS_ONLY_PRECISIONS = frozenset({"mxfp4"})
KV_BYTES_PER_ELEMENT = 2  # vLLM's and TensorRT-LLM's default KV dtype: the model's 16-bit one
SSM_STATE_BYTES_PER_ELEMENT = 4  # Mamba's recurrent state in fp32; its convolution state 16-bit
# The engine's batch of tokens in one forward pass (vLLM's max_num_batched_tokens,
# TensorRT-LLM's max_num_tokens): activations are sized for it, once per replica.
BATCHED_TOKENS = 8192
# Peak activation bytes per token and per unit of a layer's widest projection. Eager PyTorch
# needs 10 x I bytes per token for a SwiGLU MLP whose gate and up projections are 2 x I wide
# (measured on an H200): 5 per unit. The engines' fused kernels keep only the projection's
# 16-bit output and the activation function's (gated: half as wide): 3 per unit.
ACTIVATION_BYTES_PER_WIDTH = 3
# CUDA's own total is below the GPU's label (616 MiB on an H200); the CUDA context (620 MiB)
# and cuBLAS's workspace (162 MiB) come out of that total before any weights (H200, CUDA 13).
CUDA_RESERVED_MIB = 616
CUDA_CONTEXT_GIB = (620 + 162) / 1024
CUDA_GRAPHS_GIB = 0.2  # the engine's captured CUDA graphs' memory pool, per GPU
# With more than one GPU per replica: NCCL's communicator buffers; over NVSwitch also the
# buffers that grow with the tensor-parallel group: NCCL's NVLink SHARP buffers (more than 2
# GPUs, Hopper and newer) and the engine's NVLink all-reduce buffers. Neither exists over PCIe
# (catalog_data/gpus.yaml's nvlinkSwitch says where, and why).
NCCL_GIB = 0.5
NCCL_GIB_PER_DOUBLING = 0.8  # over NVSwitch
# The caching allocator's rounding and the loader's buffers, as a share of the weights.
WEIGHTS_SLACK = 0.01
# NCCL's, CUDA graphs' and the slack's figures are fitted to NVIDIA's published minimum memory
# of Nemotron 3 Nano and Super (every one of 24 figures within 1.1 GiB); the rest is measured.
MEMORY_UTILIZATION = 0.9  # vLLM's gpu_memory_utilization default, of CUDA's total

_PROFILE_NAME = re.compile(r"(?:vllm|sglang)-(nvfp4|fp8|bf16)-tp(\d+)-pp(\d+)")


# --- memory -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MemoryFacts:
    """What the memory model needs of an Architecture, worked out once per architecture
    (memory_facts memoises it). Equal and hashed by identity, so memory_need's memo can key on
    it."""

    parameters: int
    checkpoint_gib: Mapping[str, float]  # the release's download by precision, where known
    sixteen_bit_parameters: int  # kept in 16 bits whatever the precision
    routed_expert_parameters: int
    kv_bytes_per_token_layer: int  # one attention layer, the whole model's heads
    kv_heads: int  # 0 for multi-head latent attention, whose latent every TP rank holds
    full_attention_layers: int
    sliding_window_layers: int
    sliding_window: int
    mamba_state_bytes: int  # one sequence, every Mamba layer
    activation_bytes_per_token: int  # before tensor parallelism splits it


def _widest_projection(arch: Architecture) -> int:
    """The widest output of one layer's projections, which sets its peak activations."""
    hidden = arch.hidden_width
    up = 2 if arch.gated_mlp else 1
    heads = arch.attention_heads or max(hidden // arch.head_dim, 1)
    if arch.mla:
        value = arch.v_head_dim or arch.head_dim
        attention = heads * arch.head_dim + heads * ((arch.qk_nope_head_dim or 0) + value)
    else:
        attention = (heads + 2 * arch.kv_heads) * arch.head_dim
    intermediate = arch.widest_intermediate_size or arch.intermediate_size
    if intermediate is None and not (arch.moe_layers or arch.mamba_layers):
        intermediate = round(3.5 * hidden)  # a Llama-shaped MLP when the width is not given
    widths = [attention, up * (intermediate or 0) if arch.dense_mlp_layers else 0]
    if arch.moe_layers:
        routed = arch.experts_per_token * arch.moe_intermediate_size
        widths.append(up * (routed + arch.shared_expert_intermediate_size))
    if arch.mamba_layers:
        inner = arch.mamba_heads * arch.mamba_head_dim
        widths.append(2 * inner + 2 * arch.mamba_groups * arch.ssm_state_size + arch.mamba_heads)
    return max(widths)


def memory_facts(
    arch: Architecture, checkpoint_gib: Mapping[str, float] | None = None
) -> MemoryFacts:
    """The memory model's view of `arch`; `checkpoint_gib` the weights' size as published (the
    download by precision), which is what an engine loads. Memoised: a catalog model's facts
    are the same for every plan."""
    return _memory_facts(arch, tuple(sorted((checkpoint_gib or {}).items())))


@functools.lru_cache(maxsize=256)
def _memory_facts(arch: Architecture, checkpoint_gib: tuple[tuple[str, float], ...]) -> MemoryFacts:
    counts = parameter_counts(arch)
    sixteen_bit = counts.embeddings + counts.lm_head + counts.norms + counts.routers + counts.mamba
    if arch.mla:
        per_layer = ((arch.kv_lora_rank or 0) + (arch.qk_rope_head_dim or 0)) * KV_BYTES_PER_ELEMENT
    else:
        per_layer = 2 * arch.kv_heads * arch.head_dim * KV_BYTES_PER_ELEMENT
    inner = arch.mamba_heads * arch.mamba_head_dim
    conv = inner + 2 * arch.mamba_groups * arch.ssm_state_size
    mamba_state = arch.mamba_layers * (
        inner * arch.ssm_state_size * SSM_STATE_BYTES_PER_ELEMENT
        + (arch.conv_kernel - 1) * conv * KV_BYTES_PER_ELEMENT
    )
    sliding = min(arch.sliding_window_layers, arch.attention_layers)
    return MemoryFacts(
        parameters=arch.parameters,
        checkpoint_gib=dict(checkpoint_gib),
        sixteen_bit_parameters=min(sixteen_bit, arch.parameters),
        routed_expert_parameters=min(counts.routed_experts, arch.parameters),
        kv_bytes_per_token_layer=per_layer,
        kv_heads=0 if arch.mla else arch.kv_heads,
        full_attention_layers=arch.attention_layers - sliding,
        sliding_window_layers=sliding,
        sliding_window=arch.sliding_window or 0,
        mamba_state_bytes=mamba_state,
        activation_bytes_per_token=ACTIVATION_BYTES_PER_WIDTH * _widest_projection(arch),
    )


class MemoryNeed(NamedTuple):
    """GPU memory one GPU of a replica needs, by part, GiB."""

    weights: float
    kv_cache: float  # one sequence of maxModelLength, and Mamba state
    activations: float
    overhead: float  # CUDA context and cuBLAS, CUDA graphs, NCCL buffers

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.activations + self.overhead


def weights_gib(facts: MemoryFacts, precision: str) -> float:
    """The whole model's weights at `precision`: the checkpoint's size where published, else
    counted, the 16-bit layers included."""
    published = facts.checkpoint_gib.get(precision)
    if published is not None:
        return published
    quantized = (
        facts.routed_expert_parameters
        if precision in EXPERTS_ONLY_PRECISIONS
        else facts.parameters - facts.sixteen_bit_parameters
    )
    sixteen_bit = facts.parameters - quantized
    return (
        quantized * QUANTIZED_BYTES_PER_PARAMETER[precision] + sixteen_bit * SIXTEEN_BIT_BYTES
    ) / GIB


@functools.lru_cache(maxsize=4096)
def kv_cache_gib(facts: MemoryFacts, tokens: int, tp: int = 1, pp: int = 1) -> float:
    """KV cache and Mamba state of one sequence of `tokens` tokens on one GPU: attention layers
    split over pipeline stages, heads over tensor-parallel ranks (a rank holds at least one KV
    head; every rank holds multi-head latent attention's whole latent), sliding-window layers
    capped at the window. Memoised: a published figure's context change asks it per layout."""
    per_layer: float = facts.kv_bytes_per_token_layer
    if facts.kv_heads:
        per_layer = per_layer * -(-facts.kv_heads // tp) / facts.kv_heads  # ceil: whole heads
    window = tokens if tokens < facts.sliding_window else facts.sliding_window
    attention = per_layer * (
        facts.full_attention_layers * tokens + facts.sliding_window_layers * window
    )
    return (attention + facts.mamba_state_bytes / tp) / (pp * GIB)


@functools.lru_cache(maxsize=4096)
def memory_need(
    facts: MemoryFacts,
    precision: str,
    tokens: int,
    tp: int,
    pp: int = 1,
    nvlink_switch: bool = True,
) -> MemoryNeed:
    """The physical estimate of one GPU's memory, by part (see the module doc);
    `nvlink_switch` whether the GPUs talk over NVSwitch (else PCIe). Memoised: plans ask the
    same layouts of the same model on every pool and for every suggestion."""
    weights = weights_gib(facts, precision) / (tp * pp)
    # the tensor-parallel all-reduce group sets the communication buffers; a pipeline stage
    # adds only point-to-point links to its neighbours
    growth = NCCL_GIB_PER_DOUBLING * math.log2(tp) if nvlink_switch else 0.0
    nccl = NCCL_GIB + growth if tp * pp > 1 else 0.0
    return MemoryNeed(
        weights,
        kv_cache_gib(facts, tokens, tp, pp),
        facts.activation_bytes_per_token * BATCHED_TOKENS / (tp * GIB),
        CUDA_CONTEXT_GIB + CUDA_GRAPHS_GIB + nccl + WEIGHTS_SLACK * weights,
    )


def estimated_memory_per_gpu_gib(
    model: ModelEntry,
    precision: str,
    max_model_length: int,
    tp: int,
    pp: int = 1,
    nvlink_switch: bool = True,
) -> float:
    """The operator's estimate of GPU memory per GPU for a catalog model (see the module doc)."""
    facts = memory_facts(model.architecture, model.download_gib)
    return memory_need(facts, precision, max_model_length, tp, pp, nvlink_switch).total


def usable_gib(memory_mib: int) -> float:
    """Memory of one GPU the serving engine may use, GiB: its share of CUDA's total, which is
    the label's MiB less what the driver keeps."""
    return (memory_mib - CUDA_RESERVED_MIB) * MIB * MEMORY_UTILIZATION / GIB


@functools.lru_cache(maxsize=256)
def derived_profile_name(precision: str, tp: int, pp: int) -> str:
    return f"vllm-{precision}-tp{tp}-pp{pp}"


class PublishedProfile(Protocol):
    """A profile of a NIM tag as the NIM Metadata API publishes it (ngc.PublishedProfile);
    None where the API did not say. `gpus` empty: any GPU."""

    @property
    def profile_id(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def precision(self) -> str | None: ...
    @property
    def tensor_parallel_size(self) -> int | None: ...
    @property
    def pipeline_parallel_size(self) -> int | None: ...
    @property
    def min_memory_per_gpu_gb(self) -> float | None: ...
    @property
    def gpus(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class _LiveProfile:
    """A published profile the planner can use: precision and parallelism known. A NIM runs
    only its profiles, so they bound the layouts even without a memory figure (NIM 1.x's
    prebuilt TensorRT-LLM engines state none): the estimate sizes those."""

    profile_id: str
    description: str
    precision: str
    tp: int
    pp: int
    min_gib: float | None  # NVIDIA's "GB" per GPU, binary GiB like the manifests' figures
    gpus: tuple[str, ...]

    @property
    def lora(self) -> bool:
        return "lora" in self.description.lower()

    def runs_on(self, product: str) -> bool:
        if not self.gpus:
            return True
        wanted = _gpu_key(product)
        return any(_gpu_key(gpu) in wanted or wanted in _gpu_key(gpu) for gpu in self.gpus)


def _gpu_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower()).removeprefix("nvidia")


def _live_profiles(profiles: Sequence[PublishedProfile]) -> tuple[_LiveProfile, ...]:
    """The profiles that say enough to plan with (LoRA twins and unknown precisions left out)."""
    usable = []
    for p in profiles:
        if p.precision not in PRECISION_PREFERENCE or not p.tensor_parallel_size:
            continue
        live = _LiveProfile(
            profile_id=p.profile_id,
            description=p.description or "",
            precision=p.precision,
            tp=p.tensor_parallel_size,
            pp=p.pipeline_parallel_size or 1,
            min_gib=p.min_memory_per_gpu_gb,
            gpus=tuple(p.gpus),
        )
        if not live.lora:
            usable.append(live)
    return tuple(usable)


@dataclass(frozen=True)
class _Need:
    gib: float
    source: str  # published | estimated
    profile: str | None
    profile_source: str | None  # spec | metadata | derived


@dataclass(frozen=True)
class _Target:
    """The model and constraints, resolved from the spec."""

    name: str
    model: ModelEntry
    facts: MemoryFacts
    tag: str | None  # None: the newest release shipping the chosen precision
    repository: str | None  # as the spec names it; None: the catalog's for the tag
    max_model_length: int | None  # None for embedding and reranking NIMs
    precisions: tuple[str, ...]  # to try, lowest first
    shipped: tuple[str, ...]  # every precision the release ships, lowest first
    precision_pinned: bool
    count: int | None
    tp: int | None  # from a profile pin
    pp: int | None
    profile_pin: str | None
    published: tuple[_LiveProfile, ...]
    notes: tuple[str, ...]

    @functools.cached_property
    def exact_pin(self) -> tuple[str, str] | None:
        """(profile, "spec") when the pin goes to NIM as given: an id or exact description. A
        bare name such as vllm-fp8-tp2-pp1 is not accepted by NIM 2.x, so it only fixes the
        layout (derived)."""
        pin = self.profile_pin
        if pin is None or _PROFILE_NAME.fullmatch(pin) is not None:
            return None
        return pin, "spec"


class _Refusal(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _kv_change(target: _Target, tp: int, pp: int) -> float:
    """A published figure is for the native context: the KV cache of maxModelLength's
    difference from it."""
    facts, native = target.facts, target.model.architecture.native_context_length
    length = target.max_model_length or 0
    return kv_cache_gib(facts, length, tp, pp) - kv_cache_gib(facts, native, tp, pp)


def _need(target: _Target, pool: _PoolFacts, precision: str, tp: int, pp: int) -> _Need | None:
    """Memory per GPU for a layout on the pool's GPUs; None when the live profiles do not offer
    it."""
    pin = target.profile_pin
    if target.published:
        product = pool.pool.base_product
        offered = [
            p
            for p in target.published
            if (p.precision, p.tp, p.pp) == (precision, tp, pp) and p.runs_on(product)
        ]
        if not offered:
            return None
        # the smallest stated figure; a profile without one only when none states one
        best = min(offered, key=lambda p: (p.min_gib is None, p.min_gib or 0.0, p.profile_id))
        named_by_pin = [p for p in offered if pin in (p.profile_id, p.description)]
        best = named_by_pin[0] if named_by_pin else best
        profile, source = (pin, "spec") if named_by_pin else (best.profile_id, "metadata")
        if best.min_gib is None:
            need = _static_need(target, pool, precision, tp, pp)
            return replace(need, profile=profile, profile_source=source)
        return _Need(best.min_gib + _kv_change(target, tp, pp), "published", profile, source)
    return _static_need(target, pool, precision, tp, pp)


def _static_need(target: _Target, pool: _PoolFacts, precision: str, tp: int, pp: int) -> _Need:
    """Memory per GPU for a layout without live figures: the catalog's published figure, else
    the estimate."""
    model, length = target.model, target.max_model_length or 0
    pinned = target.exact_pin
    if not model.generative:
        estimate = memory_need(target.facts, precision, length, tp, pp, pool.nvlink_switch)
        return _Need(estimate.total, "estimated", *(pinned or (None, None)))
    profile, source = pinned or (derived_profile_name(precision, tp, pp), "derived")
    published = model.published_memory_gib.get(precision, {}).get(tp) if pp == 1 else None
    if published is not None:
        return _Need(published + _kv_change(target, tp, pp), "published", profile, source)
    estimate = memory_need(target.facts, precision, length, tp, pp, pool.nvlink_switch)
    return _Need(estimate.total, "estimated", profile, source)


# --- resolving the spec -----------------------------------------------------------------------


def _custom_architecture(spec: NemotronDeploymentSpec, hf_config_text: str | None) -> Architecture:
    """customModel's facts: its config.json's (configMapRef), the typed facts replacing them."""
    custom = spec.custom_model
    assert custom is not None
    typed = {
        "parameters": custom.parameters,
        "active_parameters": custom.active_parameters or custom.parameters,
        "attention_layers": custom.attention_layers,
        "kv_heads": custom.kv_heads,
        "head_dim": custom.head_dim,
        "native_context_length": custom.native_context_length,
    }
    given = {fact: value for fact, value in typed.items() if value is not None}
    reference = custom.config_map_ref
    if reference is None:
        try:
            return Architecture.model_validate(given)
        except ValueError:
            raise _Refusal(Reason.MODEL_CONFIG_INVALID, CUSTOM_MODEL_FACTS_MESSAGE) from None
    where = f"customModel.configMapRef (ConfigMap {reference.name}, key {reference.key})"
    if hf_config_text is None:
        raise _Refusal(Reason.MODEL_CONFIG_INVALID, f"{where} could not be read")
    try:
        counted = architecture_from_hf_config_text(hf_config_text)
    except HfConfigError as error:
        raise _Refusal(Reason.MODEL_CONFIG_INVALID, f"{where}: {error}") from None
    if custom.parameters is not None and custom.active_parameters is None:
        given["active_parameters"] = min(counted.active_parameters, custom.parameters)
    return counted.model_copy(update=given)


def _custom_model(
    spec: NemotronDeploymentSpec, hf_config_text: str | None
) -> tuple[ModelEntry, str]:
    custom = spec.custom_model
    assert custom is not None  # model: custom (the API's rules say so)
    repository, tag = custom.image.rsplit(":", 1)
    architecture = _custom_architecture(spec, hf_config_text)
    model = ModelEntry(
        display_name=f"custom model {repository}",
        kind="llm",
        image=repository,
        keyless_from=None,  # whether a custom image is public cannot be known: ask for a key
        architecture=architecture,
        default_max_model_length=architecture.native_context_length,
        releases=(Release(tag=tag, precisions=tuple(custom.precisions)),),
    )
    return model, tag


def _profile_layout(
    spec: NemotronDeploymentSpec, published: Sequence[_LiveProfile]
) -> tuple[str | None, int | None, int | None]:
    """(precision, tp, pp) named by spec.profile; Nones when the profile says nothing."""
    if spec.profile is None:
        return None, None, None
    by_id = next((p for p in published if spec.profile in (p.profile_id, p.description)), None)
    if by_id is not None:
        return by_id.precision, by_id.tp, by_id.pp
    match = _PROFILE_NAME.match(spec.profile)  # a name, or a description that starts so
    if match is not None:
        return match.group(1), int(match.group(2)), int(match.group(3))
    if spec.precision == "auto" or spec.gpu.count is None:
        raise _Refusal(
            Reason.PROFILE_UNRESOLVABLE,
            f"profile {spec.profile} is not among the tag's published profiles, so its "
            "precision and GPU count are unknown: pin precision and gpu.count too, or use a "
            "name like vllm-fp8-tp2-pp1",
        )
    return None, None, None


def _resolve(
    spec: NemotronDeploymentSpec,
    catalog: Catalog,
    published: Sequence[_LiveProfile],
    hf_config_text: str | None,
) -> _Target:
    notes: list[str] = []
    tag: str | None
    if spec.custom_model is not None:  # model: custom (the API's rules say so)
        model, image_tag = _custom_model(spec, hf_config_text)
        tag = spec.version or image_tag
    elif spec.model in catalog.models:
        model, tag = catalog.models[spec.model], spec.version
    else:
        raise _Refusal(
            Reason.UNKNOWN_MODEL,
            f"{spec.model} is not in the catalog (known: {', '.join(sorted(catalog.models))}); "
            "add it with a catalog override or use model: custom",
        )

    arch = model.architecture
    length: int | None = None
    if model.generative:
        length = (
            spec.max_model_length or model.default_max_model_length or arch.native_context_length
        )
        if length > arch.context_limit:
            raise _Refusal(
                Reason.MAX_MODEL_LENGTH_TOO_LONG,
                f"maxModelLength {length} exceeds {model.display_name}'s context limit of "
                f"{arch.context_limit} tokens",
            )

    release = model.release(tag) if tag else None
    shipped: tuple[str, ...]
    if published:
        shipped = tuple({p.precision for p in published})
    elif release is not None:
        shipped = release.precisions
    elif tag is not None:
        newest = model.newest_release()
        shipped = newest.precisions
        notes.append(f"tag {tag} is not in the catalog; assumed to ship what {newest.tag} ships")
    else:
        shipped = model.default_precisions()
    ordered = tuple(p for p in PRECISION_PREFERENCE if p in shipped)

    profile_precision, tp, pp = _profile_layout(spec, published)
    pinned = spec.precision if spec.precision != "auto" else profile_precision
    if profile_precision and pinned != profile_precision:
        raise _Refusal(
            Reason.PROFILE_CONFLICT,
            f"profile {spec.profile} is {profile_precision} but precision is {spec.precision}",
        )
    if tp is not None and spec.gpu.count is not None and tp * (pp or 1) != spec.gpu.count:
        raise _Refusal(
            Reason.PROFILE_CONFLICT,
            f"profile {spec.profile} uses {tp * (pp or 1)} GPUs but gpu.count is {spec.gpu.count}",
        )
    if pinned is not None and pinned not in ordered:
        where = f"{model.display_name} {tag or 'releases'}"
        raise _Refusal(
            Reason.PRECISION_NOT_SHIPPED,
            f"{where} ship {', '.join(ordered)}, not {pinned}: pick one of those",
        )
    return _Target(
        name=spec.model,
        model=model,
        facts=memory_facts(arch, model.download_gib),
        tag=tag,
        repository=spec.image or (model.image if spec.model == names.CUSTOM_MODEL else None),
        max_model_length=length,
        precisions=(pinned,) if pinned else ordered,
        shipped=ordered,
        precision_pinned=pinned is not None,
        count=spec.gpu.count,
        tp=tp,
        pp=pp,
        profile_pin=spec.profile,
        published=tuple(published),
        notes=tuple(notes),
    )


# --- placing a replica in a pool --------------------------------------------------------------


@dataclass(frozen=True)
class _PoolFacts:
    pool: GpuPool
    memory_mib: int
    usable_gib: float
    native: tuple[str, ...]
    weight_only: tuple[str, ...]
    nvlink_switch: bool  # the catalog's; True for a GPU it does not list (the larger need)


@dataclass(frozen=True)
class _Choice:
    facts: _PoolFacts
    precision: str
    tp: int
    pp: int
    need: _Need

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    def rank(self) -> tuple[int, int, int, str, int]:
        return (
            self.gpus,
            self.gpus * self.facts.memory_mib,
            PRECISION_PREFERENCE.index(self.precision),
            self.facts.pool.product,
            self.facts.pool.gpus_per_node,
        )


@dataclass(frozen=True)
class _Miss:
    reason: str
    text: str


def _pool_facts(pool: GpuPool, catalog: Catalog) -> _PoolFacts | None:
    entry = catalog.gpu(pool.base_product)
    memory_mib = pool.memory_mib or (entry.memory_mib if entry else None)
    compute_capability = pool.compute_capability or (
        entry.compute_capability_tuple if entry else None
    )
    if memory_mib is None:
        return None
    native: tuple[str, ...]
    weight_only: tuple[str, ...]
    if entry is not None:
        native, weight_only = entry.native_precisions, entry.weight_only_precisions
    elif compute_capability is not None:
        native, weight_only = precisions_for_compute_capability(compute_capability)
    else:
        native, weight_only = ("fp16", "bf16"), ()
    nvlink_switch = entry.nvlink_switch if entry is not None else True
    return _PoolFacts(pool, memory_mib, usable_gib(memory_mib), native, weight_only, nvlink_switch)


@functools.lru_cache(maxsize=64)
def parallel_layouts(gpus_per_node: int) -> tuple[tuple[int, int], ...]:
    """(TP, PP) layouts of one replica, fewest GPUs first: tensor parallel within a node, then
    pipeline parallel over nodes of the widest tensor parallel."""
    widest = max(tp for tp in TENSOR_PARALLEL_SIZES if tp <= max(gpus_per_node, 1))
    layouts = tuple((tp, 1) for tp in TENSOR_PARALLEL_SIZES if tp <= gpus_per_node)
    return layouts + tuple((widest, pp) for pp in PIPELINE_PARALLEL_SIZES)


def _layouts(target: _Target, gpus_per_node: int) -> tuple[tuple[int, int], ...]:
    """(TP, PP) layouts to try, fewest GPUs first."""
    if not target.model.generative:
        return ((1, 1),) if target.count in (None, 1) else ()
    if target.tp is not None:
        return ((target.tp, target.pp or 1),)
    layouts = parallel_layouts(gpus_per_node)
    if target.count is not None:
        layouts = tuple((tp, pp) for tp, pp in layouts if tp * pp == target.count)
    return layouts


def _describe(precision: str, tp: int, pp: int) -> str:
    nodes = f" over {pp} nodes (TP{tp} x PP{pp})" if pp > 1 else ""
    return f"{precision} on {tp * pp} GPU{'s' if tp * pp > 1 else ''}{nodes}"


def _miss(facts: _PoolFacts, precision: str, reason: str, tp: int, pp: int, gib: float) -> _Miss:
    """Why a layout does not fit the pool, in words."""
    pool, layout = facts.pool, _describe(precision, tp, pp)
    if reason == Reason.NOT_ENOUGH_GPUS_PER_NODE:
        return _Miss(
            reason, f"{layout} needs {tp} GPUs on one node; nodes have {pool.gpus_per_node}"
        )
    if reason == Reason.INSUFFICIENT_GPU_MEMORY:
        return _Miss(
            reason,
            f"{layout} needs {gib:.1f} GiB per GPU, {facts.usable_gib:.1f} GiB usable "
            f"(({facts.memory_mib} - {CUDA_RESERVED_MIB}) MiB x {MEMORY_UTILIZATION})",
        )
    return _Miss(
        reason, f"{layout} needs {pp} nodes of {pool.gpus_per_node} GPUs; {pool.node_count} match"
    )


def _place(target: _Target, facts: _PoolFacts) -> _Choice | _Miss:
    pool = facts.pool
    runnable = facts.native + (facts.weight_only if target.precision_pinned else ())
    precisions = [p for p in target.precisions if p in runnable]
    if not precisions:
        return _Miss(
            Reason.PRECISION_NOT_SUPPORTED,
            f"does not run {' or '.join(target.precisions)} natively",
        )
    layouts = _layouts(target, pool.gpus_per_node)
    if not layouts:
        count_text = f"{target.count} GPUs per replica"
        if not target.model.generative:
            return _Miss(Reason.UNSUPPORTED_GPU_COUNT, f"{target.name} runs on 1 GPU per replica")
        return _Miss(
            Reason.UNSUPPORTED_GPU_COUNT,
            f"{count_text} cannot be laid out on nodes of {pool.gpus_per_node} GPUs",
        )
    for precision in precisions:
        last: tuple[str, int, int, float] | None = None  # the last miss: (reason, tp, pp, GiB)
        for tp, pp in layouts:
            need = _need(target, facts, precision, tp, pp)
            if need is None:
                continue
            if tp > pool.gpus_per_node:
                last = (Reason.NOT_ENOUGH_GPUS_PER_NODE, tp, pp, need.gib)
            elif need.gib > facts.usable_gib:
                last = (Reason.INSUFFICIENT_GPU_MEMORY, tp, pp, need.gib)
            elif pp > pool.node_count:
                last = (Reason.NOT_ENOUGH_NODES, tp, pp, need.gib)
                break  # wider layouts need even more nodes
            else:
                return _Choice(facts, precision, tp, pp, need)
        if last is not None:  # the lowest precision's last attempt says the most
            return _miss(facts, precision, *last)
    return _Miss(
        Reason.PROFILE_UNRESOLVABLE,
        f"no published profile of {target.tag or 'the release'} runs {' or '.join(precisions)}",
    )


# --- the plan ---------------------------------------------------------------------------------


def _key(spec: NemotronDeploymentSpec, model: ModelEntry, tag: str) -> KeyRequirement:
    if spec.ngc.offline:
        return KeyRequirement(False, "ngc.offline: the preloaded cache is used, NGC is not")
    if spec.cache.existing_claim is not None:
        return KeyRequirement(False, "cache.existingClaim: the NIM loads the preloaded cache")
    return key_requirement(model, tag)


def download_gib(target: _Target, precision: str) -> float:
    """The model files NIM downloads: the catalog's size, else the weights at `precision`."""
    return target.model.download_gib.get(precision) or weights_gib(target.facts, precision)


def _cache_size(spec: NemotronDeploymentSpec, target: _Target, precision: str) -> str | None:
    download = download_gib(target, precision)
    if spec.cache.existing_claim is not None:
        return None
    if spec.cache.size is not None:
        if quantity_bytes(spec.cache.size) < download * GIB:
            raise _Refusal(
                Reason.CACHE_TOO_SMALL,
                f"cache.size {spec.cache.size} is smaller than the {precision} download of "
                f"{download:.0f} GiB; omit cache.size to size it automatically",
            )
        return str(spec.cache.size)
    steps = math.ceil(download * CACHE_HEADROOM / CACHE_STEP_GIB)
    return f"{steps * CACHE_STEP_GIB}Gi"


def _notes(spec: NemotronDeploymentSpec, choice: _Choice, fitting_products: int) -> list[str]:
    pool = choice.facts.pool
    notes = []
    if fitting_products > 1:
        notes.append(
            f"chosen among {fitting_products} GPU products that fit: fewest GPUs per replica, "
            "then the smallest GPU"
        )
    replicas_per_node_group = pool.gpus_per_node // choice.tp
    capacity = replicas_per_node_group * (pool.node_count // choice.pp)
    if spec.replicas > capacity:
        notes.append(f"the matching nodes hold {capacity} replicas, {spec.replicas} requested")
    nodes_free = sum(1 for node in pool.nodes if node.free_gpus >= choice.tp)
    if nodes_free < choice.pp:
        notes.append(f"no room right now: {choice.tp} free GPUs are needed on {choice.pp} node(s)")
    return notes


def _longest_context(
    target: _Target, facts: _PoolFacts, precision: str, tp: int, pp: int
) -> int | None:
    """The longest power-of-two maxModelLength below the planned one at which the layout fits."""

    def fits(length: int) -> bool:
        shorter = replace(target, max_model_length=length)
        need = _need(shorter, facts, precision, tp, pp)
        return need is not None and need.gib <= facts.usable_gib

    longest = 2 ** math.floor(math.log2(max((target.max_model_length or 0) - 1, 1)))
    if longest < SHORTEST_SUGGESTED_CONTEXT or not fits(SHORTEST_SUGGESTED_CONTEXT):
        return None  # the weights alone keep it off: no context helps
    return int(
        next(
            length
            for length in (longest >> halving for halving in range(longest.bit_length()))
            if length <= SHORTEST_SUGGESTED_CONTEXT or fits(length)
        )
    )


def _savings(target: _Target, choice: _Choice) -> list[str]:
    """Ways to serve the model on fewer GPUs of the chosen product: a shorter context (when only
    maxModelLength keeps it off the next smaller layout), or a precision that halves the GPUs.
    Nothing when the spec pins the GPU count or the profile."""
    if choice.gpus == 1 or target.count is not None or target.tp is not None:
        return []
    facts, product = choice.facts, choice.facts.pool.product
    notes = []
    fewer = [
        (tp, pp)
        for tp, pp in parallel_layouts(facts.pool.gpus_per_node)
        if tp * pp < choice.gpus and pp <= facts.pool.node_count
    ]
    if fewer and target.max_model_length:
        tp, pp = fewer[-1]
        length = _longest_context(target, facts, choice.precision, tp, pp)
        if length is not None:
            notes.append(f"fits on {tp * pp} x {product} with maxModelLength <= {length}")
    # `precision: auto` has already chosen the lowest precision that fits: only a pin can leave
    # a precision that needs fewer GPUs
    for precision in target.shipped if target.precision_pinned else ():
        if precision == choice.precision or precision not in facts.native:
            continue
        other = _place(replace(target, precisions=(precision,), precision_pinned=True), facts)
        if isinstance(other, _Choice) and 2 * other.gpus <= choice.gpus:
            notes.append(f"{precision} fits on {other.gpus} x {product}, half the GPUs or fewer")
    return notes


def _fitting_plan(
    spec: NemotronDeploymentSpec,
    target: _Target,
    choice: _Choice,
    fitting_products: int,
) -> PlanStatus:
    model, precision, need = target.model, choice.precision, choice.need
    # the estimate's parts, shown beside a published figure too
    length, pool = target.max_model_length or 0, choice.facts
    parts = memory_need(target.facts, precision, length, choice.tp, choice.pp, pool.nvlink_switch)
    tag = target.tag or model.newest_release(precision).tag
    key = _key(spec, model, tag)
    cache_size = _cache_size(spec, target, precision)
    product = choice.facts.pool.product
    parallel = f"TP{choice.tp}" + (f" x PP{choice.pp}" if choice.pp > 1 else "")
    summary = (
        f"{model.display_name} {precision} on {choice.gpus} x {product} ({parallel}): "
        f"{need.gib:.1f} GiB per GPU ({need.source}) of {choice.facts.usable_gib:.1f} GiB usable"
    )
    notes = [*_notes(spec, choice, fitting_products), *_savings(target, choice), *target.notes]
    return PlanStatus(
        fits=True,
        reason=Reason.FITS,
        message="; ".join([summary, *notes]) + ".",
        model=target.name,
        image=f"{target.repository or model.repository_for(tag)}:{tag}",
        precision=precision,
        tensor_parallel_size=choice.tp,
        pipeline_parallel_size=choice.pp,
        gpus_per_replica=choice.gpus,
        nodes_per_replica=choice.pp,
        gpu_product=product,
        profile=need.profile,
        profile_source=need.profile_source,
        memory_per_gpu_gib=round(need.gib, 1),
        weights_gib=round(parts.weights, 1),
        kv_cache_gib=round(parts.kv_cache, 1),
        activations_gib=round(parts.activations, 1),
        overhead_gib=round(parts.overhead, 1),
        usable_per_gpu_gib=round(choice.facts.usable_gib, 1),
        memory_source=need.source,
        key_required=key.required,
        key_required_reason=key.why,
        max_model_length=target.max_model_length,
        cache_size=cache_size,
        download_gib=round(download_gib(target, precision), 1),
    )


def _candidate_pools(
    spec: NemotronDeploymentSpec, target: _Target, inventory: Sequence[GpuPool]
) -> list[GpuPool]:
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations]
    pools = restrict_pools(inventory, spec.node_selector, tolerations)
    if not pools:
        restricted = " matching nodeSelector and tolerations" if inventory else ""
        raise _Refusal(Reason.NO_GPU_NODES, f"no schedulable GPU nodes{restricted}")
    product = spec.gpu.product
    if product is not None:
        available = sorted({p.product for p in pools})
        pools = [p for p in pools if product in (p.product, p.base_product)]
        if not pools:
            raise _Refusal(
                Reason.GPU_PRODUCT_NOT_FOUND,
                f"no schedulable node has {names.GPU_PRODUCT_LABEL}={product}; "
                f"available: {', '.join(available)}",
            )
    if target.model.generative:
        whole = [p for p in pools if not p.partitioned]
        if not whole:
            raise _Refusal(
                Reason.PARTITIONED_GPUS_ONLY,
                "only MIG or time-shared GPUs match, and NIM LLM containers need whole GPUs",
            )
        pools = whole
    return pools


def _plan(
    spec: NemotronDeploymentSpec,
    catalog: Catalog,
    inventory: Sequence[GpuPool],
    published: Sequence[_LiveProfile],
    hf_config_text: str | None,
) -> PlanStatus:
    target = _resolve(spec, catalog, published, hf_config_text)
    best, products = _best_choice(spec, target, catalog, inventory)
    return _fitting_plan(spec, target, best, products)


def _best_choice(
    spec: NemotronDeploymentSpec, target: _Target, catalog: Catalog, inventory: Sequence[GpuPool]
) -> tuple[_Choice, int]:
    """The best placement over the pools, and how many GPU products fit; a _Refusal with the
    largest pools' misses when none fits."""
    choices: list[_Choice] = []
    misses: list[tuple[_PoolFacts | GpuPool, _Miss]] = []
    for pool in _candidate_pools(spec, target, inventory):
        facts = _pool_facts(pool, catalog)
        if facts is None:
            unknown = _Miss(Reason.GPU_MEMORY_UNKNOWN, "GPU memory unknown: no gpu.memory label")
            misses.append((pool, unknown))
            continue
        outcome = _place(target, facts)
        if isinstance(outcome, _Choice):
            choices.append(outcome)
        else:
            misses.append((facts, outcome))
    if choices:
        products = len({choice.facts.pool.product for choice in choices})
        return min(choices, key=_Choice.rank), products

    def capacity(entry: tuple[_PoolFacts | GpuPool, _Miss]) -> tuple[float, str]:
        facts = entry[0]
        usable = facts.usable_gib if isinstance(facts, _PoolFacts) else 0.0
        pool = facts.pool if isinstance(facts, _PoolFacts) else facts
        return -usable, pool.product

    misses.sort(key=capacity)
    details = "; ".join(
        f"{(f.pool if isinstance(f, _PoolFacts) else f).product}: {miss.text}"
        for f, miss in misses[:4]
    )
    raise _Refusal(misses[0][1].reason, f"{target.model.display_name} does not fit. {details}")


def _refused(reason: str, message: str, spec: NemotronDeploymentSpec) -> PlanStatus:
    return PlanStatus(fits=False, reason=reason, message=message, model=spec.model)


def _suggestions(
    spec: NemotronDeploymentSpec,
    catalog: Catalog,
    inventory: Sequence[GpuPool],
    published: Sequence[_LiveProfile],
    hf_config_text: str | None,
) -> list[str]:
    """What would fit with fewer pins: count, then precision, then product, then profile."""
    relaxations: list[dict[str, Any]] = []
    gpu = spec.gpu
    if spec.profile is not None:
        relaxations.append({"profile": None})
    if gpu.count is not None:
        relaxations.append({"gpu": gpu.model_copy(update={"count": None})})
    if spec.precision != "auto":
        relaxations.append({"precision": "auto", "profile": None})
    if gpu.product is not None:
        relaxations.append({"precision": "auto", "profile": None, "gpu": type(gpu)()})
    found: list[str] = []
    for update in relaxations:
        try:
            relaxed = spec.model_copy(update=update)
            target = _resolve(relaxed, catalog, published, hf_config_text)
            best, _ = _best_choice(relaxed, target, catalog, inventory)
            _cache_size(relaxed, target, best.precision)  # a cache too small refuses it too
        except _Refusal:
            continue
        text = _describe(best.precision, best.tp, best.pp) + f" of {best.facts.pool.product}"
        if text not in found:
            found.append(text)
    return found[:2]


def plan(
    spec: NemotronDeploymentSpec,
    catalog: Catalog,
    inventory: Sequence[GpuPool],
    published_profiles: Sequence[PublishedProfile] | None = None,
    hf_config_text: str | None = None,
) -> PlanStatus:
    """Plan a NemotronDeployment: always a PlanStatus, with fits=False and a reason when the
    spec cannot be served by the inventory. `published_profiles` are the planned tag's profiles
    from the NIM Metadata API (plan once without them to learn the tag); when some say
    precision and parallelism, only those are planned against (and only on the GPUs they name:
    a NIM runs no profile it does not ship), sized by their memory figure where they state one,
    else as without them, and `profile` is the exact id NIM accepts. `hf_config_text` is the text of
    spec.customModel.configMapRef's ConfigMap key (None when it could not be read): the model's
    Hugging Face config.json, which sizes a custom model."""
    published = _live_profiles(published_profiles or ())
    try:
        return _plan(spec, catalog, inventory, published, hf_config_text)
    except _Refusal as refusal:
        message = refusal.message
        suggestions = _suggestions(spec, catalog, inventory, published, hf_config_text)
        if suggestions:
            message += f". Would fit as {' or as '.join(suggestions)}"
        return _refused(refusal.reason, message.rstrip(".") + ".", spec)
