"""The Helm chart ships the same CRD as crds/, and `nemotron-operator crd --write` keeps both."""

from __future__ import annotations

from pathlib import Path

import pytest

from nemotron_operator.api.crd import CHART_CRD_FILE, CRD_FILE, crd_yaml
from nemotron_operator.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_the_charts_crd_is_the_generated_one() -> None:
    """Fails when the chart's copy drifted: run `make crds`."""
    assert (REPO / CHART_CRD_FILE).read_text() == crd_yaml()
    assert (REPO / CHART_CRD_FILE).read_bytes() == (REPO / CRD_FILE).read_bytes()


def test_the_chart_carries_no_other_crd() -> None:
    assert sorted(p.name for p in (REPO / CHART_CRD_FILE).parent.iterdir()) == [CRD_FILE.name]


def test_crd_write_refreshes_both_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for relative in (CRD_FILE, CHART_CRD_FILE):
        (tmp_path / relative).parent.mkdir(parents=True)
        (tmp_path / relative).write_text("stale: true\n")
    monkeypatch.chdir(tmp_path)

    assert main(["crd", "--write"]) == 0

    assert (tmp_path / CRD_FILE).read_text() == crd_yaml()
    assert (tmp_path / CHART_CRD_FILE).read_text() == crd_yaml()
    out = capsys.readouterr().out
    assert str(tmp_path / CRD_FILE) in out and str(tmp_path / CHART_CRD_FILE) in out


def test_crd_write_outside_the_repository_says_where_to_run_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    assert main(["crd", "--write"]) == 2

    error = capsys.readouterr().err
    assert "run at the repository root" in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / CRD_FILE).exists()
