"""The NemotronDeployment API as pydantic models: the single source of truth for the CRD.

Field names are snake_case in Python and camelCase on the wire (aliases); models accept
either. The rules the API server enforces at admission are declared once, beside the types
they guard, each with its CEL and its Python form (`rules.Rule`: a model's `rules`, or
Annotated metadata on a field's type): `crd.py` turns the models into the
CustomResourceDefinition with the CEL as x-kubernetes-validations, and pydantic runs the Python
forms, so validating a spec here refuses what the API server refuses, on the same field with the
same message.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Self

from kubernetes.utils.quantity import parse_quantity
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue

from nemotron_operator.api import names
from nemotron_operator.api.rules import ListType, Rule, enforce, says

# Kubernetes resource.Quantity, as the API server's own schemas validate it.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# Longer strings are no quantity a person writes; the bound keeps CEL rules cheap.
MAX_QUANTITY_LENGTH = 64


def quantity_bytes(quantity: int | str) -> float:
    """The value of a Kubernetes quantity (e.g. "150Gi", "2e9", 500m, 1024) as a plain number,
    read by the Kubernetes client's own parser. Raises ValueError for anything else."""
    try:
        return float(parse_quantity(quantity))  # type: ignore[no-untyped-call]
    except ArithmeticError:  # decimal's errors for malformed numbers
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity") from None


_QUANTITY_HINT = (
    "e.g. 200Gi, 64G, 500m or 8 (suffixes Ki, Mi, Gi, Ti or k, M, G, T: "
    "200GB is not a quantity, 200G or 200Gi is)"
)


def _is_quantity(value: str) -> bool:
    return len(value) <= MAX_QUANTITY_LENGTH and re.fullmatch(QUANTITY_PATTERN, value) is not None


# The int-or-string shape of a quantity in the CRD; its rule adds the CEL.
_QUANTITY_SCHEMA = WithJsonSchema(
    {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": QUANTITY_PATTERN,
        "maxLength": MAX_QUANTITY_LENGTH,
        "x-kubernetes-int-or-string": True,
    }
)


_NON_NEGATIVE_QUANTITY: Rule[int | str] = Rule(
    cel="type(self) == int ? self >= 0 : "
    "isQuantity(self) && !quantity(self).isLessThan(quantity('0'))",
    check=lambda value: (
        value >= 0 if isinstance(value, int) else _is_quantity(value) and quantity_bytes(value) >= 0
    ),
    message=f"must be a non-negative Kubernetes quantity, {_QUANTITY_HINT}",
)
_POSITIVE_QUANTITY: Rule[int | str] = Rule(
    cel="type(self) == int ? self > 0 : "
    "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))",
    check=lambda value: (
        value > 0 if isinstance(value, int) else _is_quantity(value) and quantity_bytes(value) > 0
    ),
    message=f"must be a positive Kubernetes quantity, {_QUANTITY_HINT}",
)
# A quantity of a resource (CPU, memory): zero or more.
Quantity = Annotated[int | str, _QUANTITY_SCHEMA, _NON_NEGATIVE_QUANTITY]
# A size that must hold something (the model cache).
PositiveQuantity = Annotated[int | str, _QUANTITY_SCHEMA, _POSITIVE_QUANTITY]

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
PROFILE_ID_PATTERN = r"^[0-9a-f]{64}$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
# Environment variables NIM reads the NGC key from: the operator sets them from ngc.apiKeySecret.
NGC_KEY_VARIABLES = ("NGC_API_KEY", "NGC_CLI_API_KEY")

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
DEPLOYMENT_NAME_RULES: tuple[Rule[str], ...] = (
    Rule(
        cel=f"self.size() <= {MAX_DEPLOYMENT_NAME_LENGTH}",
        check=lambda name: len(name) <= MAX_DEPLOYMENT_NAME_LENGTH,
        message=f"metadata.name must be at most {MAX_DEPLOYMENT_NAME_LENGTH} characters: it "
        "names the Service and the pods, and a replica that spans nodes runs as StatefulSets "
        "whose pod labels add up to 16 characters to it (63 at most)",
    ),
    Rule(
        cel=f"self.matches(r'{DEPLOYMENT_NAME_PATTERN}')",
        check=lambda name: re.fullmatch(DEPLOYMENT_NAME_PATTERN, name) is not None,
        message="metadata.name must start with a lowercase letter and hold only lowercase "
        "letters, digits and '-' (no dots): it is also the name of the model's Service",
    ),
)


