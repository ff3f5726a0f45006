"""The NemotronDeployment API as pydantic models: the single source of truth for the CRD.

Field names are snake_case in Python and camelCase on the wire (aliases); models accept
either. Cross-field rules that the API server enforces at admission live beside the types as
CEL (`x-kubernetes-validations` in each model's json_schema_extra); `crd.py` turns these
models into the CustomResourceDefinition.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict

from nemotron_operator import names

# Kubernetes resource.Quantity, as the API server's own schemas validate it.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# Longer strings are no quantity a person writes; the bound keeps CEL rules cheap.
MAX_QUANTITY_LENGTH = 64
_QUANTITY_SUFFIX_FACTORS = {
    "": 1,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": 10**-9,
    "u": 10**-6,
    "m": 10**-3,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


def quantity_bytes(quantity: int | str) -> float:
    """The value of a Kubernetes quantity (e.g. "150Gi", "2e9", 1024) as a plain number."""
    if isinstance(quantity, int):
        return float(quantity)
    match = re.fullmatch(r"([+-]?[0-9.]+)([eE][+-]?[0-9.]+|[KMGTPE]i|[numkMGTPE])?", quantity)
    if match is None:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity")
    number, suffix = match.group(1), match.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return float(number + suffix)
    return float(number) * _QUANTITY_SUFFIX_FACTORS[suffix]


def _cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    validation: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        validation["fieldPath"] = field_path
    return validation


def _says(pattern: str, message: str) -> JsonDict:
    """The CEL twin of an OpenAPI pattern: the API server reports a failed pattern as a bare
    regular expression; this rule adds, in words, what the value must look like."""
    if "'" in pattern:
        raise ValueError(f"{pattern} cannot be quoted in CEL")
    return {"x-kubernetes-validations": [_cel(f"self.matches(r'{pattern}')", message)]}


_QUANTITY_HINT = (
    "e.g. 200Gi, 64G, 500m or 8 (suffixes Ki, Mi, Gi, Ti or k, M, G, T: "
    "200GB is not a quantity, 200G or 200Gi is)"
)


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and (
        len(value) > MAX_QUANTITY_LENGTH or re.fullmatch(QUANTITY_PATTERN, value) is None
    ):
        raise ValueError(f"{value!r} is not a Kubernetes quantity ({_QUANTITY_HINT})")
    if quantity_bytes(value) < 0:
        raise ValueError(f"{value!r} is negative")
    return value


def _check_positive_quantity(value: int | str) -> int | str:
    if quantity_bytes(_check_quantity(value)) <= 0:
        raise ValueError(f"{value!r} is not a positive quantity")
    return value


def _quantity_schema(rule: str, message: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "maxLength": MAX_QUANTITY_LENGTH,
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [_cel(rule, message)],
        }
    )


# A quantity of a resource (CPU, memory): zero or more.
Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    _quantity_schema(
        "type(self) == int ? self >= 0 : "
        "isQuantity(self) && !quantity(self).isLessThan(quantity('0'))",
        f"must be a non-negative Kubernetes quantity, {_QUANTITY_HINT}",
    ),
]
# A size that must hold something (the model cache).
PositiveQuantity = Annotated[
    int | str,
    AfterValidator(_check_positive_quantity),
    _quantity_schema(
        "type(self) == int ? self > 0 : "
        "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))",
        f"must be a positive Kubernetes quantity, {_QUANTITY_HINT}",
    ),
]

# A free-form Kubernetes object (affinity, valueFrom): kept as given, validated by the API
# server when it reaches the pod.
FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]

Precision = Literal["nvfp4", "fp8", "bf16"]
PrecisionChoice = Literal["auto", "nvfp4", "fp8", "bf16"]

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Catalog model names: a pattern, not an enum, so that a platform team can add models through
# the catalog overrides without a new CRD; the planner refuses unknown names (Planned=False).
MODEL_NAME_PATTERN = r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$"
# An image tag: NIM tags look like 2.0.12, 2.0.4-pb6.0, 2.0.5-variant, 1.10.
IMAGE_TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
# registry[:port]/path, no tag, no digest.
IMAGE_REPOSITORY_PATTERN = r"^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$"
IMAGE_WITH_TAG_PATTERN = (
    r"^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
)
# Profile pins: a 64-hex profile id, or a NIM profile name/description (vllm-fp8-tp2-pp1...).
PROFILE_PATTERN = r"^([0-9a-f]{64}|[a-z0-9][a-z0-9._-]*)$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"

# Label values (gpu.product, nodeSelector values) and label/annotation keys.
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
QUALIFIED_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)

GPU_COUNTS = (1, 2, 4, 8, 16, 32, 64)
MAX_CONTEXT_TOKENS = 4_194_304
MAX_REPLICAS = 1024

# metadata.name names the Service (a DNS-1035 label: a lowercase letter first, no dots) and is a
# label value on every child. A replica spanning nodes runs as a LeaderWorkerSet: StatefulSets
# named <name>-<group index>, whose pods carry controller-revision-hash=<statefulset>-<hash of
# up to 10 characters>, a label value of at most 63 characters. With group indexes up to
# MAX_REPLICAS - 1 that leaves 47 characters for the name.
DEPLOYMENT_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
MAX_DEPLOYMENT_NAME_LENGTH = 63 - len(f"-{MAX_REPLICAS - 1}") - len("-") - 10
DEPLOYMENT_NAME_RULES = [
    _cel(
        f"self.size() <= {MAX_DEPLOYMENT_NAME_LENGTH}",
        f"metadata.name must be at most {MAX_DEPLOYMENT_NAME_LENGTH} characters: it names the "
        "Service and the pods, and a replica that spans nodes runs as StatefulSets whose pod "
        "labels add up to 16 characters to it (63 at most)",
    ),
    _cel(
        f"self.matches(r'{DEPLOYMENT_NAME_PATTERN}')",
        "metadata.name must start with a lowercase letter and hold only lowercase letters, "
        "digits and '-' (no dots): it is also the name of the model's Service",
    ),
]


def check_deployment_name(name: str) -> str:
    """The API server's rules for metadata.name, for files read without it (`plan FILE`)."""
    if len(name) > MAX_DEPLOYMENT_NAME_LENGTH:
        raise ValueError(DEPLOYMENT_NAME_RULES[0]["message"])
    if re.fullmatch(DEPLOYMENT_NAME_PATTERN, name) is None:
        raise ValueError(DEPLOYMENT_NAME_RULES[1]["message"])
    return name


