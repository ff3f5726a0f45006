"""Does a child object still say what the operator rendered? (Pure: no API calls.)

The API server adds defaults and bookkeeping to every object, so an observed child is never
equal to the rendered one. It still matches when everything the operator set is there with the
same value: `matches(rendered, observed)`. The shell applies a child only when it does not, so a
converge that changes nothing sends no write, and a hand edit of a managed field is repaired.

"The same value" is compared in the API server's normal form, so that what it stores differently
from how it was written is not drift (each is checked against the real API server by
tests/e2e/test_drift_normal_form.py):

- quantities (under `limits`, `requests`, `capacity`, and `sizeLimit`) are compared by amount:
  `cpu: 8` is stored as "8", "0.5" as "500m", "1024Mi" as "1Gi";
- an empty string, like null and an empty map or list, matches an absent field: the API server
  drops empty optional fields (an env var's `value: ""` is stored without `value`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nemotron_operator.api.types import quantity_bytes

QUANTITY_MAPS = frozenset({"limits", "requests", "capacity"})  # name -> quantity
QUANTITY_FIELDS = frozenset({"sizeLimit"})


def matches(rendered: Any, observed: Any) -> bool:
    """True when `observed` holds every field of `rendered` with the same value.

    Maps may have extra keys; lists must have the same length and match item by item (a list the
    operator renders is a list it owns whole, like a container's env)."""
    return _matches(rendered, observed, _PLAIN)


_PLAIN, _QUANTITY_MAP, _QUANTITY = range(3)


def _matches(rendered: Any, observed: Any, role: int) -> bool:
    if isinstance(rendered, Mapping):
        return isinstance(observed, Mapping) and all(
            _matches(value, observed[key], _role_of(key, role))
            if key in observed
            else _omitted(value)
            for key, value in rendered.items()
        )
    if isinstance(rendered, Sequence) and not isinstance(rendered, str):
        return (
            isinstance(observed, Sequence)
            and not isinstance(observed, str)
            and len(rendered) == len(observed)
            and all(_matches(r, o, _PLAIN) for r, o in zip(rendered, observed, strict=True))
        )
    if isinstance(rendered, bool) or isinstance(observed, bool):
        return rendered is observed
    if role == _QUANTITY and None not in (amount := (_amount(rendered), _amount(observed))):
        return amount[0] == amount[1]
    return bool(rendered == observed)


def _role_of(key: str, parent: int) -> int:
    if parent == _QUANTITY_MAP or key in QUANTITY_FIELDS:
        return _QUANTITY
    return _QUANTITY_MAP if key in QUANTITY_MAPS else _PLAIN


def _omitted(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, Mapping | list | tuple) and not value)


def _amount(value: Any) -> float | None:
    try:
        return quantity_bytes(value)
    except (ValueError, TypeError):
        return None
