"""`kubectl nemotron plan|diagnose|explain NAME`: ask why, from a shell, the way kubectl reads
the cluster (--kubeconfig, --context, -n; the context's namespace by default).

The executable `kubectl-nemotron` on PATH is what kubectl runs for `kubectl nemotron ...`. The
answers come from the operator's own functions (planner, diagnose, the World its watches keep)
fed what the cluster says now; the page formats here are pure functions of those answers.

Exit codes: 0 healthy (fits, no problem found, Ready); 1 not ready, or does not fit; 2 the
question cannot be asked (bad flags, no such object, no NemotronDeployment API, no cluster).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from nemotron_operator.api import names
from nemotron_operator.api.types import NemotronDeploymentSpec, PlanStatus
from nemotron_operator.cli import (
    UsageError,
    add_catalog_argument,
    catalog_from_arguments,
    plan_text,
)
from nemotron_operator.core.conditions import find_condition
from nemotron_operator.core.diagnose import (
    OUTPUT_FORMATS,
    Diagnosis,
    diagnose_pods,
    event_time,
    format_diagnosis,
    timestamp,
)
from nemotron_operator.core.planner import plan
from nemotron_operator.core.status import workload_counts

PROG = "kubectl nemotron"
# The summary, then the two that say whether waiting helps (kstatus), then the rest as written.
FIRST_CONDITIONS = (
    names.ConditionType.READY,
    names.ConditionType.STALLED,
    names.ConditionType.RECONCILING,
)
WIDTH = 100
LAST_WARNINGS = 5
# What `plan NAME` compares with status.plan: the decisions, not the figures behind them (the
# operator may plan again with NVIDIA's published figures for the tag, which it fetches).
PLAN_DECISIONS = (
    "fits",
    "reason",
    "image",
    "gpuProduct",
    "gpusPerReplica",
    "nodesPerReplica",
    "precision",
    "tensorParallelSize",
    "pipelineParallelSize",
    "profile",
    "maxModelLength",
)


# --- pages: pure functions of what the operator's functions answered ---------------------------


def age(since: dt.datetime | None, now: dt.datetime) -> str:
    """How long ago, as kubectl writes ages (45s, 12m, 5h, 3d)."""
    if since is None:
        return "?"
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def plan_differences(planned: PlanStatus, status_plan: Mapping[str, Any] | None) -> list[str]:
    """Where the plan made now decides otherwise than the status.plan the operator wrote."""
    if not status_plan:
        return ["status.plan: none yet (the operator has not planned it)"]
    now = planned.model_dump(by_alias=True, mode="json")
    return [
        f"{field}: {status_plan.get(field)!s} in status.plan, {now.get(field)!s} now"
        for field in PLAN_DECISIONS
        if status_plan.get(field) != now.get(field)
    ]


def plan_page(name: str, planned: PlanStatus, status_plan: Mapping[str, Any] | None) -> str:
    differences = plan_differences(planned, status_plan)
    lines = [plan_text(name, planned).rstrip("\n")]
    if not differences:
        lines.append("  status.plan: the same decision")
    else:
        lines.append("  differs from status.plan (the operator plans again at its next converge):")
        lines += [f"    {difference}" for difference in differences]
    return "\n".join(lines) + "\n"


def _wrapped(text: str, indent: str) -> list[str]:
    return textwrap.wrap(
        " ".join(text.split()),
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent,
        break_on_hyphens=False,  # names and profiles (vllm-fp8-tp1-pp1) stay whole
    ) or [indent.rstrip()]


class _Page:
    """Lines of a page that says a long message once: later, it names where it was said."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._said: dict[str, str] = {}

    def message(self, text: str, indent: str, where: str) -> None:
        said = self._said.get(text)
        if said is not None and text:
            self.lines.append(f"{indent}(as {said} says)")
            return
        self._said[text] = where
        self.lines += _wrapped(text, indent)


def _conditions(page: _Page, status: Mapping[str, Any], now: dt.datetime) -> None:
    conditions = list(status.get("conditions") or ())
    conditions.sort(
        key=lambda c: (
            FIRST_CONDITIONS.index(c.get("type"))
            if c.get("type") in FIRST_CONDITIONS
            else len(FIRST_CONDITIONS)
        )
    )
    for condition in conditions:
        since = age(timestamp(condition.get("lastTransitionTime")), now)
        page.lines.append(
            f"  {condition.get('type')}={condition.get('status')}  {condition.get('reason')}"
            f"  (for {since})"
        )
        page.message(str(condition.get("message") or ""), "      ", str(condition.get("type")))
    if not conditions:
        page.lines.append("  none yet: the operator has not written a status (is it running?)")


