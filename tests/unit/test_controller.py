"""The controller and one converge, built with fakes: no API server, no Kopf, no threads.

The fakes stand where the cluster would: `Cluster` records the writes a converge makes, the
registry answers credentials checks, and the indexes are plain dicts shaped like Kopf's."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from nemotron_operator.api import names
from nemotron_operator.api.types import NemotronDeploymentSpec, PlanStatus
from nemotron_operator.core import cache_size, render
from nemotron_operator.core.catalog import load_catalog
from nemotron_operator.core.planner import plan
from nemotron_operator.shell import kube, ngc
from nemotron_operator.shell.controller import Controller, KopfIndexes, resync_due
from nemotron_operator.shell.converge import Converger, RenderedChildren, desired_children
from nemotron_operator.shell.credentials import Credentials
from nemotron_operator.shell.namespace_watches import ALL_NAMESPACES
from nemotron_operator.shell.peering import PeeringGate
from nemotron_operator.shell.settings import PeeringSettings, Settings
from nemotron_operator.shell.workqueue import WorkQueue
from nemotron_operator.shell.world import direct, packed

from .test_inventory import node

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CATALOG = load_catalog()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeCluster:
    writes: list[tuple[str, Any]] = field(default_factory=list)
    fail_with: Exception | None = None
    lws_installed: bool = True
    config_maps: dict[tuple[str, str, str], str] = field(default_factory=dict)
    crd_without_plan_field: str | None = None  # a CRD older than the operator prunes it
    stored: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    refuses: set[str] = field(default_factory=set)  # kinds the API server refuses
    logs: dict[tuple[str, str, str], cache_size.SizeLog] = field(default_factory=dict)
    log_reads: list[tuple[str, str, str, int]] = field(default_factory=list)
    last_applied: dict[str, dict[str, Any]] = field(default_factory=dict)  # by kind

    def apply(self, child: Mapping[str, Any], *, answer: bool = False) -> dict[str, Any] | None:
        if self.fail_with:
            raise self.fail_with
        if child["kind"] in self.refuses:
            raise kube.ChildRejected(child, 403, f"{child['kind']} forbidden: exceeded quota")
        self.writes.append(("apply", child["kind"]))
        self.last_applied[child["kind"]] = dict(child)
        return dict(child) if answer else None

    def merge_patch(self, child: Mapping[str, Any]) -> None:
        self.writes.append(("merge-patch", child["kind"]))

    def delete_child(self, kind: str, namespace: str, name: str) -> None:
        self.writes.append(("delete", kind))

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        self.writes.append(("status", status))
        stored = dict(status)
        if "plan" in stored and self.crd_without_plan_field:
            stored["plan"] = {
                k: v for k, v in stored["plan"].items() if k != self.crd_without_plan_field
            }
        self.stored[(namespace, name)] = stored
        return stored

    def post_event(self, owner: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.writes.append(("event", reason))

    def leaderworkerset_installed(self) -> bool:
        return self.lws_installed

    def read_config_map_value(self, namespace: str, name: str, key: str) -> str | None:
        return self.config_maps.get((namespace, name, key))

    def read_log_tail(
        self, namespace: str, pod: str, container: str, limit_bytes: int
    ) -> cache_size.SizeLog:
        self.log_reads.append((namespace, pod, container, limit_bytes))
        return self.logs.get((namespace, pod, container), cache_size.SizeLog())


@dataclass
class FakeRegistry:
    asked: list[str] = field(default_factory=list)

    def image(self, image: str, key: ngc.ApiKey) -> ngc.CredentialCheck:
        self.asked.append(image)
        return ngc.CredentialCheck(True, names.NimReason.NGC_ENTITLED, "entitled")

    def anonymous(self, repository: str, tag: str) -> ngc.CredentialCheck:
        self.asked.append(repository)
        return ngc.CredentialCheck(True, names.NimReason.ANONYMOUS_PULL_ALLOWED, "anonymous")


class FakeWatches:
    def __init__(self, on_change: Any, needed: Any) -> None:
        self.on_change, self.needed = on_change, needed
        self.followed: list[str] = []
        self.index: dict[Any, list[Any]] = {}

    def follow(self, namespace: str) -> None:
        self.followed.append(namespace)

    def stop(self) -> None:
        pass

    def owners(self, namespace: str) -> list[str]:
        return []

    def forget(self, namespace: str, deployment: str) -> None:
        pass


class FakeChildren(FakeWatches):
    """The children's watches, listed everywhere; `index` is what the rig's tests fill."""

    def __init__(self, on_change: Any, needed: Any, index: dict[Any, list[bytes]]) -> None:
        super().__init__(on_change, needed)
        self.index = index
        self.unlisted: set[str] = set()  # namespaces whose children are not listed yet

    def start(self) -> None:
        pass

    def serve(self, namespaces: set[str]) -> None:
        self.followed += sorted(namespaces)

    def listed(self, namespace: str) -> bool:
        return namespace not in self.unlisted


def deployment(
    name: str, namespace: str = "team-a", ready: bool = False, **spec: Any
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if ready:
        status = {
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}],
        }
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": {"model": "nemotron-3-nano", **spec},
        "status": status,
    }


@dataclass
class Rig:
    controller: Controller
    cluster: FakeCluster
    registry: FakeRegistry
    clock: Clock
    deployments: dict[Any, list[dict[str, Any]]]
    pods: dict[Any, list[bytes]]
    children: dict[Any, list[bytes]]  # (namespace, deployment, kind) -> [packed child]


def rig(
    *bodies: dict[str, Any], peering: PeeringGate | None = None, recheck_seconds: float = 600
) -> Rig:
    clock, cluster, registry = Clock(), FakeCluster(), FakeRegistry()
    deployments = {(b["metadata"]["namespace"], b["metadata"]["name"]): [b] for b in bodies}
    pods: dict[Any, list[bytes]] = {}
    children: dict[Any, list[bytes]] = {}
    secrets = {("team-a", "ngc-api", "NGC_API_KEY"): "nvapi-test"}
    credentials = Credentials(
        registry,
        lambda ns, name, key: (secrets.get((ns, name, key)), f'Secret "{name}" not found'),
        lambda ns, name: None,
        recheck_seconds=recheck_seconds,
        clock=clock,
    )
    converger = Converger(CATALOG, credentials, cluster)
    nodes = {"gpu-1": [node("gpu-1", product="NVIDIA-L40S", memory_mib=46068)]}
    controller = Controller(
        KopfIndexes(deployments, nodes, {}, pods, {}),
        converger,
        direct,
        peering or PeeringGate(None),
        workers=1,
        resync_seconds=300,
        queue=WorkQueue(clock=clock),
        key_secret_watches=FakeWatches,
        leaderworkersets=FakeWatches,
        owned_children=lambda on_change, needed: FakeChildren(on_change, needed, children),
        now=lambda: NOW + dt.timedelta(seconds=clock.now - 1000.0),
    )
    return Rig(controller, cluster, registry, clock, deployments, pods, children)


def work(rig_: Rig) -> list[tuple[str, str]]:
    """Run every key due now, as a worker would; the keys worked on."""
    done = []
    while (key := rig_.controller.queue.get(timeout=0)) is not None:
        rig_.controller.process(key)
        done.append(key)
    return done


# --- a converge, end to end through the fakes ---------------------------------------------------


def test_a_new_deployment_costs_one_write_per_child_and_one_status_write() -> None:
    r = rig(deployment("nano"))
    r.controller.enqueue(("team-a", "nano"))
    assert work(r) == [("team-a", "nano")]
    kinds = [what for what, _ in r.cluster.writes]
    # one write per child (a claim per replica, the default ReadWriteOnce cache: the StatefulSet
    # makes them), then one status write, and no Event: nothing failed, nothing serves yet
    assert r.cluster.writes[:2] == [("apply", "StatefulSet"), ("apply", "Service")]
    assert kinds[2:] == ["status"]
    statuses = [s for what, s in r.cluster.writes if what == "status"]
    assert statuses[0]["plan"]["gpuProduct"] == "NVIDIA-L40S"


def test_the_status_it_writes_counts_the_children_it_created() -> None:
    """One status write for a new object: it already names the workload and the endpoint, so
    the watches bringing back the children and then the status write nothing more."""
    r = rig(deployment("nano"))
    key = ("team-a", "nano")
    r.controller.enqueue(key)
    work(r)
    (status,) = [s for what, s in r.cluster.writes if what == "status"]
    assert status["endpoint"] == "http://nano.team-a.svc:8000/v1"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Starting")
    for kind, child in r.cluster.last_applied.items():
        r.children[(*key, kind)] = [packed(child)]
    r.controller.enqueue(key)
    work(r)
    body = r.deployments[key][0]
    echo = {**body, "metadata": {**body["metadata"], "resourceVersion": "2"}, "status": status}
    r.deployments[key] = [echo]
    r.controller.deployment_changed(key, echo)
    work(r)
    assert [what for what, _ in r.cluster.writes] == ["apply", "apply", "status"]


def test_kept_renderings_follow_every_change_of_what_they_are_rendered_from() -> None:
    from nemotron_operator.core.inventory import gpu_pools

    pools = gpu_pools([node("gpu-1", product="NVIDIA-L40S", memory_mib=46068)])
    rendered = RenderedChildren()
    body = deployment("nano")
    spec = NemotronDeploymentSpec.model_validate(body["spec"])
    planned = plan(spec, CATALOG, pools)
    first = rendered.children(body, spec, planned)
    assert first == desired_children(body, spec, planned)
    assert rendered.children(body, spec, planned) is first  # the converges after: not rendered

    def workload(children: list[dict[str, Any]]) -> dict[str, Any]:
        return next(c for c in children if c["kind"] in ("Deployment", "StatefulSet"))

    three = spec.model_copy(update={"replicas": 3})
    assert workload(rendered.children(body, three, planned))["spec"]["replicas"] == 3
    other_gpus = planned.model_copy(update={"gpus_per_replica": 2})
    container = workload(rendered.children(body, spec, other_gpus))["spec"]["template"]["spec"]
    assert container["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    again = {**body, "metadata": {**body["metadata"], "uid": "uid-nano-2"}}  # made anew
    owner = workload(rendered.children(again, spec, planned))["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "uid-nano-2"
    for replicas in range(RenderedChildren.KEPT + 5):
        rendered.children(body, spec.model_copy(update={"replicas": replicas}), planned)
    assert len(rendered) == RenderedChildren.KEPT


def test_a_child_refused_leaves_none_of_its_siblings_behind() -> None:
    r = rig(deployment("nano"))
    r.cluster.refuses = {"Service"}
    r.controller.enqueue(("team-a", "nano"))
    work(r)
    assert r.cluster.writes[:2] == [("apply", "StatefulSet"), ("delete", "StatefulSet")]
    status = next(s for what, s in r.cluster.writes if what == "status")
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "ChildRejected")
    assert "Service forbidden: exceeded quota" in stalled["message"]


def test_a_converge_that_raises_is_retried_with_backoff_and_success_forgets_it() -> None:
    r = rig(deployment("nano"))
    r.cluster.fail_with = RuntimeError("the API server is away")
    r.controller.enqueue(("team-a", "nano"))
    work(r)
    assert r.controller.queue.failures(("team-a", "nano")) == 1
    assert work(r) == []  # not at once
    r.clock.now += 0.5
    assert work(r) == [("team-a", "nano")]
    r.cluster.fail_with = None
    r.clock.now += 1.0
    assert work(r) == [("team-a", "nano")]
    assert r.controller.queue.failures(("team-a", "nano")) == 0


def test_a_starting_nim_is_looked_at_again_exactly_when_its_allowance_runs_out() -> None:
    r = rig(deployment("nano"), recheck_seconds=3600)  # its credentials are checked after
    key = ("team-a", "nano")
    r.controller.enqueue(key)
    work(r)
    started = NOW - dt.timedelta(seconds=100)
    pod = {
        "metadata": {"namespace": "team-a", "name": "nano-0", "creationTimestamp": "x"},
        "spec": {"nodeName": "gpu-1", "containers": [{"name": "nim"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "nim",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": started.isoformat()}},
                }
            ],
        },
    }
    r.pods[key] = [packed(pod)]
    r.controller.enqueue(key)
    work(r)
    written = [s for what, s in r.cluster.writes if what == "status"][-1]
    allowance = render.startup_allowance_seconds(PlanStatus.model_validate(written["plan"]))
    assert allowance < 3600
    r.clock.now += allowance - 100  # 1 s short of the moment (and its margin)
    assert work(r) == []
    r.clock.now += 1.0
    assert work(r) == [key]


def test_credentials_are_asked_again_when_their_answer_is_due_and_not_before() -> None:
    r = rig(deployment("nano", ngc={"apiKeySecret": {"name": "ngc-api"}}))
    key = ("team-a", "nano")
    r.controller.enqueue(key)
    work(r)
    assert len(r.registry.asked) == 1
    r.controller.enqueue(key)  # any event: the answer is still fresh
    work(r)
    assert len(r.registry.asked) == 1
    r.clock.now += 599
    assert work(r) == []  # not before the answer is due
    for _ in range(600):  # then at its own moment of the next period (test_credentials.py)
        r.clock.now += 1
        if work(r) == [key]:
            break
    assert len(r.registry.asked) == 2


def test_a_changed_registry_answer_converges_the_deployments_planned_on_that_image() -> None:
    on_it, other = deployment("nano"), deployment("embed")
    other["spec"]["model"] = "llama-3.2-nv-embedqa-1b-v2"
    r = rig(on_it, other)
    r.controller.enqueue(("team-a", "nano"))
    r.controller.enqueue(("team-a", "embed"))
    work(r)
    for key in (("team-a", "nano"), ("team-a", "embed")):  # the index brings the statuses back
        r.deployments[key][0]["status"] = r.cluster.stored[key]
    image = r.cluster.stored[("team-a", "nano")]["plan"]["image"]
    assert image != r.cluster.stored[("team-a", "embed")]["plan"]["image"]

    # the registry answered otherwise for that image, as Credentials tells it
    r.controller.converger.credentials.answer_changed(image)

    assert work(r) == [("team-a", "nano")]


def test_the_peering_gate_holds_back_keys_where_a_peer_acts() -> None:
    gate = PeeringGate(PeeringSettings("ops", 1, "me", clusterwide=False), lambda _, ns: False)
    r = rig(deployment("nano"), peering=gate)
    r.controller.enqueue(("team-a", "nano"))
    work(r)
    assert r.cluster.writes == []


def test_nothing_converged_before_waits_for_its_namespaces_children_to_be_listed() -> None:
    """Else a restarted operator, its child watches still listing, would apply every child of
    every deployment again; the listing converges the namespace's deployments. A new one has no
    children to miss, and goes at once."""
    r = rig(
        deployment("nano", ready=True),
        deployment("fresh"),
        deployment("super", namespace="team-b", ready=True),
    )
    children = r.controller.children
    assert isinstance(children, FakeChildren)
    children.unlisted = {"team-a"}
    for key in (("team-a", "nano"), ("team-a", "fresh"), ("team-b", "super")):
        r.controller.enqueue(key)
    work(r)
    assert sorted(r.cluster.stored) == [("team-a", "fresh"), ("team-b", "super")]
    assert children.followed == ["team-a", "team-a"]
    children.unlisted = set()
    children.on_change("team-a", None)
    assert sorted(work(r)) == [("team-a", "fresh"), ("team-a", "nano")]
    children.on_change(ALL_NAMESPACES, None)  # the whole cluster listed
    assert len(work(r)) == 3
    children.on_change("team-b", "super")  # one child changed
    assert work(r) == [("team-b", "super")]


def test_a_deleted_deployment_leaves_nothing_queued_or_remembered() -> None:
    r = rig(deployment("nano"))
    key = ("team-a", "nano")
    r.cluster.fail_with = RuntimeError("away")
    r.controller.enqueue(key)
    work(r)
    r.controller.deployment_deleted(key)
    r.clock.now += 60
    assert work(r) == []
    assert r.controller.queue.failures(key) == 0


def test_the_event_body_is_used_before_the_index_has_it() -> None:
    body = deployment("fresh")
    r = rig()  # the index does not know it yet
    r.controller.deployment_changed(("team-a", "fresh"), body)
    work(r)
    assert any(what == "status" for what, _ in r.cluster.writes)


# --- triggers -------------------------------------------------------------------------------

READERS = [
    deployment("reads-ngc", ngc={"apiKeySecret": {"name": "ngc"}}),
    deployment("reads-other", ngc={"apiKeySecret": {"name": "other", "key": "K"}}),
    deployment("keyless"),
    deployment("offline", ngc={"offline": True, "apiKeySecret": {"name": "ngc"}}),
    deployment("reads-ngc", namespace="team-b", ngc={"apiKeySecret": {"name": "ngc"}}),
]


def queued(r: Rig) -> list[tuple[str, str]]:
    keys = []
    while (key := r.controller.queue.get(timeout=0)) is not None:
        keys.append(key)
        r.controller.queue.done(key)
    return keys


def test_a_changed_secret_enqueues_only_the_deployments_that_read_it() -> None:
    r = rig(*READERS)
    r.controller.key_secret_changed("team-a", "ngc")
    assert queued(r) == [("team-a", "reads-ngc")]
    r.controller.key_secret_changed("team-a", "default-token")
    r.controller.key_secret_changed("team-c", "ngc")
    assert queued(r) == []


def test_after_a_gap_in_the_secret_watch_every_reader_in_the_namespace_is_enqueued() -> None:
    r = rig(*READERS)
    r.controller.key_secret_changed("team-a", None)
    assert queued(r) == [("team-a", "reads-ngc"), ("team-a", "reads-other")]


def test_a_gpu_node_joining_enqueues_what_waits_for_gpus_once() -> None:
    r = rig(deployment("waiting"), deployment("running", ready=True))
    r.deployments[("team-a", "running")][0]["status"]["conditions"].append(
        {"type": "Planned", "status": "True", "reason": "Planned"}
    )
    r.controller.gpu_nodes_changed()
    assert queued(r) == [("team-a", "waiting")]
    r.controller.gpu_nodes_changed()  # a heartbeat: the pools did not change
    assert queued(r) == []


def test_the_safety_resync_picks_what_no_watch_reports() -> None:
    ready = deployment("ready", ready=True)
    stale = deployment("stale", ready=True)
    stale["metadata"]["generation"] = 2
    scaled = deployment("scaled", ready=True)
    scaled["status"]["conditions"] = [
        {"type": "Ready", "status": "True", "reason": names.StatusReason.SCALED_TO_ZERO}
    ]
    assert [resync_due(b) for b in (ready, stale, scaled, deployment("new"))] == [
        False,
        True,
        False,
        True,
    ]


# --- the startup allowance comes from the plan's download -------------------------------------


def test_ultras_startup_probe_allows_its_download() -> None:
    spec = NemotronDeploymentSpec.model_validate({"model": "nemotron-3-ultra", "precision": "bf16"})
    h200 = [node(f"h200-{i}", product="NVIDIA-H200", memory_mib=143771) for i in range(4)]
    from nemotron_operator.core.inventory import gpu_pools

    ultra = plan(spec, CATALOG, gpu_pools(h200))
    assert ultra.fits and ultra.download_gib and ultra.download_gib > 500
    owner = render.Owner(name="ultra", namespace="ns", uid="0")
    children = render.render_children(
        owner, spec.model_dump(by_alias=True, mode="json"), ultra, key_given=True
    )
    workload = next(c for c in children if c["kind"] in ("Deployment", "LeaderWorkerSet"))
    text = str(workload)
    probe_seconds = render.startup_allowance_seconds(ultra)
    at_100_mb_per_second = ultra.download_gib * 2**30 / 100e6
    assert probe_seconds > at_100_mb_per_second
    threshold = probe_seconds // render.STARTUP_PROBE_PERIOD_SECONDS
    assert f"'failureThreshold': {threshold}" in text


def test_the_startup_allowance_setting_overrides_the_probe() -> None:
    built = Settings.build({"NEMOTRON_STARTUP_ALLOWANCE_SECONDS": "45"})
    assert built.startup_allowance_seconds == 45


@pytest.mark.parametrize("value", ["0", "-5", "soon", "1.5"])
def test_a_bad_startup_allowance_setting_stops_the_operator_with_its_name(value: str) -> None:
    with pytest.raises(ValueError, match="NEMOTRON_STARTUP_ALLOWANCE_SECONDS"):
        Settings.build({"NEMOTRON_STARTUP_ALLOWANCE_SECONDS": value})


def test_settings_come_from_the_environment_given() -> None:
    built = Settings.build(
        {
            "NEMOTRON_NGC_REGISTRY_URL": "https://mirror.example/",
            "NEMOTRON_LIVE_CATALOG": "true",
            "NEMOTRON_CATALOG_OVERRIDES": "/etc/overrides.yaml",
        },
        namespaces=["team-*"],
        peering="ops",
    )
    assert built.registry_url == "https://mirror.example"
    assert built.live_catalog and built.catalog_overrides == "/etc/overrides.yaml"
    assert built.peering is not None and not built.peering.clusterwide
    assert not Settings.build({}).live_catalog


# --- what the status memory answers while the watch catches up --------------------------------


def test_until_the_watch_brings_our_write_back_it_is_the_current_status() -> None:
    r = rig(deployment("nano"))
    memory = r.controller.converger.statuses
    body = deployment("nano")
    written = {"observedGeneration": 1, "conditions": []}
    memory.remember(body, written)
    assert memory.current(body) == written  # the index still holds the older object
    echoed = {**body, "metadata": {**body["metadata"], "resourceVersion": "2"}, "status": written}
    assert memory.current(echoed) == written


def test_the_status_written_is_let_go_once_the_watch_brings_it_back() -> None:
    r = rig(deployment("nano"))
    memory = r.controller.converger.statuses
    body = deployment("nano")
    written = {"observedGeneration": 1, "conditions": []}
    memory.remember(body, written)
    r.controller.deployment_changed(("team-a", "nano"), body)  # an event older than the write
    assert len(memory) == 1
    echoed = {**body, "metadata": {**body["metadata"], "resourceVersion": "2"}, "status": written}
    r.controller.deployment_changed(("team-a", "nano"), echoed)
    assert len(memory) == 0


def test_the_echo_of_a_write_arriving_mid_converge_posts_no_second_event() -> None:
    """A converge that took the object before our last write came back must still see that
    write: the echo arriving meanwhile may not make the memory forget it under the worker."""
    r = rig(deployment("ultra", model="nemotron-3-ultra"))  # does not fit one L40S: a Warning
    key = ("team-a", "ultra")
    r.controller.enqueue(key)
    work(r)
    events = [reason for what, reason in r.cluster.writes if what == "event"]
    assert len(events) == 1
    written = r.cluster.stored[key]
    body = r.deployments[key][0]  # the index still holds the object before the write
    echoed = {**body, "metadata": {**body["metadata"], "resourceVersion": "2"}, "status": written}
    loop = r.controller.on_loop

    def echo_arrives_first(fn: Any) -> Any:
        r.controller.on_loop = loop
        r.controller.deployment_changed(key, echoed)
        return fn()

    r.controller.on_loop = echo_arrives_first
    r.controller.enqueue(key)  # say, its pod changed
    assert work(r) == [key, key]  # the converge under way, then the one the echo queued
    assert [reason for what, reason in r.cluster.writes if what == "event"] == events
    assert sum(what == "status" for what, _ in r.cluster.writes) == 1
    assert len(r.controller.converger.statuses) == 0


def test_a_change_by_someone_else_after_our_write_is_trusted() -> None:
    r = rig()
    memory = r.controller.converger.statuses
    body = deployment("nano")
    memory.remember(body, {"observedGeneration": 1})
    theirs = {**body, "metadata": {**body["metadata"], "resourceVersion": "3"}, "status": {"x": 1}}
    assert memory.current(theirs) == {"x": 1}


# --- a custom model sized from the config.json its ConfigMap holds ------------------------------


def test_a_custom_model_is_planned_from_its_config_map_and_refused_without_it() -> None:
    from tests.unit.test_hf_config import NANO

    body = deployment(
        "custom",
        model="custom",
        customModel={
            "image": "nvcr.io/nim/nvidia/llm-nim:2.1.6",
            "configMapRef": {"name": "nano-config"},
            "precisions": ["fp8"],
        },
        ngc={"apiKeySecret": {"name": "ngc-api"}},
    )
    r = rig(body)
    r.controller.enqueue(("team-a", "custom"))
    work(r)
    refused = [s for what, s in r.cluster.writes if what == "status"][-1]
    planned = next(c for c in refused["conditions"] if c["type"] == "Planned")
    assert (planned["status"], planned["reason"]) == ("False", "ModelConfigInvalid")
    assert "nano-config" in planned["message"]

    r.cluster.config_maps[("team-a", "nano-config", "config.json")] = json.dumps(NANO)
    r.controller.enqueue(("team-a", "custom"))
    work(r)
    status = [s for what, s in r.cluster.writes if what == "status"][-1]
    assert status["plan"]["fits"] and status["plan"]["maxModelLength"] == 262144


def test_status_fields_an_older_crd_prunes_are_left_out_instead_of_written_forever() -> None:
    r = rig(deployment("nano"))
    r.cluster.crd_without_plan_field = "downloadGiB"
    key = ("team-a", "nano")
    r.controller.enqueue(key)
    work(r)
    assert "downloadGiB" not in r.cluster.stored[key]["plan"]
    for _ in range(3):  # the watch brings the pruned status back; events come and go
        body = r.deployments[key][0]
        body["status"] = r.cluster.stored[key]
        body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
        r.controller.enqueue(key)
        work(r)
    assert sum(what == "status" for what, _ in r.cluster.writes) == 1