_OBJECT_NAME = "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"


def _rules_schema(schema: JsonSchemaValue, model: type[Any]) -> None:
    """json_schema_extra of every API type: its rules as x-kubernetes-validations."""
    if model.rules:
        schema["x-kubernetes-validations"] = [rule.validation() for rule in model.rules]


class ApiObject(BaseModel):
    """Base of every API type: camelCase on the wire, unknown fields refused, and the type's
    admission `rules` (CEL in the CRD, Python here) checked once its fields are valid."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        protected_namespaces=(),
        json_schema_extra=_rules_schema,
    )
    rules: ClassVar[tuple[Rule[Any], ...]] = ()

    @model_validator(mode="after")
    def _obeys_its_rules(self) -> Self:
        enforce(self.rules, self, type(self).__name__)
        return self


# --- spec -------------------------------------------------------------------------------------


HAND_TYPED_FACTS = ("parameters", "attentionLayers", "kvHeads", "headDim", "nativeContextLength")
CUSTOM_MODEL_FACTS_MESSAGE = (
    "customModel needs configMapRef (a ConfigMap with the model's Hugging Face config.json) "
    f"or all of {', '.join(HAND_TYPED_FACTS)}"
)


class ConfigMapKeyRef(ApiObject):
    """A key of a ConfigMap in the NemotronDeployment's namespace."""

    name: Annotated[
        str,
        says(DNS_SUBDOMAIN_PATTERN, f"a ConfigMap name is {_OBJECT_NAME}, e.g. llama-70b-config"),
    ] = Field(
        max_length=253,
        description="Name of the ConfigMap.",
    )
    key: Annotated[
        str,
        says(
            SECRET_KEY_PATTERN,
            "a ConfigMap key holds only letters, digits, '-', '_' and '.', e.g. config.json",
        ),
    ] = Field(
        default="config.json",
        max_length=253,
        description="Key in the ConfigMap that holds the model's config.json.",
    )


