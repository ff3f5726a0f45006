"""Drill 4 (issue 7): 500 NemotronDeployments across 20 namespaces, then a long idle period.

    .venv/bin/python bench/bench_load.py [--objects 500] [--namespaces 20] [--idle 600]
                                         [--report FILE]

Starts a cluster of its own (hack/cluster `up --audit-reads` in a temporary state directory,
stopped at the end) so that the API server's audit log holds every request of the operator,
reads included, and nothing of other sessions. The NGC registry is the test stand-in. Creates the
objects (one in 25 asks for a one-GPU pod, the rest for none so the GPUs do not run out), waits
until every one is Planned=True with its StatefulSet and Service, and reports:

- the total time, the operator's peak memory (VmHWM) and CPU seconds (utime + stime);
- the operator's API requests per object, writes (dry runs among them) and reads apart, by verb
  and resource, until everything settled: pods Ready, then --settle seconds without a write;
- over the idle period that follows: write requests (must be 0), read requests other than
  watches, and CPU seconds (must be near zero). A period of 600 s holds one full resync round
  (credentials are checked again every 10 minutes): reads of each Secret, no writes.

Exits 1 when an object does not converge, or when the idle period saw a write or more than
--max-idle-cpu CPU seconds per minute.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchkit import cpu_seconds, create_nemotron_deployment, memory_mib  # noqa: E402
from kubernetes import client, config  # noqa: E402
from tests.e2e.conftest import OperatorProcess, operator_requests  # noqa: E402
from tests.standins.registry import (  # noqa: E402
    VALID_KEY,
    RegistryStandin,
    catalog_config,
)

from nemotron_operator.api import names  # noqa: E402

HARNESS = REPO / "hack" / "cluster" / "cluster.py"
CRDS = REPO / "crds"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
PRODUCTS = ("NVIDIA-H100-80GB-HBM3", "NVIDIA-L40S", "NVIDIA-H200", "NVIDIA-B200")
MODELS = ("nemotron-3-nano", "llama-3.2-nv-embedqa-1b-v2", "llama-3.2-nv-rerankqa-1b-v2")


def spec_for(index: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": MODELS[index % len(MODELS)],
        "gpu": {"product": PRODUCTS[index % len(PRODUCTS)]},
        "replicas": 0,
        "ngc": {"apiKeySecret": {"name": "ngc-api"}},
    }
    if index % 25 == 0:
        spec |= {"model": "llama-3.2-nv-embedqa-1b-v2", "replicas": 1}
    return spec


def breakdown(requests: list[dict[str, Any]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for entry in requests:
        ref = entry.get("objectRef") or {}
        resource = ref.get("resource", "?")
        if ref.get("subresource"):
            resource += f"/{ref['subresource']}"
        counts[f"{entry['verb']} {resource}"] += 1
    return counts


class Operator(OperatorProcess):
    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def peak_mib(self) -> float:
        return memory_mib(self.pid, "VmHWM")

    def rss_mib(self) -> float:
        return memory_mib(self.pid, "VmRSS")


def converged(body: dict[str, Any]) -> bool:
    status = body.get("status") or {}
    planned = next((c for c in status.get("conditions") or () if c["type"] == "Planned"), None)
    return bool(
        planned
        and planned["status"] == "True"
        and planned.get("observedGeneration") == body["metadata"]["generation"]
    )


def ready(body: dict[str, Any]) -> bool:
    status = body.get("status") or {}
    found = next((c for c in status.get("conditions") or () if c["type"] == "Ready"), None)
    return bool(found and found["status"] == "True")


def own_cluster(work: Path, nodes: Path | None = None) -> tuple[Path, client.ApiClient]:
    """A cluster of its own in `work`/cluster (hack/cluster `up --audit-reads`: its audit log
    holds every request of the operator, and nothing of other sessions), with the CRD; `nodes`:
    a node-pool file other than hack/cluster/nodes.yaml. Returns its state directory and a
    client."""
    state = work / "cluster"
    pools = ["--nodes", str(nodes)] if nodes else []
    subprocess.run(
        [sys.executable, str(HARNESS), "up", "--state-dir", str(state), "--audit-reads", *pools],
        check=True,
    )
    sys.path.insert(0, str(HARNESS.parent))
    import cluster as local_cluster

    kubectl = str(local_cluster.binaries()["kubectl"])
    subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(kubeconfig_of(state)),
            "apply",
            "--server-side",
            "-f",
            str(CRDS),
        ],
        check=True,
        capture_output=True,
    )
    return state, config.new_client_from_config(config_file=str(kubeconfig_of(state)))


def kubeconfig_of(state: Path) -> Path:
    return state / "kubeconfig"


def stop_cluster(state: Path) -> None:
    subprocess.run([sys.executable, str(HARNESS), "down", "--state-dir", str(state)], check=False)


def remove_cluster(
    work: Path, state: Path, log_name: str, stops: Sequence[Callable[[], Any]] = ()
) -> str:
    """Call `stops` (what runs against the cluster: the operator, watches, clients), stop the
    cluster of `own_cluster(work)` and remove `work`, keeping the operator's log
    (`work`/operator.log) in the temporary directory as `log_name`: returns its path."""
    for stop in stops:
        stop()
    stop_cluster(state)
    kept = Path(tempfile.gettempdir()) / log_name
    shutil.copy(work / "operator.log", kept)
    shutil.rmtree(work, ignore_errors=True)
    return str(kept)


def report(title: str, figures: dict[str, Any], path: Path | None) -> None:
    """Print the figures under `title`, and write them to `path` (JSON) when given."""
    print(title)
    for key, value in figures.items():
        print(f"  {key}: {value}")
    if path:
        path.write_text(json.dumps(figures, indent=2) + "\n")


def namespaces_with_key(api: client.ApiClient, prefix: str, count: int) -> list[str]:
    """`count` namespaces `prefix`-NN, each with the NGC key Secret the specs name."""
    core = client.CoreV1Api(api)
    spaces = [f"{prefix}-{i:02d}" for i in range(count)]
    for namespace in spaces:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="ngc-api"),
                string_data={"NGC_API_KEY": VALID_KEY},
            ),
        )
    return spaces


def registry_env(registry: RegistryStandin) -> dict[str, str]:
    """The operator's environment to ask the registry stand-in."""
    return {"NEMOTRON_NGC_REGISTRY_URL": registry.url, "NEMOTRON_NGC_METADATA_URL": registry.url}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--idle", type=float, default=600, help="idle seconds measured")
    parser.add_argument(
        "--settle", type=float, default=30, help="seconds without a write before the idle period"
    )
    parser.add_argument("--max-idle-cpu", type=float, default=1.0, help="CPU s per idle minute")
    parser.add_argument("--report", type=Path, help="also write the figures here (JSON)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    state, api = own_cluster(work)
    objects = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    prefix = "load"
    spaces = namespaces_with_key(api, prefix, args.namespaces)
    figures: dict[str, Any] = {"objects": args.objects, "namespaces": args.namespaces}
    registry = RegistryStandin(catalog_config()).start()
    operator = Operator(
        kubeconfig_of(state),
        work / "operator.log",
        registry_env(registry),
        namespaces=(f"{prefix}-*",),
    )
    failed = False
    try:
        operator.start()
        time.sleep(2)
        cpu_at_start = operator.cpu_seconds()
        started = time.time()
        for index in range(args.objects):
            create_nemotron_deployment(
                api, spaces[index % len(spaces)], f"nd-{index:03d}", spec_for(index)
            )
        figures["created in (s)"] = round(time.time() - started, 1)
        apps = client.AppsV1Api(api)
        selector = f"{names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE}"
        while True:
            items = objects.list_cluster_custom_object(names.GROUP, names.VERSION, names.PLURAL)[
                "items"
            ]
            planned = sum(1 for i in items if converged(i))
            # the default cache (ReadWriteOnce): a StatefulSet, whose claim template makes a
            # claim per replica, and a Service
            children = (
                len(apps.list_stateful_set_for_all_namespaces(label_selector=selector).items),
                len(core.list_service_for_all_namespaces(label_selector=selector).items),
            )
            if planned == args.objects and children == (args.objects,) * 2:
                break
            if time.time() - started > 1200:
                figures["stuck at"] = f"{planned} Planned, children {children}"
                raise RuntimeError(f"not converged after 1200 s: {figures['stuck at']}")
            time.sleep(1)
        converged_at = time.time()
        figures["all Planned=True with children after (s)"] = round(converged_at - started, 1)
        figures["objects/s"] = round(args.objects / (converged_at - started), 1)
        figures["CPU s to converge"] = round(operator.cpu_seconds() - cpu_at_start, 1)
        figures["peak memory VmHWM (MiB)"] = round(operator.peak_mib(), 1)

        audit = state / "audit.log"
        during = operator_requests(audit, started, converged_at + 1)
        writes = [e for e in during if e["verb"] in WRITE_VERBS]
        reads = [e for e in during if e["verb"] not in WRITE_VERBS]
        figures["requests per object while converging: writes"] = round(
            len(writes) / args.objects, 2
        )
        figures["requests per object while converging: reads"] = round(len(reads) / args.objects, 2)
        figures["writes by kind"] = dict(breakdown(writes).most_common())
        figures["reads by kind"] = dict(breakdown(reads).most_common(8))

        # Settle: pods become ready (kwok binds 500 claims at its own pace), the last status
        # writes land. The idle period starts once every object asking for pods is Ready and
        # the operator has written nothing for --settle seconds.
        while True:
            items = objects.list_cluster_custom_object(names.GROUP, names.VERSION, names.PLURAL)[
                "items"
            ]
            if all(ready(i) for i in items if i["spec"].get("replicas", 1) > 0):
                break
            if time.time() - converged_at > 1200:
                raise RuntimeError("pods not Ready after 1200 s")
            time.sleep(2)
        figures["replicas > 0 Ready after (s)"] = round(time.time() - started, 1)
        while True:
            recent = operator_requests(audit, time.time() - args.settle, time.time() + 1)
            if not [e for e in recent if e["verb"] in WRITE_VERBS]:
                break
            time.sleep(5)
        figures["operator quiet after (s)"] = round(time.time() - started, 1)
        everything = operator_requests(audit, started, time.time())
        figures["requests per object, all told: writes (dry runs)"] = (
            f"{len([e for e in everything if e['verb'] in WRITE_VERBS]) / args.objects:.2f} "
            f"({len([e for e in everything if 'dryRun' in e['requestURI']]) / args.objects:.2f})"
        )
        figures["requests per object, all told: reads"] = round(
            len([e for e in everything if e["verb"] not in WRITE_VERBS]) / args.objects, 2
        )
        figures["reads by kind, all told"] = dict(
            breakdown([e for e in everything if e["verb"] not in WRITE_VERBS]).most_common(6)
        )
        idle_from, cpu_idle_from = time.time(), operator.cpu_seconds()
        time.sleep(args.idle)
        idle_to, cpu_idle_to = time.time(), operator.cpu_seconds()
        idle = operator_requests(audit, idle_from, idle_to)
        idle_writes = [e for e in idle if e["verb"] in WRITE_VERBS]
        idle_reads = [e for e in idle if e["verb"] not in WRITE_VERBS and e["verb"] != "watch"]
        idle_cpu = cpu_idle_to - cpu_idle_from
        figures["idle period (s)"] = args.idle
        figures["idle writes"] = len(idle_writes)
        figures["idle writes by kind"] = dict(breakdown(idle_writes).most_common())
        figures["idle reads (not watches)"] = len(idle_reads)
        figures["idle reads by kind"] = dict(breakdown(idle_reads).most_common(8))
        figures["idle CPU s"] = round(idle_cpu, 2)
        figures["idle CPU s per minute"] = round(idle_cpu / (args.idle / 60), 3)
        figures["memory after idle VmRSS (MiB)"] = round(operator.rss_mib(), 1)
        figures["peak memory after idle VmHWM (MiB)"] = round(operator.peak_mib(), 1)
        failed = bool(idle_writes) or idle_cpu / (args.idle / 60) > args.max_idle_cpu
    except Exception as error:
        figures["error"] = str(error)
        failed = True
    finally:
        operator.stop()
        registry.stop()
        api.close()
        figures["operator log"] = str(work / "operator.log")
        if not args.keep:
            figures["operator log"] = remove_cluster(work, state, "bench-load-operator.log")

    report("bench_load (issue 7, drill 4)", figures, args.report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
