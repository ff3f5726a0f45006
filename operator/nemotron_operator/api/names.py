"""Every name the operator shares with the cluster, spelled once.

API group/version/kind, the labels NVIDIA GPU Feature Discovery puts on GPU nodes, the
operator's own labels and annotations, and the condition types and reasons it writes.
Import from here; never spell one of these strings anywhere else.
"""

from __future__ import annotations

from enum import StrEnum

# --- The NemotronDeployment API ---------------------------------------------------------------
GROUP = "nemotron.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "NemotronDeployment"
LIST_KIND = "NemotronDeploymentList"
PLURAL = "nemotrondeployments"
SINGULAR = "nemotrondeployment"
SHORT_NAMES = ("nd", "nemotron")
CATEGORIES = ("nvidia", "ai")
CRD_NAME = f"{PLURAL}.{GROUP}"

# model: value that selects spec.customModel instead of a catalog entry.
CUSTOM_MODEL = "custom"

# --- Labels set by NVIDIA GPU Feature Discovery on GPU nodes -----------------------------------
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB of one GPU
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_COMPUTE_MAJOR_LABEL = "nvidia.com/gpu.compute.major"
GPU_COMPUTE_MINOR_LABEL = "nvidia.com/gpu.compute.minor"
GPU_FAMILY_LABEL = "nvidia.com/gpu.family"  # often `undefined`: prefer compute capability

# The schedulable extended resource and the taint GPU nodes usually carry.
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"

# Suffixes GPU Feature Discovery appends to gpu.product.
SHARED_PRODUCT_SUFFIX = "-SHARED"  # time-slicing
MIG_PRODUCT_MARKER = "-MIG-"  # MIG single strategy, e.g. NVIDIA-A100-SXM4-40GB-MIG-1g.5gb

# --- The operator's own labels and annotations -------------------------------------------------
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "nemotron-operator"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
DEPLOYMENT_LABEL = f"{GROUP}/deployment"  # value: the NemotronDeployment's name
MODEL_LABEL = f"{GROUP}/model"

# On the download Job: the image and profile whose files it puts into the shared cache.
CACHE_CONTENT_ANNOTATION = f"{GROUP}/cache-content"
# On the download Job's pod (not the deployment label: the Service must not select it).
CACHE_DOWNLOAD_LABEL = f"{GROUP}/cache-download"  # value: the NemotronDeployment's name
# On the pods of the DaemonSet that pulls the NIM image ahead (cache.prePullImage; not the
# deployment label either: they are not replicas).
IMAGE_PULL_LABEL = f"{GROUP}/image-pull"  # value: the NemotronDeployment's name

FIELD_MANAGER = "nemotron-operator"
FINALIZER = f"{GROUP}/finalizer"

# --- LeaderWorkerSet (sigs.k8s.io/lws): one replica spanning several nodes ---------------------
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"


class ConditionType(StrEnum):
    """status.conditions[].type values."""

    PLANNED = "Planned"
    CREDENTIALS_VALID = "CredentialsValid"
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    CACHE_READY = "CacheReady"
    IMAGE_PRE_PULLED = "ImagePrePulled"  # cache.prePullImage: on how many target nodes
    # kstatus (sigs.k8s.io/cli-utils), which Flux and `kubectl wait`-style tools read:
    RECONCILING = "Reconciling"  # True: still working towards the spec
    STALLED = "Stalled"  # True: cannot go on without a change by a person


class PlanReason(StrEnum):
    """Reasons of the Planned condition, and status.plan.reason."""

    FITS = "Fits"
    UNKNOWN_MODEL = "UnknownModel"
    PRECISION_NOT_SHIPPED = "PrecisionNotShipped"
    PRECISION_NOT_SUPPORTED = "PrecisionNotSupported"
    MAX_MODEL_LENGTH_TOO_LONG = "MaxModelLengthTooLong"
    PROFILE_UNRESOLVABLE = "ProfileUnresolvable"
    PROFILE_CONFLICT = "ProfileConflict"
    NO_GPU_NODES = "NoGPUNodes"
    GPU_MEMORY_UNKNOWN = "GPUMemoryUnknown"
    GPU_PRODUCT_NOT_FOUND = "GPUProductNotFound"
    PARTITIONED_GPUS_ONLY = "PartitionedGPUsOnly"
    UNSUPPORTED_GPU_COUNT = "UnsupportedGPUCount"
    NOT_ENOUGH_GPUS_PER_NODE = "NotEnoughGPUsPerNode"
    NOT_ENOUGH_NODES = "NotEnoughNodes"
    INSUFFICIENT_GPU_MEMORY = "InsufficientGPUMemory"
    CACHE_TOO_SMALL = "CacheTooSmall"
    MODEL_CONFIG_INVALID = "ModelConfigInvalid"


