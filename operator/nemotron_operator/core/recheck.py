"""When a NemotronDeployment's status may change with time alone, no event saying so.

The diagnosis has two rules that depend on the clock: a container running without becoming
ready past its startup allowance is a StartupTimeout, and a pod that waits for its cache volume
is reported only after the claim's grace period. The controller looks again at exactly the
moment the next of these runs out (a requeue-after), instead of polling. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from nemotron_operator.core.diagnose import CLAIM_BINDING_GRACE_SECONDS, timestamp

MARGIN_SECONDS = 1.0  # look just after the moment, not at it (timestamps have whole seconds)


def seconds_until_diagnosis_may_change(
    pods: Iterable[Mapping[str, Any]], now: datetime, startup_allowance_seconds: int
) -> float | None:
    """Seconds from `now` until the earliest such moment among `pods` (None: none ahead)."""
    moments = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp"):
            continue
        created = timestamp(meta.get("creationTimestamp"))
        if created is not None and not (pod.get("spec") or {}).get("nodeName"):
            moments.append(created.timestamp() + CLAIM_BINDING_GRACE_SECONDS)
        for container in status.get("containerStatuses") or ():
            started = timestamp(
                ((container.get("state") or {}).get("running") or {}).get("startedAt")
            )
            if started is not None and not container.get("ready"):
                moments.append(started.timestamp() + startup_allowance_seconds)
    ahead = [moment - now.timestamp() for moment in moments if moment >= now.timestamp()]
    return min(ahead) + MARGIN_SECONDS if ahead else None
