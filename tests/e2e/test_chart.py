"""The Helm chart: lint, values schema, server-side validation, and the operator under its RBAC.

The proof that the RBAC is enough: the chart's ServiceAccount, Roles and bindings are applied
(not its Deployment: there is no image here), the operator runs with a token of that
ServiceAccount, and creates, updates, diagnoses and deletes NemotronDeployments while no
request it sends is forbidden. That it is not more than the code uses is the table in
`test_the_chart_grants_exactly_these_permissions`, each row with the code that needs it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from nemotron_operator.api import names
from tests.standins.registry import UNENTITLED_KEY, VALID_KEY

from .conftest import (
    REPO,
    SESSION_PREFIX,
    Cluster,
    OperatorProcess,
    create_namespace,
    operator_writes,
    wait_until,
)
from .fake_kubelet import FakeKubelet
from .nemotron import NemotronDeployments
from .observed import gone, put_key_secret

CHART = REPO / "charts" / "nemotron-operator"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
# Namespaces of this module start with this: the e2e session's operator serves
# `{SESSION_PREFIX}-*` with an admin kubeconfig and must not meet them.
PREFIX = f"c{SESSION_PREFIX[1:]}"
H100 = "NVIDIA-H100-80GB-HBM3"
NANO_ON_H100 = {"model": "nemotron-3-nano", "gpu": {"product": H100}}
# Spread over two GPU products: other tests of the session pin H100s too.
NANO_ON_H200 = {"model": "nemotron-3-nano", "gpu": {"product": "NVIDIA-H200"}}
CUDA_OOM = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB "
    "total capacity; 77.52 GiB already allocated)"
)


# --- helm ---------------------------------------------------------------------------------


def helm(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.binaries["helm"]), *args], capture_output=True, text=True, check=False
    )


def values_file(tmp_path: Path, values: Mapping[str, Any]) -> Path:
    path = tmp_path / f"values-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(dict(values)))
    return path


def template(
    cluster: Cluster,
    tmp_path: Path,
    values: Mapping[str, Any],
    release: str = "nemotron-operator",
    namespace: str = "nemotron-system",
    *extra: str,
) -> subprocess.CompletedProcess[str]:
    return helm(
        cluster,
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--values",
        str(values_file(tmp_path, values)),
        *extra,
    )


def render(
    cluster: Cluster,
    tmp_path: Path,
    values: Mapping[str, Any],
    release: str = "nemotron-operator",
    namespace: str = "nemotron-system",
) -> list[dict[str, Any]]:
    result = template(cluster, tmp_path, values, release, namespace)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def of_kind(documents: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def permissions(documents: Sequence[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(where, API group, resource, verb) for every grant the rendered RBAC makes to the
    chart's ServiceAccount; `where` is "cluster" or the namespace of a RoleBinding."""
    roles = {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in documents
        if d["kind"] in ("ClusterRole", "Role")
    }
    granted = set()
    for binding in documents:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        ref = binding["roleRef"]
        where = binding["metadata"].get("namespace") or "cluster"
        role_namespace = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        role = roles[(ref["kind"], role_namespace, ref["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        granted.add((where, group, resource, verb))
    return granted


# --- the chart alone ------------------------------------------------------------------------

NAMESPACED_VALUES = {
    "watchNamespaces": ["team-a", "team-b"],
    "secretNamespaces": ["team-a"],
    "logLevel": "debug",
    "catalogOverrides": "gpus:\n  NVIDIA-RTX-PRO-6000:\n    memoryMiB: 97887\n",
    "ngc": {
        "registryURL": "https://registry.example.internal",
        "metadataURL": "https://ngc.example.internal",
        "liveCatalog": True,
    },
    "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.example.internal:3128"}],
    "imagePullSecrets": [{"name": "regcred"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops"}],
    "podAnnotations": {"team": "platform"},
    "imagePrePull": {"pauseImage": "registry.example.internal/pause:3.10.2"},
}


# Every metrics toggle on (the monitors, alerts and dashboard need no CRD to render).
EVERYTHING_ON = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Operators"}},
    }
}
MONITORING = "monitoring.coreos.com/v1"


@pytest.mark.parametrize(
    "values", [{}, NAMESPACED_VALUES, EVERYTHING_ON], ids=["defaults", "namespaced", "metrics"]
)
def test_helm_lint_is_clean(cluster: Cluster, tmp_path: Path, values: dict[str, Any]) -> None:
    result = helm(
        cluster,
        "lint",
        "--strict",
        str(CHART),
        "--values",
        values_file(tmp_path, values).as_posix(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.fixture
def more_namespaces(cluster: Cluster) -> Iterator[Callable[[str], str]]:
    """A factory of fresh namespaces `{PREFIX}-<what>-<random>`, deleted afterwards."""
    core = client.CoreV1Api(cluster.api)
    made: list[str] = []

    def make(what: str) -> str:
        made.append(create_namespace(cluster.api, what, PREFIX, wait_for_account=False))
        return made[-1]

    yield make
    for name in made:
        core.delete_namespace(name, propagation_policy="Background")


def dry_run(cluster: Cluster, manifests: str) -> list[str]:
    """`kubectl apply --dry-run=server --server-side`: the API server validates and admits every
    object (schema, RBAC escalation checks, pod security) without storing any."""
    result = cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "-f", "-", stdin=manifests, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_default_install_passes_server_side_dry_run(
    cluster: Cluster, tmp_path: Path, more_namespaces: Callable[[str], str]
) -> None:
    release_namespace = more_namespaces("ops")
    result = template(
        cluster, tmp_path, {}, "nemotron-operator", release_namespace, "--include-crds"
    )
    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]

    lines = dry_run(cluster, result.stdout)

    assert len(lines) == len(documents)
    assert all(line.endswith("serverside-applied (server dry run)") for line in lines), lines
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Service",  # the operator's metrics
        "ServiceAccount",
    ]
    (deployment,) = of_kind(documents, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert container["image"].endswith(f":{app_version}")
    assert container["args"] == ["--all-namespaces"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["limits"] and container["resources"]["requests"]
    # serving every namespace, the operator may read no Secret unless secretNamespaces says
    assert not [p for p in permissions(documents) if p[2] == "secrets"]


def test_namespaced_install_passes_server_side_dry_run(
    cluster: Cluster, tmp_path: Path, more_namespaces: Callable[[str], str]
) -> None:
    release_namespace = more_namespaces("ops")
    team_a, team_b = more_namespaces("team-a"), more_namespaces("team-b")
    values = {
        **NAMESPACED_VALUES,
        "watchNamespaces": [team_a, team_b],
        "secretNamespaces": [team_a],
    }
    result = template(cluster, tmp_path, values, "nemotron-operator", release_namespace)
    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]

    lines = dry_run(cluster, result.stdout)

    assert len(lines) == len(documents)
    assert all(line.endswith("serverside-applied (server dry run)") for line in lines), lines
    (deployment,) = of_kind(documents, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [f"--namespace={team_a}", f"--namespace={team_b}", "--verbose"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NEMOTRON_NGC_REGISTRY_URL"] == "https://registry.example.internal"
    assert env["NEMOTRON_LIVE_CATALOG"] == "true"
    assert env["HTTPS_PROXY"] == "http://proxy.example.internal:3128"
    assert env["NEMOTRON_PAUSE_IMAGE"] == "registry.example.internal/pause:3.10.2"
    (configmap,) = of_kind(documents, "ConfigMap")
    overrides = yaml.safe_load(configmap["data"]["overrides.yaml"])
    assert overrides == yaml.safe_load(NAMESPACED_VALUES["catalogOverrides"])
    assert env["NEMOTRON_CATALOG_OVERRIDES"].endswith("/overrides.yaml")
    secrets = {p[0] for p in permissions(documents) if p[2] == "secrets"}
    assert secrets == {team_a}
    served = {p[0] for p in permissions(documents) if p[2] == names.PLURAL}
    assert served == {team_a, team_b}


@pytest.mark.parametrize(
    ("key", "value", "complaint"),
    [
        ("replicaCount", "2", "additional properties 'replicaCount' not allowed"),
        ("image.digest", '"sha256:0"', "additional properties 'digest' not allowed"),
        ("ngc.registry", '"https://nvcr.io"', "additional properties 'registry' not allowed"),
        ("ngc.liveCatalog", '"yes"', "/ngc/liveCatalog"),
        ("ngc.registryURL", '"nvcr.io"', "/ngc/registryURL"),
        ("watchNamespaces", '"team-a"', "/watchNamespaces"),
        ("watchNamespaces", '["team-*"]', "/watchNamespaces/0"),
        ("secretNamespaces", '["Team_A"]', "/secretNamespaces/0"),
        ("logLevel", '"trace"', "/logLevel"),
        ("resources.requests.cpu", "true", "/resources/requests/cpu"),
        ("extraEnv", '[{"name": "A", "value": 1}]', "/extraEnv/0/value"),
        ("extraEnv", '[{"value": "x"}]', "/extraEnv/0"),
        ("podAnnotations", '{"team": 1}', "/podAnnotations/team"),
        ("catalogOverrides", '{"gpus": {}}', "/catalogOverrides"),
        ("image.pullPolicy", '"Sometimes"', "/image/pullPolicy"),
        ("metrics.port", "8080", "/metrics/port"),  # the liveness probe's
        ("metrics.serviceMonitor.interval", '"often"', "/metrics/serviceMonitor/interval"),
        ("metrics.grafana", "true", "additional properties 'grafana' not allowed"),
        ("metrics.grafanaDashboard.namespace", '"Grafana"', "/metrics/grafanaDashboard/namespace"),
    ],
)
def test_values_schema_rejects_unknown_keys_and_wrong_types(
    cluster: Cluster, key: str, value: str, complaint: str
) -> None:
    result = helm(cluster, "template", "x", str(CHART), "--set-json", f"{key}={value}")
    assert result.returncode != 0, f"{key}={value} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr, result.stderr


def test_secrets_outside_the_watched_namespaces_are_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    result = template(
        cluster, tmp_path, {"watchNamespaces": ["team-a"], "secretNamespaces": ["team-b"]}
    )
    assert result.returncode != 0
    assert '"team-b" is not in watchNamespaces' in result.stderr


# Every permission the chart grants, with the code that needs it. `where`: "cluster" for
# cluster-wide, "served" for each watched namespace (cluster-wide when all are served),
# "secrets" for each secretNamespaces entry. The end-to-end tests below prove none is missing;
# this table makes adding one a reviewed change.
CODE_NEEDS = {
    ("cluster", "apiextensions.k8s.io", "customresourcedefinitions", "list"): "Kopf: CRDs",
    ("cluster", "apiextensions.k8s.io", "customresourcedefinitions", "watch"): "Kopf: CRDs",
    ("cluster", "", "nodes", "list"): "handlers.gpu_nodes",
    ("cluster", "", "nodes", "watch"): "handlers.gpu_nodes, gpu_node_changed",
    ("served", names.GROUP, names.PLURAL, "list"): "handlers.nemotron_deployments",
    ("served", names.GROUP, names.PLURAL, "watch"): "handlers.nemotron_deployment_changed",
    ("served", names.GROUP, f"{names.PLURAL}/status", "patch"): "kube.patch_status",
    ("served", "apps", "deployments", "list"): "children index",
    ("served", "apps", "deployments", "watch"): "children index and trigger",
    ("served", "apps", "deployments", "create"): "kube.apply (an apply that creates)",
    ("served", "apps", "deployments", "patch"): "kube.apply",
    ("served", "apps", "deployments", "delete"): "kube.delete_child",
    ("served", "apps", "statefulsets", "list"): "children index",
    ("served", "apps", "statefulsets", "watch"): "children index and trigger",
    ("served", "apps", "statefulsets", "create"): "kube.apply (an apply that creates)",
    ("served", "apps", "statefulsets", "patch"): "kube.apply",
    ("served", "apps", "statefulsets", "delete"): "kube.delete_child",
    ("served", "apps", "daemonsets", "list"): "children index",
    ("served", "apps", "daemonsets", "watch"): "children index and trigger",
    ("served", "apps", "daemonsets", "create"): "kube.apply (cache.prePullImage)",
    ("served", "apps", "daemonsets", "patch"): "kube.apply",
    ("served", "apps", "daemonsets", "delete"): "kube.delete_child (prePullImage turned off)",
    ("served", "batch", "jobs", "list"): "children index",
    ("served", "batch", "jobs", "watch"): "children index and trigger",
    ("served", "batch", "jobs", "create"): "kube.apply (the download Job)",
    ("served", "batch", "jobs", "patch"): "kube.apply",
    ("served", "batch", "jobs", "delete"): "kube.delete_child",
    ("served", "leaderworkerset.x-k8s.io", "leaderworkersets", "list"): "leaderworkersets",
    ("served", "leaderworkerset.x-k8s.io", "leaderworkersets", "watch"): "leaderworkersets",
    ("served", "leaderworkerset.x-k8s.io", "leaderworkersets", "create"): "kube.apply",
    ("served", "leaderworkerset.x-k8s.io", "leaderworkersets", "patch"): "kube.apply",
    ("served", "leaderworkerset.x-k8s.io", "leaderworkersets", "delete"): "delete_child",
    ("served", "", "services", "list"): "children index",
    ("served", "", "services", "watch"): "children index and trigger",
    ("served", "", "services", "create"): "kube.apply",
    ("served", "", "services", "patch"): "kube.apply",
    ("served", "", "persistentvolumeclaims", "list"): "children index",
    ("served", "", "persistentvolumeclaims", "watch"): "children index and trigger",
    ("served", "", "persistentvolumeclaims", "create"): "kube.apply",
    ("served", "", "persistentvolumeclaims", "patch"): "kube.apply",
    ("served", "", "pods", "list"): "handlers.gpu_requests, owned_pods",
    ("served", "", "pods", "watch"): "handlers.gpu_requests, owned_pods",
    ("served", "", "pods/log", "get"): "kube.read_log_tail (a download's cache-size sidecar)",
    ("served", "", "events", "list"): "handlers.pod_warnings",
    ("served", "", "events", "watch"): "handlers.pod_warning_posted",
    ("served", "", "events", "create"): "kube.post_event, Kopf's own events",
    ("served", "", "configmaps", "get"): "kube.read_config_map_value (customModel.configMapRef)",
    ("secrets", "", "secrets", "get"): "kube.read_secret_value",
    ("secrets", "", "secrets", "list"): "key_secrets: where a metadata-only watch starts",
    ("secrets", "", "secrets", "watch"): "key_secrets: changed keys acted on at once",
}
# Kopf lists and watches namespaces to match the served ones; serving all, it does not.
ONLY_WHEN_NAMESPACED = {
    ("cluster", "", "namespaces", "list"): "Kopf: served namespaces",
    ("cluster", "", "namespaces", "watch"): "Kopf: served namespaces",
}


def expected_permissions(served: Sequence[str], secrets: Sequence[str]) -> set[tuple[str, ...]]:
    table = {**CODE_NEEDS, **(ONLY_WHEN_NAMESPACED if served else {})}
    expected = set()
    for where, group, resource, verb in table:
        places = {"cluster": ["cluster"], "served": served or ["cluster"], "secrets": secrets}
        expected |= {(place, group, resource, verb) for place in places[where]}
    return expected


@pytest.mark.parametrize(
    ("served", "secrets"),
    [([], []), ([], ["team-a"]), (["team-a", "team-b"], []), (["team-a", "team-b"], ["team-b"])],
    ids=["all", "all+secrets", "namespaced", "namespaced+secrets"],
)
def test_the_chart_grants_exactly_these_permissions(
    cluster: Cluster, tmp_path: Path, served: list[str], secrets: list[str]
) -> None:
    documents = render(cluster, tmp_path, {"watchNamespaces": served, "secretNamespaces": secrets})
    # secretNamespaces defaults to the watched namespaces
    assert permissions(documents) == expected_permissions(served, secrets or served)
    for binding in of_kind(documents, "ClusterRoleBinding") + of_kind(documents, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "nemotron-operator", "namespace": "nemotron-system"}
        ]


# --- the operator's metrics: Service, monitors, alerts, dashboard -----------------------------


def operator_container(documents: Sequence[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = of_kind(documents, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_metrics_are_served_on_a_port_of_their_own_with_a_service(
    cluster: Cluster, tmp_path: Path
) -> None:
    documents = render(cluster, tmp_path, {})
    container = operator_container(documents)
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 8081}
    assert env["NEMOTRON_METRICS_PORT"] == "8081"
    (service,) = of_kind(documents, "Service")
    (deployment,) = of_kind(documents, "Deployment")
    assert matches(
        service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"]
    )
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert not [d for d in documents if d["apiVersion"] == MONITORING]  # off by default

    off = render(cluster, tmp_path, {"metrics": {"enabled": False, **EVERYTHING_ON["metrics"]}})
    container = operator_container(off)
    assert {e["name"]: e.get("value") for e in container["env"]}["NEMOTRON_METRICS_PORT"] == "0"
    assert [p["name"] for p in container["ports"]] == ["health"]
    assert not of_kind(off, "Service") and not of_kind(off, "ConfigMap")
    assert not [d for d in off if d["apiVersion"] == MONITORING]


def test_the_service_monitor_scrapes_the_metrics_service(cluster: Cluster, tmp_path: Path) -> None:
    documents = render(cluster, tmp_path, EVERYTHING_ON, namespace="ops")
    (monitor,) = of_kind(documents, "ServiceMonitor")
    (service,) = of_kind(documents, "Service")
    assert monitor["apiVersion"] == MONITORING
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["relabelings"] == [
        {"action": "replace", "targetLabel": "job", "replacement": "nemotron-operator"}
    ]
    assert not of_kind(documents, "PodMonitor")


def test_the_pod_monitor_scrapes_the_operator_pod(cluster: Cluster, tmp_path: Path) -> None:
    values = {"metrics": {"podMonitor": {"enabled": True, "interval": "15s"}}}
    documents = render(cluster, tmp_path, values, release="ai", namespace="ops")
    (monitor,) = of_kind(documents, "PodMonitor")
    (deployment,) = of_kind(documents, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert matches(monitor["spec"]["selector"]["matchLabels"], pod_labels)
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["interval"] == "15s"
    assert endpoint["relabelings"][0]["replacement"] == "ai-nemotron-operator"
    assert not of_kind(documents, "ServiceMonitor")


def test_both_monitors_at_once_are_refused(cluster: Cluster, tmp_path: Path) -> None:
    values = {"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}}
    result = template(cluster, tmp_path, values)
    assert result.returncode != 0
    assert "enable serviceMonitor or podMonitor, not both" in result.stderr


def exported_series() -> set[str]:
    """The series names the operator's registry (shell/metrics.py) serves."""
    from nemotron_operator.shell import metrics

    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_sum", "_count"],
        "gauge": [""],
        "info": ["_info"],
        "summary": ["", "_sum", "_count"],
    }
    return {
        family.name + suffix
        for family in metrics.REGISTRY.collect()
        for suffix in suffixes[family.type]
    }


def selectors(expr: str) -> list[Any]:
    """The vector selectors of a PromQL expression (each with .name and .matchers)."""
    import promql_parser

    found: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
            return
        for part in ("lhs", "rhs", "expr", "vector_selector", "param", "args"):
            child = getattr(node, part, None)
            for each in child if isinstance(child, list) else [child]:
                if isinstance(each, promql_parser.Expr):
                    walk(each)

    walk(promql_parser.parse(expr))
    return found


def grafana_query(expr: str) -> str:
    """A dashboard query as Grafana sends it to Prometheus (its variables filled in)."""
    return expr.replace("$__rate_interval", "5m").replace("$job", "nemotron-operator")


def queries(documents: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Where -> PromQL, for every alert and dashboard query the chart renders."""
    (rule,) = of_kind(documents, "PrometheusRule")
    found = {
        f"alert {r['alert']}": r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]
    }
    (config_map,) = of_kind(documents, "ConfigMap")
    dashboard = json.loads(config_map["data"]["nemotron-operator.json"])
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            found[f"panel {panel['title']!r} {target['refId']}"] = grafana_query(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":  # label_values(METRIC, LABEL): Grafana's, not PromQL
            metric = re.fullmatch(r"label_values\((\w+), *\w+\)", variable["definition"])
            assert metric is not None, variable["definition"]
            found[f"variable {variable['name']}"] = metric[1]
    return found


def test_alerts_and_dashboard_parse_and_use_only_metrics_the_operator_exports(
    cluster: Cluster, tmp_path: Path
) -> None:
    documents = render(cluster, tmp_path, EVERYTHING_ON, namespace="ops")
    exported = exported_series() | {"up"}  # up: Prometheus' own, per scrape target
    used: set[str] = set()
    for where, expr in queries(documents).items():
        found = selectors(expr)  # raises on PromQL that does not parse
        assert found, where
        for selector in found:
            assert selector.name in exported, f"{where}: {selector.name} is not exported"
            used.add(selector.name)
            for matcher in selector.matchers.matchers:
                if matcher.name == "condition":  # a condition type the operator writes
                    assert matcher.value in set(names.ConditionType), f"{where}: {matcher.value}"
    assert {
        "nemotron_operator_converge_duration_seconds_bucket",
        "nemotron_operator_converges_total",
        "nemotron_operator_api_writes_total",
        "nemotron_operator_deployments",
        "nemotron_operator_ngc_checks_total",
        "nemotron_operator_workqueue_depth",
    } <= used


def test_the_alerts_mean_what_they_say(cluster: Cluster, tmp_path: Path) -> None:
    documents = render(cluster, tmp_path, EVERYTHING_ON, release="ai", namespace="ops")
    (rule,) = of_kind(documents, "PrometheusRule")
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(alerts) == {
        "NemotronDeploymentStalled",
        "NemotronOperatorConvergeErrors",
        "NemotronOperatorDown",
    }
    own = 'job="ai-nemotron-operator",namespace="ops"'  # this release's operator only
    stalled = alerts["NemotronDeploymentStalled"]
    assert stalled["for"] == "15m" and stalled["labels"] == {"severity": "warning"}
    assert 'condition="Stalled",status="True"' in stalled["expr"] and own in stalled["expr"]
    assert "{{ $labels.reason }}" in stalled["annotations"]["summary"]
    errors = alerts["NemotronOperatorConvergeErrors"]
    assert (
        errors["for"] == "15m" and "[10m]" in errors["expr"] and 'outcome="error"' in errors["expr"]
    )
    assert errors["expr"].endswith("> 0")
    down = alerts["NemotronOperatorDown"]
    assert down["expr"] == f"absent(up{{{own}}} == 1)"  # no target, or its scrape fails
    assert down["labels"] == {"severity": "critical"}


def test_the_dashboard_is_a_configmap_grafana_loads(cluster: Cluster, tmp_path: Path) -> None:
    values = {"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "grafana"}}}
    documents = render(cluster, tmp_path, values)
    (config_map,) = of_kind(documents, "ConfigMap")
    assert config_map["metadata"]["namespace"] == "grafana"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["nemotron-operator.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "nemotron-operator.json").read_text())
    assert dashboard["uid"] == "nemotron-operator"
    titles = [panel["title"] for panel in dashboard["panels"]]
    assert len(set(titles)) == len(titles)
    latency = next(p for p in dashboard["panels"] if p["title"] == "Converge latency")
    assert [t["legendFormat"] for t in latency["targets"]] == ["p50", "p99"]
    assert "histogram_quantile(0.99," in latency["targets"][1]["expr"]


# --- the operator under the chart's RBAC ------------------------------------------------------


@dataclass
class ChartInstall:
    """The chart's RBAC applied, and the operator running with its ServiceAccount's token."""

    release_namespace: str
    keys: str  # a served namespace listed in secretNamespaces
    no_keys: str  # a served namespace that is not
    service_account: str
    kubeconfig: Path
    operator: OperatorProcess

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.release_namespace}:{self.service_account}"


def token_kubeconfig(cluster: Cluster, namespace: str, service_account: str, path: Path) -> Path:
    """A kubeconfig that authenticates with a fresh token of the ServiceAccount (TokenRequest)."""
    token = cluster.kubectl(
        "create", "token", service_account, "-n", namespace, "--duration=2h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": admin["clusters"],
                "users": [{"name": service_account, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": service_account,
                        "context": {
                            "cluster": admin["clusters"][0]["name"],
                            "user": service_account,
                            "namespace": namespace,
                        },
                    }
                ],
                "current-context": service_account,
            }
        )
    )
    path.chmod(0o600)
    return path


def can_i(cluster: Cluster, kubeconfig: Path, *args: str) -> bool:
    result = subprocess.run(
        [str(cluster.binaries["kubectl"]), "--kubeconfig", str(kubeconfig), "auth", "can-i", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() == "yes"


def install_rbac(
    cluster: Cluster,
    tmp_path: Path,
    release: str,
    release_namespace: str,
    values: Mapping[str, Any],
    edit: Callable[[list[dict[str, Any]]], None] = lambda documents: None,
) -> list[dict[str, Any]]:
    """Apply the RBAC part of the chart (everything but the Deployment and its metrics
    Service), as Helm would."""
    documents = render(cluster, tmp_path, values, release, release_namespace)
    assert {d["kind"] for d in documents} - RBAC_KINDS == {"Deployment", "Service"}
    rbac = [d for d in documents if d["kind"] in RBAC_KINDS]
    edit(rbac)
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    return rbac


def uninstall_rbac(cluster: Cluster, rbac: Sequence[dict[str, Any]]) -> None:
    for document in rbac:
        if document["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            cluster.kubectl(
                "delete", document["kind"], document["metadata"]["name"], "--ignore-not-found"
            )


def make_namespaces(cluster: Cluster, *whats: str) -> list[str]:
    return [create_namespace(cluster.api, what, PREFIX) for what in whats]


def delete_namespaces(cluster: Cluster, namespaces: Sequence[str]) -> None:
    for name in namespaces:
        client.CoreV1Api(cluster.api).delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def installed(
    cluster: Cluster,
    crd_installed: None,
    registry: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ChartInstall]:
    tmp = tmp_path_factory.mktemp("chart")
    release_namespace, keys, no_keys = make_namespaces(cluster, "ops", "keys", "nokeys")
    release = f"{PREFIX}-rbac"
    rbac = install_rbac(
        cluster,
        tmp,
        release,
        release_namespace,
        {"watchNamespaces": [keys, no_keys], "secretNamespaces": [keys]},
    )
    (account,) = of_kind(rbac, "ServiceAccount")
    service_account = account["metadata"]["name"]
    kubeconfig = token_kubeconfig(cluster, release_namespace, service_account, tmp / "kubeconfig")
    operator = OperatorProcess(
        kubeconfig,
        tmp / "operator.log",
        {"NEMOTRON_NGC_REGISTRY_URL": registry.url, "NEMOTRON_NGC_METADATA_URL": registry.url},
        namespaces=[keys, no_keys],
    )
    install = ChartInstall(release_namespace, keys, no_keys, service_account, kubeconfig, operator)
    try:
        operator.start()
        yield install
    finally:
        operator.stop()
        delete_namespaces(cluster, [release_namespace, keys, no_keys])
        uninstall_rbac(cluster, rbac)


FORBIDDEN = re.compile(r"\b403\b|Forbidden|forbidden|Not enough permissions")


@pytest.fixture
def started() -> float:
    """When the test began: what the operator wrote since then is this test's doing."""
    return time.time()


def assert_nothing_forbidden(cluster: Cluster, install: ChartInstall, since: float) -> None:
    """No request of the operator was refused: nothing in its log, no refused write audited,
    and it wrote only in the namespaces it serves (and never the NemotronDeployments' spec).
    The writes are those since `since` (the test's own), sent as the chart's ServiceAccount."""
    forbidden = [line for line in install.operator.logs().splitlines() if FORBIDDEN.search(line)]
    assert not forbidden, "\n".join(forbidden[:20])
    writes = [
        w
        for w in operator_writes(cluster, since)
        if w.get("user", {}).get("username") == install.username
    ]
    assert writes, "the operator under the chart's ServiceAccount wrote nothing in this test"
    refused = [w for w in writes if w.get("responseStatus", {}).get("code") == 403]
    assert not refused, [w["requestURI"] for w in refused]
    elsewhere = [
        w
        for w in writes
        if w.get("objectRef", {}).get("namespace") not in (install.keys, install.no_keys)
    ]
    assert not elsewhere, [w["requestURI"] for w in elsewhere]
    on_deployments = {
        (w["verb"], w["objectRef"].get("subresource"))
        for w in writes
        if w["objectRef"].get("resource") == names.PLURAL
    }
    assert on_deployments <= {("patch", "status")}, on_deployments


def pods_of(cluster: Cluster, namespace: str, name: str) -> list[client.V1Pod]:
    return list(
        client.CoreV1Api(cluster.api)
        .list_namespaced_pod(namespace, label_selector=f"{names.DEPLOYMENT_LABEL}={name}")
        .items
    )


def test_the_service_account_may_read_secrets_only_where_listed(
    cluster: Cluster, installed: ChartInstall
) -> None:
    kubeconfig = installed.kubeconfig
    for verb in ("get", "list", "watch"):  # list and watch: the metadata-only key watch
        assert can_i(cluster, kubeconfig, verb, "secrets", "-n", installed.keys)
        assert not can_i(cluster, kubeconfig, verb, "secrets", "-n", installed.no_keys)
    for verb in ("create", "update", "patch", "delete"):
        assert not can_i(cluster, kubeconfig, verb, "secrets", "-n", installed.keys)
    assert not can_i(cluster, kubeconfig, "get", "secrets", "-n", installed.release_namespace)
    assert not can_i(cluster, kubeconfig, "create", "deployments", "-n", "default")
    assert not can_i(cluster, kubeconfig, "patch", names.PLURAL, "-n", installed.keys)


def test_create_then_scale_under_the_charts_rbac(
    cluster: Cluster, installed: ChartInstall, started: float
) -> None:
    nds = NemotronDeployments(cluster, installed.keys)
    put_key_secret(cluster, installed.keys, VALID_KEY)
    nds.create("nano", {**NANO_ON_H100, "ngc": {"apiKeySecret": {"name": "ngc-api"}}})

    nds.wait_condition("nano", "Planned", "True", timeout=60)
    credentials = nds.wait_condition("nano", "CredentialsValid", "True", timeout=60)
    assert credentials["reason"] == "NGCEntitled"
    nds.wait_condition("nano", "Ready", "True", timeout=60)
    statefulset = client.AppsV1Api(cluster.api).read_namespaced_stateful_set("nano", installed.keys)
    assert statefulset.metadata.owner_references[0].name == "nano"

    nds.patch_spec("nano", {"replicas": 2})
    nds.wait_condition("nano", "Ready", "True", timeout=60)
    assert nds.get("nano")["status"]["readyReplicas"] == 2
    assert len(pods_of(cluster, installed.keys, "nano")) == 2
    assert_nothing_forbidden(cluster, installed, started)


def test_a_rotated_key_is_acted_on_at_once_under_the_charts_rbac(
    cluster: Cluster, installed: ChartInstall, started: float
) -> None:
    """The chart lets the operator watch Secrets in secretNamespaces: a key rotated under a
    Ready deployment (which no resync looks at for minutes) shows within seconds."""
    namespace = installed.keys
    put_key_secret(cluster, namespace, VALID_KEY, name="rotated")
    nds = NemotronDeployments(cluster, namespace)
    nds.create("rotated", {**NANO_ON_H100, "ngc": {"apiKeySecret": {"name": "rotated"}}})
    nds.wait_condition("rotated", "Ready", "True", timeout=60)

    put_key_secret(cluster, namespace, UNENTITLED_KEY, name="rotated")

    nds.wait_condition("rotated", "CredentialsValid", "False", "NGCNotEntitled", timeout=10)
    assert_nothing_forbidden(cluster, installed, started)


def test_a_crash_loop_is_diagnosed_under_the_charts_rbac(
    cluster: Cluster, installed: ChartInstall, started: float
) -> None:
    namespace = installed.no_keys
    nds = NemotronDeployments(cluster, namespace)
    nds.create("crashing", NANO_ON_H200)
    nds.wait_condition("crashing", "Ready", "True", timeout=60)
    (pod,) = wait_until(lambda: pods_of(cluster, namespace, "crashing"), "the NIM pod")

    FakeKubelet(cluster.api, namespace).crash_loop(pod, restarts=3, message=CUDA_OOM)

    degraded = nds.wait_condition("crashing", "Degraded", "True", timeout=60)
    assert degraded["reason"] == "InsufficientGPUMemory"
    assert "CUDA out of memory" in degraded["message"]
    ready = nds.wait_condition("crashing", "Ready", "False", timeout=30)
    assert ready["reason"] == "InsufficientGPUMemory"
    assert_nothing_forbidden(cluster, installed, started)


def test_deleting_garbage_collects_children_under_the_charts_rbac(
    cluster: Cluster, installed: ChartInstall, started: float
) -> None:
    namespace = installed.no_keys
    nds = NemotronDeployments(cluster, namespace)
    nds.create("dropped", NANO_ON_H200)
    nds.wait_condition("dropped", "Ready", "True", timeout=60)
    apps, core = client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)

    nds.delete("dropped")

    for what, read in (
        ("StatefulSet", lambda: apps.read_namespaced_stateful_set("dropped", namespace)),
        ("Service", lambda: core.read_namespaced_service("dropped", namespace)),
        (
            "cache claim",
            lambda: core.read_namespaced_persistent_volume_claim(
                "model-cache-dropped-0", namespace
            ),
        ),
    ):
        wait_until(lambda r=read: gone(r), f"the {what} to be garbage-collected", 60)
    wait_until(lambda: not pods_of(cluster, namespace, "dropped"), "the pods to go", 60)
    assert_nothing_forbidden(cluster, installed, started)


def test_a_secret_the_operator_may_not_read_stops_the_deployment(
    cluster: Cluster, installed: ChartInstall
) -> None:
    namespace = installed.no_keys  # served, but not in secretNamespaces
    put_key_secret(cluster, namespace, VALID_KEY)
    nds = NemotronDeployments(cluster, namespace)
    nds.create("keyed", {**NANO_ON_H100, "ngc": {"apiKeySecret": {"name": "ngc-api"}}})

    refused = nds.wait_condition("keyed", "CredentialsValid", "False", timeout=60)

    assert f'may not read Secret "ngc-api" in namespace "{namespace}"' in refused["message"]
    # nor watch the Secrets there: said once, and the deployment is still served
    said = f"may not watch Secrets in namespace {namespace}"
    wait_until(lambda: said in installed.operator.logs(), "the operator to say so", 10)
    assert installed.operator.logs().count(said) == 1
    ready = nds.wait_condition("keyed", "Ready", "False", timeout=30)
    assert ready["reason"] == refused["reason"]
    time.sleep(2)
    assert gone(
        lambda: client.AppsV1Api(cluster.api).read_namespaced_stateful_set("keyed", namespace)
    )
    assert not pods_of(cluster, namespace, "keyed")


def test_a_missing_permission_shows_up(
    cluster: Cluster,
    crd_installed: None,
    registry: Any,
    tmp_path: Path,
) -> None:
    """The check above can fail: without `patch` on nemotrondeployments/status the operator's
    log says Forbidden and the status never appears."""
    (release_namespace, served) = make_namespaces(cluster, "ops", "nostatus")

    def drop_status_patch(rbac: list[dict[str, Any]]) -> None:
        for role in of_kind(rbac, "Role"):
            role["rules"] = [
                r for r in role["rules"] if r["resources"] != [f"{names.PLURAL}/status"]
            ]

    rbac = install_rbac(
        cluster,
        tmp_path,
        f"{PREFIX}-nostatus",
        release_namespace,
        {"watchNamespaces": [served]},
        edit=drop_status_patch,
    )
    operator = None
    try:
        (account,) = of_kind(rbac, "ServiceAccount")
        name = account["metadata"]["name"]
        kubeconfig = token_kubeconfig(cluster, release_namespace, name, tmp_path / "kubeconfig")
        operator = OperatorProcess(
            kubeconfig,
            tmp_path / "operator.log",
            {"NEMOTRON_NGC_REGISTRY_URL": registry.url, "NEMOTRON_NGC_METADATA_URL": registry.url},
            namespaces=[served],
        )
        operator.start()
        nds = NemotronDeployments(cluster, served)
        nds.create("nano", NANO_ON_H100)
        wait_until(
            lambda: FORBIDDEN.search(operator.logs() if operator else ""),
            "the operator to log the refused status write",
            60,
        )
        # never written: what the API server shows is the CRD's default
        assert nds.get("nano")["status"] == {"observedGeneration": 0}
    finally:
        if operator is not None:
            operator.stop()
        delete_namespaces(cluster, [release_namespace, served])
        uninstall_rbac(cluster, rbac)
