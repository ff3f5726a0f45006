"""Does a child object still say what the operator rendered? (Pure: no API calls.)

The API server adds defaults and bookkeeping to every object, so an observed child is never
equal to the rendered one. It still matches when everything the operator set is there with the
same value: `matches(rendered, observed)`. The shell applies a child only when it does not, so a
reconcile that changes nothing sends no write, and a hand edit of a managed field is repaired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def matches(rendered: Any, observed: Any) -> bool:
    """True when `observed` holds every field of `rendered` with the same value.

    Maps may have extra keys; lists must have the same length and match item by item (a list the
    operator renders is a list it owns whole, like a container's env). An empty map or list, or
    null, matches an absent field: the API server does not store them."""
    if isinstance(rendered, Mapping):
        return isinstance(observed, Mapping) and all(
            matches(value, observed[key]) if key in observed else _omitted(value)
            for key, value in rendered.items()
        )
    if isinstance(rendered, Sequence) and not isinstance(rendered, str):
        return (
            isinstance(observed, Sequence)
            and not isinstance(observed, str)
            and len(rendered) == len(observed)
            and all(matches(r, o) for r, o in zip(rendered, observed, strict=True))
        )
    if isinstance(rendered, bool) or isinstance(observed, bool):
        return rendered is observed
    return bool(rendered == observed)


def _omitted(value: Any) -> bool:
    return value is None or (isinstance(value, Mapping | list | tuple) and not value)