class CustomModel(ApiObject):
    """Enough facts about a NIM LLM that is not in the catalog for the planner to size it:
    the model's Hugging Face config.json in a ConfigMap (configMapRef), or the facts typed in."""

    image: Annotated[
        str,
        says(
            IMAGE_WITH_TAG_PATTERN,
            "customModel.image must be a repository with a tag (no digest), e.g. "
            "nvcr.io/nim/nvidia/llm-nim:2.1.6",
        ),
    ] = Field(
        max_length=512,
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
    precisions: Annotated[list[Precision], ListType()] = Field(
        min_length=1,
        max_length=3,
        description="Precisions the image ships profiles for (nvfp4, fp8, bf16).",
    )

    rules: ClassVar[tuple[Rule[CustomModel], ...]] = (
        Rule(
            cel="has(self.configMapRef) || ("
            + " && ".join(f"has(self.{fact})" for fact in HAND_TYPED_FACTS)
            + ")",
            check=lambda custom: (
                custom.config_map_ref is not None
                or None
                not in (
                    custom.parameters,
                    custom.attention_layers,
                    custom.kv_heads,
                    custom.head_dim,
                    custom.native_context_length,
                )
            ),
            message=CUSTOM_MODEL_FACTS_MESSAGE,
        ),
        Rule(
            cel="!has(self.activeParameters) || !has(self.parameters) || "
            "self.activeParameters <= self.parameters",
            check=lambda custom: (
                custom.active_parameters is None
                or custom.parameters is None
                or custom.active_parameters <= custom.parameters
            ),
            message="customModel.activeParameters cannot exceed customModel.parameters",
        ),
        Rule(
            cel="!self.image.endsWith(':latest')",
            check=lambda custom: not custom.image.endswith(":latest"),
            message="customModel.image must carry a pinned tag, not 'latest'",
        ),
    )


class GpuSelection(ApiObject):
    """Which GPUs a replica runs on."""

    product: (
        Annotated[
            str,
            says(
                LABEL_VALUE_PATTERN,
                "gpu.product is a value of the nodes' nvidia.com/gpu.product label, e.g. "
                "NVIDIA-H100-80GB-HBM3 (kubectl get nodes -L nvidia.com/gpu.product)",
            ),
        ]
        | None
    ) = Field(
        default=None,
        max_length=63,
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

    rules: ClassVar[tuple[Rule[GpuSelection], ...]] = (
        Rule(
            cel=f"!has(self.count) || self.count in {list(GPU_COUNTS)}",
            check=lambda gpu: gpu.count is None or gpu.count in GPU_COUNTS,
            message="gpu.count must be a power of two from 1 to 64: 1, 2, 4 or 8 GPUs on one "
            "node, or whole nodes for more",
            field_path=".count",
        ),
    )


class SecretKeyRef(ApiObject):
    """A key of a Secret in the NemotronDeployment's namespace."""

    name: Annotated[
        str, says(DNS_SUBDOMAIN_PATTERN, f"a Secret name is {_OBJECT_NAME}, e.g. ngc-api-key")
    ] = Field(
        max_length=253,
        description="Name of the Secret.",
    )
    key: Annotated[
        str,
        says(
            SECRET_KEY_PATTERN,
            "a Secret key holds only letters, digits, '-', '_' and '.', e.g. NGC_API_KEY",
        ),
    ] = Field(
        default="NGC_API_KEY",
        max_length=253,
        description="Key in the Secret that holds the NGC API key.",
    )


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
            Field(max_length=253),
            says(
                DNS_SUBDOMAIN_PATTERN,
                f"a pull secret is the name of a Secret: {_OBJECT_NAME}, e.g. ngc-registry",
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


CacheAccessMode = Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"]


class Cache(ApiObject):
    """The volume NIM reads the model from (NIM_CACHE_PATH), and downloads it into when it is
    writable. How it is shared depends on the storage (accessMode): see the README's "Model
    cache" section."""

    access_mode: CacheAccessMode = Field(
        default="ReadWriteOnce",
        description="What the storage offers. ReadWriteOnce (block storage: EBS, Persistent "
        "Disk, Ceph RBD; the default): each pod gets a claim of its own, never shared across "
        "nodes, and downloads the model into it. ReadWriteMany (NFS, CephFS, EFS, Filestore): "
        "one claim shared by every pod. ReadOnlyMany: only with existingClaim, a preloaded "
        "claim every pod mounts read-only. With existingClaim, say the mode of that claim.",
    )
    size: PositiveQuantity | None = Field(
        default=None,
        description="Size of each PersistentVolumeClaim the operator creates. Omit to size it "
        "from the model's download size (status.plan.cacheSize).",
    )
    storage_class: (
        Annotated[
            str,
            says(
                DNS_SUBDOMAIN_PATTERN,
                f"a StorageClass name is {_OBJECT_NAME} (kubectl get storageclass)",
            ),
        ]
        | None
    ) = Field(
        default=None,
        max_length=253,
        description="StorageClass of the claims the operator creates (it must offer "
        "accessMode); omit for the cluster default.",
    )
    existing_claim: (
        Annotated[
            str,
            says(
                DNS_SUBDOMAIN_PATTERN,
                f"cache.existingClaim is a PersistentVolumeClaim name: {_OBJECT_NAME}",
            ),
        ]
        | None
    ) = Field(
        default=None,
        max_length=253,
        description="Use this existing PersistentVolumeClaim, preloaded with every file of the "
        "profile (by hand, a mirror, or download-to-cache), instead of creating one. It is "
        "mounted read-only: nothing is downloaded, and no NGC key is needed.",
    )
    keep_on_delete: bool = Field(
        default=False,
        description="Keep the claims the operator created when the NemotronDeployment is "
        "deleted (a NemotronDeployment of the same name finds them again).",
    )
    pre_pull_image: bool = Field(
        default=False,
        description="Pull the NIM image ahead on every node of the planned GPU product the "
        "pods may run on (nodeSelector, affinity, tolerations), with a DaemonSet "
        "<name>-image-pull, so that a new replica, a rollout or a rescheduled pod does not wait "
        "for a 20-40 GB image; status condition ImagePrePulled counts the nodes that have it. "
        "Turned off, the DaemonSet is removed.",
    )

    rules: ClassVar[tuple[Rule[Cache], ...]] = (
        Rule(
            cel="!(has(self.existingClaim) && has(self.size))",
            check=lambda cache: cache.existing_claim is None or cache.size is None,
            message="cache.existingClaim and cache.size are mutually exclusive: an existing "
            "claim has its own size",
        ),
        Rule(
            cel="!(has(self.existingClaim) && has(self.storageClass))",
            check=lambda cache: cache.existing_claim is None or cache.storage_class is None,
            message="cache.existingClaim and cache.storageClass are mutually exclusive: an "
            "existing claim has its own storage class",
        ),
        Rule(
            cel="!has(self.accessMode) || self.accessMode != 'ReadOnlyMany' || "
            "has(self.existingClaim)",
            check=lambda cache: (
                cache.access_mode != "ReadOnlyMany" or cache.existing_claim is not None
            ),
            message="cache.accessMode ReadOnlyMany needs cache.existingClaim: a claim nothing "
            "can write into must be preloaded",
        ),
    )


def _keys_are_qualified_names(field: str) -> Rule[dict[str, str]]:
    """The rule of a map whose keys must be label or annotation keys: the API server refuses
    any other key when the operator writes the child object."""
    return Rule(
        cel=f"self.all(k, k.matches(r'{QUALIFIED_NAME_PATTERN}'))",
        check=lambda mapping: all(re.fullmatch(QUALIFIED_NAME_PATTERN, k) for k in mapping),
        message=f"{field} keys are qualified names: an optional DNS prefix and '/', then at "
        "most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or "
        "digit (e.g. example.com/team)",
    )


class ServiceSettings(ApiObject):
    """The Service in front of the NIM pods (OpenAI-compatible HTTP)."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Service type."
    )
    port: int = Field(default=8000, ge=1, le=65535, description="Service port.")
    annotations: Annotated[
        dict[str, Annotated[str, Field(max_length=4096)]],
        _keys_are_qualified_names("service.annotations"),
    ] = Field(
        default_factory=dict,
        max_length=64,
        description="Annotations for the Service (e.g. load-balancer settings).",
    )


class EnvVar(ApiObject):
    """An extra environment variable for the NIM container (e.g. NIM_KVCACHE_PERCENT)."""

    name: Annotated[
        str,
        says(
            ENV_NAME_PATTERN,
            "an env name holds letters, digits, '_', '-' and '.', and does not start with a "
            "digit, e.g. NIM_KVCACHE_PERCENT",
        ),
    ] = Field(
        max_length=256,
        description="Variable name.",
    )
    value: str | None = Field(default=None, max_length=32768, description="Literal value.")
    value_from: FreeForm | None = Field(
        default=None,
        description="Source of the value (secretKeyRef, configMapKeyRef, fieldRef, ...), as "
        "in a Pod's env.",
    )

    rules: ClassVar[tuple[Rule[EnvVar], ...]] = (
        Rule(
            cel="!(has(self.value) && self.value != '' && has(self.valueFrom))",
            check=lambda env: not (env.value and env.value_from is not None),
            message="an env variable takes value or valueFrom, not both",
        ),
    )


_RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


def _resource_names(field: str) -> Rule[dict[str, int | str]]:
    return Rule(
        cel=f"self.all(k, k in {list(_RESOURCE_NAMES)} || "
        "k.startsWith('hugepages-') || k.contains('/'))",
        check=lambda resources: all(
            k in _RESOURCE_NAMES or k.startswith("hugepages-") or "/" in k for k in resources
        ),
        message=f"{field} names cpu, memory, ephemeral-storage, hugepages-<size> or an extended "
        "resource with its domain (e.g. example.com/fpga)",
    )


class ResourceRequirements(ApiObject):
    """CPU and memory for the NIM container; GPUs come from gpu.count."""

    limits: Annotated[dict[str, Quantity], _resource_names("resources.limits")] = Field(
        default_factory=dict,
        max_length=16,
        description="Resource limits (e.g. memory: 64Gi).",
    )
    requests: Annotated[dict[str, Quantity], _resource_names("resources.requests")] = Field(
        default_factory=dict,
        max_length=16,
        description="Resource requests (e.g. cpu: 8).",
    )

    rules: ClassVar[tuple[Rule[ResourceRequirements], ...]] = (
        Rule(
            cel=f"(!has(self.limits) || !('{names.GPU_RESOURCE}' in self.limits)) && "
            f"(!has(self.requests) || !('{names.GPU_RESOURCE}' in self.requests))",
            check=lambda resources: (
                names.GPU_RESOURCE not in resources.limits
                and names.GPU_RESOURCE not in resources.requests
            ),
            message=f"set GPUs with gpu.count, not with {names.GPU_RESOURCE} in resources",
        ),
        Rule(
            cel="!has(self.requests) || !has(self.limits) || self.requests.all(k, "
            "!(k in self.limits) || "
            "!isQuantity(string(self.requests[k])) || "
            "!isQuantity(string(self.limits[k])) || "
            "!quantity(string(self.requests[k]))"
            ".isGreaterThan(quantity(string(self.limits[k]))))",
            check=lambda resources: all(
                quantity_bytes(request) <= quantity_bytes(resources.limits[k])
                for k, request in resources.requests.items()
                if k in resources.limits
            ),
            message="a resource request cannot exceed its limit: raise resources.limits or "
            "lower resources.requests",
        ),
    )


class Toleration(ApiObject):
    """A toleration, as in a Pod spec (the GPU taint nvidia.com/gpu is tolerated already)."""

    key: (
        Annotated[
            str,
            says(
                QUALIFIED_NAME_PATTERN,
                "a toleration key is a taint key: an optional DNS prefix and '/', then letters, "
                "digits, '-', '_' or '.', e.g. example.com/dedicated",
            ),
        ]
        | None
    ) = Field(
        default=None,
        max_length=316,
        description="Taint key to match; omit (with operator Exists) to tolerate every taint.",
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (default Equal)."
    )
    value: (
        Annotated[
            str,
            says(
                LABEL_VALUE_PATTERN,
                "a toleration value is a taint value: letters, digits, '-', '_' and '.', starting "
                "and ending with a letter or digit",
            ),
        ]
        | None
    ) = Field(
        default=None,
        max_length=63,
        description="Taint value to match.",
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated."
    )

    rules: ClassVar[tuple[Rule[Toleration], ...]] = (
        Rule(
            cel="!has(self.operator) || self.operator != 'Exists' || !has(self.value)",
            check=lambda toleration: toleration.operator != "Exists" or toleration.value is None,
            message="a toleration with operator Exists must not set value",
        ),
        Rule(
            cel="has(self.key) || (has(self.operator) && self.operator == 'Exists')",
            check=lambda toleration: toleration.key is not None or toleration.operator == "Exists",
            message="a toleration without key matches every taint and needs operator Exists",
        ),
        Rule(
            cel="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            check=lambda toleration: (
                toleration.toleration_seconds is None or toleration.effect == "NoExecute"
            ),
            message="tolerationSeconds only applies to effect NoExecute",
        ),
    )


class NemotronDeploymentSpec(ApiObject):
    """What to serve and the constraints on how; the operator plans the rest."""

    model: Annotated[
        str,
        says(
            MODEL_NAME_PATTERN,
            "model is a catalog name in lowercase letters, digits, '-' and '.', e.g. "
            "nemotron-3-nano (`nemotron-operator catalog` lists them), or custom",
        ),
    ] = Field(
        max_length=63,
        description="Catalog model name (nemotron-3-nano, nemotron-3-super, nemotron-3-ultra, "
        "nemotron-3-nano-omni, llama-3.2-nv-embedqa-1b-v2, ...; `nemotron-operator catalog` "
        "lists them) or 'custom' with customModel. Unknown names are refused by the planner "
        "(Planned=False), so a catalog override can add models without a new CRD.",
    )
    custom_model: CustomModel | None = Field(
        default=None,
        description="The model's facts when model is 'custom'; forbidden otherwise.",
    )
    version: (
        Annotated[
            str,
            says(
                IMAGE_TAG_PATTERN,
                "version is a NIM image tag: letters, digits, '.', '_' and '-', e.g. 2.1.5 or "
                "2.0.4-pb6.0",
            ),
        ]
        | None
    ) = Field(
        default=None,
        max_length=128,
        description="NIM image tag (e.g. 2.1.5, or 2.0.4-pb6.0 for a Production Branch, pulled "
        "from the model's repository with the branch appended: nemotron-3-nano-pb6). Default: "
        "the newest Feature Branch release in the catalog that ships the chosen precision. "
        "Never 'latest'.",
    )
    image: (
        Annotated[
            str,
            says(
                IMAGE_REPOSITORY_PATTERN,
                "image is a repository without tag or digest, e.g. "
                "registry.example.com/nim/nvidia/nemotron-3-nano; put the tag in spec.version",
            ),
        ]
        | None
    ) = Field(
        default=None,
        max_length=512,
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
    profile: (
        Annotated[
            str,
            says(
                PROFILE_PATTERN,
                "profile is a 64-hex profile id or a lowercase NIM profile name, e.g. "
                "vllm-fp8-tp2-pp1 (`list-model-profiles` in the NIM image prints them)",
            ),
        ]
        | None
    ) = Field(
        default=None,
        max_length=256,
        description="Explicit NIM profile (64-hex id, exact description, or a name like "
        "vllm-fp8-tp2-pp1); overrides the planner's choice of precision and parallelism.",
    )
    ngc: Ngc = Field(default_factory=Ngc, description="NGC key, pull secrets, offline mode.")
    cache: Cache = Field(default_factory=Cache, description="Model cache volume.")
    service: ServiceSettings = Field(
        default_factory=ServiceSettings, description="Service settings."
    )
    env: Annotated[list[EnvVar], ListType(map_keys=("name",))] = Field(
        default_factory=list,
        max_length=128,
        description="Extra environment variables for the NIM container.",
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements,
        description="CPU and memory requests and limits for the NIM container.",
    )
    node_selector: Annotated[
        dict[
            str,
            Annotated[
                str,
                Field(max_length=63),
                says(
                    LABEL_VALUE_PATTERN,
                    "a nodeSelector value is a label value: at most 63 letters, digits, '-', "
                    "'_' or '.', starting and ending with a letter or digit",
                ),
            ],
        ],
        _keys_are_qualified_names("nodeSelector"),
    ] = Field(
        default_factory=dict,
        max_length=64,
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
    priority_class_name: (
        Annotated[
            str,
            says(
                DNS_SUBDOMAIN_PATTERN,
                f"priorityClassName is a PriorityClass name: {_OBJECT_NAME} "
                "(kubectl get priorityclass)",
            ),
        ]
        | None
    ) = Field(
        default=None,
        max_length=253,
        description="PriorityClass of the pods.",
    )
    runtime_class_name: (
        Annotated[
            str,
            says(
                DNS_SUBDOMAIN_PATTERN,
                f"runtimeClassName is a RuntimeClass name: {_OBJECT_NAME} "
                "(kubectl get runtimeclass)",
            ),
        ]
        | None
    ) = Field(
        default=None,
        max_length=253,
        description="RuntimeClass of the pods (e.g. nvidia).",
    )

    rules: ClassVar[tuple[Rule[NemotronDeploymentSpec], ...]] = (
        Rule(
            cel=f"self.model != '{names.CUSTOM_MODEL}' || has(self.customModel)",
            check=lambda spec: spec.model != names.CUSTOM_MODEL or spec.custom_model is not None,
            message="customModel is required when model is 'custom'",
            field_path=".customModel",
        ),
        Rule(
            cel=f"self.model == '{names.CUSTOM_MODEL}' || !has(self.customModel)",
            check=lambda spec: spec.model == names.CUSTOM_MODEL or spec.custom_model is None,
            message="customModel is only allowed when model is 'custom'; catalog models carry "
            "their own facts",
            field_path=".customModel",
        ),
        Rule(
            cel="!has(self.version) || self.version != 'latest'",
            check=lambda spec: spec.version != "latest",
            message="version must be a pinned tag, not 'latest'; omit it to use the catalog's "
            "newest Feature Branch release",
            field_path=".version",
        ),
        Rule(
            cel="!has(self.profile) || self.precision == 'auto' || "
            f"self.profile.matches('{PROFILE_ID_PATTERN}') || "
            "self.profile.contains('-' + self.precision + '-')",
            check=lambda spec: (
                spec.profile is None
                or spec.precision == "auto"
                or re.fullmatch(PROFILE_ID_PATTERN, spec.profile) is not None
                or f"-{spec.precision}-" in spec.profile
            ),
            message="profile names a different precision than spec.precision; drop one pin",
            field_path=".profile",
        ),
        Rule(
            cel=f"!has(self.env) || self.env.all(e, !(e.name in {list(NGC_KEY_VARIABLES)}))",
            check=lambda spec: all(env.name not in NGC_KEY_VARIABLES for env in spec.env),
            message="set the NGC key with ngc.apiKeySecret, not with env",
            field_path=".env",
        ),
        Rule(
            cel="!has(self.cache) || !has(self.cache.existingClaim) || "
            "(has(self.cache.accessMode) && self.cache.accessMode != 'ReadWriteOnce') || "
            "!has(self.replicas) || self.replicas <= 1",
            check=lambda spec: (
                spec.cache.existing_claim is None
                or spec.cache.access_mode != "ReadWriteOnce"
                or spec.replicas <= 1
            ),
            message="a ReadWriteOnce cache.existingClaim attaches to one node, so it serves one "
            "replica: for more, preload a ReadOnlyMany or ReadWriteMany claim (and say so in "
            "cache.accessMode), or omit existingClaim for a claim per replica",
            field_path=".replicas",
        ),
        Rule(
            cel="!has(self.ngc) || !has(self.ngc.offline) || !self.ngc.offline || "
            "(has(self.cache) && has(self.cache.existingClaim))",
            check=lambda spec: not spec.ngc.offline or spec.cache.existing_claim is not None,
            message="ngc.offline needs cache.existingClaim: a preloaded model cache",
            field_path=".ngc.offline",
        ),
        Rule(
            cel="!has(self.maxModelLength) || !has(self.customModel) || "
            "!has(self.customModel.nativeContextLength) || "
            "self.maxModelLength <= self.customModel.nativeContextLength",
            check=lambda spec: (
                spec.max_model_length is None
                or spec.custom_model is None
                or spec.custom_model.native_context_length is None
                or spec.max_model_length <= spec.custom_model.native_context_length
            ),
            message="maxModelLength exceeds customModel.nativeContextLength, the longest "
            "context the model supports",
            field_path=".maxModelLength",
        ),
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
    download_gib: float | None = Field(
        default=None,
        alias="downloadGiB",
        ge=0,
        description="GiB of model files NIM downloads for this precision; the startup probe "
        "allows for downloading and loading them.",
    )


class NemotronDeploymentStatus(ApiObject):
    """Observed state, written by the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status describes."
    )
    conditions: Annotated[list[Condition], ListType(map_keys=("type",))] = Field(
        default_factory=list,
        max_length=16,
        description="Planned, CredentialsValid, Progressing, Degraded, CacheReady, the kstatus "
        "pair Reconciling and Stalled, and the Ready summary.",
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
            enforce(DEPLOYMENT_NAME_RULES, name, type(self).__name__, at=("metadata", "name"))
        return self
