"""Converge one NemotronDeployment: gather what the indexes know, ask the core, write the delta.

This is the shell's only decision path. The rules live in the pure core (planner, render,
diagnose, status, drift); here they are fed and their answers written:

    spec --api--> plan --planner--> children --render--> apply what drifted (drift.matches)
    pods + events --diagnose--> status --status--> patch when it differs, Event per new reason
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from . import api, diagnose, kube, leaderworkersets, names, ngc, peering, planner, render
from .catalog import Catalog, load_catalog
from .conditions import Condition, same_conditions
from .drift import matches
from .inventory import gpu_pools
from .key_secrets import KeySecretWatches
from .leaderworkersets import LeaderWorkerSetChildren
from .status import Blocker, Observed, changed_reasons, desired_status

log = logging.getLogger(__name__)
Why = names.StatusReason
CREDENTIALS_RECHECK_SECONDS = 600


STARTUP_ALLOWANCE_ENV = "NEMOTRON_STARTUP_ALLOWANCE_SECONDS"


@dataclass
class Settings:
    """Operator-wide settings, from the environment (the Helm chart sets them). The NGC
    endpoints are read by `ngc` itself (NEMOTRON_NGC_REGISTRY_URL, NEMOTRON_NGC_METADATA_URL).

    - NEMOTRON_CATALOG_OVERRIDES: a YAML file of catalog additions and overrides.
    - NEMOTRON_LIVE_CATALOG=1: plan against the NIM Metadata API's published profiles.
    - NEMOTRON_STARTUP_ALLOWANCE_SECONDS: how long a NIM container may run without becoming
      ready before the status says StartupTimeout. Default: what the pod's startup probe allows
      (render.startup_allowance_seconds: at least 20 minutes, more for big downloads). A
      shorter value reports a slow start sooner; the kubelet still restarts the container only
      when the startup probe runs out.
    """

    catalog: Catalog
    published_profiles: ngc.PublishedProfileCache | None  # the live catalog, when enabled
    startup_allowance_seconds: int | None = None  # None: the startup probe's allowance

    @classmethod
    def from_environment(cls) -> Settings:
        live = os.environ.get("NEMOTRON_LIVE_CATALOG", "").lower() in ("1", "true")
        return cls(
            catalog=load_catalog(os.environ.get("NEMOTRON_CATALOG_OVERRIDES") or None),
            published_profiles=ngc.PublishedProfileCache() if live else None,
            startup_allowance_seconds=_positive_seconds(STARTUP_ALLOWANCE_ENV),
        )


def _positive_seconds(variable: str) -> int | None:
    text = os.environ.get(variable, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"{variable} must be a whole number of seconds above 0, not {text!r}")
    return int(text)


_settings: Settings | None = None


def configure_from_environment() -> None:
    global _settings
    _settings = Settings.from_environment()


def settings() -> Settings:
    if _settings is None:
        configure_from_environment()
    assert _settings is not None
    return _settings


@dataclass
class World:
    """The indexes Kopf keeps (and LEADERWORKERSET_INDEX): key -> collection of plain dicts."""

    deployments: Mapping[Any, Iterable[Any]]
    gpu_nodes: Mapping[Any, Iterable[Any]]
    gpu_requests: Mapping[Any, Iterable[Any]]
    owned_pods: Mapping[Any, Iterable[Any]]
    pod_warnings: Mapping[Any, Iterable[Any]]
    children: list[Mapping[Any, Iterable[Any]]] = field(default_factory=list)

    def one(self, index: Mapping[Any, Iterable[Any]], key: Any) -> Any | None:
        return stable(lambda: next(iter(index.get(key, ())), None))

    def values(self, index: Mapping[Any, Iterable[Any]], key: Any) -> list[Any]:
        return stable(lambda: list(index.get(key, ())))

    def entries(self, index: Mapping[Any, Iterable[Any]]) -> list[tuple[Any, list[Any]]]:
        """A copy of a whole index, to iterate over."""
        return stable(lambda: [(key, list(values)) for key, values in index.items()])

    def child(self, namespace: str, deployment: str, kind: str) -> Mapping[str, Any] | None:
        for index in self.children:
            found = self.one(index, (namespace, deployment, kind))
            if found is not None:
                return found  # type: ignore[no-any-return]
        return None

    def pods(self, namespace: str, deployment: str) -> list[Mapping[str, Any]]:
        return self.values(self.owned_pods, (namespace, deployment))

    def warnings_about(
        self, namespace: str, pods: Iterable[Mapping[str, Any]]
    ) -> list[Mapping[str, Any]]:
        found: list[Mapping[str, Any]] = []
        for pod in pods:
            found += self.values(self.pod_warnings, (namespace, pod["metadata"]["name"]))
        return found

    def pools(self, exclude_pods: Iterable[Mapping[str, Any]] = ()) -> Any:
        """GPU pools with what is free, not counting the given pods (a deployment's own)."""
        mine = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in exclude_pods}
        requested: dict[str, int] = {}
        for node_name, claims in self.entries(self.gpu_requests):
            requested[node_name] = sum(g for ns, pod, g in claims if (ns, pod) not in mine)
        nodes = [n for _, bodies in self.entries(self.gpu_nodes) for n in bodies]
        return gpu_pools(nodes, requested)


