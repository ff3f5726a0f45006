"""Admission rules declared once: each in CEL for the API server and in Python for pydantic.

A `Rule` guards either a model (listed in the model's `rules`, checked on the validated model)
or a value (as `Annotated` metadata on the field's type, checked on the value). From one
declaration `crd.py` gets the `x-kubernetes-validations` entry (through the JSON Schema) and
pydantic runs the Python form, failing on the field the API server names with the rule's own
message. `admission_errors` then phrases a pydantic ValidationError the way the API server
phrases its refusal, so `nemotron-operator plan FILE` and the operator say what `kubectl apply`
would have said.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

Guarded = TypeVar("Guarded")

# The error types pydantic reports for the Python forms below.
RULE_ERROR = "admission_rule"
DUPLICATE_ERROR = "duplicate_value"


class _Constraint:
    """Annotated metadata that checks a value once its type's own validation passed, and
    declares the same constraint in the value's JSON Schema (hence in the CRD)."""

    def validated(self, value: Any) -> Any:
        """`value`, or a ValidationError located below it."""
        raise NotImplementedError

    def declare(self, json_schema: JsonSchemaValue) -> None:
        """Add the constraint to the value's JSON Schema."""
        raise NotImplementedError

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.validated, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        self.declare(json_schema)
        return json_schema


@dataclass(frozen=True)
class Rule(_Constraint, Generic[Guarded]):
    """One admission rule: `cel` for the API server, `check` (the same rule in Python) for
    pydantic, the `message` both give, and the `field_path` (relative to the guarded value, as
    in x-kubernetes-validations, e.g. ".customModel") both report it on; `pattern`, when the
    rule is the CEL twin of an OpenAPI pattern (see `says`), is that pattern."""

    cel: str
    check: Callable[[Guarded], bool]
    message: str
    field_path: str | None = None
    pattern: str | None = None

    def validation(self) -> dict[str, str]:
        """The rule's entry in x-kubernetes-validations."""
        validation = {"rule": self.cel, "message": self.message}
        if self.field_path is not None:
            validation["fieldPath"] = self.field_path
        return validation

    def location(self) -> tuple[str, ...]:
        """Where pydantic reports a failure: field_path as a location below the guarded value."""
        return tuple(self.field_path.split(".")[1:]) if self.field_path else ()

    # As Annotated metadata on a value's type (a model lists its own rules in `rules`).
    def validated(self, value: Any) -> Any:
        enforce((self,), value, type(value).__name__)
        return value

    def declare(self, json_schema: JsonSchemaValue) -> None:
        if self.pattern is not None:
            json_schema["pattern"] = self.pattern
        json_schema.setdefault("x-kubernetes-validations", []).append(self.validation())


def says(pattern: str, message: str) -> Rule[str]:
    """An OpenAPI pattern with its CEL twin: the API server reports a failed pattern as a bare
    regular expression; the twin adds, in words, what the value must look like."""
    if "'" in pattern or not (pattern.startswith("^") and pattern.endswith("$")):
        raise ValueError(f"{pattern} must be anchored and free of quotes to be CEL")
    regex = re.compile(pattern)
    return Rule(
        cel=f"self.matches(r'{pattern}')",
        check=lambda value: regex.fullmatch(value) is not None,
        message=message,
        pattern=pattern,
    )


def enforce(
    rules: Iterable[Rule[Guarded]], value: Guarded, title: str, at: tuple[str, ...] = ()
) -> None:
    """Raise the ValidationError of the first rule `value` breaks, on the rule's field (below
    `at`, the location of `value` when pydantic does not know it)."""
    for rule in rules:
        if not rule.check(value):
            error = PydanticCustomError(RULE_ERROR, "{message}", {"message": rule.message})
            details = InitErrorDetails(type=error, loc=(*at, *rule.location()), input=value)
            raise ValidationError.from_exception_data(title, [details])


