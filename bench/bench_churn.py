"""Throughput under churn (issue 17, item 5): a steady mix of creates, spec updates and deletes
against standing NemotronDeployments, and the time until the operator shows each change.

    .venv/bin/python bench/bench_churn.py [--standing 500] [--rate 20] [--duration 300]
                                          [--mix 1:2:1] [--report FILE]

On a cluster of its own (bench_load's, with kwok GPU pools sized by bench_scale for every GPU
pod that may exist), with the operator serving the whole cluster: creates --standing objects in
50 namespaces (bench_load's specs) and waits until all are planned with children; then, for
--duration seconds, makes --rate changes per second, in the proportions --mix (creates : updates
: deletes). An update sets spec.maxModelLength to another value (the workload's NIM_MAX_MODEL_LEN
changes); no object gets a second change before its first is shown. A change is shown when the
watches (never polling) see:

- create, update: status.observedGeneration at the generation the change made, Planned=True for
  it, the workload with the asked replicas and the Service (benchkit.Observed.converged; the
  operator writes the status after the children);
- delete: the NemotronDeployment and its children gone.

Reports p50/p99/max of the time from the request to that, per kind of change and overall, and
the backlog (changes made and not yet shown) every 10 s: it must not grow. Exits 1 when the p99
is over --target-p99 seconds, when the backlog grows (the mean of its last third of samples is
more than 2 s of changes above that of its first third), or when a change is never shown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from bench_load import (
    Operator,
    kubeconfig_of,
    namespaces_with_key,
    own_cluster,
    registry_env,
    remove_cluster,
    report,
    spec_for,
)
from bench_scale import node_pools_for
from benchkit import (
    ClusterWatch,
    Key,
    Observed,
    cpu_seconds,
    create_nemotron_deployment,
    load_average,
    percentile,
)
from kubernetes import client
from tests.standins.registry import RegistryStandin, catalog_config

from nemotron_operator.api import names

NAMESPACES = 50
CHANGE_THREADS = 8  # the changes are sent from these, so that a slow answer delays no other
MAX_MODEL_LENGTHS = (4096, 8192, 16384, 32768)


@dataclass
class Change:
    kind: str  # create, update, delete
    key: Key
    generation: int  # the generation that shows it (creates and updates)
    sent: float  # time.monotonic() just before the request
    shown: float | None = None

    def shown_by(self, observed: Observed) -> bool:
        if self.kind == "delete":
            return observed.gone()
        return observed.generation >= self.generation and observed.converged()


class Churn:
    """The changes in flight, matched against what the watches see."""

    def __init__(self) -> None:
        self.pending: dict[Key, Change] = {}
        self.done: list[Change] = []

    def on_change(self, key: Key, observed: Observed, at: float) -> None:
        change = self.pending.get(key)
        if change is not None and change.shown_by(observed):
            change.shown = at
            self.done.append(self.pending.pop(key))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--standing", type=int, default=500)
    parser.add_argument("--rate", type=float, default=20, help="changes per second")
    parser.add_argument("--duration", type=float, default=300, help="seconds of churn")
    parser.add_argument("--mix", default="1:2:1", help="creates:updates:deletes")
    parser.add_argument("--target-p99", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--report", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args()
    weights = [float(w) for w in args.mix.split(":")]
    random.seed(args.seed)

    changes_total = int(args.rate * args.duration)
    creates_at_most = args.standing + int(changes_total * weights[0] / sum(weights)) + 1
    work = Path(tempfile.mkdtemp(prefix="bench-churn-"))
    nodes = work / "nodes.yaml"
    nodes.write_text(yaml.safe_dump(node_pools_for(creates_at_most)))
    figures: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "standing": args.standing,
        "rate (changes/s)": args.rate,
        "duration (s)": args.duration,
        "mix creates:updates:deletes": args.mix,
        "load average at start": load_average(),
    }
    state, api = own_cluster(work, nodes)
    registry = RegistryStandin(catalog_config()).start()
    operator = Operator(kubeconfig_of(state), work / "operator.log", registry_env(registry), ("*",))
    churn = Churn()
    watch = ClusterWatch(api, churn.on_change)
    objects = client.CustomObjectsApi(api)
    failed = False
    try:
        spaces = namespaces_with_key(api, "churn", NAMESPACES)
        operator.start()
        watch.start()
        numbers = itertools.count()

        def create(number: int) -> Key:
            key = (spaces[number % len(spaces)], f"nd-{number:05d}")
            create_nemotron_deployment(api, *key, spec_for(number))
            return key

        with ThreadPoolExecutor(4) as creators:
            list(creators.map(create, itertools.islice(numbers, args.standing)))
        if not watch.wait(lambda: len(watch.converged) >= args.standing, 900):
            raise RuntimeError(f"only {len(watch.converged)}/{args.standing} standing converged")
        time.sleep(5)

        def send(change: Change, request: Callable[[], Any]) -> None:
            try:
                request()
            except Exception as error:  # counted as never shown
                print(f"{change.kind} {change.key}: {error}", file=sys.stderr)

        def next_change(now: float) -> tuple[Change, Callable[[], Any]]:
            """A change of a kind drawn by the mix, to an object with none in flight (under the
            watch's lock: what it knows cannot move meanwhile)."""
            kind = random.choices(("create", "update", "delete"), weights)[0]
            idle = [
                k
                for k, o in watch.objects.items()
                if o.exists and k not in churn.pending and k in watch.converged
            ]
            if kind == "create" or not idle:
                number = next(numbers)
                key = (spaces[number % len(spaces)], f"nd-{number:05d}")
                change = Change("create", key, 1, now)
                return change, lambda: create_nemotron_deployment(api, *key, spec_for(number))
            key = random.choice(idle)
            namespace, name = key
            if kind == "delete":
                change = Change("delete", key, 0, now)
                return change, lambda: objects.delete_namespaced_custom_object(
                    names.GROUP, names.VERSION, namespace, names.PLURAL, name
                )
            length = random.choice([n for n in MAX_MODEL_LENGTHS if n != lengths.get(key)])
            lengths[key] = length  # the same value again would make no new generation
            change = Change("update", key, watch.objects[key].generation + 1, now)
            return change, lambda: objects.patch_namespaced_custom_object(
                names.GROUP,
                names.VERSION,
                namespace,
                names.PLURAL,
                name,
                {"spec": {"maxModelLength": length}},
            )

        backlog: list[tuple[float, int]] = []
        lengths: dict[Key, int] = {}  # the maxModelLength each updated object was given
        cpu_before = cpu_seconds(operator.pid)
        started = time.monotonic()
        next_sample = started
        with ThreadPoolExecutor(CHANGE_THREADS) as senders:
            for index in range(changes_total):
                due = started + index / args.rate
                while (now := time.monotonic()) < due:
                    time.sleep(min(due - now, 0.05))
                if now >= next_sample:
                    with watch.lock:
                        backlog.append((round(now - started), len(churn.pending)))
                    next_sample += 10
                with watch.lock:
                    change, request = next_change(time.monotonic())
                    churn.pending[change.key] = change
                senders.submit(send, change, request)
        churn_cpu = cpu_seconds(operator.pid) - cpu_before
        elapsed = time.monotonic() - started
        watch.wait(lambda: not churn.pending, 60)
        with watch.lock:
            backlog.append((round(time.monotonic() - started), len(churn.pending)))
            never = list(churn.pending.values())
            done = list(churn.done)
        latencies = {
            kind: [c.shown - c.sent for c in done if c.kind == kind and c.shown is not None]
            for kind in ("create", "update", "delete")
        }
        latencies["all"] = [latency for values in latencies.values() for latency in values]
        for kind, values in latencies.items():
            if values:
                figures[f"{kind}: count, p50, p99, max (s)"] = (
                    len(values),
                    round(percentile(values, 0.5), 3),
                    round(percentile(values, 0.99), 3),
                    round(max(values), 3),
                )
        slowest = sorted((c for c in done if c.shown is not None), key=lambda c: c.sent - c.shown)
        figures["slowest (kind, key, s)"] = [
            (c.kind, "/".join(c.key), round(c.shown - c.sent, 2))
            for c in slowest[:5]
            if c.shown is not None
        ]
        figures["changes sent per s"] = round(changes_total / elapsed, 1)
        figures["never shown (60 s after the last change)"] = len(never)
        figures["never shown, some (kind, key, what the watches see)"] = [
            (c.kind, "/".join(c.key), str(watch.objects.get(c.key))) for c in never[:5]
        ]
        figures["backlog every 10 s (s, changes not yet shown)"] = backlog
        samples = [pending for _, pending in backlog[:-1]]  # the last: after the drain
        third = max(1, len(samples) // 3)
        first, last = samples[:third], samples[-third:]
        growth = sum(last) / len(last) - sum(first) / len(first)
        figures["backlog growth (mean of last third - first third)"] = round(growth, 1)
        figures["operator CPU s per change"] = round(churn_cpu / changes_total, 4)
        figures["operator CPU share of one core"] = round(churn_cpu / elapsed, 2)
        figures["operator RSS after (MiB)"] = round(operator.rss_mib(), 1)
        p99 = percentile(latencies["all"], 0.99)
        failed = bool(never) or p99 > args.target_p99 or growth > 2 * args.rate
    except Exception as error:
        figures["error"] = str(error)
        failed = True
    finally:
        stops = (watch.stop, operator.stop, registry.stop, api.close)
        figures["operator log"] = remove_cluster(work, state, "bench-churn-operator.log", stops)
        figures["load average at end"] = load_average()

    report("bench_churn (issue 17, item 5)", figures, args.report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
