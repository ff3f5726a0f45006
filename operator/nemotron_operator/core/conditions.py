"""Status conditions as Kubernetes API conventions want them (metav1.Condition).

Pure functions over plain dicts: a condition's `lastTransitionTime` changes only when its
`status` flips, so re-stating an unchanged fact yields an identical list, and the shell can skip
the write (see `same_conditions`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Condition:
    """One observed fact, before it is merged with what the status said so far."""

    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str

    @property
    def status_text(self) -> str:
        return {True: "True", False: "False", None: "Unknown"}[self.status]


def timestamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    new: Iterable[Condition],
    generation: int,
    now: dt.datetime,
    withdrawn: Collection[str] = (),
) -> list[dict[str, Any]]:
    """The conditions list after stating `new`: transition times kept where status is unchanged;
    conditions not restated are kept as they were, but for the `withdrawn` types (what they
    described is gone), which leave the list."""
    by_type = {
        c["type"]: dict(c)
        for c in previous or ()
        if isinstance(c, Mapping) and "type" in c and c["type"] not in withdrawn
    }
    for condition in new:
        old = by_type.get(condition.type)
        flipped = old is None or old.get("status") != condition.status_text
        by_type[condition.type] = {
            "type": condition.type,
            "status": condition.status_text,
            "reason": condition.reason,
            "message": condition.message,
            "observedGeneration": generation,
            "lastTransitionTime": timestamp(now)
            if flipped
            else old.get("lastTransitionTime", timestamp(now)),  # type: ignore[union-attr]
        }
    return sorted(by_type.values(), key=lambda c: str(c["type"]))


def find_condition(
    conditions: Sequence[Mapping[str, Any]] | None, type_: str
) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)


def same_conditions(
    a: Sequence[Mapping[str, Any]] | None, b: Sequence[Mapping[str, Any]] | None
) -> bool:
    """Equal as a set of conditions, whatever their order."""

    def key(conditions: Sequence[Mapping[str, Any]] | None) -> list[tuple[Any, ...]]:
        return sorted(tuple(sorted((k, str(v)) for k, v in c.items())) for c in conditions or ())

    return key(a) == key(b)
