"""Child manifests of a NemotronDeployment, from its spec and plan. Pure: no API calls.

Templates (jinja2, `templates/`) write JSON: they are rendered with StrictUndefined, so a missing
value is an error rather than an empty string, then parsed with json.loads and checked for the
fields every child must have. Values go into the templates with `| tojson`.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from nemotron_operator.api import names
from nemotron_operator.api.types import PlanStatus
from nemotron_operator.core import cache_size

CACHE_PATH = "/opt/nim/.cache"
SHM_SIZE = "16Gi"
STARTUP_PROBE_PERIOD_SECONDS = 10
# NIM downloads the model before it is ready: allow for a download at a modest 100 MB/s, reading
# the weights back from the cache at 500 MB/s (network storage), and the engine's own start
# (compilation, CUDA graphs), never less than the 20 minutes NVIDIA's own operator allows.
MIN_STARTUP_SECONDS = 20 * 60
ASSUMED_DOWNLOAD_MB_PER_SECOND = 100
ASSUMED_LOAD_MB_PER_SECOND = 500
ENGINE_START_SECONDS = 10 * 60
GIB = 2**30
# The image of the pre-pull DaemonSet's one container (it only holds the pod on the node): the
# pause image of Kubernetes 1.36 (kubeadm's PauseVersion, cmd/kubeadm/app/constants in
# kubernetes/kubernetes v1.36.3). The operator's setting NEMOTRON_PAUSE_IMAGE (the chart's
# imagePrePull.pauseImage) replaces it, e.g. with a mirror's.
DEFAULT_PAUSE_IMAGE = "registry.k8s.io/pause:3.10.2"

# json.dumps writes a character beyond U+FFFF as a surrogate pair (\ud83d\ude80): JSON allows it,
# YAML does not join the pair (PyYAML reads two lone surrogates, the API server refuses the
# body), and json.dumps leaves DEL raw, which YAML does not take either. YAML writes them
# \U0001f680 and \u007f.
_SURROGATE_PAIR = re.compile(r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def json_for_yaml(value: Any, **dumps_options: Any) -> str:
    """JSON text that a YAML reader reads back as the same value, whatever characters it holds."""

    def one_escape(pair: re.Match[str]) -> str:
        high, low = int(pair[2], 16), int(pair[3], 16)
        return f"{pair[1]}\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"

    text = json.dumps(value, **dumps_options)
    if "\\ud" in text:  # the scan costs most of the call: 0.14 of 0.18 ms for a Deployment
        text = _SURROGATE_PAIR.sub(one_escape, text)
    return text.replace("\x7f", "\\u007f")


_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("nemotron_operator.core", "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    auto_reload=False,  # templates ship in the package: no stat() of each file at every render
)


def compile_templates() -> None:
    """Compile every template now (at start-up): jinja2 compiles one at its first use, which
    made the first NemotronDeployment's render take 35 ms (1.1 ms for the next ones)."""
    for name in _templates.list_templates():
        _templates.get_template(name)


class RenderError(ValueError):
    """A template produced something that is not a valid child object."""


@dataclass(frozen=True)
class ChildNames:
    workload: str  # the Deployment, StatefulSet or LeaderWorkerSet
    service: str
    cache: str  # the shared PersistentVolumeClaim the operator creates (ReadWriteMany)
    download: str  # the Job that fills it
    image_pull: str  # the DaemonSet that pulls the NIM image ahead (cache.prePullImage)

    @classmethod
    def of(cls, deployment_name: str) -> ChildNames:
        return cls(
            workload=deployment_name,
            service=deployment_name,
            cache=f"{deployment_name}-cache",
            download=f"{deployment_name}-download",
            image_pull=f"{deployment_name}-image-pull",
        )


# The pods' cache volume, and the claim template a claim per pod is made from: the StatefulSet
# controller names those claims <volume>-<pod name> (model-cache-<name>-0, -1, ...).
CACHE_VOLUME = "model-cache"
DEPLOYMENT, STATEFUL_SET, LEADER_WORKER_SET = "Deployment", "StatefulSet", "LeaderWorkerSet"
WORKLOAD_KINDS = (DEPLOYMENT, STATEFUL_SET, LEADER_WORKER_SET)
# Where a workload kind keeps its claim templates (immutable once created).
_CLAIM_TEMPLATES_AT = {
    STATEFUL_SET: ("spec",),
    LEADER_WORKER_SET: ("spec", "leaderWorkerTemplate"),
}


