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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nemotron_operator.api import names
from nemotron_operator.api.types import PlanStatus
from nemotron_operator.core.conditions import Condition, merge_conditions

Why = names.StatusReason


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
            Condition(names.ConditionType.READY, False, Why.SCALED_TO_ZERO, "0 replicas requested"),
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


def desired_status(
    observed: Observed, previous: Mapping[str, Any] | None, now: dt.datetime
) -> dict[str, Any]:
    """The whole status to write (the shell skips the write when it equals the current one)."""
    previous = previous or {}
    _, ready, _ = workload_counts(observed.workload)
    replicas = int(((observed.workload or {}).get("status") or {}).get("replicas") or 0)
    return {
        "observedGeneration": observed.generation,
        "conditions": merge_conditions(
            previous.get("conditions"), facts(observed), observed.generation, now
        ),
        "plan": observed.plan.model_dump(by_alias=True, mode="json", exclude_none=True)
        if observed.plan
        else None,
        "replicas": replicas,
        "readyReplicas": ready,
        "selector": observed.selector,
        "endpoint": observed.endpoint if observed.blocker is None else None,
    }


def changed_reasons(
    previous: Sequence[Mapping[str, Any]] | None, current: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Conditions whose status or reason differ from before: the news worth an Event."""
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in previous or ()}
    return [c for c in current if before.get(c["type"]) != (c["status"], c["reason"])]
