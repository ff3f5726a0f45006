"""The model and GPU catalog: data files, their loader, overrides, and the NGC key rules.

The facts live in catalog_data/models.yaml and catalog_data/gpus.yaml (shipped in the
package). A platform team adds or changes models, releases and GPUs without a new build by
pointing NEMOTRON_CATALOG_OVERRIDES (or `--catalog-overrides`) at a YAML file of the same shape:

    models:
      nemotron-3-super:              # existing model: given fields replace the catalog's,
        releases:                    # releases merge by tag (a known tag is replaced)
          - {tag: "2.1.6", precisions: [bf16, fp8, nvfp4]}
      my-finetune:                   # new model: every required field
        kind: llm
        image: registry.example.com/nim/acme/my-finetune
        ...
    gpus:
      NVIDIA-H20:                    # new or changed GPU
        memoryMiB: 98304
        computeCapability: "9.0"
        nativePrecisions: [fp16, bf16, fp8]

Errors name the file and the field. The Helm chart mounts a ConfigMap at that path.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

Precision = Literal["nvfp4", "fp8", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
ModelKind = Literal["llm", "embedding", "reranking", "guardrail"]
Channel = Literal["fb", "pb", "variant"]

# Kinds served by the NIM for LLMs: sized by weights + KV cache, tensor parallel over GPUs.
GENERATIVE_KINDS: frozenset[str] = frozenset({"llm", "guardrail"})
# The model-free NIM image that serves any supported checkpoint: always needs a key.
GENERIC_LLM_NIM_REPOSITORY_NAME = "llm-nim"

# 2.1.6 (Feature Branch), 2.0.4-pb6.0 (Production Branch 6), 2.0.5-variant (Day-0), 1.10
_TAG_SHAPE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:-(pb\d+(?:\.\d+)?|variant))?$")


class CatalogError(ValueError):
    """A catalog or overrides file is missing or invalid; the message names file and field."""


class _Fact(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Tag(NamedTuple):
    """A NIM image tag split into its parts: 2.0.4-pb6.0 -> (2, 0, 4), channel pb, branch pb6."""

    version: tuple[int, int, int]
    channel: Channel
    branch: str | None = None  # the Production Branch: pb6 for 2.0.4-pb6.0


@functools.lru_cache(maxsize=4096)
def parse_tag(tag: str) -> Tag | None:
    """The version and channel of a NIM tag, or None when the tag has another shape."""
    match = _TAG_SHAPE.match(tag)
    if match is None:
        return None
    major, minor, patch, suffix = match.groups()
    version = (int(major), int(minor), int(patch or 0))
    if suffix == "variant":
        return Tag(version, "variant")
    if suffix is not None:
        return Tag(version, "pb", suffix.split(".")[0])
    return Tag(version, "fb")


class Release(_Fact):
    tag: str = Field(min_length=1)
    precisions: tuple[Precision, ...] = Field(min_length=1)

    @property
    def parsed(self) -> Tag | None:
        return parse_tag(self.tag)


class Architecture(_Fact):
    """What sizes a model in GPU memory. The first fields are enough for a rough estimate; the
    layer widths and kinds after them (a model's config.json) make the estimate physical: which
    weights stay 16-bit, how much KV cache and state a sequence holds, how wide activations are.
    A width left out is estimated from the parameters (see `hidden_width`)."""

    parameters: int = Field(ge=1)
    active_parameters: int = Field(ge=1)
    attention_layers: int = Field(ge=0)  # layers with a KV cache, full or sliding-window
    kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    native_context_length: int = Field(ge=1)
    max_context_length: int | None = Field(default=None, ge=1)
    # Widths and layer kinds, from config.json
    hidden_size: int | None = Field(default=None, ge=1)
    attention_heads: int | None = Field(default=None, ge=1)
    vocab_size: int | None = Field(default=None, ge=1)
    tie_word_embeddings: bool = False
    mlp_layers: int | None = Field(default=None, ge=0)  # dense MLP layers (None: one per layer)
    intermediate_size: int | None = Field(default=None, ge=1)  # of the dense MLP
    widest_intermediate_size: int | None = Field(default=None, ge=1)  # when layers differ (NAS)
    gated_mlp: bool = True  # gate and up projections (SwiGLU); False: one up projection (relu2)
    # Mixture of experts: routed experts (and shared experts, all together) per MoE layer
    moe_layers: int = Field(default=0, ge=0)
    experts: int = Field(default=0, ge=0)
    experts_per_token: int = Field(default=0, ge=0)
    moe_intermediate_size: int = Field(default=0, ge=0)
    shared_expert_intermediate_size: int = Field(default=0, ge=0)
    moe_latent_size: int | None = Field(default=None, ge=1)  # latent MoE (Nemotron 3 Super)
    # Mamba-2 layers (hybrid models): a fixed-size state per sequence instead of a KV cache
    mamba_layers: int = Field(default=0, ge=0)
    mamba_heads: int = Field(default=0, ge=0)
    mamba_head_dim: int = Field(default=0, ge=0)
    ssm_state_size: int = Field(default=0, ge=0)
    mamba_groups: int = Field(default=0, ge=0)
    conv_kernel: int = Field(default=4, ge=1)
    # Multi-head latent attention (DeepSeek V2/V3): the KV cache holds the compressed latent
    kv_lora_rank: int | None = Field(default=None, ge=1)
    q_lora_rank: int | None = Field(default=None, ge=1)
    qk_rope_head_dim: int | None = Field(default=None, ge=0)
    qk_nope_head_dim: int | None = Field(default=None, ge=0)
    v_head_dim: int | None = Field(default=None, ge=1)
    # Sliding-window attention: that many of the attention layers keep the last window tokens
    sliding_window: int | None = Field(default=None, ge=1)
    sliding_window_layers: int = Field(default=0, ge=0)

    @property
    def context_limit(self) -> int:
        return self.max_context_length or self.native_context_length

    @property
    def layers(self) -> int:
        """Decoder layers: attention and Mamba layers, plus MLP and MoE layers that stand alone
        (hybrid models count each block as a layer; a transformer layer holds attention and
        its MLP)."""
        if self.mamba_layers:
            return (
                self.attention_layers + self.mamba_layers + self.dense_mlp_layers + self.moe_layers
            )
        return max(self.attention_layers, 1)

    @property
    def dense_mlp_layers(self) -> int:
        if self.mlp_layers is not None:
            return self.mlp_layers
        return 0 if self.mamba_layers else max(self.attention_layers - self.moe_layers, 0)

    @property
    def hidden_width(self) -> int:
        """hidden_size, or for a model without one the width of a dense transformer of its
        parameters and layers (12 x layers x hidden^2 parameters)."""
        if self.hidden_size is not None:
            return self.hidden_size
        return max(int((self.parameters / (12 * self.layers)) ** 0.5), 1)

    @property
    def mla(self) -> bool:
        return self.kv_lora_rank is not None


class ParameterCounts(NamedTuple):
    """Parameters of a model by part, counted from its Architecture's widths."""

    embeddings: int
    lm_head: int  # 0 when tied to the embeddings
    attention: int
    dense_mlp: int
    routed_experts: int
    shared_experts: int  # and a latent MoE's projections into and out of the latent width
    routers: int
    mamba: int
    norms: int

    @property
    def total(self) -> int:
        return sum(self)

    def active(self, arch: Architecture) -> int:
        """Parameters one token runs through: the routed experts it is sent to, not all."""
        unused = self.routed_experts * (1 - arch.experts_per_token / max(arch.experts, 1))
        return round(self.total - unused)


def _attention_parameters(arch: Architecture, hidden: int) -> int:
    heads = arch.attention_heads or max(hidden // arch.head_dim, 1)
    if arch.kv_lora_rank is not None:
        rope, nope = arch.qk_rope_head_dim or 0, arch.qk_nope_head_dim or arch.head_dim
        value = arch.v_head_dim or arch.head_dim
        query = heads * (nope + rope)
        q_proj = (
            hidden * arch.q_lora_rank + arch.q_lora_rank + arch.q_lora_rank * query
            if arch.q_lora_rank
            else hidden * query
        )
        kv_down = hidden * (arch.kv_lora_rank + rope) + arch.kv_lora_rank
        kv_up = arch.kv_lora_rank * heads * (nope + value)
        return q_proj + kv_down + kv_up + heads * value * hidden
    query, key_value = heads * arch.head_dim, arch.kv_heads * arch.head_dim
    return hidden * (query + 2 * key_value) + query * hidden


def _mamba_parameters(arch: Architecture, hidden: int) -> int:
    inner = arch.mamba_heads * arch.mamba_head_dim
    conv = inner + 2 * arch.mamba_groups * arch.ssm_state_size
    in_proj = hidden * (inner + conv + arch.mamba_heads)
    return in_proj + conv * (arch.conv_kernel + 1) + 3 * arch.mamba_heads + inner + inner * hidden


def parameter_counts(arch: Architecture) -> ParameterCounts:
    """The parameters an Architecture's widths imply, by part (biases other than the Mamba
    convolution's left out: they are a few in a million)."""
    hidden = arch.hidden_width
    vocab = arch.vocab_size or 0
    matrices = 3 if arch.gated_mlp else 2
    expert_width = arch.moe_latent_size or hidden
    latent = 2 * hidden * arch.moe_latent_size if arch.moe_latent_size else 0
    per_moe_layer_shared = matrices * hidden * arch.shared_expert_intermediate_size + latent
    return ParameterCounts(
        embeddings=vocab * hidden,
        lm_head=0 if arch.tie_word_embeddings else vocab * hidden,
        attention=arch.attention_layers * _attention_parameters(arch, hidden),
        dense_mlp=arch.dense_mlp_layers * matrices * hidden * (arch.intermediate_size or 0),
        routed_experts=arch.moe_layers
        * arch.experts
        * matrices
        * expert_width
        * arch.moe_intermediate_size,
        shared_experts=arch.moe_layers * per_moe_layer_shared,
        routers=arch.moe_layers * arch.experts * hidden,
        mamba=arch.mamba_layers * _mamba_parameters(arch, hidden),
        norms=(2 * arch.layers + 1) * hidden,
    )


class ModelEntry(_Fact):
    display_name: str
    kind: ModelKind
    image: str = Field(min_length=1)
    keyless_from: str | None = None
    gated: bool = False
    architecture: Architecture
    default_max_model_length: int | None = Field(default=None, ge=1)
    releases: tuple[Release, ...] = Field(min_length=1)
    download_gib: dict[str, float] = Field(default_factory=dict, alias="downloadGiB")
    published_memory_gib: dict[str, dict[int, float]] = Field(
        default_factory=dict, alias="publishedMemoryGiB"
    )

    @field_validator("keyless_from")
    @classmethod
    def _keyless_from_is_a_release(cls, value: str | None) -> str | None:
        if value is not None and parse_tag(value) is None:
            raise ValueError(f"{value!r} is not a release number like 2.0.10")
        return value

    @field_validator("download_gib", "published_memory_gib")
    @classmethod
    def _keyed_by_precision(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - set(PRECISIONS)
        if unknown:
            raise ValueError(f"unknown precisions {sorted(unknown)}; known: {list(PRECISIONS)}")
        return value

    @property
    def generative(self) -> bool:
        return self.kind in GENERATIVE_KINDS

    def release(self, tag: str) -> Release | None:
        return next((release for release in self.releases if release.tag == tag), None)

    def repository_for(self, tag: str) -> str:
        """The image repository that publishes `tag`. Production Branch releases have one of
        their own, the model's with the branch appended: nemotron-3-nano-pb6:2.0.4-pb6.0
        (NVIDIA's PB6 support matrix publishes every PB NIM that way)."""
        parsed = parse_tag(tag)
        if parsed is not None and parsed.branch and not self.image.endswith(f"-{parsed.branch}"):
            return f"{self.image}-{parsed.branch}"
        return self.image

    def newest_release(self, precision: str | None = None) -> Release:
        """Newest Feature Branch release (shipping `precision` when given); other channels
        only when the model has no Feature Branch release."""
        shipping = [r for r in self.releases if precision is None or precision in r.precisions]
        feature_branch = [r for r in shipping if r.parsed is not None and r.parsed.channel == "fb"]
        candidates = feature_branch or shipping or list(self.releases)
        return max(candidates, key=lambda r: r.parsed.version if r.parsed else (-1, -1, -1))

    def default_precisions(self) -> tuple[str, ...]:
        """Precisions some default-eligible release ships (what `precision: auto` picks from)."""
        feature_branch = [r for r in self.releases if r.parsed and r.parsed.channel == "fb"]
        shipped = {p for r in feature_branch or self.releases for p in r.precisions}
        return tuple(sorted(shipped))


class GpuEntry(_Fact):
    memory_mib: int = Field(ge=1, alias="memoryMiB")
    compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    native_precisions: tuple[Precision, ...] = Field(min_length=1)
    weight_only_precisions: tuple[Precision, ...] = ()
    # the node's GPUs talk over NVLink through NVSwitch (HGX, DGX, NVL racks); False: over PCIe
    nvlink_switch: bool = True

    @property
    def compute_capability_tuple(self) -> tuple[int, int]:
        major, minor = self.compute_capability.split(".")
        return int(major), int(minor)


class Catalog(_Fact):
    models: dict[str, ModelEntry]
    gpus: dict[str, GpuEntry]

    def gpu(self, product: str) -> GpuEntry | None:
        """The catalog entry of a gpu.product label, with or without the NVIDIA- prefix."""
        return self.gpus.get(product) or self.gpus.get(f"NVIDIA-{product}")


def precisions_for_compute_capability(
    compute_capability: tuple[int, int],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(native, weight-only) precisions of a GPU the catalog does not list."""
    native = ["fp16"] if compute_capability >= (7, 0) else []
    if compute_capability >= (8, 0):
        native.append("bf16")
    if compute_capability >= (8, 9):
        native.append("fp8")
    if compute_capability >= (10, 0):
        native.append("nvfp4")
    weight_only = ("nvfp4",) if (9, 0) <= compute_capability < (10, 0) else ()
    return tuple(native), weight_only


# --- NGC key rules (issue 8) ------------------------------------------------------------------


class KeyRequirement(NamedTuple):
    required: bool
    why: str


def key_requirement(model: ModelEntry, tag: str) -> KeyRequirement:
    """Whether the NIM image of `model` at `tag` needs an NGC key to pull and download weights.

    Public Feature Branch images from the model's keylessFrom release (2.0.10 for NIM LLM 2.x)
    need none; Production Branch (-pbN) and Day-0 (-variant) tags, older releases, the generic
    llm-nim image, gated models and tags of unknown shape do.
    """
    repository = model.image.rsplit("/", 1)[-1]
    if model.gated:
        return KeyRequirement(True, f"{model.display_name} is gated: NGC entitlement is needed")
    if repository == GENERIC_LLM_NIM_REPOSITORY_NAME:
        return KeyRequirement(True, "the generic llm-nim image always needs an NGC key")
    parsed = parse_tag(tag)
    if parsed is None:
        return KeyRequirement(True, f"tag {tag} is not a known NIM release shape")
    if parsed.channel == "pb":
        return KeyRequirement(True, f"{tag} is a Production Branch (-pbN) tag")
    if parsed.channel == "variant":
        return KeyRequirement(
            True, f"{tag} is a Day-0 -variant tag; only public Feature Branch tags are keyless"
        )
    if model.keyless_from is None:
        return KeyRequirement(True, f"no keyless release of {model.display_name} is known")
    keyless = parse_tag(model.keyless_from)
    if keyless is None or parsed.version < keyless.version:
        return KeyRequirement(
            True, f"release {tag} is older than {model.keyless_from}, the first keyless release"
        )
    return KeyRequirement(
        False,
        f"public Feature Branch release {tag} (from {model.keyless_from} on) needs no NGC key",
    )


# --- loading ----------------------------------------------------------------------------------


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CatalogError(f"{source}: not valid YAML: {' '.join(str(error).split())}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise CatalogError(f"{source}: expected a mapping with models: and/or gpus:")
    unknown = set(document) - {"models", "gpus"}
    if unknown:
        raise CatalogError(f"{source}: unknown top-level keys {sorted(unknown)}")
    for section in ("models", "gpus"):
        entries = document.get(section) or {}
        if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
            raise CatalogError(f"{source}: {section} must map names to mappings")
    return document


def _merge_entry(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**base, **override}
    if "releases" in base and "releases" in override:
        by_tag = {release.get("tag"): release for release in base["releases"]}
        by_tag.update({release.get("tag"): release for release in override["releases"]})
        merged["releases"] = list(by_tag.values())
    return merged


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for section in ("models", "gpus"):
        entries = dict(base.get(section) or {})
        for name, entry in (override.get(section) or {}).items():
            entries[name] = _merge_entry(entries.get(name, {}), entry)
        result[section] = entries
    return result


def _validate(document: dict[str, Any], source: str) -> Catalog:
    try:
        return Catalog.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        raise CatalogError(f"{source}: {where}: {first['msg']}{more}") from None


def parse_catalog(
    models_yaml: str,
    gpus_yaml: str,
    overrides_yaml: str | None = None,
    overrides_source: str = "catalog overrides",
) -> Catalog:
    """The catalog from YAML texts; overrides merged on top (see the module doc)."""
    base = _merged(_read_yaml(models_yaml, "models.yaml"), _read_yaml(gpus_yaml, "gpus.yaml"))
    catalog = _validate(base, "built-in catalog")
    if overrides_yaml is None:
        return catalog
    override = _read_yaml(overrides_yaml, overrides_source)
    return _validate(_merged(base, override), overrides_source)


def load_catalog(overrides_path: str | os.PathLike[str] | None = None) -> Catalog:
    """The built-in catalog plus the overrides file at `overrides_path`, when given. Raises
    CatalogError naming the file and field."""
    data = resources.files("nemotron_operator.core") / "catalog_data"
    models_yaml = (data / "models.yaml").read_text(encoding="utf-8")
    gpus_yaml = (data / "gpus.yaml").read_text(encoding="utf-8")
    path = overrides_path or None
    if path is None:
        return parse_catalog(models_yaml, gpus_yaml)
    try:
        overrides_yaml = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CatalogError(f"{path}: cannot read catalog overrides: {error.strerror}") from None
    return parse_catalog(models_yaml, gpus_yaml, overrides_yaml, str(path))
