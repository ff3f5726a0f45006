"""What a NemotronDeployment's status should say, from what the operator knows. Pure.

Conditions (Kubernetes API conventions; `Ready` is the summary that `kubectl get` shows):

- `Planned`: the planner found GPUs that hold the model (False: why not, with numbers).
- `CredentialsValid`: the NGC key works for this image (False: rejected, not entitled, or a key
  is required and none given; Unknown: the registry could not be asked).
- `Progressing`: pods are being created or rolled out.
- `Degraded`: something stops the NIM from serving (the diagnosed cause).
- `Ready`: every replica serves; otherwise the most useful reason why not.
- `ImagePrePulled` (only with cache.prePullImage): on how many of the nodes the pods may run on
  the NIM image is already; it holds nothing back.
- `CacheReady` (only while a download Job fills a shared cache): the planned profile's files are
  in the cache; the workload is created, or rolled out to a new version, only then. While the
  Job runs, how far it is; when it or its pod fails, the cause with the reason a NIM pod failing
  so would get (the Job runs the NIM image's own download), Stalled or retried as that reason is.
- `Reconciling` and `Stalled`: the two conditions of the kstatus conventions
  (sigs.k8s.io/cli-utils/pkg/kstatus), which Flux, `flux`'s health checks and CI pipelines that
  wait read. Reconciling: still working towards the spec (creating, rolling out, downloading, or
  retrying a failure that may mend by itself). Stalled: it cannot go on without a change by a
  person (a refusal, bad credentials, a failure no retry mends, or one that has not mended within
  `PROGRESS_DEADLINE_SECONDS`, as a Deployment's progressDeadlineSeconds).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nemotron_operator.api import names
from nemotron_operator.api.types import PlanStatus
from nemotron_operator.core import cache_size, diagnose, render
from nemotron_operator.core.conditions import (
    Condition,
    find_condition,
    merge_conditions,
    timestamp,
)

Why = names.StatusReason
Nim = names.NimReason

# A pod failure that may mend without anyone changing anything (a node added by an autoscaler, a
# network blip, a volume attached late) is retried; it counts as Stalled only once it has lasted
# this long, the default progressDeadlineSeconds of a Deployment.
PROGRESS_DEADLINE_SECONDS = 600

# Diagnosed pod failures that no retry mends: a person must change the spec, a Secret, the node
# or the registry entitlement. Stalled at once.
NEEDS_A_PERSON: frozenset[str] = frozenset(
    {
        Nim.SECRET_NOT_FOUND,
        Nim.NGC_KEY_REQUIRED,
        Nim.NGC_AUTHENTICATION_FAILED,
        Nim.NGC_NOT_ENTITLED,
        Nim.IMAGE_PULL_UNAUTHORIZED,
        Nim.IMAGE_NOT_FOUND,
        Nim.MODEL_PROFILE_NOT_FOUND,
        Nim.CONTAINER_CONFIG_ERROR,
        Nim.INSUFFICIENT_GPU_MEMORY,
        Nim.HOST_MEMORY_EXHAUSTED,
        Nim.CACHE_NOT_WRITABLE,
        Nim.GPU_DRIVER_INCOMPATIBLE,
        Nim.HUGGING_FACE_ACCESS_DENIED,
        Nim.SHARED_MEMORY_TOO_SMALL,
        Nim.DISK_FULL,
        Nim.NO_PROFILE_FOR_GPU,
        Nim.MODEL_NOT_SUPPORTED,
    }
)
# Diagnosed pod failures that may mend by themselves: Reconciling (retrying) for
# PROGRESS_DEADLINE_SECONDS, Stalled after that.
RETRIED: frozenset[str] = frozenset(
    {
        Nim.UNSCHEDULABLE,  # a cluster autoscaler may add the GPUs; another deployment may leave
        Nim.IMAGE_PULL_FAILED,  # network, DNS, a registry mirror
        Nim.MODEL_SOURCE_UNREACHABLE,  # the same, for the model download
        Nim.VOLUME_MOUNT_FAILED,  # attach/detach takes minutes on real clusters
        Nim.GPU_UNAVAILABLE,  # a device plugin restarting, a GPU being reset
        Nim.CONTAINER_START_FAILED,  # a sandbox or runtime hiccup as often as a bad reference
        Nim.DISTRIBUTED_INIT_FAILED,  # a worker restarted while the group formed
        Nim.CRASH_LOOP,  # cause unknown: the kubelet keeps restarting it
        Nim.STARTUP_TIMEOUT,  # a slow download may finish on the next start
    }
)


@dataclass(frozen=True)
class Blocker:
    """Why no pods may exist yet (a plan refusal, a credentials failure, a missing API)."""

    condition: str  # the condition that says so: Planned, CredentialsValid, or Progressing
    reason: str
    message: str


@dataclass(frozen=True)
class CacheFill:
    """What the download Job filling the shared cache says: the CacheReady fact, and whether the
    download fails (the condition's reason then names why)."""

    condition: Condition
    failing: bool = False  # the Job failed, or its pod fails: condition.reason names the cause
    gave_up: bool = False  # the Job failed: no retry comes until a person deletes it


@dataclass(frozen=True)
class Observed:
    """Everything the status is computed from."""

    generation: int
    plan: PlanStatus | None  # the planner's answer (None: the spec is invalid)
    blocker: Blocker | None
    credentials: Condition | None  # the CredentialsValid fact, when there is one
    replicas: int  # desired
    workload: Mapping[str, Any] | None  # the Deployment, StatefulSet or LeaderWorkerSet
    diagnosis: Any | None  # diagnose.Diagnosis of the pods, None when healthy
    endpoint: str | None
    selector: str
    cache: CacheFill | None = None  # when a download Job fills the cache
    image_pull: Condition | None = None  # ImagePrePulled, with cache.prePullImage


def downloads(job: Mapping[str, Any]) -> str | None:
    """What a download Job puts into the shared cache ("<image> <profile>", its annotation)."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    return annotations.get(names.CACHE_CONTENT_ANNOTATION)


def pods_of_job(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The pods the Job `job` created (by their owner reference: an older Job's pods, still
    going away, are not its)."""
    uid = (job.get("metadata") or {}).get("uid")
    return [
        pod
        for pod in pods
        if uid
        and any(
            o.get("uid") == uid for o in (pod.get("metadata") or {}).get("ownerReferences") or ()
        )
    ]


def cache_ready(
    content: str | None,
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]] = (),
    events: Sequence[Mapping[str, Any]] = (),
    plan: PlanStatus | None = None,
    now: dt.datetime | None = None,
    size_log: cache_size.SizeLog | None = None,
    shown: str | None = None,
) -> CacheFill | None:
    """The CacheReady fact from the download Job that should put `content` ("<image> <profile>")
    into the shared cache (None: no Job does, the fact does not apply), its pods (those with the
    download label; `events`: the Warning Events about them) diagnosed as a NIM pod's are: a Job
    that failed, or whose pod fails while the Job retries, carries the NIM's own reason.

    `size_log`: what the operator read of the cache-size sidecar of `measured_pod` (None: it
    read nothing); `shown`: the CacheReady message the status has, kept while the measured
    progress has not moved a whole step (cache_size.steady)."""
    if content is None:
        return None
    image, profile = content.split(" ", 1)
    what = f"profile {profile} of {image}"
    if job is None or downloads(job) != content:
        return CacheFill(_cache_condition(False, Why.CACHE_DOWNLOADING, _downloading(what)))
    name = (job.get("metadata") or {}).get("name")
    finished = {
        c.get("type"): c
        for c in ((job.get("status") or {}).get("conditions") or ())
        if c.get("status") == "True"
    }
    if "Complete" in finished:
        return CacheFill(
            _cache_condition(True, Why.CACHE_DOWNLOADED, f"the shared cache holds {what}")
        )
    own = pods_of_job(job, pods)
    found = diagnose.diagnose_pods(own, events, plan, now=now) if own else None
    cause = f"{found.message} {found.hint}".strip() if found else ""
    if "Failed" in finished:
        failed = finished["Failed"]
        why = failed.get("message") or failed.get("reason")
        message = (
            f"the Job {name} gave up downloading {what} ({why}): {cause} Once that is fixed, "
            f"delete the Job (kubectl delete job {name}) and it runs again"
            if found
            else f"the Job {name} could not download {what}: {why}; its pod's log says why "
            f"(kubectl logs job/{name})"
        )
        reason = found.reason if found else Why.CACHE_DOWNLOAD_FAILED
        return CacheFill(_cache_condition(False, reason, message), failing=True, gave_up=True)
    if found is not None:
        message = f"the Job {name} cannot download {what}: {cause}"
        return CacheFill(_cache_condition(False, found.reason, message), failing=True)
    progress = download_progress(job, own, plan, size_log)
    message = cache_size.steady(shown, _downloading(what, progress))
    return CacheFill(_cache_condition(False, Why.CACHE_DOWNLOADING, message))


