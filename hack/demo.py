#!/usr/bin/env python3
"""`make demo`: the local cluster with fake GPU nodes, the operator, and examples/, shown as a
person would want to see them.

1. Bring up the local cluster (hack/cluster/cluster.py; reused when it already runs).
2. Install the CRD (server-side apply of crds/).
3. Start the NGC registry stand-in (tests/standins/registry.py, configured like the e2e tests:
   every catalog release, one entitled key, one key entitled to nothing) and the operator,
   pointed at it, serving the namespace `nemotron-demo`. Both run in the background, their pids
   in the state directory's pids/ so that `make cluster-down` stops them too; running the demo
   again restarts them.
4. Create what the examples reference (NGC key Secrets, pull secrets, a preloaded cache
   claim), apply examples/, wait until each is planned for its current generation, and print
   one table of them all.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack" / "cluster"))
sys.path.insert(0, str(REPO))

import cluster as local_cluster  # noqa: E402
from tests.standins.registry import UNENTITLED_KEY, VALID_KEY, catalog_config  # noqa: E402

NAMESPACE = "nemotron-demo"
EXAMPLES = REPO / "examples"
CRDS = REPO / "crds"
REGISTRY_SCRIPT = REPO / "tests" / "standins" / "registry.py"
OPERATOR = Path(sys.executable).parent / "nemotron-operator"
PLANNED_TIMEOUT = 120.0
SETTLE_TIMEOUT = 60.0
# Ready reasons that change by themselves within seconds on this cluster (kwok starts pods at
# once); the demo waits a little for them to pass before it prints.
PASSING_REASONS = {"Creating", "Starting", "RollingOut"}
MESSAGE_LINES = 5


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# kubectl against the local cluster: cluster.py's, with the cluster's binaries and state bound
Kubectl = Callable[..., str]


def wait_for(check: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer: it is serving
    except OSError:
        return False


# --- background processes ---------------------------------------------------------------------


def start_background(
    state: Path, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Start a process of the demo (stopping the one recorded before), recording its pid where
    cluster.py's `down` finds it."""
    local_cluster.stop(state, name)
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,
            cwd=REPO,
        )
    local_cluster.pid_file(state, name).write_text(str(process.pid))
    return process


def alive_or_exit(process: subprocess.Popen[bytes], name: str, log_path: Path) -> None:
    if process.poll() is not None:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"the {name} exited (code {process.returncode}); {log_path}:\n{tail}")


def start_registry(state: Path) -> str:
    """The NGC registry stand-in (there is no nvcr.io here), on loopback; returns its URL."""
    config = state / "registry.json"
    config.write_text(json.dumps(catalog_config(), indent=2))
    local_cluster.stop(state, "registry")
    port = local_cluster.free_port()
    # The port of the run before, when it is free again: the URL shows in status messages.
    previous = state / "registry.port"
    if previous.exists():
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", int(previous.read_text())))
            port = int(previous.read_text())
    previous.write_text(str(port))
    log_path = state / "registry.log"
    process = start_background(
        state,
        "registry",
        [sys.executable, str(REGISTRY_SCRIPT), "--port", str(port), "--config", str(config)],
        log_path,
        {},
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        alive_or_exit(process, "registry stand-in", log_path)
        return answers(url + "/v2/")

    wait_for(up, "the registry stand-in", 30)
    return url


def start_operator(state: Path, kubeconfig: Path, registry_url: str) -> Path:
    log_path = state / "operator.log"
    port = local_cluster.free_port()
    process = start_background(
        state,
        "operator",
        [
            str(OPERATOR),
            "run",
            f"--namespace={NAMESPACE}",
            "--liveness",
            f"http://127.0.0.1:{port}/healthz",
        ],
        log_path,
        {
            "KUBECONFIG": str(kubeconfig),
            "NEMOTRON_NGC_REGISTRY_URL": registry_url,
            "NEMOTRON_NGC_METADATA_URL": registry_url,
        },
    )

    def live() -> bool:
        alive_or_exit(process, "operator", log_path)
        return answers(f"http://127.0.0.1:{port}/healthz")

    wait_for(live, "the operator's liveness endpoint", 60)
    return log_path


# --- what the examples reference --------------------------------------------------------------


def prerequisites() -> list[dict[str, Any]]:
    """The namespace, and what the examples reference: NGC key Secrets (one the registry
    stand-in accepts for every image, one it accepts but entitles to nothing), image pull
    secrets, and the claim the air-gapped example says was preloaded."""
    meta = {"namespace": NAMESPACE}
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    ]
    for name, key in (("ngc-api-key", VALID_KEY), ("ngc-unentitled", UNENTITLED_KEY)):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, **meta},
                "stringData": {"NGC_API_KEY": key},
            }
        )
    docker_config = json.dumps({"auths": {"nvcr.io": {"username": "$oauthtoken"}}})
    for name in ("ngc-registry", "internal-registry"):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/dockerconfigjson",
                "metadata": {"name": name, **meta},
                "stringData": {".dockerconfigjson": docker_config},
            }
        )
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "nemotron-3-nano-preloaded", **meta},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "64Gi"}},
            },
        }
    )
    return objects


def example_names() -> list[str]:
    names = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        names += [doc["metadata"]["name"] for doc in yaml.safe_load_all(path.read_text()) if doc]
    return names


# --- waiting and showing ----------------------------------------------------------------------


