"""The diagnosis corpus (tests/data/diagnosis/*.yaml): real failure reports wrapped as the kubelet
reports them, and how often `diagnose` names the cause a person would.

One loader and one scorer, used by the unit test that keeps the figure from falling and by
`make diagnose-corpus`, which prints the report:

    python -m tests.diagnosis_corpus [--show-right]

The format and the labels are described in tests/data/diagnosis/README.md. `relabels.yaml`
overrides a miner's label where it was wrong, with the reason why (one line per case).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nemotron_operator.api.types import PlanStatus
from nemotron_operator.core.diagnose import DIAGNOSIS_REASONS, Diagnosis, diagnose

CORPUS = Path(__file__).resolve().parent / "data" / "diagnosis"
RELABELS = "relabels.yaml"
HEALTHY = "healthy"
"""How a case expecting no diagnosis (healthy, recovered or merely slow) is shown in the report."""
LABELS = frozenset(str(reason) for reason in DIAGNOSIS_REASONS)


class CorpusError(ValueError):
    """A corpus file that breaks the format: named with the file and the case."""


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    origin: str
    summary: str
    expected: str | None
    now: dt.datetime
    pod: Mapping[str, Any]
    events: Sequence[Mapping[str, Any]]
    plan: PlanStatus | None
    file: str
    relabelled: str = ""
    """Why `expected` differs from the label in `file` (from relabels.yaml), if it does."""

    def diagnose(self) -> Diagnosis | None:
        return diagnose(self.pod, self.events, self.plan, now=self.now)


def _as_api_json(value: Any) -> Any:
    """The value as the API server's JSON has it: YAML reads unquoted times as datetimes."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _as_api_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_api_json(v) for v in value]
    return value


