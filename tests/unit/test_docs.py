"""The README cannot drift from the code: its API reference is the generator's output, and its
table of reasons lists every reason the operator can write."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from nemotron_operator import docs
from nemotron_operator.api import names

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PACKAGE = REPO / "operator" / "nemotron_operator"

# Calls whose CamelCase string arguments would be condition reasons (Condition(type, status,
# reason, message), Blocker(condition, reason, message), reconcile's fact(valid, reason, message)).
REASON_CALLS = {"Condition", "Blocker", "fact", "CredentialCheck", "Diagnosis"}
CAMEL_CASE = re.compile(r"[A-Z][a-z]+(?:[A-Z][A-Za-z]*)*")


def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def literal_reasons(package: Path = PACKAGE) -> set[str]:
    """CamelCase string literals passed to the calls that make conditions, in the package."""
    found = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name not in REASON_CALLS:
                continue
            for arg in [*node.args, *(k.value for k in node.keywords if k.arg == "reason")]:
                if (
                    isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and CAMEL_CASE.fullmatch(arg.value)
                ):
                    found.add(arg.value)
    return found


def emitted_reasons() -> set[str]:
    return {
        str(reason)
        for enum in (names.PlanReason, names.NimReason, names.StatusReason)
        for reason in enum
    }


def table_reasons() -> set[str]:
    """The backticked names in the first column of the README's reasons table."""
    reasons = set()
    for line in readme_section("Conditions and reasons").splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            reasons |= set(re.findall(r"`([A-Za-z]+)`", first_cell))
    return reasons


def test_the_readme_api_reference_is_the_generators_output() -> None:
    in_readme = docs.section_in(README.read_text(encoding="utf-8"))
    assert in_readme == docs.api_reference(), "the API reference is stale: run `make docs`"


def test_the_api_reference_documents_every_spec_field() -> None:
    reference = docs.api_reference()
    for field in ("spec.model", "spec.gpu.count", "spec.ngc.offline", "spec.env[].name"):
        assert f"| `{field}` |" in reference
    assert "| `spec.precision` | `auto` \\| `nvfp4` \\| `fp8` \\| `bf16` | `auto` |" in reference
    assert "| `status.plan.memoryPerGPUGiB` | number |" in reference


def test_every_reason_is_spelled_once_in_names() -> None:
    literal = literal_reasons()
    assert not literal, f"spell these reasons in names.py and use them from there: {literal}"


def test_the_scan_finds_a_reason_written_as_a_literal(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text('Blocker(names.ConditionType.PLANNED, "SomeReason", "message")\n')
    assert literal_reasons(tmp_path) == {"SomeReason"}


def test_every_reason_the_code_can_emit_is_in_the_readme_table() -> None:
    missing = emitted_reasons() - table_reasons()
    assert not missing, f"add these reasons to the README's table: {sorted(missing)}"


def test_the_readme_table_names_no_reason_the_code_cannot_emit() -> None:
    stale = table_reasons() - emitted_reasons() - {str(names.PlanReason.FITS)}
    assert not stale, f"the README's table lists reasons the code never writes: {sorted(stale)}"


def test_the_set_up_section_has_exactly_the_two_commands() -> None:
    block = re.search(r"```sh\n(.*?)```", readme_section("Set up"), re.DOTALL)
    assert block is not None
    assert block.group(1).split("\n")[:-1] == ["make demo", "make test"]


def test_replacing_the_section_keeps_the_rest_and_is_idempotent() -> None:
    text = f"intro\n{docs.BEGIN}\nold\n{docs.END}\noutro\n"
    once = docs.replace_section(text, "new\n")
    assert once == f"intro\n{docs.BEGIN}\nnew\n{docs.END}\noutro\n"
    assert docs.replace_section(once, "new\n") == once
    assert docs.section_in(once) == "new\n"


def test_missing_markers_are_an_error() -> None:
    with pytest.raises(docs.MarkersNotFound):
        docs.replace_section("no markers here", "x")


def test_the_docs_command_prints_and_writes_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nemotron_operator.cli import main

    assert main(["docs"]) == 0
    assert capsys.readouterr().out == docs.api_reference()

    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text(f"# x\n{docs.BEGIN}\n{docs.END}\n")
    assert main(["docs", "--write"]) == 0
    assert docs.section_in((tmp_path / "README.md").read_text()) == docs.api_reference()
    assert main(["docs", "--write"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "unchanged: README.md"

    (tmp_path / "README.md").write_text("# no markers\n")
    assert main(["docs", "--write"]) == 2
    assert "markers" in capsys.readouterr().err