class NimReason(StrEnum):
    """Reasons about NGC access (CredentialsValid, from the pre-flight check in ngc.py) and
    about failing NIM pods (Degraded, from the diagnosis in diagnose.py)."""

    SECRET_NOT_FOUND = "SecretNotFound"
    NGC_KEY_REQUIRED = "NGCKeyRequired"
    NGC_AUTHENTICATION_FAILED = "NGCAuthenticationFailed"
    NGC_NOT_ENTITLED = "NGCNotEntitled"
    IMAGE_PULL_UNAUTHORIZED = "ImagePullUnauthorized"
    IMAGE_NOT_FOUND = "ImageNotFound"
    MODEL_PROFILE_NOT_FOUND = "ModelProfileNotFound"
    CONTAINER_CONFIG_ERROR = "ContainerConfigError"
    INSUFFICIENT_GPU_MEMORY = "InsufficientGPUMemory"
    HOST_MEMORY_EXHAUSTED = "HostMemoryExhausted"
    CACHE_NOT_WRITABLE = "CacheNotWritable"
    UNSCHEDULABLE = "Unschedulable"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    CRASH_LOOP = "CrashLoop"
    STARTUP_TIMEOUT = "StartupTimeout"
    GPU_DRIVER_INCOMPATIBLE = "GPUDriverIncompatible"
    GPU_UNAVAILABLE = "GPUUnavailable"
    MODEL_SOURCE_UNREACHABLE = "ModelSourceUnreachable"
    HUGGING_FACE_ACCESS_DENIED = "HuggingFaceAccessDenied"
    SHARED_MEMORY_TOO_SMALL = "SharedMemoryTooSmall"
    DISK_FULL = "DiskFull"
    NO_PROFILE_FOR_GPU = "NoProfileForGPU"
    VOLUME_MOUNT_FAILED = "VolumeMountFailed"
    CONTAINER_START_FAILED = "ContainerStartFailed"
    MODEL_NOT_SUPPORTED = "ModelNotSupported"
    DISTRIBUTED_INIT_FAILED = "DistributedInitFailed"
    # Outcomes of the NGC pre-flight check (ngc.py) that no pod produces.
    NGC_ENTITLED = "NGCEntitled"
    ANONYMOUS_PULL_ALLOWED = "AnonymousPullAllowed"
    REGISTRY_UNREACHABLE = "RegistryUnreachable"
    UNEXPECTED_REGISTRY_RESPONSE = "UnexpectedRegistryResponse"


class StatusReason(StrEnum):
    """The other reasons the operator writes: the state of the rollout, and what stops one that
    is neither a plan refusal nor a NGC or pod failure."""

    PLANNED = "Planned"
    INVALID_SPEC = "InvalidSpec"
    RENDER_FAILED = "RenderFailed"
    CHILD_REJECTED = "ChildRejected"
    LEADER_WORKER_SET_MISSING = "LeaderWorkerSetMissing"
    OFFLINE = "Offline"
    AS_EXPECTED = "AsExpected"
    SCALED_TO_ZERO = "ScaledToZero"
    CREATING = "Creating"
    ROLLING_OUT = "RollingOut"
    STARTING = "Starting"
    ROLLOUT_COMPLETE = "RolloutComplete"
    CACHE_DOWNLOADING = "CacheDownloading"
    CACHE_DOWNLOADED = "CacheDownloaded"
    CACHE_DOWNLOAD_FAILED = "CacheDownloadFailed"
    IMAGE_ON_NODES = "ImageOnNodes"
    IMAGE_PULLING = "ImagePulling"
    NO_NODES_TO_PULL_ON = "NoNodesToPullOn"
    READY = "Ready"
