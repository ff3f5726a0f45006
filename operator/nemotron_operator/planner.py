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
* Memory per GPU: NVIDIA's published minimum when known (memorySource=published: the live
  Metadata API's profiles when given, else the catalog's table), adjusted for maxModelLength
  by the KV-cache difference; otherwise the estimate (memorySource=estimated)
      weights/(TP*PP) + KV(maxModelLength)/(TP*PP)
      + 1 GiB + 1.25 GiB per doubling of TP + 0.3 GiB per billion active parameters/(TP*PP)
  with weights = parameters x (bf16 2, fp8 1.03, nvfp4 0.63 bytes: scales and the layers kept
  in 16 bits included). Calibrated against NVIDIA's published table for Nano and Super: every
  figure within 1.1 GiB, and the same GPU count on every catalog GPU.
* Among GPU products that fit: fewest GPUs per replica, then the least GPU memory per replica
  (keeps big GPUs for big models), then the lower precision, then the product name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from nemotron_operator import names
from nemotron_operator.api import CustomModel, NemotronDeploymentSpec, PlanStatus, quantity_bytes
from nemotron_operator.catalog import (
    Architecture,
    Catalog,
    KeyRequirement,
    ModelEntry,
    Release,
    key_requirement,
    precisions_for_compute_capability,
)
from nemotron_operator.inventory import GpuPool, restrict_pools

Reason = names.PlanReason

GIB = 2**30
MIB = 2**20
USABLE_FRACTION = 0.9
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
PIPELINE_PARALLEL_SIZES = (2, 4, 8)
PRECISION_PREFERENCE = ("nvfp4", "fp8", "bf16", "fp16")  # lowest first, as NIM prefers
BYTES_PER_PARAMETER = {"nvfp4": 0.63, "fp8": 1.03, "bf16": 2.0, "fp16": 2.0}
KV_BYTES_PER_ELEMENT = 2
OVERHEAD_GIB = 1.0
OVERHEAD_PER_TP_DOUBLING_GIB = 1.25
ACTIVATION_GIB_PER_ACTIVE_BILLION = 0.3
CACHE_HEADROOM = 1.2
CACHE_STEP_GIB = 10

_PROFILE_NAME = re.compile(r"(?:vllm|sglang)-(nvfp4|fp8|bf16)-tp(\d+)-pp(\d+)")


# --- memory -----------------------------------------------------------------------------------


def kv_cache_gib(arch: Architecture, tokens: int) -> float:
    """KV cache of one sequence of `tokens` tokens: only attention layers hold one."""
    per_token = 2 * arch.attention_layers * arch.kv_heads * arch.head_dim * KV_BYTES_PER_ELEMENT
    return per_token * tokens / GIB


def weights_gib(arch: Architecture, precision: str) -> float:
    return arch.parameters * BYTES_PER_PARAMETER[precision] / GIB


def estimated_memory_per_gpu_gib(
    arch: Architecture, precision: str, max_model_length: int, tp: int, pp: int = 1
) -> float:
    """The operator's estimate of GPU memory per GPU (see the module doc for the calibration)."""
    gpus = tp * pp
    sharded = weights_gib(arch, precision) + kv_cache_gib(arch, max_model_length)
    overhead = (
        OVERHEAD_GIB
        + OVERHEAD_PER_TP_DOUBLING_GIB * math.log2(tp)
        + ACTIVATION_GIB_PER_ACTIVE_BILLION * arch.active_parameters / 1e9 / gpus
    )
    return sharded / gpus + overhead


def usable_gib(memory_mib: int) -> float:
    """Memory of one GPU the serving engine may use, GiB (labels report MiB)."""
    return memory_mib * MIB * USABLE_FRACTION / GIB


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
    """A published profile the planner can use: precision, parallelism and memory known."""

    profile_id: str
    description: str
    precision: str
    tp: int
    pp: int
    min_gib: float  # NVIDIA's "GB" per GPU, binary GiB like the manifests' figures
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
        if not p.min_memory_per_gpu_gb:
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
    tag: str | None  # None: the newest release shipping the chosen precision
    repository: str | None  # as the spec names it; None: the catalog's for the tag
    max_model_length: int | None  # None for embedding and reranking NIMs
    precisions: tuple[str, ...]  # to try, lowest first
    precision_pinned: bool
    count: int | None
    tp: int | None  # from a profile pin
    pp: int | None
    profile_pin: str | None
    published: tuple[_LiveProfile, ...]
    notes: tuple[str, ...]