@dataclass(frozen=True)
class CacheLayout:
    """How the model cache reaches the pods, from what the storage offers (cache.accessMode).

    - a claim per pod (ReadWriteOnce, the default): a StatefulSet (or the LeaderWorkerSet, for
      leader and workers alike) makes one from a claim template, so no ReadWriteOnce claim is
      ever mounted by two pods that may land on different nodes;
    - one shared claim (ReadWriteMany): the operator's, mounted by every pod of a Deployment
      (or LeaderWorkerSet);
    - an existing claim (cache.existingClaim): preloaded, mounted read-only by every pod.
    """

    workload_kind: str
    shared_claim: str | None  # the claim every pod mounts; None: a claim per pod
    read_only: bool

    @property
    def claim_per_pod(self) -> bool:
        return self.shared_claim is None


def cache_layout(spec: Mapping[str, Any], plan: PlanStatus | None, name: str) -> CacheLayout:
    """The cache layout of a NemotronDeployment (`spec` as on the wire, `plan` None when there
    is none yet: the layout of a single-node replica)."""
    cache = spec.get("cache") or {}
    multi_node = plan is not None and (plan.nodes_per_replica or 1) > 1
    shared_kind = LEADER_WORKER_SET if multi_node else DEPLOYMENT
    existing = cache.get("existingClaim")
    if existing:
        return CacheLayout(shared_kind, str(existing), read_only=True)
    if cache.get("accessMode") == "ReadWriteMany":
        return CacheLayout(shared_kind, ChildNames.of(name).cache, read_only=False)
    return CacheLayout(LEADER_WORKER_SET if multi_node else STATEFUL_SET, None, read_only=False)


def download_content(
    spec: Mapping[str, Any], plan: PlanStatus | None, layout: CacheLayout, name: str
) -> str | None:
    """What the download Job puts into the shared cache, "<image> <profile>", or None when no Job
    runs: only the operator's own shared claim is filled by one (a claim per pod is filled by its
    pod, an existing claim is preloaded), never offline, and only for an exact profile (an id, or
    a description NIM knows: download-to-cache runs without GPUs, so it cannot choose one)."""
    if (
        plan is None
        or layout.shared_claim != ChildNames.of(name).cache
        or (spec.get("ngc") or {}).get("offline")
        or not plan.profile
        or plan.profile_source not in ("spec", "metadata")
    ):
        return None
    return f"{plan.image} {plan.profile}"


def with_created_claim_templates(
    child: Mapping[str, Any], observed: Mapping[str, Any] | None
) -> dict[str, Any]:
    """`child` with the claim templates its observed self was created with: the API server
    refuses a change to them, and the claims they made stay as they are (created once, never
    resized or moved to another storage class here)."""
    path = _CLAIM_TEMPLATES_AT.get(child["kind"])
    if path is None or observed is None:
        return dict(child)
    created = observed
    for key in path:
        created = created.get(key) or {}
    if "volumeClaimTemplates" not in created:
        return dict(child)
    kept = copy.deepcopy(dict(child))
    holder = kept
    for key in path:
        holder = holder[key]
    holder["volumeClaimTemplates"] = copy.deepcopy(created["volumeClaimTemplates"])
    return kept


@dataclass(frozen=True)
class Owner:
    """The NemotronDeployment the children belong to."""

    name: str
    namespace: str
    uid: str


def selector_labels(deployment_name: str) -> dict[str, str]:
    """The labels that select a NemotronDeployment's pods (selectors are immutable)."""
    return {names.DEPLOYMENT_LABEL: deployment_name}


