"""How far a download into the shared cache is, measured on the volume. Pure.

The download Job's pod runs a sidecar beside `download-to-cache` (an init container with
`restartPolicy: Always`, Kubernetes 1.29 or later: it starts first and is stopped when the
download ends, so the Job completes as before). It runs the NIM image's own shell with the cache
mounted read-only and prints, every REPORT_SECONDS, one line of a format of the operator's own
(NIM's log format is not relied on):

    nemotron-cache-size v1 since=<s> sinceKiB=<KiB> at=<s> KiB=<KiB>

`since`/`sinceKiB`: when the sidecar started (Unix seconds) and the cache's size then; `at`/
`KiB`: the time and the size of this report. Sizes are `du -sk` of the cache directory: KiB
allocated on disk. What this attempt has downloaded is the growth (an older version's files may
be in the cache already), and its rate is the growth over the time between the two readings the
line carries, so one line is all the operator needs: it reads only the last one
(`kubectl logs POD -c cache-size --tail=1`) and keeps nothing between reads.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from nemotron_operator.core.conditions import timestamp

CONTAINER = "cache-size"
REPORT_SECONDS = 10
# The operator reads at most this much of the sidecar's log: one line is under 100 bytes.
LINE_LIMIT_BYTES = 256
GIB = 2**30

_LINE = re.compile(
    r"nemotron-cache-size v1 since=(\d+) sinceKiB=(\d+) at=(\d+) KiB=(\d+)",
)


def script(cache_path: str) -> str:
    """The sidecar's shell script (POSIX sh; `du`, `date` and `sleep` of the NIM image). TERM
    ends it at once (a shell as PID 1 would otherwise ignore it until the kubelet's grace
    period runs out, holding the Job's completion back by 30 s); `du` complains to stderr about
    files that vanish while it counts, which would mix into the log: silenced."""
    return (
        "trap 'exit 0' TERM\n"
        'size() { set -- $(du -sk "$1" 2>/dev/null); echo "${1:-0}"; }\n'
        f'since=$(date +%s); since_kib=$(size "{cache_path}")\n'
        "while true; do\n"
        '  echo "nemotron-cache-size v1 since=$since sinceKiB=$since_kib'
        f' at=$(date +%s) KiB=$(size "{cache_path}")"\n'
        f"  sleep {REPORT_SECONDS} & wait $!\n"
        "done\n"
    )


@dataclass(frozen=True)
class SizeReport:
    """One line of the sidecar: the cache's size when it started and now."""

    since: dt.datetime
    since_bytes: int
    at: dt.datetime
    bytes: int

    @property
    def written(self) -> int:
        """Bytes the cache grew by since the sidecar started (never below 0: a file replaced
        by a smaller one)."""
        return max(self.bytes - self.since_bytes, 0)

    @property
    def bytes_per_second(self) -> float | None:
        """The growth rate between the two readings (None: one reading so far)."""
        seconds = (self.at - self.since).total_seconds()
        return self.written / seconds if seconds > 0 else None


@dataclass(frozen=True)
class SizeLog:
    """What the operator read of the sidecar's log: its last line, or why it could not read it
    (a few words of its own: never the log's text)."""

    line: str | None = None
    unreadable: str | None = None


def parse(line: str) -> SizeReport | None:
    """The report in a line of the sidecar's log (None: not one of its lines)."""
    found = _LINE.fullmatch(line.strip())
    if found is None:
        return None
    since, since_kib, at, kib = (int(group) for group in found.groups())
    return SizeReport(_moment(since), since_kib * 1024, _moment(at), kib * 1024)


def _moment(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


STEP_END = " written"  # what ends the part of the text that changes only in whole steps


def measured_progress(report: SizeReport, expected_gib: float | None) -> str:
    """How far the download is by `report`, of the `expected_gib` the plan downloads: the whole
    percent (whole GiB when no size is expected) first, ending with STEP_END, then the bytes,
    the rate and the end time those imply. The part up to STEP_END changes only in whole steps;
    `steady` keeps a shown text while it is the same."""
    written_gib = report.written / GIB
    rate = report.bytes_per_second
    if not expected_gib:
        step = f"{math.floor(written_gib)} GiB{STEP_END}"
        pace = f"at {_mb_per_second(rate)}" if rate is not None else "the rate comes next"
        return f"{step} ({pace}; the plan has no download size: no end time)"
    expected = expected_gib * GIB
    percent = min(math.floor(100 * report.written / expected), 100)
    step = f"{percent}% of {expected_gib:g} GiB{STEP_END}"
    if report.written >= expected:
        return f"{step} ({written_gib:.1f} GiB, the plan expected {expected_gib:g}: finishing)"
    if rate is None:
        return f"{step} ({written_gib:.1f} GiB; the rate comes with the next report)"
    if rate <= 0:
        return f"{step} ({written_gib:.1f} GiB; nothing written since {timestamp(report.since)})"
    done = report.at + dt.timedelta(seconds=(expected - report.written) / rate)
    return (
        f"{step} ({written_gib:.1f} GiB at {_mb_per_second(rate)}, done about "
        f"{timestamp(done)}; measured on the cache volume)"
    )


def _mb_per_second(rate: float | None) -> str:
    mb = (rate or 0.0) / 1e6
    return f"{mb:.0f} MB/s" if mb >= 10 else f"{mb:.1f} MB/s"


def steady(shown: str | None, new: str) -> str:
    """`shown` (the message the status has) while it says the same up to STEP_END as `new`, so
    that a running download is written to the status only when it moves a whole step (a
    percent, or a GiB), not at every reading."""
    if shown is None or STEP_END not in new:
        return new
    head = new[: new.index(STEP_END)]
    return shown if shown.startswith(head + STEP_END) else new
