"""What a NemotronDeployment's status should say, from what the operator knows. Pure.

Conditions (Kubernetes API conventions; `Ready` is the summary that `kubectl get` shows):

- `Planned`: the planner found GPUs that hold the model (False: why not, with numbers).
- `CredentialsValid`: the NGC key works for this image (False: rejected, not entitled, or a key
  is required and none given; Unknown: the registry could not be asked).
- `Progressing`: pods are being created or rolled out.
- `Degraded`: something stops the NIM from serving (the diagnosed cause).
- `Ready`: every replica serves; otherwise the most useful reason why not.
- `CacheReady` (only while a download Job fills a shared cache): the planned profile's files are
  in the cache; the workload is created, or rolled out to a new version, only then.
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
from nemotron_operator.core import diagnose
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
    cache: Condition | None = None  # CacheReady, when a download Job fills the cache


def downloads(job: Mapping[str, Any]) -> str | None:
    """What a download Job puts into the cache ("<image> <profile>", its annotation)."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    return annotations.get(names.CACHE_CONTENT_ANNOTATION)


def cache_ready(content: str | None, job: Mapping[str, Any] | None) -> Condition | None:
    """The CacheReady fact from the download Job that should put `content` ("<image> <profile>")
    into the shared cache (None: no Job does, the fact does not apply)."""
    if content is None:
        return None
    image, profile = content.split(" ", 1)
    downloading = Condition(
        names.ConditionType.CACHE_READY,
        False,
        Why.CACHE_DOWNLOADING,
        f"a Job downloads profile {profile} of {image} into the shared cache",
    )
    if job is None or downloads(job) != content:
        return downloading
    meta = job.get("metadata") or {}
    finished = {
        c.get("type"): c
        for c in ((job.get("status") or {}).get("conditions") or ())
        if c.get("status") == "True"
    }
    if "Complete" in finished:
        return Condition(
            names.ConditionType.CACHE_READY,
            True,
            Why.CACHE_DOWNLOADED,
            f"the shared cache holds profile {profile} of {image}",
        )
    if "Failed" in finished:
        return Condition(
            names.ConditionType.CACHE_READY,
            False,
            Why.CACHE_DOWNLOAD_FAILED,
            f"the Job {meta.get('name')} could not download profile {profile} of {image}: "
            f"{finished['Failed'].get('message') or finished['Failed'].get('reason')}; its pod's "
            f"log says why (kubectl logs job/{meta.get('name')})",
        )
    return downloading


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

    if blocker is not None:
        found += [
            Condition(names.ConditionType.PROGRESSING, False, blocker.reason, blocker.message),
            Condition(names.ConditionType.DEGRADED, True, blocker.reason, blocker.message),
            Condition(names.ConditionType.READY, False, blocker.reason, blocker.message),
        ]
        return found

    cache = observed.cache
    if cache is not None:
        found.append(cache)
    if cache is not None and cache.reason == Why.CACHE_DOWNLOAD_FAILED:
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
    blocker, diagnosis, cache = observed.blocker, observed.diagnosis, observed.cache
    if blocker is not None:
        stalled = Condition(names.ConditionType.STALLED, True, blocker.reason, blocker.message)
    elif cache is not None and cache.reason == Why.CACHE_DOWNLOAD_FAILED:
        stalled = Condition(names.ConditionType.STALLED, True, cache.reason, cache.message)
    elif diagnosis is not None:
        text = f"{diagnosis.message} {diagnosis.hint}".strip()
        if diagnosis.reason not in RETRIED:
            stalled = Condition(names.ConditionType.STALLED, True, diagnosis.reason, text)
        else:
            since = failing_since(previous, now)
            deadline = since + dt.timedelta(seconds=PROGRESS_DEADLINE_SECONDS)
            if now >= deadline:
                stalled = Condition(
                    names.ConditionType.STALLED,
                    True,
                    diagnosis.reason,
                    f"failing since {timestamp(since)}, past the progress deadline of "
                    f"{PROGRESS_DEADLINE_SECONDS // 60} minutes: {text}",
                )
            else:
                retrying = Condition(
                    names.ConditionType.RECONCILING,
                    True,
                    diagnosis.reason,
                    f"retrying; Stalled if still failing at {timestamp(deadline)}: {text}",
                )
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
    return {
        "observedGeneration": observed.generation,
        "conditions": merge_conditions(previous.get("conditions"), found, observed.generation, now),
        "plan": observed.plan.model_dump(by_alias=True, mode="json", exclude_none=True)
        if observed.plan
        else None,
        "replicas": replicas,
        "readyReplicas": ready,
        "selector": observed.selector,
        "endpoint": observed.endpoint if observed.blocker is None else None,
    }


def event_for(condition: Mapping[str, Any]) -> tuple[str, str] | None:
    """The Event (type, reason) a condition whose status or reason changed is worth: Ready,
    Planned and CredentialsValid either way, Stalled when it becomes True (a retried failure
    past its deadline); None for the rest."""
    status, reason = condition.get("status"), str(condition.get("reason"))
    if condition.get("type") == names.ConditionType.STALLED:
        return ("Warning", reason) if status == "True" else None
    if condition.get("type") in (
        names.ConditionType.READY,
        names.ConditionType.PLANNED,
        names.ConditionType.CREDENTIALS_VALID,
    ):
        return ("Normal" if status == "True" else "Warning", reason)
    return None


def changed_reasons(
    previous: Sequence[Mapping[str, Any]] | None, current: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Conditions whose status or reason differ from before: the news worth an Event."""
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in previous or ()}
    return [c for c in current if before.get(c["type"]) != (c["status"], c["reason"])]