def _plan_lines(
    page: _Page, status_plan: Mapping[str, Any] | None, differences: Sequence[str]
) -> None:
    if not status_plan:
        page.lines.append("  none yet")
        return
    verdict = "fits" if status_plan.get("fits") else f"does not fit ({status_plan.get('reason')})"
    page.lines.append(f"  {verdict}")
    page.message(str(status_plan.get("message") or ""), "  ", "Planned")
    if status_plan.get("fits"):
        nodes = int(status_plan.get("nodesPerReplica") or 1)
        parts = [
            f"image {status_plan.get('image')}",
            f"{status_plan.get('gpusPerReplica')} x {status_plan.get('gpuProduct')} per replica"
            + (f" over {nodes} nodes" if nodes > 1 else ""),
            f"profile {status_plan.get('profile')}" if status_plan.get("profile") else "",
        ]
        page.lines += _wrapped("; ".join(p for p in parts if p), "  ")
    if differences:
        page.lines.append("  planned again now, against the cluster's GPUs, it differs:")
        page.lines += [f"    {difference}" for difference in differences]


def _child_state(child: Mapping[str, Any]) -> str:
    kind, spec, status = child["kind"], child.get("spec") or {}, child.get("status") or {}
    if kind in ("Deployment", "StatefulSet", "LeaderWorkerSet"):
        _, ready, updated = workload_counts(child)
        want = int(spec.get("replicas", 1))
        return f"{ready}/{want} ready, {updated} up to date"
    if kind == "Service":
        ports = ", ".join(str(p.get("port")) for p in spec.get("ports") or ())
        parts = (spec.get("type", "ClusterIP"), spec.get("clusterIP"), f"port {ports}")
        return " ".join(str(part) for part in parts if part)
    if kind == "PersistentVolumeClaim":
        size = (status.get("capacity") or {}).get("storage")
        return f"{status.get('phase', 'Pending')}" + (f", {size}" if size else "")
    if kind == "Job":
        done = [
            c.get("type")
            for c in status.get("conditions") or ()
            if c.get("status") == "True" and c.get("type") in ("Complete", "Failed")
        ]
        return done[0] if done else f"running ({int(status.get('active') or 0)} active)"
    return ""


def _pod_state(pod: Mapping[str, Any]) -> str:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or ()
    ready = sum(bool(c.get("ready")) for c in containers)
    restarts = sum(int(c.get("restartCount") or 0) for c in containers)
    waiting = next(
        (
            (c.get("state") or {}).get("waiting", {}).get("reason")
            for c in containers
            if (c.get("state") or {}).get("waiting")
        ),
        None,
    )
    node = (pod.get("spec") or {}).get("nodeName") or "not scheduled"
    phase = waiting or status.get("phase") or "Pending"
    return f"{phase}, {ready}/{len(containers) or 1} ready, {restarts} restarts, on {node}"


def _warning_lines(page: _Page, warnings: Iterable[Mapping[str, Any]], now: dt.datetime) -> None:
    """The latest Warning events, one per object, reason and message (the newest of those)."""
    latest: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for event in sorted(warnings, key=event_time, reverse=True):
        about = event.get("involvedObject") or {}
        latest.setdefault(
            (about.get("kind"), about.get("name"), event.get("reason"), event.get("message")),
            event,
        )
    for event in list(latest.values())[:LAST_WARNINGS]:
        about = event.get("involvedObject") or {}
        count = int(event.get("count") or (event.get("series") or {}).get("count") or 1)
        repeated = f" (x{count})" if count > 1 else ""
        page.lines.append(
            f"  {age(event_time(event), now)} ago  {about.get('kind')}/{about.get('name')}"
            f"  {event.get('reason')}{repeated}"
        )
        page.message(str(event.get("message") or ""), "      ", "the event above")
    if not latest:
        page.lines.append("  none")


def what_to_change(status: Mapping[str, Any], diagnosis: Diagnosis | None) -> str:
    """The one thing to read: what stops it (Stalled), what fails (the diagnosis, Degraded), or
    what it waits for (Ready's message); nothing when it is Ready."""
    ready = condition(status, names.ConditionType.READY)
    if ready.get("status") == "True":
        return "nothing: every replica serves"
    stalled = condition(status, names.ConditionType.STALLED)
    if stalled.get("status") == "True":
        return f"{stalled.get('reason')}: {stalled.get('message')}"
    if diagnosis is not None:
        return f"{diagnosis.reason}: {diagnosis.message} {diagnosis.hint}"
    degraded = condition(status, names.ConditionType.DEGRADED)
    if degraded.get("status") == "True":
        return f"{degraded.get('reason')}: {degraded.get('message')}"
    if ready:
        return f"nothing yet, it is on its way: {ready.get('message')}"
    return "nothing known yet: the operator has not written a status (is it running?)"