def startup_allowance_seconds(plan: PlanStatus) -> int:
    """How long the startup probe lets a NIM start: its download at ASSUMED_DOWNLOAD_MB_PER_SECOND,
    loading the weights from the cache at ASSUMED_LOAD_MB_PER_SECOND, and the engine's own start
    (ENGINE_START_SECONDS), never less than the NIM Operator's 20 minutes."""
    download_mb = (plan.download_gib or 0.0) * GIB / 1e6
    seconds = (
        download_mb / ASSUMED_DOWNLOAD_MB_PER_SECOND
        + download_mb / ASSUMED_LOAD_MB_PER_SECOND
        + ENGINE_START_SECONDS
    )
    return max(MIN_STARTUP_SECONDS, math.ceil(seconds))


def nim_env(
    spec: Mapping[str, Any], plan: PlanStatus, deployment_name: str, key_given: bool
) -> list[dict[str, Any]]:
    """NIM's environment for a single-node replica (the leader's, when it spans nodes)."""
    env: list[dict[str, Any]] = []
    ngc = spec.get("ngc") or {}
    secret = ngc.get("apiKeySecret")
    if key_given and secret:
        env.append(
            {
                "name": "NGC_API_KEY",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": secret["name"],
                        "key": secret.get("key") or "NGC_API_KEY",
                    }
                },
            }
        )
    env += [
        {"name": "NIM_CACHE_PATH", "value": CACHE_PATH},
        {"name": "NIM_SERVED_MODEL_NAME", "value": deployment_name},
    ]
    # LLM NIMs only: embedding and reranking NIMs have no context length or parallelism to set
    for variable, value in (
        ("NIM_MAX_MODEL_LEN", plan.max_model_length),
        ("NIM_TENSOR_PARALLEL_SIZE", plan.tensor_parallel_size),
        ("NIM_PIPELINE_PARALLEL_SIZE", plan.pipeline_parallel_size),
    ):
        if value is not None:
            env.append({"name": variable, "value": str(value)})
    env.append({"name": "NIM_JSONL_LOGGING", "value": "1"})
    if plan.profile and plan.profile_source in ("spec", "metadata"):
        # NIM 2.x takes only an exact profile id or description; a derived name would stop it.
        env.append({"name": "NIM_MODEL_PROFILE", "value": plan.profile})
    if ngc.get("offline"):
        env.append({"name": "HF_HUB_OFFLINE", "value": "1"})
    user_env = [dict(e) for e in spec.get("env") or ()]
    overridden = {e["name"] for e in user_env}
    return [e for e in env if e["name"] not in overridden] + user_env


def multi_node_env(
    env: Sequence[Mapping[str, Any]], plan: PlanStatus, leader: bool
) -> list[dict[str, Any]]:
    """NIM's multi-node (Ray on a LeaderWorkerSet) environment on top of the single-node one."""
    rank = {
        "name": "NIM_NODE_RANK",
        "valueFrom": {
            "fieldRef": {"fieldPath": f"metadata.labels['{names.LWS_WORKER_INDEX_LABEL}']"}
        },
    }
    extra: list[dict[str, Any]] = [
        {"name": "NIM_MULTI_NODE", "value": "1"},
        {"name": "NIM_NUM_COMPUTE_NODES", "value": str(plan.nodes_per_replica)},
        {"name": "NIM_LEADER_ROLE", "value": "1" if leader else "0"},
        rank,
    ]
    base = [dict(e) for e in env if leader or e["name"] != "NIM_JSONL_LOGGING"]
    return base + extra