class _Refusal(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _need(target: _Target, product: str, precision: str, tp: int, pp: int) -> _Need | None:
    """Memory per GPU for a layout; None when the live profiles do not offer it."""
    model, length = target.model, target.max_model_length or 0
    arch = model.architecture
    kv_change = (kv_cache_gib(arch, length) - kv_cache_gib(arch, arch.native_context_length)) / tp
    # A pinned id or exact description goes to NIM as given; a bare name such as
    # vllm-fp8-tp2-pp1 is not accepted by NIM 2.x, so it only fixes the layout (derived).
    pin = target.profile_pin
    exact_pin = pin is not None and _PROFILE_NAME.fullmatch(pin) is None
    pinned = (pin, "spec") if pin is not None and exact_pin else None
    if target.published:
        offered = [
            p
            for p in target.published
            if (p.precision, p.tp, p.pp) == (precision, tp, pp) and p.runs_on(product)
        ]
        if not offered:
            return None
        best = min(offered, key=lambda p: (p.min_gib, p.profile_id))
        named_by_pin = [p for p in offered if pin in (p.profile_id, p.description)]
        best = named_by_pin[0] if named_by_pin else best
        profile, source = (pin, "spec") if named_by_pin else (best.profile_id, "metadata")
        return _Need(best.min_gib + kv_change, "published", profile, source)
    if not model.generative:
        estimate = estimated_memory_per_gpu_gib(arch, precision, 0, tp, pp)
        return _Need(estimate, "estimated", *(pinned or (None, None)))
    named = derived_profile_name(precision, tp, pp)
    published = model.published_memory_gib.get(precision, {}).get(tp) if pp == 1 else None
    profile, source = pinned or (named, "derived")
    if published is not None:
        return _Need(published + kv_change, "published", profile, source)
    estimate = estimated_memory_per_gpu_gib(arch, precision, length, tp, pp)
    return _Need(estimate, "estimated", profile, source)


# --- resolving the spec -----------------------------------------------------------------------


def _custom_model(custom: CustomModel) -> tuple[ModelEntry, str]:
    repository, tag = custom.image.rsplit(":", 1)
    model = ModelEntry(
        display_name=f"custom model {repository}",
        kind="llm",
        image=repository,
        keyless_from=None,  # whether a custom image is public cannot be known: ask for a key
        architecture=Architecture(
            parameters=custom.parameters,
            active_parameters=custom.active_parameters or custom.parameters,
            attention_layers=custom.attention_layers,
            kv_heads=custom.kv_heads,
            head_dim=custom.head_dim,
            native_context_length=custom.native_context_length,
        ),
        default_max_model_length=custom.native_context_length,
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
) -> _Target:
    notes: list[str] = []
    tag: str | None
    if spec.custom_model is not None:  # model: custom (the API's rules say so)
        model, image_tag = _custom_model(spec.custom_model)
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
        tag=tag,
        repository=spec.image or (model.image if spec.model == names.CUSTOM_MODEL else None),
        max_model_length=length,
        precisions=(pinned,) if pinned else ordered,
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
    return _PoolFacts(pool, memory_mib, usable_gib(memory_mib), native, weight_only)


def _layouts(target: _Target, gpus_per_node: int) -> list[tuple[int, int]]:
    """(TP, PP) layouts to try, fewest GPUs first."""
    if not target.model.generative:
        return [(1, 1)] if target.count in (None, 1) else []
    if target.tp is not None:
        return [(target.tp, target.pp or 1)]
    widest = max(tp for tp in TENSOR_PARALLEL_SIZES if tp <= max(gpus_per_node, 1))
    layouts = [(tp, 1) for tp in TENSOR_PARALLEL_SIZES if tp <= gpus_per_node]
    layouts += [(widest, pp) for pp in PIPELINE_PARALLEL_SIZES]
    if target.count is not None:
        layouts = [(tp, pp) for tp, pp in layouts if tp * pp == target.count]
    return layouts


def _describe(precision: str, tp: int, pp: int) -> str:
    nodes = f" over {pp} nodes (TP{tp} x PP{pp})" if pp > 1 else ""
    return f"{precision} on {tp * pp} GPU{'s' if tp * pp > 1 else ''}{nodes}"


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
    misses: list[_Miss] = []
    for precision in precisions:
        for tp, pp in layouts:
            need = _need(target, pool.base_product, precision, tp, pp)
            if need is None:
                continue
            layout = _describe(precision, tp, pp)
            if tp > pool.gpus_per_node:
                misses.append(
                    _Miss(
                        Reason.NOT_ENOUGH_GPUS_PER_NODE,
                        f"{layout} needs {tp} GPUs on one node; nodes have {pool.gpus_per_node}",
                    )
                )
            elif need.gib > facts.usable_gib:
                misses.append(
                    _Miss(
                        Reason.INSUFFICIENT_GPU_MEMORY,
                        f"{layout} needs {need.gib:.1f} GiB per GPU, {facts.usable_gib:.1f} "
                        f"GiB usable ({facts.memory_mib} MiB x {USABLE_FRACTION})",
                    )
                )
            elif pp > pool.node_count:
                misses.append(
                    _Miss(
                        Reason.NOT_ENOUGH_NODES,
                        f"{layout} needs {pp} nodes of {pool.gpus_per_node} GPUs; "
                        f"{pool.node_count} match",
                    )
                )
                break  # wider layouts need even more nodes
            else:
                return _Choice(facts, precision, tp, pp, need)
        if misses:
            return misses[-1]  # the lowest precision's last attempt says the most
    return _Miss(
        Reason.PROFILE_UNRESOLVABLE,
        f"no published profile of {target.tag} runs {' or '.join(precisions)}",
    )


# --- the plan ---------------------------------------------------------------------------------


def _key(spec: NemotronDeploymentSpec, model: ModelEntry, tag: str) -> KeyRequirement:
    if spec.ngc.offline:
        return KeyRequirement(False, "ngc.offline: the preloaded cache is used, NGC is not")
    if spec.cache.existing_claim is not None:
        return KeyRequirement(False, "cache.existingClaim: the NIM loads the preloaded cache")
    return key_requirement(model, tag)


def download_gib(model: ModelEntry, precision: str) -> float:
    """The model files NIM downloads: the catalog's size, else the weights at `precision`."""
    return model.download_gib.get(precision) or weights_gib(model.architecture, precision)


def _cache_size(spec: NemotronDeploymentSpec, model: ModelEntry, precision: str) -> str | None:
    download = download_gib(model, precision)
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


def _fitting_plan(
    spec: NemotronDeploymentSpec, target: _Target, choice: _Choice, fitting_products: int
) -> PlanStatus:
    model, precision, need = target.model, choice.precision, choice.need
    tag = target.tag or model.newest_release(precision).tag
    key = _key(spec, model, tag)
    cache_size = _cache_size(spec, model, precision)
    product = choice.facts.pool.product
    parallel = f"TP{choice.tp}" + (f" x PP{choice.pp}" if choice.pp > 1 else "")
    summary = (
        f"{model.display_name} {precision} on {choice.gpus} x {product} ({parallel}): "
        f"{need.gib:.1f} GiB per GPU ({need.source}) of {choice.facts.usable_gib:.1f} GiB usable"
    )
    notes = [*_notes(spec, choice, fitting_products), *target.notes]
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
        profile_source=need.profile_source,  # type: ignore[arg-type]
        memory_per_gpu_gib=round(need.gib, 1),
        usable_per_gpu_gib=round(choice.facts.usable_gib, 1),
        memory_source=need.source,  # type: ignore[arg-type]
        key_required=key.required,
        key_required_reason=key.why,
        max_model_length=target.max_model_length,
        cache_size=cache_size,
        download_gib=round(download_gib(model, precision), 1),
    )