_OBJECT_NAME = "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"


class ApiObject(BaseModel):
    """Base of every API type: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        protected_namespaces=(),
    )


# --- spec -------------------------------------------------------------------------------------


def _no_duplicates(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate values in {values}")
    return values


HAND_TYPED_FACTS = ("parameters", "attentionLayers", "kvHeads", "headDim", "nativeContextLength")
CUSTOM_MODEL_FACTS_MESSAGE = (
    "customModel needs configMapRef (a ConfigMap with the model's Hugging Face config.json) "
    f"or all of {', '.join(HAND_TYPED_FACTS)}"
)


def _object_name(kind: str, example: str) -> Any:
    """The `name` field of a reference to a namespaced object (Secret, ConfigMap)."""
    return Field(
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        json_schema_extra=_says(
            DNS_SUBDOMAIN_PATTERN, f"a {kind} name is {_OBJECT_NAME}, e.g. {example}"
        ),
        description=f"Name of the {kind}.",
    )


def _data_key(kind: str, default: str, description: str) -> Any:
    """The `key` field of a reference to one entry of a Secret's or ConfigMap's data."""
    return Field(
        default=default,
        max_length=253,
        pattern=SECRET_KEY_PATTERN,
        json_schema_extra=_says(
            SECRET_KEY_PATTERN,
            f"a {kind} key holds only letters, digits, '-', '_' and '.', e.g. {default}",
        ),
        description=description,
    )


class ConfigMapKeyRef(ApiObject):
    """A key of a ConfigMap in the NemotronDeployment's namespace."""

    name: str = _object_name("ConfigMap", "llama-70b-config")
    key: str = _data_key(
        "ConfigMap", "config.json", "Key in the ConfigMap that holds the model's config.json."
    )