def render_children(
    owner: Owner,
    spec: Mapping[str, Any],
    plan: PlanStatus,
    key_given: bool,
    pause_image: str = DEFAULT_PAUSE_IMAGE,
) -> list[dict[str, Any]]:
    """Every child the NemotronDeployment needs, in the order they should be applied
    (`pause_image`: the pre-pull DaemonSet's container, with cache.prePullImage)."""
    child_names = ChildNames.of(owner.name)
    selector = selector_labels(owner.name)
    labels = {
        **selector,
        names.NAME_LABEL: "nim",
        names.INSTANCE_LABEL: owner.name,
        names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
        names.MODEL_LABEL: str(spec["model"]),
    }
    resources = {key: dict(value) for key, value in (spec.get("resources") or {}).items()}
    nodes = plan.nodes_per_replica or 1
    gpus = str((plan.gpus_per_replica or 0) // nodes)
    resources.setdefault("limits", {})[names.GPU_RESOURCE] = gpus
    if names.GPU_RESOURCE in resources.get("requests", {}):
        resources["requests"][names.GPU_RESOURCE] = gpus
    tolerations = [{"key": names.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    tolerations += [dict(t) for t in spec.get("tolerations") or ()]
    ngc = spec.get("ngc") or {}
    cache = spec.get("cache") or {}
    env = nim_env(spec, plan, owner.name, key_given)
    multi_node = nodes > 1
    layout = cache_layout(spec, plan, owner.name)
    if cache.get("existingClaim") and multi_node and cache.get("accessMode") == "ReadWriteOnce":
        raise RenderError(
            f"a replica spans {nodes} nodes and each needs the model, but the ReadWriteOnce "
            f"claim {cache['existingClaim']} attaches to one node: preload a ReadOnlyMany or "
            "ReadWriteMany claim (and say so in cache.accessMode), or omit cache.existingClaim "
            "for a claim per pod"
        )
    context = {
        "names": child_names,
        "namespace": owner.namespace,
        "owner": {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "name": owner.name,
            "uid": owner.uid,
        },
        "labels": labels,
        "selector": selector,
        "serving_selector": {**selector, names.LWS_WORKER_INDEX_LABEL: "0"}
        if multi_node
        else selector,
        "spec": spec,
        "image": plan.image,
        "nodes_per_replica": nodes,
        "env": env,
        "leader_env": multi_node_env(env, plan, leader=True),
        "worker_env": multi_node_env(env, plan, leader=False),
        "resources": resources,
        "node_selector": {
            **(spec.get("nodeSelector") or {}),
            names.GPU_PRODUCT_LABEL: str(plan.gpu_product),
        },
        "tolerations": tolerations,
        "image_pull_secrets": [{"name": s} for s in ngc.get("pullSecrets") or ()],
        "cache_path": CACHE_PATH,
        "cache_volume": CACHE_VOLUME,
        "cache": layout,
        "cache_content_annotation": names.CACHE_CONTENT_ANNOTATION,
        "cache_size": str(cache.get("size") or plan.cache_size or ""),
        "shm_size": SHM_SIZE,
        "startup_failure_threshold": startup_allowance_seconds(plan)
        // STARTUP_PROBE_PERIOD_SECONDS,
    }
    if not cache.get("existingClaim") and not context["cache_size"]:
        raise RenderError("the catalog has no download size for this model: set spec.cache.size")
    templates = [f"{layout.workload_kind.lower()}.json.j2", "service.json.j2"]
    content = download_content(spec, plan, layout, owner.name)
    if content is not None:
        context["download"] = {
            "content": content,
            "profile": plan.profile,
            "env": [e for e in env if e["name"] in ("NGC_API_KEY", "NIM_CACHE_PATH")],
            "size_container": cache_size.CONTAINER,
            "size_script": cache_size.script(CACHE_PATH),
            "pod_labels": {
                names.CACHE_DOWNLOAD_LABEL: owner.name,
                names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
            },
        }
        templates.insert(0, "job.json.j2")
    if layout.shared_claim == child_names.cache:
        templates.insert(0, "persistentvolumeclaim.json.j2")
    if cache.get("prePullImage"):  # first: the pulls run while the cache fills
        context["image_pull"] = {
            "pod_labels": {
                names.IMAGE_PULL_LABEL: owner.name,
                names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
            },
            "node_affinity": (spec.get("affinity") or {}).get("nodeAffinity"),
            "pause_image": pause_image,
        }
        templates.insert(0, "daemonset.json.j2")
    return [_render(template, context) for template in templates]


def _render(template: str, context: Mapping[str, Any]) -> dict[str, Any]:
    try:
        text = _templates.get_template(template).render(**context)
        child = json.loads(text)
    except (jinja2.TemplateError, ValueError) as error:
        raise RenderError(f"{template}: {error}") from error
    if (
        not isinstance(child, dict)
        or not all(child.get(field) for field in ("apiVersion", "kind", "metadata"))
        or not child["metadata"].get("name")
    ):
        raise RenderError(f"{template} did not render an object with apiVersion, kind and name")
    return child
