"""Argo CD's view of NemotronDeployments (issue 13): argocd/.../health.lua run by a real Lua 5.1
(lupa; Argo CD runs gopher-lua, Lua 5.1) as Argo CD runs a check from argocd-cm, on objects whose
status the operator's code writes (hack/gitops/scenarios.py, written to testdata/ by
hack/gitops/argocd.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "gitops"))

import argocd
from scenarios import Scenario, State

SCENARIOS = argocd.health_scenarios()
SCRIPT = argocd.HEALTH_LUA.read_text()
UPSTREAM_TESTS: list[dict[str, Any]] = yaml.safe_load(
    (argocd.CUSTOMIZATION / "health_test.yaml").read_text()
)["tests"]


def test_the_checked_in_testdata_and_patch_are_what_the_code_writes_now() -> None:
    stale = [str(p.relative_to(argocd.REPO)) for p in argocd.stale(argocd.files())]
    assert stale == [], "run: python hack/gitops/argocd.py --write"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_argo_cd_shows_each_state_as_a_person_should_read_it(scenario: Scenario) -> None:
    health = argocd.argocd_health(SCRIPT, scenario.object)
    assert health["status"] == argocd.HEALTH[scenario.state], scenario.what
    if scenario.state == State.NEEDS_A_PERSON:
        (stalled,) = [c for c in scenario.object["status"]["conditions"] if c["type"] == "Stalled"]
        assert health["message"] == stalled["message"]
    assert health["message"]


@pytest.mark.parametrize("test", UPSTREAM_TESTS, ids=[t["inputPath"] for t in UPSTREAM_TESTS])
def test_health_test_yaml_holds_as_argo_cds_own_test_runs_it(test: dict[str, Any]) -> None:
    body = yaml.safe_load((argocd.CUSTOMIZATION / test["inputPath"]).read_text())
    assert argocd.argocd_health(SCRIPT, body) == test["healthStatus"]


def test_the_argocd_cm_patch_holds_health_lua_verbatim() -> None:
    patch = yaml.safe_load(argocd.PATCH.read_text())
    assert patch == {"data": {argocd.CONFIG_KEY: SCRIPT}}
    assert argocd.CONFIG_KEY == "resource.customizations.health.nemotron.dev_NemotronDeployment"


def test_the_lua_sandbox_lacks_the_libraries_argocd_cm_leaves_out() -> None:
    probe = "return {status = tostring(string) .. tostring(math) .. tostring(os)}"
    assert argocd.argocd_health(probe, {})["status"] == "nilnilnil"
