"""Converge one NemotronDeployment: from a snapshot of what the watches know, ask the core, write
the delta, and say when to look again.

    spec --api--> plan --planner--> children --render--> apply what drifted (drift.matches)
    pods + events --diagnose--> status --status--> patch when it differs, Event per new reason

The rules live in the pure core (planner, render, diagnose, status, drift, recheck); here they
are fed and their answers written, through a `Cluster` (kube.py in the operator, a fake in
tests).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from nemotron_operator.api import names
from nemotron_operator.api import types as api
from nemotron_operator.api.rules import admission_errors
from nemotron_operator.core import cache_size, diagnose, planner, render
from nemotron_operator.core.catalog import Catalog
from nemotron_operator.core.conditions import Condition, find_condition, same_conditions
from nemotron_operator.core.drift import matches
from nemotron_operator.core.recheck import seconds_until_diagnosis_may_change
from nemotron_operator.core.status import (
    Blocker,
    CacheFill,
    Observed,
    cache_ready,
    changed_reasons,
    desired_status,
    downloads,
    event_for,
    image_pre_pulled,
    measured_pod,
    seconds_until_stalled,
)
from nemotron_operator.shell import kube, leaderworkersets, metrics, ngc
from nemotron_operator.shell.credentials import Credentials
from nemotron_operator.shell.world import Snapshot

log = logging.getLogger(__name__)
Why = names.StatusReason
LEADERWORKERSET_RECHECK_SECONDS = 30.0  # the LeaderWorkerSet API missing: look again this often
# While a download runs, its progress is read this often (one log read per converge; a status
# write only when it moved a whole step: cache_size.steady).
CACHE_PROGRESS_READ_SECONDS = 30.0


class Cluster(Protocol):
    """The writes (and the two reads) a converge makes: kube.py's functions."""

    def apply(self, child: Mapping[str, Any], *, answer: bool = False) -> dict[str, Any] | None: ...

    def merge_patch(self, child: Mapping[str, Any]) -> None: ...

    def delete_child(self, kind: str, namespace: str, name: str) -> None: ...

    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    def post_event(
        self, owner: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None: ...

    def leaderworkerset_installed(self) -> bool: ...

    def read_config_map_value(self, namespace: str, name: str, key: str) -> str | None: ...

    def read_log_tail(
        self, namespace: str, pod: str, container: str, limit_bytes: int
    ) -> cache_size.SizeLog: ...


class PublishedProfiles(Protocol):
    def get(self, repository: str, tag: str) -> tuple[ngc.PublishedProfile, ...] | None: ...


@dataclass(frozen=True)
class Outcome:
    requeue_after: float | None = None  # look again then, though nothing else may say so
    spans_nodes: bool = False  # its plan (or last status) runs a replica on several nodes
    reads_key_secret: bool = False


class StatusMemory:
    """What the operator wrote since the index last caught up, per NemotronDeployment: until the
    watch brings the object back with our last write in it, the index holds an older version (the
    one the first write was computed from, or the echo of an earlier write), and a converge in
    between (a pod and its Deployment change together) would compare against that stale status:
    it would write again, post the Events again and give the conditions new transition times.

    Used by one worker per key at a time (the work queue sees to it), and told by the watch of
    every object it brings (`seen`, on Kopf's loop): what the watch has caught up with is
    forgotten then, not at the object's next converge, which may never come (5,000 statuses kept
    for nothing are 40 MiB)."""

    KEPT = 16

    @dataclass
    class _Writes:
        uid: str
        based_on: str  # resourceVersion of the object the first of these writes was computed from
        statuses: list[Mapping[str, Any]]

    def __init__(self) -> None:
        self._written: dict[tuple[str, str], StatusMemory._Writes] = {}
        self._guard = threading.Lock()

    def __len__(self) -> int:
        """The objects it holds statuses of."""
        return len(self._written)

    def seen(self, body: Mapping[str, Any]) -> None:
        """The watch brought `body`: forget our writes when it shows them (or a later change)."""
        self.current(body)

    def current(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """The object's status as it is now: the index's, or the one we wrote last when the
        index has not caught up with it yet."""
        with self._guard:
            return self._current(body)

    def _current(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        seen = body.get("status") or {}
        writes = self._written.get(key)
        if writes is None or writes.uid != meta.get("uid"):
            return seen
        last = writes.statuses[-1]
        stale = meta.get("resourceVersion") == writes.based_on or any(
            same_status(seen, earlier) for earlier in writes.statuses[:-1]
        )
        if stale and not same_status(seen, last):
            return last
        del self._written[key]  # caught up, or someone else changed it since: the index is right
        return seen

    def remember(self, body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        with self._guard:
            self._remember(body, status)

    def _remember(self, body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        writes = self._written.get(key)
        if writes is None or writes.uid != meta.get("uid"):
            writes = self._written[key] = self._Writes(
                meta.get("uid"), meta.get("resourceVersion"), []
            )
        writes.statuses.append(status)
        del writes.statuses[: -self.KEPT]

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._written.pop((namespace, name), None)


class RenderedChildren:
    """The children `desired_children` rendered lately, by what they were rendered from: one
    change converges a NemotronDeployment several times (its status echo, each new child's
    event, the workload's status), and rendering was half of a converge's CPU. Keeps the last
    KEPT renderings; they are shared, so never changed in place (the converge copies what it
    alters). Thread-safe."""

    KEPT = 256

    def __init__(self, pause_image: str = render.DEFAULT_PAUSE_IMAGE) -> None:
        self.pause_image = pause_image
        self._kept: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._guard = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def children(
        self, body: Mapping[str, Any], spec: api.NemotronDeploymentSpec, plan: api.PlanStatus
    ) -> list[dict[str, Any]]:
        meta = body["metadata"]
        key = json.dumps(
            [
                meta["namespace"],
                meta["name"],
                meta["uid"],
                spec.model_dump(by_alias=True, mode="json"),
                plan.model_dump(by_alias=True, mode="json"),
            ],
            sort_keys=True,
        )
        with self._guard:
            kept = self._kept.get(key)
            if kept is not None:
                self._kept.move_to_end(key)
                return kept
        rendered = desired_children(body, spec, plan, self.pause_image)
        with self._guard:
            self._kept[key] = rendered
            while len(self._kept) > self.KEPT:
                self._kept.popitem(last=False)
        return rendered


class Converger:
    def __init__(
        self,
        catalog: Catalog,
        credentials: Credentials,
        cluster: Cluster,
        published_profiles: PublishedProfiles | None = None,
        startup_allowance_seconds: int | None = None,
        forget_leaderworkerset: Callable[[str, str], None] = lambda namespace, name: None,
        pause_image: str = render.DEFAULT_PAUSE_IMAGE,
    ) -> None:
        self.catalog = catalog
        self.credentials = credentials
        self.cluster = cluster
        self.published_profiles = published_profiles
        self.startup_allowance_setting = startup_allowance_seconds
        self.forget_leaderworkerset = forget_leaderworkerset
        self.statuses = StatusMemory()
        self.rendered = RenderedChildren(pause_image)
        self.unkept_status_fields: set[tuple[str, ...]] = set()

    def startup_allowance(self, plan: api.PlanStatus | None) -> int:
        return startup_allowance(plan, self.startup_allowance_setting)

    def converge(self, snapshot: Snapshot, now: dt.datetime) -> Outcome:
        body = snapshot.body
        if body is None or body["metadata"].get("deletionTimestamp"):
            return Outcome()
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        plan: api.PlanStatus | None = None
        credentials: Condition | None = None
        spec_model: api.NemotronDeploymentSpec | None = None
        recheck: list[float | None] = []
        try:
            spec_model = api.NemotronDeploymentSpec.model_validate(body.get("spec") or {})
        except ValidationError as error:
            blocker: Blocker | None = Blocker(
                names.ConditionType.PLANNED, Why.INVALID_SPEC, explain(error)
            )
        else:
            plan, credentials, blocker, after = self._decide(namespace, name, spec_model, snapshot)
            recheck.append(after)

        spec = spec_model.model_dump(by_alias=True, mode="json") if spec_model else {}
        layout = render.cache_layout(spec, plan, name)
        cache = None
        if blocker is None:
            content = render.download_content(spec, plan, layout, name)
            cache, read_again = self._cache_fill(body, snapshot, content, plan, now)
            recheck.append(read_again)
        if cache is not None:  # its pods are diagnosed with the default allowance: no probe
            recheck.append(
                seconds_until_diagnosis_may_change(
                    snapshot.download_pods, now, diagnose.DEFAULT_STARTUP_ALLOWANCE_SECONDS
                )
            )
        children = snapshot.children
        if blocker is None and plan is not None and spec_model is not None:
            try:
                created = self._apply_children(
                    body,
                    self.rendered.children(body, spec_model, plan),
                    layout.workload_kind,
                    snapshot,
                    cache_filled=cache is None or cache.condition.status is True,
                )
            except render.RenderError as error:
                blocker = Blocker(names.ConditionType.PROGRESSING, Why.RENDER_FAILED, str(error))
            except kube.ChildRejected as error:
                blocker = Blocker(names.ConditionType.PROGRESSING, Why.CHILD_REJECTED, str(error))
            else:
                # what this converge created counts as there: the status says so now, not in a
                # second write when the watches bring the new children
                children = {**children, **created}

        image_pull = None
        if plan is not None and plan.fits and spec_model and spec_model.cache.pre_pull_image:
            # from the watch, not what this converge created: a new DaemonSet's status says it
            # wants no node until its controller has looked
            image_pull = image_pre_pulled(snapshot.children.get("DaemonSet"), plan, name)
        spans = _spans_nodes(plan)
        workload = children.get(layout.workload_kind)
        diagnosis = None
        if blocker is None and snapshot.pods:
            allowance = self.startup_allowance(plan)
            diagnosis = diagnose.diagnose_pods(
                snapshot.pods,
                snapshot.warnings,
                plan,
                now=now,
                startup_allowance_seconds=allowance,
            )
            recheck.append(seconds_until_diagnosis_may_change(snapshot.pods, now, allowance))
        port = (spec.get("service") or {}).get("port", 8000)
        observed = Observed(
            generation=int(meta.get("generation") or 0),
            plan=plan,
            blocker=blocker,
            credentials=credentials,
            replicas=int(spec.get("replicas", 1)) if spec else 0,
            workload=workload,
            diagnosis=diagnosis,
            endpoint=f"http://{name}.{namespace}.svc:{port}/v1" if "Service" in children else None,
            selector=f"{names.DEPLOYMENT_LABEL}={name}",
            cache=cache,
            image_pull=image_pull,
        )
        status = self._write_status(body, observed, now)
        recheck.append(seconds_until_stalled(status, now))
        return Outcome(
            requeue_after=min((s for s in recheck if s is not None), default=None),
            spans_nodes=spans or _status_spans_nodes(body),
            reads_key_secret=key_secret_name(body) is not None,
        )

    def _cache_fill(
        self,
        body: Mapping[str, Any],
        snapshot: Snapshot,
        content: str | None,
        plan: api.PlanStatus | None,
        now: dt.datetime,
    ) -> tuple[CacheFill | None, float | None]:
        """The CacheReady fact of the download Job that puts `content` into the shared cache,
        and when to look again: while it downloads, its progress is its cache-size sidecar's
        last line, read now and again in CACHE_PROGRESS_READ_SECONDS."""
        job = snapshot.children.get("Job")
        measured = measured_pod(content, job, snapshot.download_pods)
        size_log = None
        if measured is not None:
            size_log = self.cluster.read_log_tail(
                body["metadata"]["namespace"],
                measured,
                cache_size.CONTAINER,
                cache_size.LINE_LIMIT_BYTES,
            )
        shown = find_condition(
            self.statuses.current(body).get("conditions"), names.ConditionType.CACHE_READY
        )
        fill = cache_ready(
            content,
            job,
            snapshot.download_pods,
            snapshot.warnings,
            plan,
            now,
            size_log,
            shown.get("message") if shown else None,
        )
        return fill, CACHE_PROGRESS_READ_SECONDS if measured is not None else None

    def _write_status(
        self, body: Mapping[str, Any], observed: Observed, now: dt.datetime
    ) -> Mapping[str, Any]:
        """Writes the status `observed` calls for, unless it is already so; returns it."""
        meta = body["metadata"]
        previous = self.statuses.current(body)
        status = without(desired_status(observed, previous, now), self.unkept_status_fields)
        if same_status(previous, status):
            return status
        stored = self.cluster.patch_status(meta["namespace"], meta["name"], status)
        self._learn_unkept_fields(status, stored)
        self.statuses.remember(body, without(status, self.unkept_status_fields))
        posted: set[tuple[str, str]] = set()
        for condition in changed_reasons(previous.get("conditions"), status["conditions"]):
            news = event_for(condition)
            if news is None or news in posted:  # Ready says the same as Stalled: one Event
                continue
            posted.add(news)
            self.cluster.post_event(body, *news, condition["message"])
        return status

    def _learn_unkept_fields(self, written: Mapping[str, Any], stored: Mapping[str, Any]) -> None:
        """A CRD older than the operator (Helm does not upgrade CRDs) prunes status fields it does
        not know: leave them out from then on, or every converge would write them again."""
        unkept = missing_fields(written, stored) - self.unkept_status_fields
        if unkept:
            self.unkept_status_fields |= unkept
            log.warning(
                "the NemotronDeployment CRD in the cluster does not keep status fields %s, which "
                "this operator writes: upgrade the CRD (kubectl apply --server-side -f crds/) and "
                "restart the operator; until then they are left out",
                ", ".join(sorted(".".join(path) for path in unkept)),
            )

    def _decide(
        self, namespace: str, name: str, spec: api.NemotronDeploymentSpec, snapshot: Snapshot
    ) -> tuple[api.PlanStatus, Condition | None, Blocker | None, float | None]:
        """The plan, the CredentialsValid fact, what (if anything) stops pods from existing, and
        when the answer may change with time alone."""
        hf_config = None
        reference = spec.custom_model.config_map_ref if spec.custom_model else None
        if reference is not None:  # read at each converge: custom models are few
            hf_config = self.cluster.read_config_map_value(namespace, reference.name, reference.key)
        plan = planner.plan(spec, self.catalog, snapshot.pools, hf_config_text=hf_config)
        live = self.published_profiles
        if plan.fits and live is not None and not spec.ngc.offline and plan.image:
            image = ngc.ImageReference.parse(plan.image)
            published = live.get(image.repository, image.tag)
            if published:  # plan again against NVIDIA's own figures for this tag
                plan = planner.plan(
                    spec,
                    self.catalog,
                    snapshot.pools,
                    published_profiles=published,
                    hf_config_text=hf_config,
                )
        metrics.plan_made(plan.reason)
        if not plan.fits:
            refusal = Blocker(names.ConditionType.PLANNED, plan.reason, plan.message)
            return plan, None, refusal, None
        answer = self.credentials.check(namespace, name, spec, plan)
        credentials = answer.condition
        if credentials.status is False:
            blocker = Blocker(
                names.ConditionType.CREDENTIALS_VALID, credentials.reason, credentials.message
            )
            return plan, credentials, blocker, answer.recheck_in
        if _spans_nodes(plan) and not self.cluster.leaderworkerset_installed():
            missing = Blocker(
                names.ConditionType.PROGRESSING,
                Why.LEADER_WORKER_SET_MISSING,
                "a replica of this model spans several nodes, which runs on a LeaderWorkerSet: "
                "install the LeaderWorkerSet API (sigs.k8s.io/lws) in the cluster and the pods "
                "are created",
            )
            after = min(LEADERWORKERSET_RECHECK_SECONDS, answer.recheck_in or float("inf"))
            return plan, credentials, missing, after
        return plan, credentials, None, answer.recheck_in

    def _apply_children(
        self,
        body: Mapping[str, Any],
        children: list[dict[str, Any]],
        kind: str,
        snapshot: Snapshot,
        cache_filled: bool,
    ) -> dict[str, Mapping[str, Any]]:
        """Apply what drifted of `children` (those desired_children renders; `kind`: their
        workload's). Until the download Job has filled the shared cache (`cache_filled`), the
        workload is left as it is: not created yet, or still serving the version before.
        Returns the children it created, by kind, as the API server stored them."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        pending: list[tuple[dict[str, Any], bool]] = []  # (child, new)
        for rendered in children:
            observed = snapshot.children.get(rendered["kind"])
            if rendered["kind"] == "PersistentVolumeClaim" and observed is not None:
                continue  # claims are immutable once bound: created once, never resized here
            if rendered["kind"] == "Job" and observed is not None:
                # a Job's pod template is immutable: created once for the files it downloads,
                # replaced (deleted, then created when its deletion is seen) for other files
                if downloads(observed) != downloads(rendered):
                    self.cluster.delete_child("Job", namespace, rendered["metadata"]["name"])
                continue
            if rendered["kind"] == kind and not cache_filled:
                continue
            child = render.with_created_claim_templates(rendered, observed)
            if observed is None or not matches(child, observed):
                pending.append((child, observed is None))
        created: dict[str, Mapping[str, Any]] = {}
        try:
            for child, new in pending:
                if new:
                    created[child["kind"]] = self.cluster.apply(child, answer=True) or child
                    continue
                # A hand edit: server-side apply takes back the fields the operator owns, but
                # leaves the list entries someone else added (a container, a port); then the
                # lists go whole.
                try:
                    applied = self.cluster.apply(child, answer=True)
                except kube.ChildRejected:
                    applied = None  # e.g. the rendered port beside a hand-made one of that name
                if applied is None or not matches(child, applied):
                    self.cluster.merge_patch(child)
        except kube.ChildRejected:
            # One refused (a quota, a policy, a field the API server does not take): the ones
            # this converge created go again, so none stays half-built beside it. One write per
            # new child in the common case, instead of asking first with a dry run of each.
            for made in reversed(created.values()):
                self.cluster.delete_child(made["kind"], namespace, made["metadata"]["name"])
            raise
        # A child of a kind the spec and plan no longer call for: the image pre-pull DaemonSet
        # (cache.prePullImage false), or the workload of another kind (the cache's access mode
        # or the nodes per replica changed), which the new one replaces once it can start.
        kinds = {child["kind"] for child in children}
        for stale in ("DaemonSet", *render.WORKLOAD_KINDS):
            if stale in kinds or stale not in snapshot.children:
                continue
            if stale in render.WORKLOAD_KINDS and not cache_filled:
                continue
            self.cluster.delete_child(
                stale, namespace, snapshot.children[stale]["metadata"]["name"]
            )
            if stale == leaderworkersets.KIND:  # gone now, or already (its CRD gone: no event)
                self.forget_leaderworkerset(namespace, name)
        return created


def startup_allowance(plan: api.PlanStatus | None, setting: int | None = None) -> int:
    """Seconds a NIM may take to become ready: the operator setting, else what the startup
    probe rendered for this plan allows."""
    if setting:
        return setting
    if plan is None:
        return render.MIN_STARTUP_SECONDS
    return render.startup_allowance_seconds(plan)


def desired_children(
    body: Mapping[str, Any],
    spec: api.NemotronDeploymentSpec,
    plan: api.PlanStatus,
    pause_image: str = render.DEFAULT_PAUSE_IMAGE,
) -> list[dict[str, Any]]:
    """Every child the operator applies for the NemotronDeployment `body` (its metadata: name,
    namespace, uid) with this spec and plan, in the order it applies them: render.py's children,
    owned by `body`, reading the NGC key from its Secret unless offline. `nemotron-operator
    render` prints these."""
    meta = body["metadata"]
    owner = render.Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
    wire = spec.model_dump(by_alias=True, mode="json")
    return render.render_children(owner, wire, plan, _key_given(spec), pause_image)


def key_secret_name(body: Mapping[str, Any]) -> str | None:
    """The Secret a NemotronDeployment reads its NGC key from (None: none, or offline)."""
    ngc_spec = (body.get("spec") or {}).get("ngc") or {}
    if ngc_spec.get("offline"):
        return None
    name = (ngc_spec.get("apiKeySecret") or {}).get("name")
    return str(name) if name else None


def explain(error: ValidationError) -> str:
    """A validation error in the API server's words (which refuse most such specs first)."""
    causes = admission_errors(error, ("spec",))[:3]
    return "; ".join(f"{cause.field}: {cause.message}" for cause in causes) + ": fix the spec"


def missing_fields(
    written: Mapping[str, Any], stored: Mapping[str, Any], path: tuple[str, ...] = ()
) -> set[tuple[str, ...]]:
    """Paths of the map fields in `written` that `stored` lacks (lists are compared whole)."""
    missing: set[tuple[str, ...]] = set()
    for key, value in written.items():
        if value is None:
            continue
        if key not in stored:
            missing.add((*path, key))
        elif isinstance(value, Mapping) and isinstance(stored[key], Mapping):
            missing |= missing_fields(value, stored[key], (*path, key))
    return missing


def without(status: Mapping[str, Any], paths: set[tuple[str, ...]]) -> dict[str, Any]:
    """`status` less the fields at `paths`."""
    kept = dict(status)
    for path in paths:
        parent: Any = kept
        for key in path[:-1]:
            if not isinstance(parent.get(key), Mapping):
                break
            parent[key] = dict(parent[key])
            parent = parent[key]
        else:
            parent.pop(path[-1], None)
    return kept


def same_status(previous: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    for key, value in status.items():
        if key == "conditions":
            if not same_conditions(previous.get("conditions"), value):
                return False
        elif previous.get(key) != value:
            return False
    return True


def _spans_nodes(plan: api.PlanStatus | None) -> bool:
    return plan is not None and (plan.nodes_per_replica or 1) > 1


def _status_spans_nodes(body: Mapping[str, Any]) -> bool:
    """Did the status last written say a replica spans nodes (a LeaderWorkerSet may exist)?"""
    plan = (body.get("status") or {}).get("plan") or {}
    return int(plan.get("nodesPerReplica") or 1) > 1


def _key_given(spec: api.NemotronDeploymentSpec) -> bool:
    return bool(spec.ngc and spec.ngc.api_key_secret and not spec.ngc.offline)