def condition(item: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    for c in (item.get("status") or {}).get("conditions") or ():
        if c.get("type") == type_:
            return dict(c)
    return {}


def planned(item: Mapping[str, Any]) -> bool:
    generation = item["metadata"].get("generation")
    return condition(item, "Planned").get("observedGeneration") == generation


def settled(item: Mapping[str, Any]) -> bool:
    ready = condition(item, "Ready")
    return bool(ready) and ready.get("reason") not in PASSING_REASONS


def deployments(kubectl: Kubectl, wanted: Sequence[str]) -> dict[str, dict[str, Any]]:
    items = json.loads(kubectl("-n", NAMESPACE, "get", "nemotrondeployments", "-o", "json"))
    found = {item["metadata"]["name"]: item for item in items["items"]}
    return {name: found[name] for name in wanted if name in found}


def wait_until_planned(kubectl: Kubectl, wanted: Sequence[str]) -> dict[str, dict[str, Any]]:
    def all_planned() -> dict[str, dict[str, Any]] | None:
        items = deployments(kubectl, wanted)
        done = len(items) == len(wanted) and all(planned(i) for i in items.values())
        return items if done else None

    items = wait_for(all_planned, "every example to be planned", PLANNED_TIMEOUT)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not all(settled(i) for i in items.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
        items = deployments(kubectl, wanted)
    return items


def row(item: Mapping[str, Any]) -> tuple[list[str], str]:
    """The table's cells for one NemotronDeployment, and its message."""
    status = item.get("status") or {}
    plan = status.get("plan") or {}
    ready = condition(item, "Ready")
    gpus = plan.get("gpusPerReplica")
    product = plan.get("gpuProduct")
    image = plan.get("image")
    cells = [
        item["metadata"]["name"],
        item["spec"]["model"],
        plan.get("precision") or "-",
        f"{gpus} x {product}" if gpus and product else "-",
        image.rsplit(":", 1)[1] if image else "-",
        ready.get("status", "-"),
        ready.get("reason", "-"),
    ]
    # Serving: what was planned and why. Not serving: why not (Ready repeats the cause).
    if ready.get("status") == "True":
        message = condition(item, "Planned").get("message", "")
    else:
        message = ready.get("message") or condition(item, "Planned").get("message", "")
    return cells, message


HEADER = ["NAME", "MODEL", "PRECISION", "GPUS x PRODUCT", "IMAGE TAG", "READY", "REASON"]


def table(items: Sequence[Mapping[str, Any]], width: int) -> str:
    """One line of columns per NemotronDeployment, its MESSAGE wrapped beneath it."""
    rows = [row(item) for item in items]
    widths = [max(len(cells[i]) for cells in [HEADER, *(r[0] for r in rows)]) for i in range(7)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()

    indent = "    "
    out = [line(HEADER), indent + "MESSAGE", ""]
    for cells, message in rows:
        out.append(line(cells))
        wrapped = textwrap.wrap(message, width=max(40, width - len(indent))) or ["-"]
        if len(wrapped) > MESSAGE_LINES:
            more = f"[... kubectl describe nemotrondeployment {cells[0]}]"
            wrapped = [*wrapped[: MESSAGE_LINES - 1], more]
        out += [indent + text for text in wrapped]
        out.append("")
    return "\n".join(out)


# --- the demo ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=local_cluster.DEFAULT_STATE,
        help="the local cluster's state directory (default: .cluster/)",
    )
    state = parser.parse_args().state_dir.resolve()
    started = time.monotonic()

    local_cluster.up(state, local_cluster.DEFAULT_NODES)
    kubeconfig = state / "kubeconfig"
    binaries = local_cluster.binaries()
    kubectl = functools.partial(local_cluster.kubectl, binaries, state)

    log("installing the CRD (server-side apply of crds/)")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))

    registry_url = start_registry(state)
    log(f"NGC registry stand-in at {registry_url} (log: {state / 'registry.log'})")
    operator_log = start_operator(state, kubeconfig, registry_url)
    log(f"operator running, serving namespace {NAMESPACE} (log: {operator_log})")

    kubectl(
        "apply",
        "--server-side",
        "-f",
        "-",
        stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": prerequisites()}),
    )
    wait_for(
        lambda: kubectl("-n", NAMESPACE, "get", "serviceaccounts", "-o", "name"),
        "the namespace's default ServiceAccount",
        60,
    )
    log(f"applying examples/ to namespace {NAMESPACE}")
    kubectl("apply", "--server-side", "-n", NAMESPACE, "-f", str(EXAMPLES))
    names = example_names()
    items = wait_until_planned(kubectl, names)

    width = shutil.get_terminal_size((120, 40)).columns
    print(f"\nNemotronDeployments in namespace {NAMESPACE} (fake GPU nodes: kwok):\n")
    print(table([items[name] for name in names], width))
    kubectl_dir = binaries["kubectl"].parent
    stop = "make cluster-down"
    if state != local_cluster.DEFAULT_STATE:
        stop = f"{sys.executable} hack/cluster/cluster.py down --state-dir {state}"
    print(
        textwrap.dedent(
            f"""\
            Look further:
              export KUBECONFIG={kubeconfig}
              export PATH={kubectl_dir}:$PATH   # the kubectl built for this cluster
              kubectl get nodes -L nvidia.com/gpu.product,nvidia.com/gpu.count
              kubectl -n {NAMESPACE} get nemotrondeployments
              kubectl -n {NAMESPACE} describe nemotrondeployment ultra-bf16-4gpu
              kubectl -n {NAMESPACE} get nemotrondeployment super-unentitled -o yaml
            The operator's log: {operator_log}
            Stop everything (cluster, operator, registry stand-in): {stop}
            """
        )
    )
    log(f"demo ready in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as error:  # a kubectl that failed: its message, not a traceback
        sys.exit(str(error))