class CustomModel(ApiObject):
    """Enough facts about a NIM LLM that is not in the catalog for the planner to size it:
    the model's Hugging Face config.json in a ConfigMap (configMapRef), or the facts typed in."""

    image: str = Field(
        pattern=IMAGE_WITH_TAG_PATTERN,
        max_length=512,
        json_schema_extra=_says(
            IMAGE_WITH_TAG_PATTERN,
            "customModel.image must be a repository with a tag (no digest), e.g. "
            "nvcr.io/nim/nvidia/llm-nim:2.1.6",
        ),
        description="NIM image with its tag, e.g. nvcr.io/nim/nvidia/llm-nim:2.1.6 "
        "(never 'latest'; spec.version, when set, replaces the tag).",
    )
    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None,
        description="A ConfigMap holding the model's Hugging Face config.json: the planner "
        "counts parameters and reads layers, heads, widths and context from it, so the facts "
        "below may be left out (given, they replace the config's).",
    )
    parameters: int | None = Field(
        default=None,
        ge=1,
        description="Total parameters the checkpoint holds (all experts, every head): what "
        "must be loaded into GPU memory. Required without configMapRef.",
    )
    active_parameters: int | None = Field(
        default=None,
        ge=1,
        description="Parameters active per token (mixture-of-experts models); defaults to "
        "parameters. Informational: activations are sized from the layers' widths.",
    )
    attention_layers: int | None = Field(
        default=None,
        ge=0,
        le=1024,
        description="Layers with attention, i.e. with a KV cache (Mamba layers hold none). "
        "Required without configMapRef.",
    )
    kv_heads: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Key/value heads per attention layer. Required without configMapRef.",
    )
    head_dim: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Dimension of one attention head. Required without configMapRef.",
    )
    native_context_length: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CONTEXT_TOKENS,
        description="Longest context the model supports, in tokens; the default "
        "maxModelLength. Required without configMapRef.",
    )
    precisions: Annotated[list[Precision], AfterValidator(_no_duplicates)] = Field(
        min_length=1,
        max_length=3,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Precisions the image ships profiles for (nvfp4, fp8, bf16).",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.configMapRef) || ("
                    + " && ".join(f"has(self.{fact})" for fact in HAND_TYPED_FACTS)
                    + ")",
                    CUSTOM_MODEL_FACTS_MESSAGE,
                ),
                _cel(
                    "!has(self.activeParameters) || !has(self.parameters) || "
                    "self.activeParameters <= self.parameters",
                    "customModel.activeParameters cannot exceed customModel.parameters",
                ),
                _cel(
                    "!self.image.endsWith(':latest')",
                    "customModel.image must carry a pinned tag, not 'latest'",
                ),
            ]
        }
    )

    @model_validator(mode="after")
    def _facts_or_config(self) -> CustomModel:
        """The CEL rule above, for files read without the API server (`plan FILE`)."""
        typed = (
            self.parameters,
            self.attention_layers,
            self.kv_heads,
            self.head_dim,
            self.native_context_length,
        )
        if self.config_map_ref is None and None in typed:
            raise ValueError(CUSTOM_MODEL_FACTS_MESSAGE)
        return self


class GpuSelection(ApiObject):
    """Which GPUs a replica runs on."""

    product: str | None = Field(
        default=None,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        json_schema_extra=_says(
            LABEL_VALUE_PATTERN,
            "gpu.product is a value of the nodes' nvidia.com/gpu.product label, e.g. "
            "NVIDIA-H100-80GB-HBM3 (kubectl get nodes -L nvidia.com/gpu.product)",
        ),
        description="Run only on nodes whose nvidia.com/gpu.product label has this value "
        "(e.g. NVIDIA-H100-80GB-HBM3). Omit to let the planner choose.",
    )
    count: int | None = Field(
        default=None,
        ge=1,
        le=max(GPU_COUNTS),
        description="GPUs per replica (tensor parallel within a node x pipeline parallel "
        "across nodes): 1, 2, 4, 8, 16, 32 or 64. Omit to use the fewest GPUs that hold "
        "the model.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    f"!has(self.count) || self.count in {list(GPU_COUNTS)}",
                    "gpu.count must be a power of two from 1 to 64: 1, 2, 4 or 8 GPUs on "
                    "one node, or whole nodes for more",
                    ".count",
                )
            ]
        }
    )


