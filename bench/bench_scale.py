"""The operator's cost curve (issue 17, item 4): 100, 500, 1,000 and 5,000 NemotronDeployments
in 50 namespaces, each size on a fresh cluster of its own.

    .venv/bin/python bench/bench_scale.py [--sizes 100,500,1000,5000] [--namespaces 50]
                                          [--idle 120] [--out bench/results]
    .venv/bin/python bench/bench_scale.py --plot bench/results/scale-DATE.json

Per size, as bench_load does it (its cluster, namespaces and specs: one object in 25 asks for a
one-GPU pod, the rest for none), with kwok GPU pools sized so that every GPU pod fits, and the
operator serving the whole cluster (the chart's default): the objects are created by 4 client
threads, then watches (not polling) tell when every one is Planned=True for its generation with
its workload (a StatefulSet here: each pod keeps its own cache) and Service. Reported per size:

- the time from the first create until all are planned with children, and the objects per s;
- the CPU seconds per object over that time of the cluster's own programs (etcd, the API server,
  the controller manager, the scheduler, kwok) and of the whole machine: what any operator's
  burst would cost the machine besides its own;
- the operator's CPU seconds per object over that time, its resident memory (VmRSS) before the
  first object and after the idle period, and its peak (VmHWM);
- its writes per object from the audit log, until converged and all told (pods Ready, then
  --settle seconds without a write);
- over --idle seconds after that: its CPU seconds per minute, and its requests to the API server
  per minute (watches, which are long polls, counted apart from the rest).

With --floor, each size runs a second time on another fresh cluster with no operator: the bench
creates each object and then applies its children itself, rendered beforehand by the operator's
own code and sent by its own write function, and writes no status. That is the least any
operator making these children asks of the cluster; the cluster's programs' CPU seconds over
that burst, less what they spend when nothing happens (measured for 10 s before it), divided by
the cores, is a floor under any operator's time on this machine.

The load average of the machine is recorded beside every size. Prints a table and writes a JSON
of the figures and a PNG of the curve (matplotlib: the `bench` extra) to --out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from bench_load import (
    PRODUCTS,
    WRITE_VERBS,
    Operator,
    breakdown,
    kubeconfig_of,
    namespaces_with_key,
    own_cluster,
    registry_env,
    remove_cluster,
    spec_for,
    stop_cluster,
)
from benchkit import (
    REPO,
    AuditTail,
    ClusterWatch,
    cluster_cpu_seconds,
    cluster_cpu_since,
    create_nemotron_deployment,
    load_average,
    machine_busy_seconds,
)
from kubernetes import client
from tests.standins.registry import RegistryStandin, catalog_config

from nemotron_operator.api.types import NemotronDeploymentSpec
from nemotron_operator.core.catalog import load_catalog
from nemotron_operator.core.inventory import gpu_pools
from nemotron_operator.core.planner import plan
from nemotron_operator.shell import kube
from nemotron_operator.shell.converge import desired_children

NODES = REPO / "hack" / "cluster" / "nodes.yaml"
PREFIX = "scale"
CREATORS = 4  # client threads creating the objects
TARGET_SECONDS_AT_5000 = 60
TARGET_RSS_MIB_AT_5000 = 250
CLUSTER_CPU = "cluster CPU s per object while creating"
MACHINE_CPU = "machine busy CPU s per object while creating"


def node_pools_for(objects: int) -> dict[str, Any]:
    """hack/cluster/nodes.yaml with enough nodes in each GPU pool for the one-GPU pods of
    `objects` NemotronDeployments (spec_for), and one node to spare."""
    pools = yaml.safe_load(NODES.read_text())
    wanted = Counter(
        spec_for(i)["gpu"]["product"] for i in range(objects) if spec_for(i)["replicas"] > 0
    )
    for pool in pools["pools"]:
        gpu = pool.get("gpu") or {}
        if gpu.get("product") in PRODUCTS:
            needed = math.ceil(wanted[gpu["product"]] / gpu["count"]) + 1
            pool["count"] = max(pool["count"], needed)
    return dict(pools)


def measure(objects: int, namespaces: int, idle: float, settle: float) -> dict[str, Any]:
    """One size on a cluster of its own: the figures listed in the module's doc."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-scale-{objects}-"))
    nodes = work / "nodes.yaml"
    pools = node_pools_for(objects)
    nodes.write_text(yaml.safe_dump(pools))
    figures: dict[str, Any] = {
        "objects": objects,
        "namespaces": namespaces,
        "GPU nodes": sum(p["count"] for p in pools["pools"] if p.get("gpu")),
        "load average at start": load_average(),
    }
    state, api = own_cluster(work, nodes)
    registry = RegistryStandin(catalog_config()).start()
    operator = Operator(kubeconfig_of(state), work / "operator.log", registry_env(registry), ("*",))
    watch = ClusterWatch(api)
    try:
        spaces = namespaces_with_key(api, PREFIX, namespaces)
        operator.start()
        watch.start()
        audit = AuditTail(state / "audit.log")
        time.sleep(5)  # the operator's watches listed what there is
        figures["RSS before (MiB)"] = round(operator.rss_mib(), 1)
        cpu_at_start = operator.cpu_seconds()
        cluster_at_start, busy_at_start = cluster_cpu_seconds(state), machine_busy_seconds()
        started, clock = time.time(), time.monotonic()

        def create(index: int) -> None:
            name = f"nd-{index:04d}"
            create_nemotron_deployment(api, spaces[index % len(spaces)], name, spec_for(index))

        with ThreadPoolExecutor(CREATORS) as creators:
            list(creators.map(create, range(objects)))
        figures["created in (s)"] = round(time.monotonic() - clock, 1)
        while not watch.wait(lambda: len(watch.converged) >= objects, 30):
            waited = time.monotonic() - clock
            print(f"  {len(watch.converged)}/{objects} converged after {waited:.0f} s", flush=True)
            if waited > 1800:
                raise RuntimeError(f"only {len(watch.converged)}/{objects} converged in 1800 s")
        converged = time.monotonic() - clock
        converged_at = started + converged
        figures["all planned with children after (s)"] = round(converged, 1)
        figures["objects/s"] = round(objects / converged, 1)
        figures["CPU s per object while creating"] = round(
            (operator.cpu_seconds() - cpu_at_start) / objects, 4
        )
        cluster_used = cluster_cpu_since(state, cluster_at_start)
        figures[CLUSTER_CPU] = round(sum(cluster_used.values()) / objects, 4)
        figures["cluster CPU s per object by program"] = {
            program: round(seconds / objects, 4)
            for program, seconds in sorted(cluster_used.items(), key=lambda kv: -kv[1])
        }
        figures[MACHINE_CPU] = round((machine_busy_seconds() - busy_at_start) / objects, 4)
        figures["RSS when converged (MiB)"] = round(operator.rss_mib(), 1)
        during = audit.between(started, converged_at + 1)
        writes = [e for e in during if e["verb"] in WRITE_VERBS]
        figures["writes per object until converged"] = round(len(writes) / objects, 2)
        figures["writes by kind until converged"] = dict(breakdown(writes).most_common())

        with_pods = sum(1 for i in range(objects) if spec_for(i)["replicas"] > 0)
        if not watch.wait(
            lambda: watch.count(lambda o: o.replicas > 0 and o.ready) >= with_pods, 900
        ):
            raise RuntimeError("the objects with pods are not Ready after 900 s")
        while [
            e for e in audit.between(time.time() - settle, time.time()) if e["verb"] in WRITE_VERBS
        ]:
            time.sleep(5)
        quiet = time.time()
        figures["quiet after (s)"] = round(quiet - started, 1)
        everything = audit.between(started, quiet)
        figures["writes per object, all told"] = round(
            len([e for e in everything if e["verb"] in WRITE_VERBS]) / objects, 2
        )

        cpu_idle_from, idle_from = operator.cpu_seconds(), time.time()
        time.sleep(idle)
        cpu_idle = operator.cpu_seconds() - cpu_idle_from
        requests = audit.between(idle_from, idle_from + idle)
        watches = [e for e in requests if e["verb"] == "watch"]
        others = [e for e in requests if e["verb"] != "watch"]
        minutes = idle / 60
        figures["idle (s)"] = idle
        figures["idle CPU s per minute"] = round(cpu_idle / minutes, 3)
        figures["idle requests per minute (not watches)"] = round(len(others) / minutes, 2)
        figures["idle watches started per minute"] = round(len(watches) / minutes, 2)
        figures["idle requests by kind"] = dict(breakdown(requests).most_common(8))
        figures["idle writes"] = len([e for e in requests if e["verb"] in WRITE_VERBS])
        figures["RSS after idle (MiB)"] = round(operator.rss_mib(), 1)
        figures["peak RSS VmHWM (MiB)"] = round(operator.peak_mib(), 1)
        figures["RSS growth per 1,000 objects (MiB)"] = round(
            (figures["RSS after idle (MiB)"] - figures["RSS before (MiB)"]) * 1000 / objects, 1
        )
    except Exception as error:
        figures["error"] = str(error)
    finally:
        stops = (watch.stop, operator.stop, registry.stop, api.close)
        log_name = f"bench-scale-{objects}-operator.log"
        figures["operator log"] = remove_cluster(work, state, log_name, stops)
        figures["load average at end"] = load_average()
    return figures


