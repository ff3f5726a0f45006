"""NGC access is settled before any pod exists (issues 5 and 8).

Against the registry stand-in (tests/standins/registry.py, serving the built-in catalog's
releases): a key the token endpoint rejects, a key without the entitlement, a valid key, no key
where a keyless image allows it and where the image needs one, and a registry that cannot be
reached. A key never shows anywhere a user (or a log collector) could read it.

A key Secret created, fixed, rotated or deleted is acted on at once: the operator follows the
Secrets of the namespace with a metadata-only watch (key_secrets). The recovery tests wait far
less than the resync loop would take; the rotation test changes the key of a Ready deployment,
which no resync looks at before settings.CREDENTIALS_RECHECK_SECONDS.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from nemotron_operator.shell import settings
from tests.standins.registry import UNENTITLED_KEY, VALID_KEY, RegistryStandin, catalog_config

from .conftest import Cluster, OperatorProcess, free_port
from .fake_kubelet import FakeKubelet
from .nemotron import NemotronDeployments
from .observed import (
    EVENT_WAIT,
    KEY_SECRET,
    everything_in,
    failing,
    nim_env,
    nim_pod,
    pods_of,
    posted_once,
    put_key_secret,
    recovered,
    workload,
)
from .private_operator import PrivateOperator, private_operator

H100 = "NVIDIA-H100-80GB-HBM3"
NANO_ON_H100 = {"model": "nemotron-3-nano", "gpu": {"product": H100}}
WITH_KEY = {**NANO_ON_H100, "ngc": {"apiKeySecret": {"name": KEY_SECRET}}}
NANO_REPOSITORY = "nim/nvidia/nemotron-3-nano"
PB_TAG = "2.0.4-pb6.0"  # Nano's Production Branch 6 release: never keyless
PB_REPOSITORY = "nemotron-3-nano-pb6"  # where Production Branch 6 publishes Nano
OLD_TAG = "2.0.9"  # before 2.0.10, the first keyless release
KEY_CHANGE_WAIT = EVENT_WAIT  # the Secret watch, not the resync loop (30 s, 600 s when Ready)


@pytest.fixture
def nds(cluster: Cluster, namespace: str, operator: OperatorProcess) -> NemotronDeployments:
    return NemotronDeployments(cluster, namespace)


def nothing_created(cluster: Cluster, namespace: str, name: str) -> None:
    """No workload and no pod: a short wait proves none appears."""
    time.sleep(1.5)
    assert workload(cluster, namespace, name) is None
    assert pods_of(cluster, namespace, name) == []


def key_from_secret(pod: client.V1Pod) -> dict[str, str]:
    """The NGC_API_KEY variable's secretKeyRef (it must never carry a value)."""
    variable = nim_env(pod)["NGC_API_KEY"]
    assert variable.value is None, "the key must come from the Secret, never inline"
    ref = variable.value_from.secret_key_ref
    return {"name": ref.name, "key": ref.key}


# --- the pre-flight check, against the session's stand-in ------------------------------------


def test_a_rejected_key_stops_everything_and_shows_nowhere_then_a_good_key_deploys(
    cluster: Cluster, namespace: str, nds: NemotronDeployments, operator: OperatorProcess
) -> None:
    canary = f"nvapi-CANARY-{uuid.uuid4().hex}"
    put_key_secret(cluster, namespace, canary)
    nds.create("nano", WITH_KEY)

    credentials = nds.wait_condition("nano", "CredentialsValid", "False", "NGCAuthenticationFailed")
    assert "rejected the NGC API key (HTTP 401" in credentials["message"]
    failing(nds, "nano", "NGCAuthenticationFailed")
    posted_once(cluster, namespace, "nano", "NGCAuthenticationFailed")
    nothing_created(cluster, namespace, "nano")
    assert "NGC credentials for" in operator.logs()  # the log is there to search
    for kind, text in everything_in(cluster, namespace).items():
        assert canary not in text, f"the key shows in a {kind}"
    assert canary not in operator.logs()

    put_key_secret(cluster, namespace, VALID_KEY)  # the user fixes the Secret
    nds.wait_condition("nano", "CredentialsValid", "True", "NGCEntitled", timeout=KEY_CHANGE_WAIT)
    recovered(nds, "nano")
    assert key_from_secret(nim_pod(cluster, namespace, "nano")) == {
        "name": KEY_SECRET,
        "key": "NGC_API_KEY",
    }