class SecretKeyRef(ApiObject):
    """A key of a Secret in the NemotronDeployment's namespace."""

    name: str = _object_name("Secret", "ngc-api-key")
    key: str = _data_key("Secret", "NGC_API_KEY", "Key in the Secret that holds the NGC API key.")


class Ngc(ApiObject):
    """NVIDIA NGC credentials and connectivity."""

    api_key_secret: SecretKeyRef | None = Field(
        default=None,
        description="Secret holding an NGC API key. Needed for Production Branch (-pbN) tags, "
        "releases before 2.0.10, the generic llm-nim image and gated models; public Feature "
        "Branch images from 2.0.10 on need none. When given it is always used.",
    )
    pull_secrets: list[
        Annotated[
            str,
            Field(
                max_length=253,
                pattern=DNS_SUBDOMAIN_PATTERN,
                json_schema_extra=_says(
                    DNS_SUBDOMAIN_PATTERN,
                    f"a pull secret is the name of a Secret: {_OBJECT_NAME}, e.g. ngc-registry",
                ),
            ),
        ]
    ] = Field(
        default_factory=list,
        max_length=16,
        description="Names of docker-registry Secrets used to pull the image (for "
        "nvcr.io: username $oauthtoken, password the NGC API key).",
    )
    offline: bool = Field(
        default=False,
        description="Air-gapped: never reach NGC. The model cache (cache.existingClaim) must "
        "already hold every file of the profile, and no key is required.",
    )


class Cache(ApiObject):
    """The volume NIM downloads the model into (NIM_CACHE_PATH)."""

    size: PositiveQuantity | None = Field(
        default=None,
        description="Size of the PersistentVolumeClaim the operator creates. Omit to size it "
        "from the model's download size (status.plan.cacheSize).",
    )
    storage_class: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        json_schema_extra=_says(
            DNS_SUBDOMAIN_PATTERN,
            f"a StorageClass name is {_OBJECT_NAME} (kubectl get storageclass)",
        ),
        description="StorageClass of the claim the operator creates; omit for the cluster default.",
    )
    existing_claim: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        json_schema_extra=_says(
            DNS_SUBDOMAIN_PATTERN,
            f"cache.existingClaim is a PersistentVolumeClaim name: {_OBJECT_NAME}",
        ),
        description="Use this existing PersistentVolumeClaim (e.g. one preloaded for an "
        "air-gapped cluster) instead of creating one.",
    )
    keep_on_delete: bool = Field(
        default=False,
        description="Keep the claim the operator created when the NemotronDeployment is deleted.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!(has(self.existingClaim) && has(self.size))",
                    "cache.existingClaim and cache.size are mutually exclusive: an existing "
                    "claim has its own size",
                ),
                _cel(
                    "!(has(self.existingClaim) && has(self.storageClass))",
                    "cache.existingClaim and cache.storageClass are mutually exclusive: an "
                    "existing claim has its own storage class",
                ),
            ]
        }
    )


def _keys_are_qualified_names(field: str) -> JsonDict:
    """A CEL rule for a map whose keys must be label or annotation keys: the API server
    refuses any other key when the operator writes the child object."""
    return {
        "x-kubernetes-validations": [
            _cel(
                f"self.all(k, k.matches(r'{QUALIFIED_NAME_PATTERN}'))",
                f"{field} keys are qualified names: an optional DNS prefix and '/', then at "
                "most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or "
                "digit (e.g. example.com/team)",
            )
        ]
    }