UID_TO_COME = "uid-of-the-object-once-created"
IDLE_BEFORE_FLOOR_SECONDS = 10
FLOOR = "without an operator"


def children_rendered(api: client.ApiClient, objects: int, spaces: list[str]) -> list[str]:
    """Per object (spec_for), its children as the operator renders them on this cluster's GPU
    nodes, as JSON whose owner uid is UID_TO_COME."""
    pools = gpu_pools(api.sanitize_for_serialization(client.CoreV1Api(api).list_node())["items"])
    catalog = load_catalog()
    rendered = []
    for index in range(objects):
        spec = NemotronDeploymentSpec.model_validate(spec_for(index))
        result = plan(spec, catalog, pools)
        meta = {"name": f"nd-{index:04d}", "namespace": spaces[index % len(spaces)]}
        body = {"metadata": meta | {"uid": UID_TO_COME}}
        rendered.append(json.dumps(desired_children(body, spec, result) if result.fits else []))
    return rendered


def measure_floor(objects: int, namespaces: int) -> dict[str, Any]:
    """The same burst on a cluster of its own with no operator (see --floor in the module's
    doc): the bench creates each object and applies its children at once, by 4 client threads."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-floor-{objects}-"))
    nodes = work / "nodes.yaml"
    nodes.write_text(yaml.safe_dump(node_pools_for(objects)))
    state, api = own_cluster(work, nodes)
    figures: dict[str, Any] = {"load average at start": load_average()}
    try:
        spaces = namespaces_with_key(api, PREFIX, namespaces)
        rendered = children_rendered(api, objects, spaces)
        kube.api = lambda: api  # the operator's write function, on this cluster's client
        kube.connect()
        idle_from = cluster_cpu_seconds(state)
        time.sleep(IDLE_BEFORE_FLOOR_SECONDS)
        idle_cores = sum(cluster_cpu_since(state, idle_from).values()) / IDLE_BEFORE_FLOOR_SECONDS
        bench_cpu_at_start = time.process_time()
        cluster_at_start, busy_at_start = cluster_cpu_seconds(state), machine_busy_seconds()
        clock = time.monotonic()

        def create_and_apply(index: int) -> int:
            namespace, name = spaces[index % len(spaces)], f"nd-{index:04d}"
            created = create_nemotron_deployment(api, namespace, name, spec_for(index))
            children = json.loads(rendered[index].replace(UID_TO_COME, created["metadata"]["uid"]))
            for child in children:
                kube.apply(child)
            return len(children)

        with ThreadPoolExecutor(CREATORS) as creators:
            written = sum(creators.map(create_and_apply, range(objects)))
        took = time.monotonic() - clock
        cluster_used = cluster_cpu_since(state, cluster_at_start)
        cores = os.cpu_count() or 1
        figures |= {
            "children applied": written,
            "all created with children after (s)": round(took, 1),
            CLUSTER_CPU: round(sum(cluster_used.values()) / objects, 4),
            "cluster CPU s per object by program": {
                program: round(seconds / objects, 4)
                for program, seconds in sorted(cluster_used.items(), key=lambda kv: -kv[1])
            },
            "bench (client) CPU s per object": round(
                (time.process_time() - bench_cpu_at_start) / objects, 4
            ),
            MACHINE_CPU: round((machine_busy_seconds() - busy_at_start) / objects, 4),
            "cluster's cores busy before the burst": round(idle_cores, 3),
            # what the burst asked of the cluster, without what it spends when nothing happens
            "floor: cluster CPU s over the cores (s)": round(
                (sum(cluster_used.values()) - idle_cores * took) / cores, 1
            ),
        }
    except Exception as error:
        figures["error"] = str(error)
    finally:
        api.close()
        stop_cluster(state)
        shutil.rmtree(work, ignore_errors=True)
        figures["load average at end"] = load_average()
    return figures


COLUMNS = (
    ("objects", "objects"),
    ("all planned with children after (s)", "planned (s)"),
    ("objects/s", "obj/s"),
    ("CPU s per object while creating", "CPU s/obj"),
    (CLUSTER_CPU, "cluster CPU s/obj"),
    (MACHINE_CPU, "machine CPU s/obj"),
    ("RSS before (MiB)", "RSS 0"),
    ("RSS after idle (MiB)", "RSS"),
    ("peak RSS VmHWM (MiB)", "peak"),
    ("RSS growth per 1,000 objects (MiB)", "MiB/1k over RSS 0"),
    ("writes per object until converged", "writes/obj"),
    ("writes per object, all told", "all told"),
    ("idle CPU s per minute", "idle CPU/min"),
    ("idle requests per minute (not watches)", "idle req/min"),
    ("idle watches started per minute", "watch/min"),
    ("load average at start", "load (1, 5, 15 min)"),
)


def growth_between_sizes(runs: list[dict[str, Any]]) -> list[float | None]:
    """MiB of RSS (after idle) per 1,000 objects from the size before to this one: the slope, free
    of what the first objects cost once (imports, templates, caches filled on first use)."""
    slopes: list[float | None] = [None]
    for before, after in itertools.pairwise(runs):
        rss = "RSS after idle (MiB)"
        if rss not in before or rss not in after:
            slopes.append(None)
            continue
        slope = (after[rss] - before[rss]) * 1000 / (after["objects"] - before["objects"])
        slopes.append(round(slope, 1))
    return slopes


FLOOR_COLUMNS = (
    ("all created with children after (s)", "no operator: created with children (s)"),
    (CLUSTER_CPU, "no operator: cluster CPU s/obj"),
    ("floor: cluster CPU s over the cores (s)", "floor (s)"),
)


def table(runs: list[dict[str, Any]]) -> str:
    titles = [title for _, title in COLUMNS] + ["MiB/1k from the size before"]
    floors = any(FLOOR in run for run in runs)
    if floors:
        titles += [title for _, title in FLOOR_COLUMNS]
    lines = [f"| {' | '.join(titles)} |", "|" + "|".join("---" for _ in titles) + "|"]
    for run, slope in zip(runs, growth_between_sizes(runs), strict=True):
        cells = []
        for key, _ in COLUMNS:
            value = run.get(key, "-")
            cells.append(
                ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            )
        cells.append("-" if slope is None else str(slope))
        if floors:
            cells += [str(run.get(FLOOR, {}).get(key, "-")) for key, _ in FLOOR_COLUMNS]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in report["runs"] if "error" not in r]
    sizes = [r["objects"] for r in runs]
    panels = (
        (
            "all planned with children after (s)",
            "s until all planned with children",
            TARGET_SECONDS_AT_5000,
        ),
        ("peak RSS VmHWM (MiB)", "operator peak RSS (MiB)", TARGET_RSS_MIB_AT_5000),
        ("CPU s per object while creating", "CPU s per object while creating", None),
        ("idle CPU s per minute", "idle CPU s per minute", None),
    )
    figure, axes = plt.subplots(2, 2, figsize=(10, 7))
    for axis, (key, title, target) in zip(axes.flat, panels, strict=True):
        axis.plot(sizes, [r[key] for r in runs], marker="o", label="operator")
        if key == "CPU s per object while creating" and all(CLUSTER_CPU in r for r in runs):
            for beside, label in ((CLUSTER_CPU, "the cluster's programs"), (MACHINE_CPU, "all")):
                axis.plot(sizes, [r[beside] for r in runs], marker="o", label=label)
            axis.legend()
        if key == "all planned with children after (s)" and all(FLOOR in r for r in runs):
            for beside, label in (
                ("all created with children after (s)", "no operator: children made by a client"),
                ("floor: cluster CPU s over the cores (s)", "the cluster's CPU over the cores"),
            ):
                axis.plot(sizes, [r[FLOOR].get(beside) for r in runs], marker="o", label=label)
            axis.legend()
        if target is not None:
            axis.axhline(target, color="red", linestyle="--", label=f"target at 5,000: {target}")
            axis.legend()
        axis.set_title(title)
        axis.set_xlabel("NemotronDeployments (50 namespaces)")
        axis.set_xscale("log")
        axis.grid(True, alpha=0.3)
    figure.suptitle(
        f"nemotron-operator cost curve, {report['date']} "
        f"(2 shared cores; load average per run in the JSON)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,500,1000,5000")
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--idle", type=float, default=120, help="idle seconds measured per size")
    parser.add_argument(
        "--settle", type=float, default=20, help="seconds without a write before the idle period"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--plot", type=Path, help="only plot (and tabulate) this JSON report")
    parser.add_argument(
        "--floor", action="store_true", help="each size again with no operator (see above)"
    )
    args = parser.parse_args()

    if args.plot:
        report = json.loads(args.plot.read_text())
        print(table(report["runs"]))
        plot(report, args.plot.with_suffix(".png"))
        return 0
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cores": os.cpu_count()},
        "runs": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"scale-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M}.json"
    for size in (int(s) for s in args.sizes.split(",")):
        figures = measure(size, args.namespaces, args.idle, args.settle)
        if args.floor:
            figures[FLOOR] = measure_floor(size, args.namespaces)
        report["runs"].append(figures)
        print(json.dumps(figures, indent=2), flush=True)
        path.write_text(json.dumps(report, indent=2) + "\n")  # what is measured so far survives
    print(table(report["runs"]))
    plot(report, path.with_suffix(".png"))
    print(f"figures: {path}\nplot: {path.with_suffix('.png')}")
    failed = any("error" in r or "error" in r.get(FLOOR, {}) for r in report["runs"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