T = TypeVar("T")


def stable(read: Callable[[], T]) -> T:
    """read() of Kopf's indexes, again when they changed under it: handlers run in threads while
    Kopf updates the indexes in its event loop, and iterating a dict that changes raises
    RuntimeError (seen under load: "dictionary changed size during iteration")."""
    for _ in range(99):
        try:
            return read()
        except (RuntimeError, KeyError):
            continue
    return read()


_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()
_credential_checks: dict[tuple[Any, ...], tuple[float, ngc.CredentialCheck]] = {}
_credential_checks_guard = threading.Lock()
_last_inventory: list[Any] = [None]


def _lock(namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


def inventory_changed(world: World) -> bool:
    """Has the set of GPU pools changed since the last call? (Node heartbeats do not count.)"""
    current = world.pools()
    changed = current != _last_inventory[0]
    _last_inventory[0] = current
    return changed


# Converges that raised (an API error, the API server away): Kopf does not retry event handlers,
# so the next resync round does, whatever the object's status says.
_failed: set[tuple[str, str]] = set()


def forget(namespace: str, name: str) -> None:
    """A NemotronDeployment was deleted: drop what the shell kept about it."""
    key = (namespace, name)
    _failed.discard(key)
    _written.pop(key, None)
    _spanning.discard(key)
    with _locks_guard:
        _locks.pop(key, None)


def converge(
    namespace: str, name: str, world: World, body: Mapping[str, Any] | None = None
) -> None:
    """Converge one NemotronDeployment: `body` is the object as an event just delivered it
    (fresher than the index, and there before Kopf indexes a namespace it starts to serve)."""
    try:
        _converge_locked(namespace, name, world, body)
    except Exception:
        _failed.add((namespace, name))
        raise
    _failed.discard((namespace, name))


def _converge_locked(
    namespace: str, name: str, world: World, given: Mapping[str, Any] | None
) -> None:
    with _lock(namespace, name):
        body = given or world.one(world.deployments, (namespace, name))
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        try:
            _converge(body, world, dt.datetime.now(dt.UTC))
        except kube.NamespaceTerminating:
            log.debug("namespace %s is being deleted: nothing to converge", namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            # deleted since the index saw it (its namespace, most often): nothing to converge
            log.debug("%s/%s is gone: nothing to converge", namespace, name)


# --- resync: what no watch reports (startup allowances running out, keys revoked) -----------

RESYNC_SECONDS = 30
_world_seen: list[World] = []
_resync_stop = threading.Event()


def remember_world(world: World) -> World:
    """Keep the indexes for the resync loop (Kopf hands them to handlers only)."""
    if not _world_seen:
        _world_seen.append(world)
    return world


def resync_due(body: Mapping[str, Any], full: bool) -> bool:
    """Converge again on resync when not ready (a startup allowance may have run out), on a full
    resync (credentials are re-checked every CREDENTIALS_RECHECK_SECONDS), when the last converge
    failed, or when the status describes an older generation.

    Scaled to zero is not "not ready": nothing but an event changes it, so only an unanswered
    credentials check (Unknown) brings it back before the full round. (500 objects scaled to
    zero cost 16 Secret reads a second and a tenth of a CPU, forever, before this.)"""
    meta = body.get("metadata") or {}
    if full or (meta.get("namespace"), meta.get("name")) in _failed:
        return True
    if (body.get("status") or {}).get("observedGeneration") != meta.get("generation"):
        return True
    conditions = (body.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == names.ConditionType.READY), None)
    if ready is not None and ready.get("reason") == Why.SCALED_TO_ZERO:
        credentials = next(
            (c for c in conditions if c.get("type") == names.ConditionType.CREDENTIALS_VALID), None
        )
        return credentials is not None and credentials.get("status") == "Unknown"
    return ready is None or ready.get("status") != "True"


def _resync_loop() -> None:
    rounds = 0
    while not _resync_stop.wait(RESYNC_SECONDS):
        rounds += 1
        full = rounds % (CREDENTIALS_RECHECK_SECONDS // RESYNC_SECONDS) == 0
        try:
            _resync_round(full)
        except Exception:  # the loop must outlive any round: nothing else would restart it
            log.exception("a resync round failed; the next one starts in %s s", RESYNC_SECONDS)


def _resync_round(full: bool) -> None:
    for world in _world_seen:
        entries = world.entries(world.deployments)
        # where a peer acts, Kopf's watches are paused, and so is this loop
        acting = peering.acting_in(namespace for (namespace, _), _ in entries)
        for (namespace, name), bodies in entries:
            for body in bodies if namespace in acting else ():
                if resync_due(body, full):
                    _converge_logged(namespace, name, world, "resync")


def _converge_logged(namespace: str, name: str, world: World, occasion: str) -> None:
    """converge, for triggers of our own (not Kopf's handlers): a failure is logged, and the
    next resync round (which retries failed objects) tries again."""
    try:
        converge(namespace, name, world)
    except Exception:
        log.exception("%s of %s/%s failed; the resync loop retries", occasion, namespace, name)


def start_resync() -> None:
    _resync_stop.clear()
    threading.Thread(target=_resync_loop, name="resync", daemon=True).start()


def stop_background_work() -> None:
    """Stop the resync loop and the watches of key Secrets and LeaderWorkerSets (the operator is
    shutting down)."""
    _resync_stop.set()
    _key_secret_watches.stop()
    _leaderworkersets.stop()


# --- key Secrets: a key created, fixed, rotated or deleted is acted on at once ----------------


def key_secret_name(body: Mapping[str, Any]) -> str | None:
    """The Secret a NemotronDeployment reads its NGC key from (None: none, or offline)."""
    ngc_spec = (body.get("spec") or {}).get("ngc") or {}
    if ngc_spec.get("offline"):
        return None
    name = (ngc_spec.get("apiKeySecret") or {}).get("name")
    return str(name) if name else None


def _key_readers(world: World, namespace: str, secret: str | None) -> list[str]:
    """The NemotronDeployments of `namespace` that read their key from `secret` (None: any)."""
    return [
        name
        for (ns, name), bodies in world.entries(world.deployments)
        if ns == namespace
        for body in bodies
        if key_secret_name(body) is not None and secret in (None, key_secret_name(body))
    ]


def key_secrets_needed(namespace: str) -> bool:
    return any(_key_readers(world, namespace, None) for world in _world_seen)


def key_secret_changed(namespace: str, secret: str | None) -> None:
    """Secret `secret` of `namespace` was created, changed or deleted (None: any may have been):
    converge the NemotronDeployments that read their key from it."""
    for world in _world_seen:
        readers = _key_readers(world, namespace, secret)
        if not readers or not peering.acts_in(namespace):
            continue
        for name in readers:
            _converge_logged(namespace, name, world, "a key change's converge")


_key_secret_watches = KeySecretWatches(key_secret_changed, key_secrets_needed)


# --- LeaderWorkerSets: watched apart from Kopf (namespace_watches says why) --------------------

# NemotronDeployments whose plan spans nodes, or whose status last said so (a LeaderWorkerSet of
# theirs may exist), by the converge that saw it.
_spanning: set[tuple[str, str]] = set()


def _follow_leaderworkersets(namespace: str, name: str, spans: bool) -> None:
    if spans:
        _spanning.add((namespace, name))
        _leaderworkersets.follow(namespace)
    else:
        _spanning.discard((namespace, name))


def _spans_nodes(plan: Mapping[str, Any] | None) -> bool:
    return int((plan or {}).get("nodesPerReplica") or 1) > 1


def _status_plan(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return ((body.get("status") or {}).get("plan")) or None


def leaderworkersets_needed(namespace: str) -> bool:
    needed = False
    for ns, name in [key for key in list(_spanning) if key[0] == namespace]:
        if any(world.one(world.deployments, (ns, name)) for world in _world_seen):
            needed = True
        else:
            _spanning.discard((ns, name))  # deleted
    return needed


def leaderworkerset_changed(namespace: str, deployment: str | None) -> None:
    """A LeaderWorkerSet of `deployment` changed (None: the namespace was listed again):
    converge its NemotronDeployment (all that have or may have one)."""
    if deployment is not None:
        owners = [deployment]
    else:
        spanning = {name for ns, name in list(_spanning) if ns == namespace}
        owners = sorted(spanning | set(_leaderworkersets.owners(namespace)))
    if not owners or not peering.acts_in(namespace):
        return
    for world in _world_seen:
        for name in owners:
            _converge_logged(namespace, name, world, "a LeaderWorkerSet change's converge")


_leaderworkersets = LeaderWorkerSetChildren(leaderworkerset_changed, leaderworkersets_needed)
# one more index of children for the World the handlers build: a watch of its own keeps it
LEADERWORKERSET_INDEX = _leaderworkersets.index


def _converge(body: Mapping[str, Any], world: World, now: dt.datetime) -> None:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    pods = world.pods(namespace, name)
    plan_status: dict[str, Any] | None = None
    credentials: Condition | None = None
    spec_model: api.NemotronDeploymentSpec | None = None
    try:
        spec_model = api.NemotronDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        blocker: Blocker | None = Blocker(
            names.ConditionType.PLANNED, Why.INVALID_SPEC, explain(error)
        )
    else:
        plan_status, credentials, blocker = _decide(namespace, spec_model, world.pools(pods))
    # the watches this object needs (here, not in a handler: the resync loop repairs them)
    if key_secret_name(body):
        _key_secret_watches.follow(namespace)
    _follow_leaderworkersets(
        namespace, name, _spans_nodes(plan_status) or _spans_nodes(_status_plan(body))
    )

    spec = spec_model.model_dump(by_alias=True, mode="json") if spec_model else {}
    if blocker is None and plan_status is not None:
        try:
            _apply_children(body, spec, plan_status, world, key_given=_key_given(spec_model))
        except render.RenderError as error:
            blocker = Blocker(names.ConditionType.PROGRESSING, Why.RENDER_FAILED, str(error))
        except kube.ChildRejected as error:
            blocker = Blocker(names.ConditionType.PROGRESSING, Why.CHILD_REJECTED, str(error))

    workload_kind = leaderworkersets.KIND if _spans_nodes(plan_status) else "Deployment"
    workload = world.child(namespace, name, workload_kind)
    diagnosis = None
    if blocker is None and pods:
        diagnosis = diagnose.diagnose_pods(
            pods,
            world.warnings_about(namespace, pods),
            plan_status,
            now=now,
            startup_allowance_seconds=startup_allowance(plan_status),
        )
    service = world.child(namespace, name, "Service")
    port = (spec.get("service") or {}).get("port", 8000)
    observed = Observed(
        generation=int(meta.get("generation") or 0),
        plan=plan_status,
        blocker=blocker,
        credentials=credentials,
        replicas=int(spec.get("replicas", 1)) if spec else 0,
        workload=workload,
        diagnosis=diagnosis,
        endpoint=f"http://{name}.{namespace}.svc:{port}/v1" if service else None,
        selector=f"{names.DEPLOYMENT_LABEL}={name}",
    )
    previous = _current_status(body)
    status = desired_status(observed, previous, now)
    if _same_status(previous, status):
        return
    kube.patch_status(namespace, name, status)
    _remember_write(body, status)
    posted: set[tuple[str, str]] = set()
    for condition in changed_reasons(previous.get("conditions"), status["conditions"]):
        if condition["type"] in (
            names.ConditionType.READY,
            names.ConditionType.PLANNED,
            names.ConditionType.CREDENTIALS_VALID,
        ):
            healthy = condition["status"] == "True"
            news = ("Normal" if healthy else "Warning", condition["reason"])
            if news in posted:  # Ready says the same as Planned or CredentialsValid: one Event
                continue
            posted.add(news)
            kube.post_event(body, *news, condition["message"])


# What the operator wrote since the index last caught up, per NemotronDeployment: until the
# watch brings the object back with our last write in it, the index holds an older version (the
# one the first write was computed from, or the echo of an earlier write), and a converge in
# between (a pod and its Deployment change together) would compare against that stale status:
# it would write again, post the Events again and give the conditions new transition times.
@dataclass
class _Writes:
    uid: str
    based_on: str  # resourceVersion of the object the first of these writes was computed from
    statuses: list[Mapping[str, Any]]


_written: dict[tuple[str, str], _Writes] = {}


def _current_status(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object's status as it is now: the index's, or the one we wrote last when the index
    has not caught up with it yet."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    seen = body.get("status") or {}
    writes = _written.get(key)
    if writes is None or writes.uid != meta.get("uid"):
        return seen
    last = writes.statuses[-1]
    stale = meta.get("resourceVersion") == writes.based_on or any(
        _same_status(seen, earlier) for earlier in writes.statuses[:-1]
    )
    if stale and not _same_status(seen, last):
        return last
    del _written[key]  # caught up, or someone else changed it since: the index is right
    return seen


def _remember_write(body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    writes = _written.get(key)
    if writes is None or writes.uid != meta.get("uid"):
        writes = _written[key] = _Writes(meta.get("uid"), meta.get("resourceVersion"), [])
    writes.statuses.append(status)
    del writes.statuses[:-_WRITES_KEPT]


_WRITES_KEPT = 16


def startup_allowance(plan: Mapping[str, Any] | None) -> int:
    """Seconds a NIM may take to become ready: the operator setting, else what the startup
    probe rendered for this plan allows."""
    return settings().startup_allowance_seconds or render.startup_allowance_seconds(plan or {})


def _decide(
    namespace: str, spec: api.NemotronDeploymentSpec, pools: Any
) -> tuple[dict[str, Any], Condition | None, Blocker | None]:
    """The plan, the CredentialsValid fact, and what (if anything) stops pods from existing."""
    plan = planner.plan(spec, settings().catalog, pools)
    live = settings().published_profiles
    if plan.fits and live is not None and not spec.ngc.offline and plan.image:
        image = ngc.ImageReference.parse(plan.image)
        published = live.get(image.repository, image.tag)
        if published:  # plan again against NVIDIA's own figures for this tag
            plan = planner.plan(spec, settings().catalog, pools, published_profiles=published)
    plan_status = plan.model_dump(by_alias=True, mode="json", exclude_none=True)
    if not plan.fits:
        return plan_status, None, Blocker(names.ConditionType.PLANNED, plan.reason, plan.message)
    credentials = _credentials(namespace, spec, plan_status)
    if credentials.status is False:
        return (
            plan_status,
            credentials,
            Blocker(names.ConditionType.CREDENTIALS_VALID, credentials.reason, credentials.message),
        )
    if _spans_nodes(plan_status) and not kube.leaderworkerset_installed():
        return (
            plan_status,
            credentials,
            Blocker(
                names.ConditionType.PROGRESSING,
                Why.LEADER_WORKER_SET_MISSING,
                "a replica of this model spans several nodes, which runs on a LeaderWorkerSet: "
                "install the LeaderWorkerSet API (sigs.k8s.io/lws) in the cluster and the pods "
                "are created",
            ),
        )
    return plan_status, credentials, None


def explain(error: ValidationError) -> str:
    """A validation error in a sentence a person can act on (the schema catches most first)."""
    problems = [
        f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:3]
    ]
    return "; ".join(problems) + ": fix the spec"


def _same_status(previous: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    for key, value in status.items():
        if key == "conditions":
            if not same_conditions(previous.get("conditions"), value):
                return False
        elif previous.get(key) != value:
            return False
    return True


def _key_given(spec: api.NemotronDeploymentSpec | None) -> bool:
    return bool(spec and spec.ngc and spec.ngc.api_key_secret and not spec.ngc.offline)


def _credentials(
    namespace: str, spec: api.NemotronDeploymentSpec, plan: Mapping[str, Any]
) -> Condition:
    """The CredentialsValid fact (False stops pods from being created: they could not start)."""

    def fact(valid: bool | None, reason: str, message: str) -> Condition:
        return Condition(names.ConditionType.CREDENTIALS_VALID, valid, reason, message)

    if spec.ngc.offline:
        return fact(
            True, Why.OFFLINE, "air-gapped: the NIM loads its model from the cache and needs no key"
        )
    secret = spec.ngc.api_key_secret
    image = ngc.ImageReference.parse(str(plan["image"]))
    if secret is None:
        if plan.get("keyRequired"):
            return fact(
                False,
                names.NimReason.NGC_KEY_REQUIRED,
                f"{plan.get('keyRequiredReason') or 'this image needs an NGC API key'}: "
                "create a Secret with your key (kubectl create secret generic ngc-api "
                "--from-literal=NGC_API_KEY=<key>) and set spec.ngc.apiKeySecret.name",
            )
        check = _cached(
            ("anonymous", image.repository, image.tag),
            lambda: ngc.check_anonymous_pull(image.repository, tag=image.tag),
        )
        return fact(check.valid, check.reason, check.message)
    # The Secret as the key Secret watch last saw it: an answer for that very version needs no
    # read (without it, every converge of an object being created read the Secret again).
    version = _key_secret_watches.version(namespace, secret.name)
    seen_version = ("secret", namespace, secret.name, secret.key, version, str(plan["image"]))
    known = _remembered(seen_version) if version is not None else None
    if known is not None:
        return fact(known.valid, known.reason, known.message)
    value, why_not = kube.read_secret_value(namespace, secret.name, secret.key)
    if value is None:
        return fact(
            False,
            names.NimReason.SECRET_NOT_FOUND,
            f"{why_not}: create it, or fix spec.ngc.apiKeySecret",
        )
    check = _cached(
        ("key", str(plan["image"]), hash(value)),
        lambda: ngc.check_image_credentials(str(plan["image"]), ngc.ApiKey(value)),
        also_under=seen_version if version is not None else None,
    )
    return fact(check.valid, check.reason, check.message)


def _fresh(key: tuple[Any, ...]) -> tuple[float, ngc.CredentialCheck] | None:
    """(when asked, the registry's answer) kept under `key`, unless it is due to be asked again."""
    with _credential_checks_guard:
        cached = _credential_checks.get(key)
    if cached and time.monotonic() - cached[0] < CREDENTIALS_RECHECK_SECONDS:
        return cached
    return None


def _remembered(key: tuple[Any, ...]) -> ngc.CredentialCheck | None:
    """The registry's answer kept under `key`, unless it is due to be asked again."""
    fresh = _fresh(key)
    return fresh[1] if fresh else None


def _cached(
    key: tuple[Any, ...],
    ask: Callable[[], ngc.CredentialCheck],
    also_under: tuple[Any, ...] | None = None,
) -> ngc.CredentialCheck:
    """The registry's answer, asked again every few minutes (and at once for a new key); kept
    under `key` and, when given, `also_under`, with the same age."""
    cached = _fresh(key)
    if cached is None:
        cached = (time.monotonic(), ask())  # outside the lock: the registry may be slow
        with _credential_checks_guard:  # a moment to forget every other answer due again
            for due in [
                k
                for k, (at, _) in _credential_checks.items()
                if cached[0] - at >= CREDENTIALS_RECHECK_SECONDS
            ]:
                del _credential_checks[due]
    with _credential_checks_guard:
        _credential_checks[key] = cached
        if also_under is not None:
            _credential_checks[also_under] = cached
    return cached[1]


def _apply_children(
    body: Mapping[str, Any],
    spec: Mapping[str, Any],
    plan: Mapping[str, Any],
    world: World,
    key_given: bool,
) -> None:
    meta = body["metadata"]
    owner = render.Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
    pending: list[tuple[dict[str, Any], bool]] = []  # (child, new)
    for child in render.render_children(owner, spec, plan, key_given=key_given):
        observed = world.child(owner.namespace, owner.name, child["kind"])
        if child["kind"] == "PersistentVolumeClaim" and observed is not None:
            continue  # claims are immutable once bound: created once, never resized here
        if observed is None or not matches(child, observed):
            pending.append((child, observed is None))
    if sum(new for _, new in pending) > 1:
        # Creating several: first ask whether the API server takes every one, so that one it
        # refuses (kube.ChildRejected) leaves none of the others half-built behind it.
        for child, _ in pending:
            kube.apply(child, dry_run=True)
    for child, new in pending:
        if new:
            kube.apply(child)
            continue
        # A hand edit: server-side apply takes back the fields the operator owns, but leaves the
        # list entries someone else added (a container, a port); then the lists go whole.
        try:
            applied = kube.apply(child, answer=True)
        except kube.ChildRejected:
            applied = None  # e.g. the rendered port beside a hand-made one of the same name
        if applied is None or not matches(child, applied):
            kube.merge_patch(child)
    stale = "Deployment" if _spans_nodes(plan) else leaderworkersets.KIND
    if world.child(owner.namespace, owner.name, stale) is not None:
        kube.delete_workload(stale, owner.namespace, owner.name)
        if stale == leaderworkersets.KIND:  # gone now, or already (with its CRD: no event says so)
            _leaderworkersets.forget(owner.namespace, owner.name)