class ServiceSettings(ApiObject):
    """The Service in front of the NIM pods (OpenAI-compatible HTTP)."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Service type."
    )
    port: int = Field(default=8000, ge=1, le=65535, description="Service port.")
    annotations: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict,
        max_length=64,
        json_schema_extra=_keys_are_qualified_names("service.annotations"),
        description="Annotations for the Service (e.g. load-balancer settings).",
    )


class EnvVar(ApiObject):
    """An extra environment variable for the NIM container (e.g. NIM_KVCACHE_PERCENT)."""

    name: str = Field(
        max_length=256,
        pattern=ENV_NAME_PATTERN,
        json_schema_extra=_says(
            ENV_NAME_PATTERN,
            "an env name holds letters, digits, '_', '-' and '.', and does not start with a "
            "digit, e.g. NIM_KVCACHE_PERCENT",
        ),
        description="Variable name.",
    )
    value: str | None = Field(default=None, max_length=32768, description="Literal value.")
    value_from: FreeForm | None = Field(
        default=None,
        description="Source of the value (secretKeyRef, configMapKeyRef, fieldRef, ...), as "
        "in a Pod's env.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!(has(self.value) && self.value != '' && has(self.valueFrom))",
                    "an env variable takes value or valueFrom, not both",
                )
            ]
        }
    )


def _resource_names(field: str) -> JsonDict:
    return {
        "x-kubernetes-validations": [
            _cel(
                "self.all(k, k in ['cpu', 'memory', 'ephemeral-storage'] || "
                "k.startsWith('hugepages-') || k.contains('/'))",
                f"{field} names cpu, memory, ephemeral-storage, hugepages-<size> or an extended "
                "resource with its domain (e.g. example.com/fpga)",
            )
        ]
    }


class ResourceRequirements(ApiObject):
    """CPU and memory for the NIM container; GPUs come from gpu.count."""

    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=16,
        json_schema_extra=_resource_names("resources.limits"),
        description="Resource limits (e.g. memory: 64Gi).",
    )
    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=16,
        json_schema_extra=_resource_names("resources.requests"),
        description="Resource requests (e.g. cpu: 8).",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    f"(!has(self.limits) || !('{names.GPU_RESOURCE}' in self.limits)) && "
                    f"(!has(self.requests) || !('{names.GPU_RESOURCE}' in self.requests))",
                    f"set GPUs with gpu.count, not with {names.GPU_RESOURCE} in resources",
                ),
                _cel(
                    "!has(self.requests) || !has(self.limits) || self.requests.all(k, "
                    "!(k in self.limits) || "
                    "!isQuantity(string(self.requests[k])) || "
                    "!isQuantity(string(self.limits[k])) || "
                    "!quantity(string(self.requests[k]))"
                    ".isGreaterThan(quantity(string(self.limits[k]))))",
                    "a resource request cannot exceed its limit: raise resources.limits or "
                    "lower resources.requests",
                ),
            ]
        }
    )


class Toleration(ApiObject):
    """A toleration, as in a Pod spec (the GPU taint nvidia.com/gpu is tolerated already)."""

    key: str | None = Field(
        default=None,
        max_length=316,
        pattern=QUALIFIED_NAME_PATTERN,
        json_schema_extra=_says(
            QUALIFIED_NAME_PATTERN,
            "a toleration key is a taint key: an optional DNS prefix and '/', then letters, "
            "digits, '-', '_' or '.', e.g. example.com/dedicated",
        ),
        description="Taint key to match; omit (with operator Exists) to tolerate every taint.",
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (default Equal)."
    )
    value: str | None = Field(
        default=None,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        json_schema_extra=_says(
            LABEL_VALUE_PATTERN,
            "a toleration value is a taint value: letters, digits, '-', '_' and '.', starting "
            "and ending with a letter or digit",
        ),
        description="Taint value to match.",
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.operator) || self.operator != 'Exists' || !has(self.value)",
                    "a toleration with operator Exists must not set value",
                ),
                _cel(
                    "has(self.key) || (has(self.operator) && self.operator == 'Exists')",
                    "a toleration without key matches every taint and needs operator Exists",
                ),
                _cel(
                    "!has(self.tolerationSeconds) || "
                    "(has(self.effect) && self.effect == 'NoExecute')",
                    "tolerationSeconds only applies to effect NoExecute",
                ),
            ]
        }
    )


class NemotronDeploymentSpec(ApiObject):
    """What to serve and the constraints on how; the operator plans the rest."""

    model: str = Field(
        max_length=63,
        pattern=MODEL_NAME_PATTERN,
        json_schema_extra=_says(
            MODEL_NAME_PATTERN,
            "model is a catalog name in lowercase letters, digits, '-' and '.', e.g. "
            "nemotron-3-nano (`nemotron-operator catalog` lists them), or custom",
        ),
        description="Catalog model name (nemotron-3-nano, nemotron-3-super, nemotron-3-ultra, "
        "nemotron-3-nano-omni, llama-3.2-nv-embedqa-1b-v2, ...; `nemotron-operator catalog` "
        "lists them) or 'custom' with customModel. Unknown names are refused by the planner "
        "(Planned=False), so a catalog override can add models without a new CRD.",
    )
    custom_model: CustomModel | None = Field(
        default=None,
        description="The model's facts when model is 'custom'; forbidden otherwise.",
    )
    version: str | None = Field(
        default=None,
        max_length=128,
        pattern=IMAGE_TAG_PATTERN,
        json_schema_extra=_says(
            IMAGE_TAG_PATTERN,
            "version is a NIM image tag: letters, digits, '.', '_' and '-', e.g. 2.1.5 or "
            "2.0.4-pb6.0",
        ),
        description="NIM image tag (e.g. 2.1.5, or 2.0.4-pb6.0 for a Production Branch, pulled "
        "from the model's repository with the branch appended: nemotron-3-nano-pb6). Default: "
        "the newest Feature Branch release in the catalog that ships the chosen precision. "
        "Never 'latest'.",
    )
    image: str | None = Field(
        default=None,
        max_length=512,
        pattern=IMAGE_REPOSITORY_PATTERN,
        json_schema_extra=_says(
            IMAGE_REPOSITORY_PATTERN,
            "image is a repository without tag or digest, e.g. "
            "registry.example.com/nim/nvidia/nemotron-3-nano; put the tag in spec.version",
        ),
        description="Image repository override without a tag, for mirrors and air-gapped "
        "registries (e.g. registry.example.com/nim/nvidia/nemotron-3-nano).",
    )
    precision: PrecisionChoice = Field(
        default="auto",
        description="auto: the lowest precision the GPU runs natively and the release ships "
        "(nvfp4 on Blackwell, fp8 on Ada/Hopper, bf16 on Ampere); or pin nvfp4, fp8, bf16.",
    )
    gpu: GpuSelection = Field(
        default_factory=GpuSelection, description="GPU product and count per replica."
    )
    max_model_length: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CONTEXT_TOKENS,
        description="Context, in tokens, that each request must be able to use; sizes the "
        "KV cache. Default: the model's native context (262144 for Nemotron 3), the "
        "length NVIDIA's published memory figures assume.",
    )
    replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS, description="Number of NIM replicas.")
    profile: str | None = Field(
        default=None,
        max_length=256,
        pattern=PROFILE_PATTERN,
        json_schema_extra=_says(
            PROFILE_PATTERN,
            "profile is a 64-hex profile id or a lowercase NIM profile name, e.g. "
            "vllm-fp8-tp2-pp1 (`list-model-profiles` in the NIM image prints them)",
        ),
        description="Explicit NIM profile (64-hex id, exact description, or a name like "
        "vllm-fp8-tp2-pp1); overrides the planner's choice of precision and parallelism.",
    )
    ngc: Ngc = Field(default_factory=Ngc, description="NGC key, pull secrets, offline mode.")
    cache: Cache = Field(default_factory=Cache, description="Model cache volume.")
    service: ServiceSettings = Field(
        default_factory=ServiceSettings, description="Service settings."
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=128,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
        description="Extra environment variables for the NIM container.",
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements,
        description="CPU and memory requests and limits for the NIM container.",
    )
    node_selector: dict[
        str,
        Annotated[
            str,
            Field(
                max_length=63,
                pattern=LABEL_VALUE_PATTERN,
                json_schema_extra=_says(
                    LABEL_VALUE_PATTERN,
                    "a nodeSelector value is a label value: at most 63 letters, digits, '-', "
                    "'_' or '.', starting and ending with a letter or digit",
                ),
            ),
        ],
    ] = Field(
        default_factory=dict,
        max_length=64,
        json_schema_extra=_keys_are_qualified_names("nodeSelector"),
        description="Node labels a node must carry to run the pods; the planner only "
        "considers matching nodes.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=64,
        description="Tolerations for the pods (beyond the GPU taint); the planner only "
        "considers nodes whose taints are tolerated.",
    )
    affinity: FreeForm | None = Field(
        default=None, description="Pod affinity rules, as in a Pod spec."
    )
    priority_class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        json_schema_extra=_says(
            DNS_SUBDOMAIN_PATTERN,
            f"priorityClassName is a PriorityClass name: {_OBJECT_NAME} "
            "(kubectl get priorityclass)",
        ),
        description="PriorityClass of the pods.",
    )
    runtime_class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        json_schema_extra=_says(
            DNS_SUBDOMAIN_PATTERN,
            f"runtimeClassName is a RuntimeClass name: {_OBJECT_NAME} (kubectl get runtimeclass)",
        ),
        description="RuntimeClass of the pods (e.g. nvidia).",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    f"self.model != '{names.CUSTOM_MODEL}' || has(self.customModel)",
                    "customModel is required when model is 'custom'",
                    ".customModel",
                ),
                _cel(
                    f"self.model == '{names.CUSTOM_MODEL}' || !has(self.customModel)",
                    "customModel is only allowed when model is 'custom'; catalog models "
                    "carry their own facts",
                    ".customModel",
                ),
                _cel(
                    "!has(self.version) || self.version != 'latest'",
                    "version must be a pinned tag, not 'latest'; omit it to use the catalog's "
                    "newest Feature Branch release",
                    ".version",
                ),
                _cel(
                    "!has(self.profile) || self.precision == 'auto' || "
                    "self.profile.matches('^[0-9a-f]{64}$') || "
                    "self.profile.contains('-' + self.precision + '-')",
                    "profile names a different precision than spec.precision; drop one pin",
                    ".profile",
                ),
                _cel(
                    "!has(self.env) || "
                    "self.env.all(e, !(e.name in ['NGC_API_KEY', 'NGC_CLI_API_KEY']))",
                    "set the NGC key with ngc.apiKeySecret, not with env",
                    ".env",
                ),
                _cel(
                    "!has(self.ngc) || !has(self.ngc.offline) || !self.ngc.offline || "
                    "(has(self.cache) && has(self.cache.existingClaim))",
                    "ngc.offline needs cache.existingClaim: a preloaded model cache",
                    ".ngc.offline",
                ),
                _cel(
                    "!has(self.maxModelLength) || !has(self.customModel) || "
                    "!has(self.customModel.nativeContextLength) || "
                    "self.maxModelLength <= self.customModel.nativeContextLength",
                    "maxModelLength exceeds customModel.nativeContextLength, the longest "
                    "context the model supports",
                    ".maxModelLength",
                ),
            ]
        }
    )


# --- status -----------------------------------------------------------------------------------


class Condition(ApiObject):
    """A condition, in the shape of metav1.Condition."""

    type: str = Field(max_length=316, description="Condition type, e.g. Ready, Planned.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed from."
    )
    last_transition_time: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When the status last changed (RFC 3339).",
    )
    reason: str = Field(
        max_length=1024,
        min_length=1,
        pattern=CONDITION_REASON_PATTERN,
        description="CamelCase reason for the last transition.",
    )
    message: str = Field(
        default="", max_length=32768, description="Human-readable detail, with numbers."
    )


MemorySource = Literal["published", "estimated"]
ProfileSource = Literal["spec", "metadata", "derived"]


class PlanStatus(ApiObject):
    """What the planner decided, the numbers behind it, and whether it fits."""

    fits: bool = Field(description="True when the cluster's GPUs can hold a replica.")
    reason: str = Field(
        pattern=CONDITION_REASON_PATTERN,
        description="CamelCase outcome: Fits, or why not (e.g. InsufficientGPUMemory).",
    )
    message: str = Field(
        max_length=32768,
        description="One or two sentences with the numbers, and what to change when it does "
        "not fit.",
    )
    model: str | None = Field(default=None, description="Catalog model planned for.")
    image: str | None = Field(default=None, description="Image with its tag.")
    precision: str | None = Field(
        default=None, description="nvfp4, fp8, bf16 (fp16 for embedding and reranking NIMs)."
    )
    tensor_parallel_size: int | None = Field(default=None, description="GPUs per node.")
    pipeline_parallel_size: int | None = Field(
        default=None, description="Pipeline stages (one per node)."
    )
    gpus_per_replica: int | None = Field(
        default=None, description="tensorParallelSize x pipelineParallelSize."
    )
    nodes_per_replica: int | None = Field(
        default=None, description="Nodes one replica spans (pipelineParallelSize)."
    )
    gpu_product: str | None = Field(
        default=None, description="nvidia.com/gpu.product the replicas run on."
    )
    profile: str | None = Field(
        default=None,
        description="NIM profile: the exact id (profileSource metadata), the user's pin "
        "(spec), or the name vllm-<precision>-tp<N>-pp<M> (derived).",
    )
    profile_source: ProfileSource | None = Field(
        default=None,
        description="spec or metadata: pass profile as NIM_MODEL_PROFILE. derived: NIM 2.x "
        "accepts only an exact id or description, so set the parallelism instead.",
    )
    memory_per_gpu_gib: float | None = Field(
        default=None,
        alias="memoryPerGPUGiB",
        description="GPU memory one GPU needs (weights + KV cache for maxModelLength + "
        "runtime overhead), GiB.",
    )
    weights_gib: float | None = Field(
        default=None,
        alias="weightsGiB",
        description="The estimate's parts, per GPU, GiB: the weights at the planned precision "
        "(embeddings, norms, routers and Mamba layers 16-bit) over tensor x pipeline parallel.",
    )
    kv_cache_gib: float | None = Field(
        default=None,
        alias="kvCacheGiB",
        description="KV cache of one sequence of maxModelLength (attention layers only, "
        "sliding-window layers capped at the window) and Mamba state, GiB per GPU.",
    )
    activations_gib: float | None = Field(
        default=None,
        alias="activationsGiB",
        description="Activations for the engine's batch of 8192 tokens, from the layers' "
        "widest projection, GiB per GPU.",
    )
    overhead_gib: float | None = Field(
        default=None,
        alias="overheadGiB",
        description="CUDA context and cuBLAS workspace, CUDA graphs and NCCL buffers, GiB per "
        "GPU. The four parts add up to memoryPerGPUGiB when memorySource is estimated; with "
        "published, NVIDIA's figure is the need and the parts show the estimate beside it.",
    )
    usable_per_gpu_gib: float | None = Field(
        default=None,
        alias="usablePerGPUGiB",
        description="Memory of one GPU the serving engine may use, GiB: 0.9 of CUDA's total "
        "(the nvidia.com/gpu.memory label less 616 MiB the driver keeps).",
    )
    memory_source: MemorySource | None = Field(
        default=None,
        description="published: NVIDIA's minimum per GPU for the profile; estimated: the "
        "operator's formula.",
    )
    key_required: bool | None = Field(
        default=None, description="True when the image cannot start without an NGC key."
    )
    key_required_reason: str | None = Field(
        default=None, description="Why a key is or is not required."
    )
    max_model_length: int | None = Field(
        default=None, description="Context the plan sized the KV cache for, in tokens."
    )
    cache_size: str | None = Field(
        default=None,
        description="Size of the model cache claim (omitted with cache.existingClaim).",
    )


class NemotronDeploymentStatus(ApiObject):
    """Observed state, written by the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status describes."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        description="Planned, CredentialsValid, Progressing, Degraded and the Ready summary.",
    )
    plan: PlanStatus | None = Field(default=None, description="The planner's decision.")
    replicas: int | None = Field(default=None, ge=0, description="Replicas that exist.")
    ready_replicas: int | None = Field(
        default=None, ge=0, description="Replicas whose NIM answers /v1/health/ready."
    )
    selector: str | None = Field(
        default=None, description="Label selector of the pods (for the scale subresource)."
    )
    endpoint: str | None = Field(
        default=None, description="In-cluster URL of the OpenAI-compatible API."
    )


class NemotronDeployment(ApiObject):
    """A Nemotron model served by NVIDIA NIM pods, sized to the cluster's GPUs."""

    api_version: str = Field(default=names.API_VERSION, description="nemotron.dev/v1alpha1")
    kind: str = Field(default=names.KIND, description="NemotronDeployment")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Object metadata.")
    spec: NemotronDeploymentSpec = Field(description="Desired state.")
    status: NemotronDeploymentStatus | None = Field(default=None, description="Observed state.")

    @model_validator(mode="after")
    def _is_a_nemotron_deployment(self) -> NemotronDeployment:
        if (self.api_version, self.kind) != (names.API_VERSION, names.KIND):
            raise ValueError(
                f"expected apiVersion {names.API_VERSION} and kind {names.KIND}, "
                f"got {self.api_version} {self.kind}"
            )
        name = self.metadata.get("name")
        if isinstance(name, str):
            check_deployment_name(name)
        return self