def _moment(value: object, where: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    raise CorpusError(f"{where}: `now` must be an ISO 8601 time, not {value!r}")


PROPOSED = "Proposed:"
"""A miner's name for a cause no reason covers yet: a miss until it is a reason or relabelled."""


def _label(value: object, where: str) -> str | None:
    if value is None or value in LABELS:
        return value  # type: ignore[return-value]
    if isinstance(value, str) and value.startswith(PROPOSED) and value[len(PROPOSED) :].isalnum():
        return value
    raise CorpusError(
        f"{where}: `expected` must be null, {PROPOSED}<Name> or one of {sorted(LABELS)}, "
        f"not {value!r}"
    )


def _read(path: Path) -> Mapping[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(document, Mapping):
        raise CorpusError(f"{path.name}: not a mapping")
    return document


def _case(raw: object, file: str) -> Case:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
        raise CorpusError(f"{file}: every case needs an `id`: {str(raw)[:80]}")
    where = f"{file}: {raw['id']}"
    source = raw.get("source")
    if not isinstance(source, str) or not source.startswith(("https://", "http://")):
        raise CorpusError(f"{where}: `source` must be the URL of the public report")
    pod = raw.get("pod")
    if not isinstance(pod, Mapping):
        raise CorpusError(f"{where}: `pod` must be a Pod")
    events = raw.get("events") or []
    if not isinstance(events, list):
        raise CorpusError(f"{where}: `events` must be a list")
    plan = raw.get("plan")
    return Case(
        id=raw["id"],
        source=source,
        origin=str(raw.get("origin") or "unknown"),
        summary=str(raw.get("summary") or ""),
        expected=_label(raw.get("expected"), where),
        now=_moment(raw.get("now"), where),
        pod=_as_api_json(pod),
        events=_as_api_json(events),
        plan=PlanStatus.model_validate(_as_api_json(plan)) if isinstance(plan, Mapping) else None,
        file=file,
    )


def load_cases(directory: Path = CORPUS) -> list[Case]:
    """Every case of every corpus file, with relabels.yaml applied; ids are unique."""
    cases: list[Case] = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == RELABELS:
            continue
        raw_cases = _read(path).get("cases") or []
        if not isinstance(raw_cases, list):
            raise CorpusError(f"{path.name}: `cases` must be a list")
        cases += [_case(raw, path.name) for raw in raw_cases]
    seen = Counter(case.id for case in cases)
    twice = sorted(case_id for case_id, times in seen.items() if times > 1)
    if twice:
        raise CorpusError(f"case ids must be unique; repeated: {twice}")
    return _relabelled(cases, directory / RELABELS)


def _relabelled(cases: list[Case], path: Path) -> list[Case]:
    if not path.exists():
        return cases
    by_id = {case.id: case for case in cases}
    for entry in _read(path).get("relabels") or []:
        if not isinstance(entry, Mapping) or entry.get("id") not in by_id:
            raise CorpusError(f"{RELABELS}: no case with id {entry!r}")
        why = entry.get("why")
        if not isinstance(why, str) or not why.strip():
            raise CorpusError(f"{RELABELS}: {entry['id']}: say `why`")
        case = by_id[entry["id"]]
        expected = _label(entry.get("expected"), f"{RELABELS}: {case.id}")
        by_id[case.id] = Case(**{**case.__dict__, "expected": expected, "relabelled": why})
    return [by_id[case.id] for case in cases]


# ---------------------------------------------------------------------------------------------
# Scoring


def shown(label: str | None) -> str:
    return label or HEALTHY


@dataclass(frozen=True)
class Outcome:
    case: Case
    found: Diagnosis | None

    @property
    def predicted(self) -> str | None:
        return str(self.found.reason) if self.found else None

    @property
    def right(self) -> bool:
        return self.predicted == self.case.expected


@dataclass(frozen=True)
class ReasonScore:
    label: str
    expected: int
    predicted: int
    right: int

    @property
    def precision(self) -> float | None:
        return self.right / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.right / self.expected if self.expected else None


@dataclass(frozen=True)
class Report:
    outcomes: list[Outcome]
    per_reason: list[ReasonScore] = field(default_factory=list)

    @property
    def right(self) -> int:
        return sum(o.right for o in self.outcomes)

    @property
    def accuracy(self) -> float:
        return self.right / len(self.outcomes) if self.outcomes else 0.0

    @property
    def misses(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.right]

    @property
    def healthy_called_failing(self) -> list[Outcome]:
        """Healthy, recovered or slow pods the classifier reports as failing: the worst miss."""
        return [o for o in self.outcomes if o.case.expected is None and o.predicted is not None]

    @property
    def confusions(self) -> list[tuple[tuple[str, str], int]]:
        """(expected, predicted) pairs of the misses, most frequent first."""
        pairs = Counter((shown(o.case.expected), shown(o.predicted)) for o in self.misses)
        return sorted(pairs.items(), key=lambda item: (-item[1], item[0]))


def score(cases: Sequence[Case]) -> Report:
    outcomes = [Outcome(case, case.diagnose()) for case in cases]
    labels = [shown(o.case.expected) for o in outcomes] + [shown(o.predicted) for o in outcomes]
    order = [str(r) for r in DIAGNOSIS_REASONS] + [HEALTHY]
    per_reason = [
        ReasonScore(
            label,
            expected=sum(shown(o.case.expected) == label for o in outcomes),
            predicted=sum(shown(o.predicted) == label for o in outcomes),
            right=sum(o.right and shown(o.predicted) == label for o in outcomes),
        )
        for label in order
        if label in labels
    ]
    return Report(outcomes, per_reason)


# ---------------------------------------------------------------------------------------------
# The printed report


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def format_report(report: Report, show_right: bool = False) -> str:
    cases = [o.case for o in report.outcomes]
    lines = [f"Diagnosis corpus: {len(cases)} cases"]
    for title, key in (("by file", "file"), ("by origin", "origin")):
        counts = Counter(getattr(case, key) for case in cases)
        lines.append(f"  {title}: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
    relabelled = sum(bool(case.relabelled) for case in cases)
    lines.append(f"  relabelled (relabels.yaml): {relabelled}")
    header = f"{'reason':<26}{'cases':>6}{'called':>8}{'right':>7}{'precision':>11}{'recall':>8}"
    lines += ["", header]
    for row in report.per_reason:
        lines.append(
            f"{row.label:<26}{row.expected:>6}{row.predicted:>8}{row.right:>7}"
            f"{_percent(row.precision):>11}{_percent(row.recall):>8}"
        )
    lines += [
        "",
        f"Overall: {report.right}/{len(cases)} right ({100 * report.accuracy:.1f}%)",
        f"Healthy, recovered or slow pods called failing: {len(report.healthy_called_failing)}",
    ]
    if report.confusions:
        lines += ["", "Confused (expected -> called: cases):"]
        lines += [f"  {want} -> {got}: {n}" for (want, got), n in report.confusions]
    shown_outcomes = report.outcomes if show_right else report.misses
    if shown_outcomes:
        lines += ["", "Cases:" if show_right else "Misses:"]
    for outcome in shown_outcomes:
        case, found = outcome.case, outcome.found
        mark = "right" if outcome.right else "MISS"
        lines.append(
            f"  [{mark}] {case.id} ({case.file}, {case.origin}): expected "
            f"{shown(case.expected)}, called {shown(outcome.predicted)}"
        )
        lines.append(f"      source: {case.source}")
        if found:
            lines.append(f"      message: {found.message}")
        if case.relabelled:
            lines.append(f"      relabelled: {case.relabelled}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show-right", action="store_true", help="list every case, not misses")
    args = parser.parse_args(argv)
    print(format_report(score(load_cases()), show_right=args.show_right))
    return 0


if __name__ == "__main__":
    sys.exit(main())
