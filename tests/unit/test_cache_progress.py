"""A download's progress in bytes (issue 14, item 3): the download Job's cache-size sidecar prints
the cache's size, the operator reads its last line and says how much of the planned download is
written, how fast, and until when; a status write only when it moves a whole step."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from pathlib import Path

import pytest

from nemotron_operator.core import cache_size
from nemotron_operator.core.cache_size import SizeLog, SizeReport
from nemotron_operator.core.inventory import gpu_pools
from nemotron_operator.core.status import cache_ready, measured_pod
from nemotron_operator.shell import kube
from nemotron_operator.shell.converge import CACHE_PROGRESS_READ_SECONDS
from nemotron_operator.shell.world import Snapshot

from . import test_cache_layout as layout
from .test_cache_download import (
    CONTENT,
    NOW,
    PLAN,
    exited,
    job,
    pod,
    running,
    snapshot_with_download_pods,
)
from .test_inventory import node
from .test_metrics import FakeConnection, connection  # noqa: F401 (a fixture)

GIB = 2**30
SINCE = NOW - dt.timedelta(minutes=2)


def line(since: dt.datetime, since_gib: float, at: dt.datetime, gib: float) -> str:
    """A line of the sidecar, as its script prints it."""
    kib = 1024 * 1024
    return (
        f"nemotron-cache-size v1 since={int(since.timestamp())} sinceKiB={int(since_gib * kib)} "
        f"at={int(at.timestamp())} KiB={int(gib * kib)}"
    )


# --- the sidecar's script, run by a real shell ----------------------------------------------


def test_the_sidecar_script_prints_the_growth_the_operator_reads_and_ends_on_term(
    tmp_path: Path,
) -> None:
    (tmp_path / "old-version").write_bytes(b"\1" * 2**20)  # files in the cache already
    script = cache_size.script(str(tmp_path)).replace(
        f"sleep {cache_size.REPORT_SECONDS}", "sleep 1"
    )
    sidecar = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True)
    assert sidecar.stdout is not None
    first = cache_size.parse(sidecar.stdout.readline())
    (tmp_path / "downloaded").write_bytes(b"\1" * 3 * 2**20)
    second = cache_size.parse(sidecar.stdout.readline())
    asked_to_stop = time.monotonic()
    sidecar.terminate()
    assert sidecar.wait(timeout=5) == 0
    assert time.monotonic() - asked_to_stop < 2  # no wait for the kubelet's grace period

    assert first is not None and second is not None
    assert first.since_bytes >= 2**20 and first.written == 0  # the old files are not progress
    assert second.since == first.since and second.at >= first.at
    assert 3 * 2**20 <= second.written < 4 * 2**20


def test_only_the_sidecars_own_lines_are_read() -> None:
    assert cache_size.parse(line(SINCE, 0, NOW, 1)) == SizeReport(SINCE, 0, NOW, GIB)
    for other in (
        "INFO 2026-04-29 22:04:02 nim_sdk.py:376] Downloading manifest profile: e28f17c9",
        "du: cannot access '/opt/nim/.cache/tmp.1': No such file or directory",
        "nemotron-cache-size v2 since=1 sinceKiB=0 at=2 KiB=5",
        line(SINCE, 0, NOW, 1) + " NGC_API_KEY=nvapi-secret",
        "",
    ):
        assert cache_size.parse(other) is None, other


# --- what the status says -------------------------------------------------------------------


def report(written_gib: float, seconds: float, since_gib: float = 0.0) -> SizeReport:
    return SizeReport(
        SINCE,
        int(since_gib * GIB),
        SINCE + dt.timedelta(seconds=seconds),
        int((since_gib + written_gib) * GIB),
    )


def test_the_progress_is_the_growth_of_the_planned_size_with_the_rate_and_end_it_implies() -> None:
    # 10 GiB of 40 written in 100 s, beside 31 GiB of an older version: 30 GiB left at
    # 107.4 MB/s (10 GiB / 100 s) is 300 s more
    text = cache_size.measured_progress(report(10, 100, since_gib=31), 40)
    end = SINCE + dt.timedelta(seconds=400)
    assert text == (
        f"25% of 40 GiB written (10.0 GiB at 107 MB/s, done about "
        f"{end:%Y-%m-%dT%H:%M:%SZ}; measured on the cache volume)"
    )


@pytest.mark.parametrize(
    ("written_gib", "seconds", "expected_gib", "says"),
    [
        (0.5, 0, 40, "1% of 40 GiB written (0.5 GiB; the rate comes with the next report)"),
        (0, 60, 40, "0% of 40 GiB written (0.0 GiB; nothing written since"),
        (41, 400, 40, "100% of 40 GiB written (41.0 GiB, the plan expected 40: finishing)"),
        (3.7, 60, None, "3 GiB written (at 66 MB/s; the plan has no download size: no end time)"),
        (0.01, 600, 40, "0% of 40 GiB written (0.0 GiB at 0.0 MB/s, done about"),
    ],
    ids=["first-report", "nothing-yet", "more-than-planned", "no-planned-size", "slow"],
)
def test_the_progress_says_what_one_report_can_tell(
    written_gib: float, seconds: float, expected_gib: float | None, says: str
) -> None:
    assert cache_size.measured_progress(report(written_gib, seconds), expected_gib).startswith(says)


def test_a_shown_progress_is_kept_until_it_moves_a_whole_step() -> None:
    def message(written_gib: float, seconds: float) -> str:
        progress = cache_size.measured_progress(report(written_gib, seconds), 40)
        return f"downloading since then, {progress}"

    shown = message(10.0, 100)  # 25%
    assert cache_size.steady(shown, message(10.3, 103)) == shown  # 25.75%: the same step
    assert cache_size.steady(shown, message(10.5, 105)) == message(10.5, 105)  # 26.25%
    assert cache_size.steady(None, shown) == shown
    estimate = "downloading since then, 40 GiB expected; at an assumed 100 MB/s (an estimate)"
    assert cache_size.steady(estimate, shown) == shown
    assert cache_size.steady(shown, estimate) == estimate  # a failed read says so at once


def downloading(size_log: SizeLog | None, shown: str | None = None) -> str:
    found = cache_ready(
        CONTENT, job(), [running("nano-download-a", SINCE)], [], PLAN, NOW, size_log, shown
    )
    assert found is not None and found.condition.reason == "CacheDownloading"
    return found.condition.message


def test_cache_ready_shows_the_measured_progress_or_says_why_it_estimates() -> None:
    measured = downloading(SizeLog(line=line(SINCE, 0, NOW, 10)))
    assert "downloading on node cpu-0 since " in measured
    assert "25% of 40 GiB written (10.0 GiB at 89 MB/s" in measured  # 10 GiB in 120 s
    assert "an estimate" not in measured

    forbidden = downloading(SizeLog(unreadable="the operator may not read pod logs"))
    assert "at an assumed 100 MB/s" in forbidden
    assert "(an estimate: the cache's size could not be read: the operator may not" in forbidden
    silent = downloading(SizeLog(line="Downloading manifest profile: e28f17c9"))
    assert "(an estimate: its cache-size sidecar has reported no size yet)" in silent
    assert "e28f17c9" not in silent  # a line not the sidecar's never reaches the status


def test_the_progress_is_read_only_while_the_download_container_runs() -> None:
    assert measured_pod(CONTENT, job(), [running("nano-download-a", SINCE)]) == "nano-download-a"
    starting = pod("nano-download-a", {"waiting": {"reason": "ContainerCreating"}})
    for job_, pods in (
        (job(), []),
        (job(), [starting]),
        (job(), [exited("nano-download-a", "failed")]),
        (job(("Complete", "Completed")), [running("nano-download-a", SINCE)]),
        (job(("Failed", "BackoffLimitExceeded")), [running("nano-download-a", SINCE)]),
    ):
        assert measured_pod(CONTENT, job_, pods) is None
    assert measured_pod("another-image profile", job(), [running("a", SINCE)]) is None


# --- the converge: one log read per converge, a write per step ---------------------------------


def test_the_job_runs_a_sidecar_that_measures_the_cache_it_mounts_read_only() -> None:
    children = layout.rendered_with(
        layout.CACHES["read-write-many"],
        layout.exact(layout.planned(1)),
        ngc={"apiKeySecret": {"name": "ngc-api"}},
    )
    (job_,) = layout.of_kind(children, "Job")
    pod_spec = job_["spec"]["template"]["spec"]
    (sidecar,) = pod_spec["initContainers"]
    (download,) = pod_spec["containers"]
    assert sidecar["name"] == cache_size.CONTAINER
    assert sidecar["restartPolicy"] == "Always"  # stopped when the download ends
    assert sidecar["image"] == download["image"]  # pulled once for both
    assert sidecar["command"] == ["sh", "-c", cache_size.script("/opt/nim/.cache")]
    assert sidecar["volumeMounts"] == [
        {"name": "model-cache", "mountPath": "/opt/nim/.cache", "readOnly": True}
    ]
    assert "env" not in sidecar  # no key: it reads sizes, nothing else
    assert "nvidia.com/gpu" not in str(sidecar["resources"])


def test_a_converge_reads_the_sidecars_last_line_and_writes_only_whole_steps() -> None:
    snapshot = snapshot_with_download_pods([running("nano-download-a", SINCE)])
    cluster = layout.FakeCluster()
    converger = layout.converger(cluster)
    where = ("team-a", "nano-download-a", cache_size.CONTAINER)
    planned = converger.converge(snapshot, NOW)  # no log yet: the plan, with its download size
    first = next(s for what, s in cluster.writes if what == "status")
    gib = first["plan"]["downloadGiB"]
    writes, shown = [], []
    # 30.5%, 30.7% and 30.9% of the planned download (the same step: no write), then 40.5%
    for share, seconds in ((0.305, 100), (0.307, 130), (0.309, 160), (0.405, 190)):
        at = SINCE + dt.timedelta(seconds=seconds)
        cluster.logs[where] = SizeLog(line=line(SINCE, 0, at, share * gib))
        outcome = converger.converge(snapshot, NOW)
        assert outcome.requeue_after is not None
        assert outcome.requeue_after <= CACHE_PROGRESS_READ_SECONDS  # read again then
        statuses = [s for what, s in cluster.writes if what == "status"]
        (cache,) = [c for c in statuses[-1]["conditions"] if c["type"] == "CacheReady"]
        writes.append(len(statuses))
        shown.append(cache["message"])
    assert planned.requeue_after is not None
    assert cluster.log_reads == [(*where, cache_size.LINE_LIMIT_BYTES)] * 5
    assert writes == [2, 2, 2, 3]
    assert f"30% of {gib:g} GiB written" in shown[0]
    assert shown[1] == shown[2] == shown[0]
    assert f"40% of {gib:g} GiB written" in shown[3]


def test_no_log_is_read_when_no_download_runs() -> None:
    cluster = layout.FakeCluster()
    layout.converger(cluster).converge(
        Snapshot(
            layout.deployment("nano", gpu={"product": layout.L40S}),
            pools=gpu_pools([node("gpu-1", product=layout.L40S, memory_mib=46068)]),
        ),
        NOW,
    )
    assert cluster.log_reads == []


# --- the shell's read, against the client's real request -------------------------------------


def test_the_log_read_asks_for_one_line_of_the_sidecar_and_maps_refusals(
    connection: FakeConnection,  # noqa: F811
) -> None:
    connection.body = f"older line\n{line(SINCE, 0, NOW, 1)}\n".encode()
    found = kube.read_log_tail("team-a", "nano-download-a", cache_size.CONTAINER, 256)
    method, url = connection.requests[-1]
    assert method == "GET"
    assert url.startswith("http://api/api/v1/namespaces/team-a/pods/nano-download-a/log?")
    assert sorted(url.split("?")[1].split("&")) == [
        "container=cache-size",
        "limitBytes=256",
        "tailLines=1",
    ]
    assert found == SizeLog(line=line(SINCE, 0, NOW, 1))
    connection.status = 403
    assert "RBAC: get pods/log" in str(kube.read_log_tail("a", "b", "c", 256).unreadable)
    connection.status = 400
    assert kube.read_log_tail("a", "b", "c", 256) == SizeLog(
        unreadable="its log is not available (HTTP 400)"
    )