def _cache_condition(status: bool, reason: str, message: str) -> Condition:
    return Condition(names.ConditionType.CACHE_READY, status, reason, message)


def _downloading(what: str, progress: str = "") -> str:
    return f"a Job downloads {what} into the shared cache" + (f": {progress}" if progress else "")


def measured_pod(
    content: str | None, job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]
) -> str | None:
    """The pod whose cache-size sidecar says how far the download of `content` is: the newest
    pod of its Job (not finished) whose download container runs (None: no download runs)."""
    if content is None or job is None or downloads(job) != content or _finished(job):
        return None
    pod = _newest_live(pods_of_job(job, pods))
    if pod is None or _running_since(pod) is None:
        return None
    if (pod.get("status") or {}).get("phase") not in (None, "Pending", "Running"):
        return None
    return str((pod.get("metadata") or {}).get("name") or "") or None


def _finished(job: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in ((job.get("status") or {}).get("conditions") or ())
    )


def _newest_live(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    if not live:
        return None
    return max(live, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))


def _running_since(pod: Mapping[str, Any]) -> dt.datetime | None:
    """When the pod's (download) container started running (None: it does not run)."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or ()
    return diagnose.timestamp(
        next(
            (
                s["state"]["running"].get("startedAt")
                for s in statuses
                if "running" in (s.get("state") or {})
            ),
            None,
        )
    )


def download_progress(
    job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    plan: PlanStatus | None,
    size_log: cache_size.SizeLog | None = None,
) -> str:
    """How far the download Job is: what the API server says of it and its newest pod, and
    while it downloads, the cache's size its sidecar reported (`size_log`). Without a report, a
    time left is an estimate at the rate the startup probe assumes, and says so and why. The
    text depends on no clock: it changes only when the Job, the pod or the report does."""
    attempt = int((job.get("status") or {}).get("failed") or 0) + 1
    limit = int((job.get("spec") or {}).get("backoffLimit") or 0) + 1
    tries = f"attempt {attempt} of {limit}, " if attempt > 1 else ""
    pod = _newest_live(pods)
    if pod is None:
        return f"{tries}its pod is not created yet"
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        return f"{tries}its pod waits to be scheduled"
    started = _running_since(pod)
    if (pod.get("status") or {}).get("phase") == "Succeeded":
        return f"{tries}its pod on node {node} has finished, the Job completes"
    if started is None:
        return (
            f"{tries}its pod starts on node {node} (the NIM image is pulled and the cache "
            "mounted first)"
        )
    text = f"{tries}downloading on node {node} since {timestamp(started)}"
    gib = plan.download_gib if plan is not None else None
    report = cache_size.parse(size_log.line) if size_log and size_log.line else None
    if report is not None:
        return f"{text}, {cache_size.measured_progress(report, gib)}"
    if size_log is None:
        why = "the cache's size was not read"
    elif size_log.unreadable is not None:
        why = f"the cache's size could not be read: {size_log.unreadable}"
    else:
        why = "its cache-size sidecar has reported no size yet"
    if not gib:
        return f"{text} ({why})"
    rate = render.ASSUMED_DOWNLOAD_MB_PER_SECOND
    done = started + dt.timedelta(seconds=gib * render.GIB / 1e6 / rate)
    return (
        f"{text}, {gib:g} GiB expected; at an assumed {rate} MB/s it would be done about "
        f"{timestamp(done)} (an estimate: {why})"
    )


def image_pre_pulled(daemonset: Mapping[str, Any] | None, plan: PlanStatus, name: str) -> Condition:
    """ImagePrePulled (cache.prePullImage): on how many of the nodes the NIM pods may run on the
    planned image is, by the pre-pull DaemonSet `daemonset` (None: not created yet). A node
    counts once its pod there is up to date and ready: the init container that needs the image
    has run. Informational: it holds nothing back."""
    image = plan.image or "the NIM image"
    where = f"nodes of {plan.gpu_product}" if plan.gpu_product else "nodes"
    ds_name = render.ChildNames.of(name).image_pull
    pulling = Why.IMAGE_PULLING
    if daemonset is None:
        return _image_pull(False, pulling, f"creating the DaemonSet {ds_name} to pull {image}")
    template = (((daemonset.get("spec") or {}).get("template") or {}).get("spec")) or {}
    images = {c.get("image") for c in template.get("initContainers") or ()}
    status = daemonset.get("status") or {}
    generation = int((daemonset.get("metadata") or {}).get("generation") or 0)
    if image not in images or int(status.get("observedGeneration") or 0) < generation:
        return _image_pull(False, pulling, f"the DaemonSet {ds_name} changes to pull {image}")
    want = int(status.get("desiredNumberScheduled") or 0)
    have = min(int(status.get("numberReady") or 0), int(status.get("updatedNumberScheduled") or 0))
    if want == 0:
        return _image_pull(
            False,
            Why.NO_NODES_TO_PULL_ON,
            f"no {where} match the pods' node selection and tolerations: {image} is pulled "
            "nowhere ahead",
        )
    if have >= want:
        return _image_pull(
            True, Why.IMAGE_ON_NODES, f"{image} is on all {want} {where} the pods may run on"
        )
    return _image_pull(
        False,
        pulling,
        f"{image} is on {have} of {want} {where} the pods may run on; the others pull it "
        f"(kubectl get pods -l {names.IMAGE_PULL_LABEL}={name})",
    )


def _image_pull(status: bool, reason: str, message: str) -> Condition:
    return Condition(names.ConditionType.IMAGE_PRE_PULLED, status, reason, message)


def workload_counts(workload: Mapping[str, Any] | None) -> tuple[int, int, int]:
    """(replicas, ready, updated) from a Deployment's, StatefulSet's or LeaderWorkerSet's
    status (the three name them alike)."""
    status = (workload or {}).get("status") or {}
    return (
        int(status.get("replicas") or 0),
        int(status.get("readyReplicas") or 0),
        int(status.get("updatedReplicas") or 0),
    )


def facts(observed: Observed) -> list[Condition]:
    """The conditions that describe `observed`, before transition times are merged in."""
    found: list[Condition] = []
    plan = observed.plan
    blocker = observed.blocker
    if blocker is not None and blocker.condition == names.ConditionType.PLANNED:
        found.append(Condition(names.ConditionType.PLANNED, False, blocker.reason, blocker.message))
    else:
        found.append(
            Condition(
                names.ConditionType.PLANNED,
                True,
                Why.PLANNED,
                (plan.message if plan else "") or "planned",
            )
        )
    if observed.credentials is not None:
        found.append(observed.credentials)

    if observed.image_pull is not None:
        found.append(observed.image_pull)

    if blocker is not None:
        found += [
            Condition(names.ConditionType.PROGRESSING, False, blocker.reason, blocker.message),
            Condition(names.ConditionType.DEGRADED, True, blocker.reason, blocker.message),
            Condition(names.ConditionType.READY, False, blocker.reason, blocker.message),
        ]
        return found

    fill = observed.cache
    cache = fill.condition if fill is not None else None
    if cache is not None:
        found.append(cache)
    if fill is not None and cache is not None and fill.failing:
        found += [
            Condition(names.ConditionType.DEGRADED, True, cache.reason, cache.message),
            Condition(names.ConditionType.PROGRESSING, False, cache.reason, cache.message),
            Condition(names.ConditionType.READY, False, cache.reason, cache.message),
        ]
        return found
    if cache is not None and cache.status is not True and observed.workload is None:
        found += [
            Condition(names.ConditionType.DEGRADED, False, Why.AS_EXPECTED, "no failure seen"),
            Condition(names.ConditionType.PROGRESSING, True, cache.reason, cache.message),
            Condition(names.ConditionType.READY, False, cache.reason, cache.message),
        ]
        return found

    _, ready, updated = workload_counts(observed.workload)
    want = observed.replicas
    diagnosis = observed.diagnosis
    if diagnosis is not None:
        text = f"{diagnosis.message} {diagnosis.hint}".strip()
        found += [
            Condition(names.ConditionType.DEGRADED, True, diagnosis.reason, text),
            Condition(names.ConditionType.PROGRESSING, False, diagnosis.reason, text),
            Condition(names.ConditionType.READY, False, diagnosis.reason, text),
        ]
        return found

    found.append(Condition(names.ConditionType.DEGRADED, False, Why.AS_EXPECTED, "no failure seen"))
    if want == 0:
        found += [
            Condition(
                names.ConditionType.PROGRESSING, False, Why.SCALED_TO_ZERO, "0 replicas requested"
            ),
            # Ready: nothing more is asked for (kstatus reads Ready=False as still in progress).
            Condition(names.ConditionType.READY, True, Why.SCALED_TO_ZERO, "0 replicas requested"),
        ]
    elif observed.workload is None:
        message = "creating the NIM pods"
        found += [
            Condition(names.ConditionType.PROGRESSING, True, Why.CREATING, message),
            Condition(names.ConditionType.READY, False, Why.CREATING, message),
        ]
    elif ready >= want and updated >= want:
        message = f"{ready}/{want} replicas serve {(plan.image if plan else None) or 'the model'}"
        found += [
            Condition(names.ConditionType.PROGRESSING, False, Why.ROLLOUT_COMPLETE, message),
            Condition(names.ConditionType.READY, True, Why.READY, message),
        ]
    else:
        message = (
            f"{ready}/{want} replicas ready ({updated} up to date); NIM loads the model "
            "before it is ready, which can take many minutes"
        )
        found += [
            Condition(names.ConditionType.PROGRESSING, True, Why.ROLLING_OUT, message),
            Condition(names.ConditionType.READY, False, Why.STARTING, message),
        ]
    if cache is not None and cache.status is not True:  # a new version's files, before its rollout
        message = f"{cache.message}; the rollout starts then, the running replicas serve meanwhile"
        found = [c for c in found if c.type != names.ConditionType.PROGRESSING]
        found.append(Condition(names.ConditionType.PROGRESSING, True, cache.reason, message))
        # Ready's reason is what `kubectl get` shows: serving still, and downloading the next
        ready_now = next(c for c in found if c.type == names.ConditionType.READY)
        if ready_now.status is True:
            found = [c for c in found if c.type != names.ConditionType.READY]
            found.append(
                Condition(
                    names.ConditionType.READY,
                    True,
                    cache.reason,
                    f"{ready_now.message}; {cache.message}, then rolls out",
                )
            )
    return found


def failing_since(previous: Sequence[Mapping[str, Any]] | None, now: dt.datetime) -> dt.datetime:
    """Since when the status says the NIM has been failing (Degraded=True); `now` if it does
    not say so yet."""
    degraded = find_condition(previous, names.ConditionType.DEGRADED)
    if degraded is None or degraded.get("status") != "True":
        return now
    since = diagnose.timestamp(degraded.get("lastTransitionTime"))
    return min(since, now) if since is not None else now


def kstatus_facts(
    observed: Observed,
    found: Sequence[Condition],
    previous: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
) -> list[Condition]:
    """`Reconciling` and `Stalled`, from the other facts `found` about `observed`."""
    progressing = next(c for c in found if c.type == names.ConditionType.PROGRESSING)
    stalled: Condition | None = None
    retrying: Condition | None = None
    blocker, diagnosis, fill = observed.blocker, observed.diagnosis, observed.cache
    if blocker is not None:
        stalled = Condition(names.ConditionType.STALLED, True, blocker.reason, blocker.message)
    elif fill is not None and fill.failing:
        cache = fill.condition
        stalled, retrying = _failure(cache.reason, cache.message, fill.gave_up, previous, now)
    elif diagnosis is not None:
        text = f"{diagnosis.message} {diagnosis.hint}".strip()
        stalled, retrying = _failure(diagnosis.reason, text, False, previous, now)
    if stalled is not None:
        return [
            stalled,
            Condition(names.ConditionType.RECONCILING, False, stalled.reason, stalled.message),
        ]
    reconciling = retrying or Condition(
        names.ConditionType.RECONCILING,
        progressing.status is True,
        progressing.reason,
        progressing.message,
    )
    return [
        Condition(names.ConditionType.STALLED, False, Why.AS_EXPECTED, "nothing stops the rollout"),
        reconciling,
    ]


def _failure(
    reason: str,
    text: str,
    final: bool,
    previous: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
) -> tuple[Condition | None, Condition | None]:
    """(Stalled, Reconciling) for a failure named `reason`: Stalled at once when it is `final`
    (nothing retries it) or no retry mends it; else retrying until the progress deadline."""
    if final or reason not in RETRIED:
        return Condition(names.ConditionType.STALLED, True, reason, text), None
    since = failing_since(previous, now)
    deadline = since + dt.timedelta(seconds=PROGRESS_DEADLINE_SECONDS)
    if now >= deadline:
        return (
            Condition(
                names.ConditionType.STALLED,
                True,
                reason,
                f"failing since {timestamp(since)}, past the progress deadline of "
                f"{PROGRESS_DEADLINE_SECONDS // 60} minutes: {text}",
            ),
            None,
        )
    return None, Condition(
        names.ConditionType.RECONCILING,
        True,
        reason,
        f"retrying; Stalled if still failing at {timestamp(deadline)}: {text}",
    )


def seconds_until_stalled(status: Mapping[str, Any], now: dt.datetime) -> float | None:
    """Seconds from `now` until a retried failure in `status` passes the progress deadline and
    the status must say Stalled (None: no such failure)."""
    conditions = status.get("conditions")
    reconciling = find_condition(conditions, names.ConditionType.RECONCILING)
    if reconciling is None or reconciling.get("status") != "True":
        return None
    if reconciling.get("reason") not in RETRIED:
        return None
    deadline = failing_since(conditions, now) + dt.timedelta(seconds=PROGRESS_DEADLINE_SECONDS)
    return max((deadline - now).total_seconds(), 0.0)


def desired_status(
    observed: Observed, previous: Mapping[str, Any] | None, now: dt.datetime
) -> dict[str, Any]:
    """The whole status to write (the shell skips the write when it equals the current one)."""
    previous = previous or {}
    _, ready, _ = workload_counts(observed.workload)
    replicas = int(((observed.workload or {}).get("status") or {}).get("replicas") or 0)
    found = facts(observed)
    found += kstatus_facts(observed, found, previous.get("conditions"), now)
    # cache.prePullImage turned off: nothing to count
    withdrawn = {names.ConditionType.IMAGE_PRE_PULLED} if observed.image_pull is None else set()
    conditions = merge_conditions(
        previous.get("conditions"), found, observed.generation, now, withdrawn
    )
    return {
        "observedGeneration": observed.generation,
        "conditions": conditions,
        "plan": observed.plan.model_dump(by_alias=True, mode="json", exclude_none=True)
        if observed.plan
        else None,
        "replicas": replicas,
        "readyReplicas": ready,
        "selector": observed.selector,
        "endpoint": observed.endpoint if observed.blocker is None else None,
    }


# Ready=False on the way to Ready, not a failure: no Event (the status says it).
_ON_THE_WAY = frozenset(
    {Why.CREATING, Why.ROLLING_OUT, Why.STARTING, Why.CACHE_DOWNLOADING, Why.SCALED_TO_ZERO}
)


def event_for(condition: Mapping[str, Any]) -> tuple[str, str] | None:
    """The Event (type, reason) a condition whose status or reason changed is worth (None: no
    Event): a Warning for each new failure (a refusal by Planned or CredentialsValid, Ready
    False for a diagnosed cause, Stalled True), a Normal one when the replicas serve. Creating
    a deployment posts none: its plan and progress are in the status, and each Event is a write."""
    type_, status, reason = condition.get("type"), condition.get("status"), condition.get("reason")
    if type_ == names.ConditionType.STALLED or type_ in (
        names.ConditionType.PLANNED,
        names.ConditionType.CREDENTIALS_VALID,
    ):
        failed = status == ("True" if type_ == names.ConditionType.STALLED else "False")
        return ("Warning", str(reason)) if failed else None
    if type_ == names.ConditionType.READY and reason not in _ON_THE_WAY:
        return ("Normal" if status == "True" else "Warning", str(reason))
    return None


def changed_reasons(
    previous: Sequence[Mapping[str, Any]] | None, current: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Conditions whose status or reason differ from before: the news worth an Event (not Ready
    staying True as a new version's download starts or ends: the replicas serve throughout)."""
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in previous or ()}
    return [
        c
        for c in current
        if before.get(c["type"]) != (c["status"], c["reason"])
        and not _serving_throughout(before.get(c["type"]), c)
    ]


def _serving_throughout(before: tuple[Any, Any] | None, condition: Mapping[str, Any]) -> bool:
    return (
        condition["type"] == names.ConditionType.READY
        and before is not None
        and before[0] == condition["status"] == "True"
        and Why.CACHE_DOWNLOADING in (before[1], condition["reason"])
    )