def test_a_key_without_the_entitlement_is_refused_before_any_pod(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    put_key_secret(cluster, namespace, UNENTITLED_KEY)
    nds.create("nano", WITH_KEY)
    credentials = nds.wait_condition("nano", "CredentialsValid", "False", "NGCNotEntitled")
    assert "valid but may not pull" in credentials["message"]
    assert f"{NANO_REPOSITORY}:" in credentials["message"]
    failing(nds, "nano", "NGCNotEntitled")
    posted_once(cluster, namespace, "nano", "NGCNotEntitled")
    nothing_created(cluster, namespace, "nano")


def test_a_valid_key_is_checked_with_the_registry_and_given_to_the_nim(
    cluster: Cluster, namespace: str, nds: NemotronDeployments, registry: Any
) -> None:
    put_key_secret(cluster, namespace, VALID_KEY)
    nds.create("nano", WITH_KEY)
    credentials = nds.wait_condition("nano", "CredentialsValid", "True", "NGCEntitled")
    assert f"{NANO_REPOSITORY}:2.1.5" in credentials["message"]
    nds.wait_condition("nano", "Ready", "True")
    # the operator keeps an answer for a while, so the question may be an earlier test's
    asked = [
        (r.path, r.auth_scheme)
        for r in registry.requests
        if NANO_REPOSITORY in r.path or NANO_REPOSITORY in r.query.get("scope", "")
    ]
    assert ("/proxy_auth", "Basic") in asked
    assert (f"/v2/{NANO_REPOSITORY}/manifests/2.1.5", "Bearer") in asked
    pod = nim_pod(cluster, namespace, "nano")
    assert key_from_secret(pod) == {"name": KEY_SECRET, "key": "NGC_API_KEY"}


def test_a_key_rotated_or_deleted_under_a_ready_deployment_is_acted_on_at_once(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    assert KEY_CHANGE_WAIT * 10 < settings.CREDENTIALS_RECHECK_SECONDS
    put_key_secret(cluster, namespace, VALID_KEY)
    nds.create("nano", WITH_KEY)
    recovered(nds, "nano")  # Ready: nothing asks the registry again before its recheck

    put_key_secret(cluster, namespace, UNENTITLED_KEY)  # rotated to a key without the entitlement
    credentials = nds.wait_condition(
        "nano", "CredentialsValid", "False", "NGCNotEntitled", timeout=KEY_CHANGE_WAIT
    )
    assert "valid but may not pull" in credentials["message"]

    client.CoreV1Api(cluster.api).delete_namespaced_secret(KEY_SECRET, namespace)
    credentials = nds.wait_condition(
        "nano", "CredentialsValid", "False", "SecretNotFound", timeout=KEY_CHANGE_WAIT
    )
    assert f'Secret "{KEY_SECRET}" does not exist' in credentials["message"]

    put_key_secret(cluster, namespace, VALID_KEY)
    nds.wait_condition("nano", "CredentialsValid", "True", "NGCEntitled", timeout=KEY_CHANGE_WAIT)
    recovered(nds, "nano")


def test_a_missing_key_secret_is_named_then_picked_up_once_created(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    nds.create("nano", WITH_KEY)
    credentials = nds.wait_condition("nano", "CredentialsValid", "False", "SecretNotFound")
    assert f'Secret "{KEY_SECRET}" does not exist' in credentials["message"]
    assert "spec.ngc.apiKeySecret" in credentials["message"]
    nothing_created(cluster, namespace, "nano")
    put_key_secret(cluster, namespace, VALID_KEY)
    nds.wait_condition("nano", "CredentialsValid", "True", "NGCEntitled", timeout=KEY_CHANGE_WAIT)
    recovered(nds, "nano")


# --- which images need a key (issue 8) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "image", "why"),
    [
        (PB_TAG, PB_REPOSITORY, "Production Branch (-pbN) tag"),
        (OLD_TAG, "nemotron-3-nano", "older than 2.0.10, the first keyless release"),
    ],
)
def test_an_image_that_needs_a_key_is_refused_without_one_before_any_pod(
    cluster: Cluster, namespace: str, nds: NemotronDeployments, version: str, image: str, why: str
) -> None:
    nds.create("nano", {**NANO_ON_H100, "version": version})
    credentials = nds.wait_condition("nano", "CredentialsValid", "False", "NGCKeyRequired")
    message = credentials["message"]
    assert why in message
    assert "kubectl create secret generic ngc-api --from-literal=NGC_API_KEY=<key>" in message
    assert "spec.ngc.apiKeySecret.name" in message
    plan = nds.get("nano")["status"]["plan"]
    assert plan["keyRequired"] is True and why in plan["keyRequiredReason"]
    assert plan["image"].endswith(f"/{image}:{version}")
    failing(nds, "nano", "NGCKeyRequired")
    posted_once(cluster, namespace, "nano", "NGCKeyRequired")
    nothing_created(cluster, namespace, "nano")


def test_a_keyless_image_without_a_key_deploys_with_no_key_in_the_pod(
    cluster: Cluster, namespace: str, nds: NemotronDeployments, registry: Any
) -> None:
    nds.create("nano", NANO_ON_H100)
    credentials = nds.wait_condition("nano", "CredentialsValid", "True", "AnonymousPullAllowed")
    assert "without an NGC API key" in credentials["message"]
    plan = nds.get("nano")["status"]["plan"]
    assert plan["keyRequired"] is False
    nds.wait_condition("nano", "Ready", "True")
    env = nim_env(nim_pod(cluster, namespace, "nano"))
    assert "NGC_API_KEY" not in env and "NGC_CLI_API_KEY" not in env
    # the anonymous probe: no credentials, no account (answers are kept a while: the question
    # may have been an earlier test's)
    assert any(
        r.path == "/proxy_auth"
        and NANO_REPOSITORY in r.query.get("scope", "")
        and r.auth_scheme is None
        and "account" not in r.query
        for r in registry.requests
    )


def test_a_key_given_for_a_keyless_image_is_used(
    cluster: Cluster, namespace: str, nds: NemotronDeployments
) -> None:
    put_key_secret(cluster, namespace, VALID_KEY, name="my-ngc")
    nds.create("nano", {**NANO_ON_H100, "ngc": {"apiKeySecret": {"name": "my-ngc"}}})
    nds.wait_condition("nano", "CredentialsValid", "True", "NGCEntitled")
    nds.wait_condition("nano", "Ready", "True")
    assert key_from_secret(nim_pod(cluster, namespace, "nano")) == {
        "name": "my-ngc",
        "key": "NGC_API_KEY",
    }


@pytest.mark.parametrize(
    ("version", "image"), [(OLD_TAG, "nemotron-3-nano"), (PB_TAG, PB_REPOSITORY)]
)
def test_an_image_that_needs_a_key_deploys_with_one(
    cluster: Cluster,
    namespace: str,
    nds: NemotronDeployments,
    registry: Any,
    version: str,
    image: str,
) -> None:
    put_key_secret(cluster, namespace, VALID_KEY)
    nds.create("nano", {**WITH_KEY, "version": version})
    credentials = nds.wait_condition("nano", "CredentialsValid", "True", "NGCEntitled")
    assert f"nim/nvidia/{image}:{version}" in credentials["message"]
    nds.wait_condition("nano", "Ready", "True")
    pod = nim_pod(cluster, namespace, "nano")
    assert pod.spec.containers[0].image.endswith(f"/{image}:{version}")
    # the registry was asked for that very image (answers are kept a while: maybe earlier)
    assert any(r.path == f"/v2/nim/nvidia/{image}/manifests/{version}" for r in registry.requests)
    assert key_from_secret(pod)["name"] == KEY_SECRET


# --- a registry where the canary key is valid: it reaches the pods and still shows nowhere ----


@pytest.fixture(scope="module")
def canary_key() -> str:
    return f"nvapi-CANARY-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def entitled_canary_operator(
    cluster: Cluster,
    crd_installed: None,
    canary_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrivateOperator]:
    config = catalog_config()
    config["keys"][canary_key] = ["*"]
    config["repositories"][NANO_REPOSITORY]["tags"].append(PB_TAG)  # served, behind a key
    with (
        RegistryStandin(config) as standin,
        private_operator(
            cluster,
            "key",
            tmp_path_factory.mktemp("canary-operator"),
            {"NEMOTRON_NGC_REGISTRY_URL": standin.url},
        ) as private,
    ):
        yield private


def test_a_working_key_reaches_the_nim_only_through_its_secret_even_when_the_nim_prints_it(
    cluster: Cluster,
    entitled_canary_operator: PrivateOperator,
    canary_key: str,
    request: pytest.FixtureRequest,
) -> None:
    namespace = entitled_canary_operator.namespace(request.node.name)
    nds, kubelet = NemotronDeployments(cluster, namespace), FakeKubelet(cluster.api, namespace)
    put_key_secret(cluster, namespace, canary_key)
    nds.create("nano", {**WITH_KEY, "version": PB_TAG})  # a PB tag, served with this key
    nds.wait_condition("nano", "CredentialsValid", "True", "NGCEntitled")
    nds.wait_condition("nano", "Ready", "True")
    pod = nim_pod(cluster, namespace, "nano")
    assert key_from_secret(pod) == {"name": KEY_SECRET, "key": "NGC_API_KEY"}

    # a NIM that echoes its environment as it dies: the kubelet copies that into the pod status
    leaked_tail = "\n".join(
        [
            f"INFO 2026-03-01 11:02:11.402 env.py:40] NGC_API_KEY={canary_key}",
            "ERROR 2026-03-01 11:02:12.710 nim_sdk.py:338] Download failed after 1 attempts. "
            f"Last exception: Authentication Error (key {canary_key})",
        ]
    )
    kubelet.crash_loop(pod, restarts=2, message=leaked_tail)
    degraded = failing(nds, "nano", "NGCAuthenticationFailed")
    assert "Authentication Error" in degraded["message"] and "***" in degraded["message"]
    assert "NGC credentials for" in entitled_canary_operator.logs()
    for kind, text in everything_in(cluster, namespace).items():
        assert canary_key not in text, f"the key shows in a {kind}"
    assert canary_key not in entitled_canary_operator.logs()
    kubelet.ready(pod)
    recovered(nds, "nano")


# --- a registry that cannot be reached: unknown, and the deployment goes on --------------------


@pytest.fixture(scope="module")
def unreachable_registry_operator(
    cluster: Cluster, crd_installed: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivateOperator]:
    nobody_listens = f"http://127.0.0.1:{free_port()}"
    with private_operator(
        cluster,
        "off",
        tmp_path_factory.mktemp("unreachable-registry-operator"),
        {"NEMOTRON_NGC_REGISTRY_URL": nobody_listens},
    ) as private:
        yield private


@pytest.mark.parametrize("keyed", [True, False], ids=["with-a-key", "keyless"])
def test_an_unreachable_registry_is_unknown_and_does_not_block_the_deployment(
    cluster: Cluster,
    unreachable_registry_operator: PrivateOperator,
    request: pytest.FixtureRequest,
    keyed: bool,
) -> None:
    namespace = unreachable_registry_operator.namespace(request.node.name)
    nds = NemotronDeployments(cluster, namespace)
    if keyed:
        put_key_secret(cluster, namespace, VALID_KEY)
    nds.create("nano", WITH_KEY if keyed else NANO_ON_H100)
    credentials = nds.wait_condition("nano", "CredentialsValid", "Unknown", "RegistryUnreachable")
    assert "could not be reached" in credentials["message"]
    assert "will be repeated" in credentials["message"]
    recovered(nds, "nano")
    env = nim_env(nim_pod(cluster, namespace, "nano"))
    assert ("NGC_API_KEY" in env) is keyed


def test_an_unreachable_registry_does_not_excuse_a_missing_key(
    cluster: Cluster, unreachable_registry_operator: PrivateOperator, request: pytest.FixtureRequest
) -> None:
    namespace = unreachable_registry_operator.namespace(request.node.name)
    nds = NemotronDeployments(cluster, namespace)
    nds.create("nano", {**NANO_ON_H100, "version": PB_TAG})
    nds.wait_condition("nano", "CredentialsValid", "False", "NGCKeyRequired")
    nothing_created(cluster, namespace, "nano")