@dataclass(frozen=True)
class ListType(_Constraint):
    """x-kubernetes-list-type as Annotated metadata on a list: "set" when `map_keys` is empty
    (items are unique), else "map" (items are unique by those keys). Pydantic refuses the first
    repeated item, on its index, as the API server does."""

    map_keys: tuple[str, ...] = ()

    def identity(self, item: Any) -> Any:
        """What must be unique: the item, or its map keys as they are on the wire."""
        if not self.map_keys:
            return item
        wire = item.model_dump(mode="json", by_alias=True)
        return {key: wire[key] for key in self.map_keys}

    def validated(self, value: Any) -> Any:
        seen: list[Any] = []
        for index, item in enumerate(value):
            identity = self.identity(item)
            if identity in seen:
                shown = json.dumps(identity, separators=(",", ":"))
                error = PydanticCustomError(
                    DUPLICATE_ERROR, "Duplicate value: {value}", {"value": shown}
                )
                details = InitErrorDetails(type=error, loc=(index,), input=item)
                raise ValidationError.from_exception_data("list", [details])
            seen.append(identity)
        return value

    def declare(self, json_schema: JsonSchemaValue) -> None:
        json_schema["x-kubernetes-list-type"] = "map" if self.map_keys else "set"
        if self.map_keys:
            json_schema["x-kubernetes-list-map-keys"] = list(self.map_keys)


# --- refusals in the API server's words ------------------------------------------------------


@dataclass(frozen=True)
class FieldError:
    """One cause of a refusal, as the API server reports it: the field and what is wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


_JSON_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (tuple, "array"),
    (dict, "object"),
    (type(None), "null"),
)
# pydantic's type errors, by the OpenAPI type the field declares.
_TYPE_ERRORS = {
    "int_type": "integer",
    "int_parsing": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "float_parsing": "number",
    "string_type": "string",
    "bool_type": "boolean",
    "bool_parsing": "boolean",
    "list_type": "array",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
}


def _json_type(value: Any) -> str:
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), "object")


def _shown(value: Any) -> str:
    """A value as the API server quotes it in `Invalid value: ...`."""
    if isinstance(value, bool | int | float | str):
        return json.dumps(value)
    return json.dumps(_json_type(value))


def field_path(location: Sequence[int | str]) -> str:
    """A pydantic location as the API server writes a field: spec.env[1].name."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path


def _message(error: Any, field: str) -> str:
    kind, value, context = error["type"], error["input"], error.get("ctx") or {}
    if kind == RULE_ERROR:
        return f"Invalid value: {json.dumps(_json_type(value))}: {error['msg']}"
    if kind == DUPLICATE_ERROR:
        return str(error["msg"])
    if kind == "missing":
        return "Required value"
    if kind == "extra_forbidden":
        return f'unknown field "{field}"'
    if kind == "literal_error":
        supported = ", ".join(f'"{v}"' for v in re.findall(r"'([^']*)'", context["expected"]))
        return f"Unsupported value: {_shown(value)}: supported values: {supported}"
    if kind in _TYPE_ERRORS:
        given = json.dumps(_json_type(value))
        return (
            f"Invalid value: {given}: {field} in body must be of type {_TYPE_ERRORS[kind]}: {given}"
        )
    if kind in ("greater_than_equal", "less_than_equal"):
        bound, words = (
            (context["ge"], "greater") if kind == "greater_than_equal" else (context["le"], "less")
        )
        return (
            f"Invalid value: {_shown(value)}: {field} in body should be {words} than or equal "
            f"to {bound}"
        )
    if kind == "string_too_long" or (kind == "too_long" and isinstance(value, str)):
        return f"Too long: may not be more than {context['max_length']} bytes"
    if kind == "too_long":
        return f"Too many: {len(value)}: must have at most {context['max_length']} items"
    if kind == "string_pattern_mismatch":
        return (
            f"Invalid value: {_shown(value)}: {field} in body should match '{context['pattern']}'"
        )
    return f"Invalid value: {_shown(value)}: {error['msg']}"


def admission_errors(error: ValidationError, prefix: Sequence[str] = ()) -> list[FieldError]:
    """What the API server would answer for the object pydantic refused: each cause with the
    field path it names (`prefix` is the location of the validated value, e.g. ("spec",)) and
    its words (the rule's message, or the API server's phrasing of a schema check)."""
    causes = []
    for detail in error.errors():
        field = field_path((*prefix, *detail["loc"]))
        causes.append(FieldError(field, _message(detail, field)))
    return causes