def explain_page(
    body: Mapping[str, Any],
    children: Mapping[str, Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    warnings: Iterable[Mapping[str, Any]],
    diagnosis: Diagnosis | None,
    plan_now: PlanStatus | None,
    now: dt.datetime,
) -> str:
    """One page about a NemotronDeployment: its conditions, plan, children, pods, last Warning
    events, and what to change."""
    meta, spec = body["metadata"], body.get("spec") or {}
    status = body.get("status") or {}
    ready = condition(status, names.ConditionType.READY)
    verdict = (
        "Ready"
        if ready.get("status") == "True"
        else f"not ready ({ready.get('reason') or 'no status yet'})"
    )
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    lines = [
        f"{names.KIND} {meta['namespace']}/{meta['name']}: {verdict}",
        f"  model {spec.get('model')}, {spec.get('replicas', 1)} replica(s); "
        f"generation {generation}, status written for generation {observed}"
        + ("" if generation == observed else " (the operator has not caught up yet)"),
    ]
    if status.get("endpoint"):
        lines.append(f"  endpoint {status['endpoint']}")
    differences = plan_differences(plan_now, status.get("plan")) if plan_now else []
    page = _Page()
    page.lines += lines
    page.lines += ["", "Conditions:"]
    _conditions(page, status, now)
    page.lines += ["", "Plan:"]
    _plan_lines(page, status.get("plan"), differences)
    page.lines += ["", "Children:"]
    page.lines += [
        f"  {kind}/{child['metadata']['name']}: {_child_state(child)}"
        for kind, child in sorted(children.items())
    ] or ["  none"]
    page.lines += ["", "Pods:"]
    page.lines += [
        f"  {pod['metadata']['name']}: {_pod_state(pod)}"
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"])
    ] or ["  none"]
    page.lines += ["", f"Last Warning events (newest first, at most {LAST_WARNINGS}):"]
    _warning_lines(page, warnings, now)
    page.lines += ["", "What to change:", *_wrapped(what_to_change(status, diagnosis), "  ")]
    return "\n".join(page.lines) + "\n"


def condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    """The condition `type_` of `status` ({} when it has none)."""
    return find_condition(status.get("conditions"), type_) or {}


def is_ready(body: Mapping[str, Any]) -> bool:
    status = body.get("status") or {}
    return condition(status, names.ConditionType.READY).get("status") == "True"


# --- the command: reads the cluster, asks the operator's functions, prints a page -------------


def _spec(body: Mapping[str, Any]) -> NemotronDeploymentSpec | None:
    try:
        return NemotronDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None  # the status says so (InvalidSpec); the API server refuses most such


def _status_plan(body: Mapping[str, Any]) -> PlanStatus | None:
    found = (body.get("status") or {}).get("plan")
    try:
        return PlanStatus.model_validate(found) if found else None
    except ValidationError:
        return None


def _plan_now(
    api: Any, body: Mapping[str, Any], pools: Any, args: argparse.Namespace
) -> PlanStatus | None:
    from nemotron_operator.shell import cluster_view

    spec = _spec(body)
    if spec is None:
        return None
    hf_config = None
    reference = spec.custom_model.config_map_ref if spec.custom_model else None
    if reference is not None:
        namespace = body["metadata"]["namespace"]
        hf_config = cluster_view.config_map_value(api, namespace, reference.name, reference.key)
    return plan(spec, catalog_from_arguments(args), pools, hf_config_text=hf_config)


def _plan(args: argparse.Namespace, api: Any, namespace: str | None) -> int:
    from nemotron_operator.shell import cluster_view

    if args.name:
        bodies = [cluster_view.deployment(api, str(namespace), args.name)]
    else:
        bodies = cluster_view.deployments(api, namespace)
        if not bodies:
            where = "any namespace" if namespace is None else f'namespace "{namespace}"'
            raise cluster_view.CannotAsk(f"no NemotronDeployment in {where}")
    world = cluster_view.gpu_world(api)
    fits = True
    for body in bodies:
        meta = body["metadata"]
        pools = world.snapshot((meta["namespace"], meta["name"])).pools
        planned = _plan_now(api, body, pools, args)
        title = meta["name"] if namespace else f"{meta['namespace']}/{meta['name']}"
        if planned is None:
            sys.stdout.write(f"{title}: its spec is not valid: kubectl nemotron explain says why\n")
            fits = False
            continue
        sys.stdout.write(plan_page(title, planned, (body.get("status") or {}).get("plan")))
        fits = fits and planned.fits
    return 0 if fits else 1


def _diagnose(args: argparse.Namespace, api: Any, namespace: str | None) -> int:
    from nemotron_operator.shell import cluster_view
    from nemotron_operator.shell.converge import startup_allowance

    key = (str(namespace), args.name)
    body = cluster_view.deployment(api, *key)
    snapshot = cluster_view.read(api, [body], namespace).world.snapshot(key)
    if not snapshot.pods:
        print(f"no pods: {what_to_change(body.get('status') or {}, None)}")
        return 0 if is_ready(body) else 1
    status_plan = _status_plan(body)
    diagnosis = diagnose_pods(
        snapshot.pods,
        snapshot.warnings,
        status_plan,
        now=dt.datetime.now(dt.UTC),
        startup_allowance_seconds=startup_allowance(status_plan),
    )
    print(format_diagnosis(diagnosis, args.output))
    return 0 if diagnosis is None else 1


def _explain(args: argparse.Namespace, api: Any, namespace: str | None) -> int:
    from nemotron_operator.shell import cluster_view
    from nemotron_operator.shell.converge import startup_allowance

    key = (str(namespace), args.name)
    body = cluster_view.deployment(api, *key)
    view = cluster_view.read(api, [body], namespace)
    snapshot = view.world.snapshot(key)
    now = dt.datetime.now(dt.UTC)
    status_plan = _status_plan(body)
    diagnosis = (
        diagnose_pods(
            snapshot.pods,
            snapshot.warnings,
            status_plan,
            now=now,
            startup_allowance_seconds=startup_allowance(status_plan),
        )
        if snapshot.pods
        else None
    )
    objects = [*snapshot.children.values(), *snapshot.pods]
    page = explain_page(
        body,
        snapshot.children,
        snapshot.pods,
        cluster_view.warnings_about(view.warnings, key, objects),
        diagnosis,
        _plan_now(api, body, snapshot.pools, args),
        now,
    )
    sys.stdout.write(page)
    return 0 if is_ready(body) else 1


def _cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """kubectl's flags, taken before the subcommand or after it (not given: not set, so that the
    subcommand's parser leaves what the main one read)."""
    unset = argparse.SUPPRESS
    parser.add_argument(
        "--kubeconfig", metavar="PATH", default=unset, help="default: $KUBECONFIG, ~/.kube/config"
    )
    parser.add_argument(
        "--context", metavar="NAME", default=unset, help="default: the kubeconfig's current"
    )
    parser.add_argument(
        "-n", "--namespace", metavar="NAME", default=unset, help="default: the context's"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Ask why a NemotronDeployment is (not) serving, from the cluster as it is.",
        epilog="Exit codes: 0 healthy, 1 not ready or does not fit, 2 cannot ask.",
    )
    _cluster_arguments(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    plan_help = (
        "what the planner decides now, against the cluster's GPU nodes, and whether it differs "
        "from status.plan"
    )
    plan_parser = commands.add_parser("plan", help=plan_help, description=plan_help)
    plan_parser.add_argument("name", metavar="NAME", nargs="?", help="default: every one")
    plan_parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (without NAME)"
    )
    add_catalog_argument(plan_parser)
    diagnose_help = "why its pods do not serve, from their status and events"
    diagnose_parser = commands.add_parser("diagnose", help=diagnose_help, description=diagnose_help)
    diagnose_parser.add_argument("name", metavar="NAME")
    diagnose_parser.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="text")
    explain_help = "one page: conditions, plan, children, pods, last warnings, what to change"
    explain_parser = commands.add_parser("explain", help=explain_help, description=explain_help)
    explain_parser.add_argument("name", metavar="NAME")
    add_catalog_argument(explain_parser)
    for command in (plan_parser, diagnose_parser, explain_parser):
        _cluster_arguments(command)
    return parser


RUN = {"plan": _plan, "diagnose": _diagnose, "explain": _explain}


def main(argv: Sequence[str] | None = None) -> int:
    from nemotron_operator.shell import cluster_view

    args = build_parser().parse_args(argv)
    given = vars(args)
    all_namespaces = given.get("all_namespaces", False)
    try:
        if all_namespaces and (args.name or given.get("namespace")):
            raise UsageError("-A lists every namespace: give neither NAME nor -n with it")
        connection = cluster_view.connect(given.get("kubeconfig"), given.get("context"))
        namespace = None if all_namespaces else given.get("namespace") or connection.namespace
        return RUN[args.command](args, connection.api, namespace)
    except (UsageError, cluster_view.CannotAsk) as error:
        print(f"{PROG} {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