def _candidate_pools(spec: NemotronDeploymentSpec, target: _Target, inventory: Sequence[GpuPool]):
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
) -> PlanStatus:
    target = _resolve(spec, catalog, published)
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
        best = min(choices, key=_Choice.rank)
        products = len({choice.facts.pool.product for choice in choices})
        return _fitting_plan(spec, target, best, products)

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
) -> list[str]:
    """What would fit with fewer pins: count, then precision, then product, then profile."""
    relaxations: list[dict] = []
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
            alternative = _plan(spec.model_copy(update=update), catalog, inventory, published)
        except _Refusal:
            continue
        assert alternative.tensor_parallel_size and alternative.pipeline_parallel_size
        text = (
            _describe(
                str(alternative.precision),
                alternative.tensor_parallel_size,
                alternative.pipeline_parallel_size,
            )
            + f" of {alternative.gpu_product}"
        )
        if text not in found:
            found.append(text)
    return found[:2]


def plan(
    spec: NemotronDeploymentSpec,
    catalog: Catalog,
    inventory: Sequence[GpuPool],
    published_profiles: Sequence[PublishedProfile] | None = None,
) -> PlanStatus:
    """Plan a NemotronDeployment: always a PlanStatus, with fits=False and a reason when the
    spec cannot be served by the inventory. `published_profiles` are the planned tag's profiles
    from the NIM Metadata API (plan once without them to learn the tag); when some say
    precision, parallelism and memory, only those are planned against (and only on the GPUs
    they name) and `profile` is the exact id NIM accepts."""
    published = _live_profiles(published_profiles or ())
    try:
        return _plan(spec, catalog, inventory, published)
    except _Refusal as refusal:
        message = refusal.message
        suggestions = _suggestions(spec, catalog, inventory, published)
        if suggestions:
            message += f". Would fit as {' or as '.join(suggestions)}"
        return _refused(refusal.reason, message.rstrip(".") + ".", spec)
