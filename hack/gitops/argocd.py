"""The Argo CD health check of NemotronDeployments: its testdata, and the argocd-cm patch that
installs it, written from the scenarios (hack/gitops/scenarios.py) and health.lua.

    python hack/gitops/argocd.py --write   # after a change of the status or of health.lua
    python hack/gitops/argocd.py --check   # exit 1 when the checked-in files differ
    python hack/gitops/argocd.py health FILE.yaml ...  # run health.lua as Argo CD does

The layout is Argo CD's own resource_customizations/<group>/<Kind>/ (health.lua, health_test.yaml,
testdata/), so the check can also be proposed upstream as it is.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenarios
from scenarios import REPO, State

from nemotron_operator.api import names

HOME = REPO / "argocd"
CUSTOMIZATION = HOME / "resource_customizations" / names.GROUP / names.KIND
HEALTH_LUA = CUSTOMIZATION / "health.lua"
PATCH = HOME / "argocd-cm-patch.yaml"
CONFIG_KEY = f"resource.customizations.health.{names.GROUP}_{names.KIND}"

HEALTH = {State.SERVING: "Healthy", State.WORKING: "Progressing", State.NEEDS_A_PERSON: "Degraded"}
"""What Argo CD should show for each state (a deleting object never reaches health.lua: Argo CD
calls it "Pending deletion" itself)."""

NO_STATUS = "no-status-yet"


def condition(body: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    found = [c for c in body["status"]["conditions"] if c["type"] == kind]
    if not found:
        raise AssertionError(f"{body['metadata']['name']} has no {kind} condition")
    return found[0]


def expected_health(scenario: scenarios.Scenario) -> dict[str, str]:
    """The health Argo CD should show, with the message a person should read there."""
    body = scenario.object
    if "status" not in body:
        return {"status": "Progressing", "message": "Waiting for the operator to report a status"}
    generation = body["metadata"]["generation"]
    if body["status"]["observedGeneration"] != generation:
        message = f"Waiting for the operator to observe generation {generation}"
        return {"status": "Progressing", "message": message}
    status = HEALTH[scenario.state]
    if status == "Degraded":
        return {"status": status, "message": condition(body, "Stalled")["message"]}
    if status == "Healthy":
        return {"status": status, "message": condition(body, "Ready")["message"]}
    return {"status": status, "message": condition(body, "Reconciling")["message"]}


def health_scenarios() -> list[scenarios.Scenario]:
    """The scenarios health.lua sees: all but deletion, and an object the operator has not
    written a status to yet."""
    listed = [s for s in scenarios.scenarios() if s.state != State.DELETING]
    new = scenarios.nemotron_deployment(NO_STATUS, scenarios.example_spec("nano-1gpu"), None)
    return [*listed, scenarios.Scenario(NO_STATUS, State.WORKING, "just applied", new)]


def dump(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=True)


def files() -> dict[Path, str]:
    """Every file this writes, with its content as the code produces it now."""
    written: dict[Path, str] = {}
    tests = []
    for scenario in health_scenarios():
        health = expected_health(scenario)
        path = f"testdata/{health['status'].lower()}_{scenario.name}.yaml"  # as Argo CD's are
        header = f"# {scenario.what}. Written by hack/gitops/argocd.py from the operator's code.\n"
        written[CUSTOMIZATION / path] = header + dump(scenario.object)
        tests.append({"healthStatus": health, "inputPath": path})
    written[CUSTOMIZATION / "health_test.yaml"] = dump({"tests": tests})
    script = HEALTH_LUA.read_text()
    block = "".join(f"    {line}" if line.strip() else "\n" for line in script.splitlines(True))
    written[PATCH] = (
        "# The NemotronDeployment health check for Argo CD: health.lua of\n"
        f"# {CUSTOMIZATION.relative_to(REPO)}/, written here by hack/gitops/argocd.py.\n"
        "# Install: kubectl -n argocd patch configmap argocd-cm --patch-file "
        f"{PATCH.relative_to(REPO)}\n"
        f"data:\n  {CONFIG_KEY}: |\n{block}"
    )
    return written


def stale(written: Mapping[Path, str]) -> list[Path]:
    """The files whose checked-in content differs from `written`, and testdata no scenario
    writes any more."""
    differ = [p for p, text in written.items() if not p.exists() or p.read_text() != text]
    extra = [p for p in (CUSTOMIZATION / "testdata").glob("*.yaml") if p not in written]
    return differ + extra


def argocd_health(script: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """What Argo CD's Lua VM (gopher-lua, Lua 5.1) returns for `body`: `obj` a global table
    decoded as util/lua/lua.go's decodeValue does, with only the base, package and table
    libraries (argocd-cm's default, useOpenLibs off; its safe os library is left out here)."""
    import lupa.lua51 as lupa

    lua = lupa.LuaRuntime(register_eval=False, register_builtins=False)
    lua.execute(
        "debug.setmetatable('', nil)\n"  # no string methods ("s:format()") without the library
        "string, math, io, os, debug, coroutine, require, dofile, loadfile = nil"
    )

    def decode(value: Any) -> Any:
        if isinstance(value, Mapping):
            return lua.table_from({k: decode(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([decode(v) for v in value])
        return value

    lua.globals().obj = decode(body)
    returned = lua.execute(script)
    if lupa.lua_type(returned) != "table":
        raise TypeError(f"expect table output from Lua script, not {lupa.lua_type(returned)}")
    return dict(returned.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--write", action="store_true", help="write the files")
    what.add_argument("--check", action="store_true", help="exit 1 when a file differs")
    what.add_argument("--health", nargs="+", metavar="FILE", help="run health.lua on objects")
    args = parser.parse_args(argv)
    if args.health:
        script = HEALTH_LUA.read_text()
        for file in args.health:
            for body in yaml.safe_load_all(Path(file).read_text()):
                for item in body.get("items") or [body]:
                    health = argocd_health(script, item)
                    print(f"{item['metadata']['name']}: {health['status']}: {health['message']}")
        return 0
    written = files()
    if args.check:
        differ = stale(written)
        for path in differ:
            print(f"{path.relative_to(REPO)} is not what the code writes", file=sys.stderr)
        if differ:
            print("run: python hack/gitops/argocd.py --write", file=sys.stderr)
        return 1 if differ else 0
    for path in stale(written):
        if path not in written:
            path.unlink()
    for path, text in written.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
