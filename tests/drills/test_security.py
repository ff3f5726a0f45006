"""Drill 6: the NGC key (a canary) shows up nowhere but in the Secret reference, whatever path
the operator takes with it (entitled, rejected, a value that breaks the HTTP header, a key that
breaks nothing but is long), even with --verbose logs; and a NemotronDeployment can never make
the operator read, or its pods use, a Secret of another namespace.

The operator that runs as non-root under the chart's RBAC is tests/e2e/test_chart.py's.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from nemotron_operator.api import names
from tests.e2e.observed import everything_in
from tests.standins.registry import RegistryStandin, catalog_config

from .conftest import (
    Cluster,
    condition,
    list_nds,
    nd_body,
    ngc_secret,
    poll,
    report,
)

H100 = "NVIDIA-H100-80GB-HBM3"
EMBED = {"model": "llama-3.2-nv-embedqa-1b-v2", "gpu": {"product": H100}}


def leaked_forms(key: str) -> list[str]:
    """The key as it could leak: itself, and base64 of it and of the Basic credentials."""
    return [
        key,
        base64.b64encode(key.encode()).decode(),
        base64.b64encode(f"$oauthtoken:{key}".encode()).decode(),
    ]


@pytest.mark.timeout(600)
def test_a_canary_key_shows_nowhere_but_in_the_secret_reference(
    cluster: Cluster, drill_namespaces, operators
) -> None:
    entitled = f"nvapi-CANARY-{uuid.uuid4().hex}"
    rejected = f"nvapi-CANARY-REJECTED-{uuid.uuid4().hex}"
    header_breaker = f"nvapi-CANARY-CRLF-{uuid.uuid4().hex}\r\nX-Injected: {uuid.uuid4().hex}"
    long_key = f"nvapi-CANARY-LONG-{uuid.uuid4().hex * 200}"
    config = catalog_config()
    config["keys"][entitled] = ["*"]
    namespace = drill_namespaces("canary")
    keys = {"entitled": entitled, "rejected": rejected, "crlf": header_breaker, "long": long_key}
    for name, key in keys.items():
        ngc_secret(cluster.api, namespace, key=key, name=f"key-{name}")
    with RegistryStandin(config) as standin:
        urls = {"NEMOTRON_NGC_REGISTRY_URL": standin.url, "NEMOTRON_NGC_METADATA_URL": standin.url}
        operator = operators(env=urls, args=("--verbose",))
        objects = client.CustomObjectsApi(cluster.api)
        for name in keys:
            spec = {**EMBED, "ngc": {"apiKeySecret": {"name": f"key-{name}"}}}
            objects.create_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, nd_body(name, spec)
            )

        def credentials_known() -> bool:
            bodies = list_nds(cluster.api, namespace)
            return len(bodies) == len(keys) and all(
                condition(b, "CredentialsValid") for b in bodies
            )

        poll(credentials_known, "a CredentialsValid condition on each", 120)
        poll(
            lambda: (
                (
                    condition(
                        objects.get_namespaced_custom_object(
                            names.GROUP, names.VERSION, namespace, names.PLURAL, "entitled"
                        ),
                        "Ready",
                    )
                    or {}
                ).get("status")
                == "True"
            ),
            "the entitled one Ready",
            120,
        )
        time.sleep(3)
        outcome = {
            b["metadata"]["name"]: (
                f"{condition(b, 'CredentialsValid')['status']} "  # type: ignore[index]
                f"{condition(b, 'CredentialsValid')['reason']}"  # type: ignore[index]
            )
            for b in list_nds(cluster.api, namespace)
        }
        texts = everything_in(cluster, namespace)
        texts["operator log (--verbose)"] = operator.logs()
        texts["registry stand-in requests (paths)"] = " ".join(r.path for r in standin.requests)
        leaks = [
            (where, name)
            for where, text in texts.items()
            for name, key in keys.items()
            for form in leaked_forms(key.strip().split("\r")[0])
            if form in text
        ]
        deployment = client.AppsV1Api(cluster.api).read_namespaced_deployment("entitled", namespace)
        env = {e.name: e for e in deployment.spec.template.spec.containers[0].env}
    report(
        "a canary NGC key",
        {
            **{f"CredentialsValid of the {name} key": text for name, text in outcome.items()},
            "places searched": ", ".join(texts),
            "operator log lines searched": len(operator.logs().splitlines()),
            "leaks (place, key)": leaks,
            "the pods get the key from": env["NGC_API_KEY"].value_from.secret_key_ref.to_dict(),
        },
    )
    assert leaks == []
    assert env["NGC_API_KEY"].value is None
    assert env["NGC_API_KEY"].value_from.secret_key_ref.name == "key-entitled"
    assert outcome["entitled"] == "True NGCEntitled"
    assert outcome["rejected"].startswith("False")
    operator.assert_never_crashed()


def create_refused(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> str:
    try:
        client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL, nd_body(name, spec)
        )
    except ApiException as error:
        return f"refused at admission (HTTP {error.status})"
    return "admitted"


@pytest.mark.timeout(600)
def test_no_secret_of_another_namespace_can_be_read_or_used(
    cluster: Cluster, drill_namespaces, operators
) -> None:
    mine = drill_namespaces("mine")
    other = drill_namespaces("other")
    ngc_secret(cluster.api, other)  # a valid key, in the other namespace only
    ngc_secret(cluster.api, other, name="shared")
    ngc_secret(cluster.api, mine, name="own-key")  # a valid key of this namespace
    operator = operators(args=("--verbose",))  # its log shows every request's path

    # 1. a namespace in the name: the schema refuses it wherever a Secret is named
    attempts = {
        "ngc.apiKeySecret.name other/ngc-api": {
            **EMBED,
            "ngc": {"apiKeySecret": {"name": f"{other}/ngc-api"}},
        },
        "ngc.pullSecrets other/ngc-api": {**EMBED, "ngc": {"pullSecrets": [f"{other}/ngc-api"]}},
        "ngc.apiKeySecret.namespace": {
            **EMBED,
            "ngc": {"apiKeySecret": {"name": "ngc-api", "namespace": other}},
        },
    }
    outcome = {
        what: create_refused(cluster, mine, f"a{i}", spec)
        for i, (what, spec) in enumerate(attempts.items())
    }
    # a field the schema does not have is pruned, as for every CRD: admitted without it
    admitted = [f"a{i}" for i, what in enumerate(attempts) if outcome[what] == "admitted"]
    for name in admitted:
        stored = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            names.GROUP, names.VERSION, mine, names.PLURAL, name
        )
        assert "namespace" not in stored["spec"]["ngc"]["apiKeySecret"]
        outcome[f"{name} as stored"] = str(stored["spec"]["ngc"])

    # 2. names that are valid: they mean a Secret of the object's own namespace, nothing else
    own_key = {"apiKeySecret": {"name": "own-key"}}

    def stolen(secret_key_ref: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"name": "STOLEN", "valueFrom": {"secretKeyRef": secret_key_ref}}]

    cases = {
        "same-name": {**EMBED, "ngc": {"apiKeySecret": {"name": "ngc-api"}}},
        "dotted-name": {**EMBED, "ngc": {"apiKeySecret": {"name": f"{other}.ngc-api"}}},
        "env-slash": {
            **EMBED,
            "ngc": own_key,
            "env": stolen({"name": f"{other}/shared", "key": "NGC_API_KEY"}),
        },
        "env-namespace-field": {
            **EMBED,
            "ngc": own_key,
            "env": stolen({"name": "shared", "key": "NGC_API_KEY", "namespace": other}),
        },
    }
    for name, spec in cases.items():
        client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            names.GROUP, names.VERSION, mine, names.PLURAL, nd_body(name, spec)
        )

    def settled(body: dict[str, Any]) -> bool:
        ready = condition(body, "Ready") or {}
        return ready.get("reason") not in (None, "Creating")

    poll(
        lambda: (
            len(list_nds(cluster.api, mine)) == len(cases) + len(admitted)
            and all(settled(b) for b in list_nds(cluster.api, mine))
        ),
        "a reason on each",
        120,
    )
    for body in list_nds(cluster.api, mine):
        ready = condition(body, "Ready") or {}
        message = ready.get("message", "")[:110]
        outcome[body["metadata"]["name"]] = f"{ready.get('reason')}: {message}"

    # every Secret the operator read, it read in the object's own namespace
    secret_paths = {
        line.split('"')[1].split()[1]
        for line in operator.logs().splitlines()
        if "/secrets/" in line and '"GET ' in line
    }
    # what the pods would use: references without a namespace (there is no such field)
    references = []
    for deployment in client.AppsV1Api(cluster.api).list_namespaced_deployment(mine).items:
        for env in deployment.spec.template.spec.containers[0].env or ():
            if env.value_from and env.value_from.secret_key_ref:
                references.append(
                    (deployment.metadata.name, env.value_from.secret_key_ref.to_dict())
                )
    report(
        "Secrets of another namespace",
        {
            **outcome,
            "Secrets the operator read (GET paths, --verbose log)": sorted(secret_paths),
            "Secret references in the Deployments": references,
        },
    )
    assert outcome["ngc.apiKeySecret.name other/ngc-api"].startswith("refused")
    assert outcome["ngc.pullSecrets other/ngc-api"].startswith("refused")
    assert all(outcome[name].startswith("SecretNotFound") for name in admitted)
    assert secret_paths and all(f"/namespaces/{mine}/secrets/" in p for p in secret_paths)
    assert outcome["same-name"].startswith("SecretNotFound")
    assert outcome["dotted-name"].startswith("SecretNotFound")
    # a reference that names another namespace builds no Deployment at all
    assert outcome["env-slash"].startswith("ChildRejected")
    assert outcome["env-namespace-field"].startswith("ChildRejected")
    for _, ref in references:
        assert set(ref) <= {"name", "key", "optional"} and "/" not in ref["name"]
    operator.assert_never_crashed()
