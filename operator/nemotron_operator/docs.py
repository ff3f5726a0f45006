"""The README's API reference, generated from the pydantic types so that it cannot drift.

It walks the same structural schema the CRD carries (`crd.nemotron_deployment_crd`, built
from `api/types.py`): every spec and status field with its type, default and description.
`nemotron-operator docs` prints it; `nemotron-operator docs --write` (`make docs`) puts it into
README.md between the markers below; a unit test fails when the README's copy differs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from nemotron_operator.api import names
from nemotron_operator.api.crd import PRINTER_COLUMNS, nemotron_deployment_crd

README = Path("README.md")
BEGIN = (
    "<!-- BEGIN GENERATED api-reference: `make docs` writes this from api/types.py; do not edit -->"
)
END = "<!-- END GENERATED api-reference -->"


class MarkersNotFound(ValueError):
    """The README lacks the markers of the generated section."""


def _type(node: Mapping[str, Any]) -> str:
    """A field's type as a person reads it (Go-like, as `kubectl explain` shows)."""
    if node.get("x-kubernetes-int-or-string"):
        return "quantity"
    if "enum" in node:
        return " \\| ".join(f"`{value}`" for value in node["enum"])
    kind = node.get("type", "object")
    if kind == "array":
        items = node.get("items", {})
        return f"[]({_type(items)})" if "enum" in items else "[]" + _type(items)
    if kind == "object":
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return "object (free-form)"
        if "additionalProperties" in node:
            return "map[string]" + _type(node["additionalProperties"])
        return "object"
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None or high is not None:
        bounds = f"{'' if low is None else low}..{'' if high is None else high}"
        return f"{kind} ({bounds})"
    return str(kind)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(node: Mapping[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" in node:
        value = node["default"]
        return f"`{str(value).lower() if isinstance(value, bool) else value}`"
    return ""


def _rows(node: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
    """(path, schema, required) for every field under `node`, depth first, in declared order."""
    required = set(node.get("required", ()))
    for name, child in (node.get("properties") or {}).items():
        path = f"{prefix}{name}"
        yield path, child, name in required
        if child.get("type") == "array" and "properties" in child.get("items", {}):
            yield from _rows(child["items"], f"{path}[].")
        elif "properties" in child:
            yield from _rows(child, f"{path}.")


def _table(node: Mapping[str, Any], prefix: str, with_default: bool) -> list[str]:
    columns = ["Field", "Type", *(["Default"] if with_default else []), "Description"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for path, child, required in _rows(node, prefix):
        cells = [f"`{path}`", _type(child)]
        if with_default:
            cells.append(_default(child, required))
        cells.append(_cell(child.get("description", "")))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def api_reference() -> str:
    """The API reference as Markdown (without the markers)."""
    crd = nemotron_deployment_crd()
    version = crd["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]["properties"]
    name_rule = _cell(root["metadata"]["properties"]["name"]["description"])
    columns = ", ".join(column["name"] for column in PRINTER_COLUMNS)
    short = ", ".join(f"`{n}`" for n in names.SHORT_NAMES)
    lines = [
        f"`apiVersion: {names.API_VERSION}`, `kind: {names.KIND}`, namespaced; short names "
        f"{short}. `kubectl get` shows {columns}; `kubectl explain "
        f"{names.SINGULAR}.spec` prints the same descriptions as below.",
        "",
        f"`metadata.name`: {name_rule}",
        "",
        "### spec",
        "",
        *_table(root["spec"], "spec.", with_default=True),
        "",
        "### status (written by the operator)",
        "",
        *_table(root["status"], "status.", with_default=False),
    ]
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str) -> str:
    """`text` with what lies between the markers replaced by `section`."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise MarkersNotFound(f"the markers {BEGIN!r} and {END!r} are not both there, in order")
    return text[: start + len(BEGIN)] + "\n" + section + text[end:]


def section_in(text: str) -> str:
    """What lies between the markers of `text`."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise MarkersNotFound(f"the markers {BEGIN!r} and {END!r} are not both there, in order")
    return text[start + len(BEGIN) : end].removeprefix("\n")


def write_readme(readme: Path) -> bool:
    """Refresh the README's API reference; True when the file changed."""
    text = readme.read_text(encoding="utf-8")
    updated = replace_section(text, api_reference())
    if updated == text:
        return False
    readme.write_text(updated, encoding="utf-8")
    return True
