"""The reconciler shell's own logic: settings from the environment, the startup allowance, and
the status it compares against while the watch lags behind its writes."""

from __future__ import annotations

import pytest

from nemotron_operator import reconcile, render


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(reconcile.STARTUP_ALLOWANCE_ENV, raising=False)
    monkeypatch.delenv("NEMOTRON_LIVE_CATALOG", raising=False)
    monkeypatch.setattr(reconcile, "_settings", None)
    return monkeypatch


def test_the_startup_allowance_is_the_startup_probes_by_default(
    fresh_settings: pytest.MonkeyPatch,
) -> None:
    small = {"downloadSizeGB": 60}
    huge = {"downloadSizeGB": 1100}  # 2 x 1100 GB at 100 MB/s: longer than 20 minutes
    assert reconcile.startup_allowance(small) == 1200
    assert reconcile.startup_allowance(huge) == render.startup_allowance_seconds(huge) > 1200
    assert reconcile.startup_allowance(None) == 1200


def test_the_startup_allowance_setting_overrides_the_probe(
    fresh_settings: pytest.MonkeyPatch,
) -> None:
    fresh_settings.setenv(reconcile.STARTUP_ALLOWANCE_ENV, "45")
    assert reconcile.startup_allowance({"downloadSizeGB": 1100}) == 45


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5"])
def test_a_bad_startup_allowance_setting_stops_the_operator_with_its_name(
    fresh_settings: pytest.MonkeyPatch, value: str
) -> None:
    fresh_settings.setenv(reconcile.STARTUP_ALLOWANCE_ENV, value)
    with pytest.raises(ValueError, match=reconcile.STARTUP_ALLOWANCE_ENV):
        reconcile.Settings.from_environment()


def test_the_live_catalog_is_off_unless_enabled(fresh_settings: pytest.MonkeyPatch) -> None:
    assert reconcile.Settings.from_environment().published_profiles is None
    fresh_settings.setenv("NEMOTRON_LIVE_CATALOG", "1")
    assert reconcile.Settings.from_environment().published_profiles is not None


# --- the status a converge compares against, while the watch lags behind our own writes ------


def body(rv: str, status: dict | None, uid: str = "u1") -> dict:
    meta = {"namespace": "ns", "name": "nano", "uid": uid, "resourceVersion": rv}
    return {"metadata": meta, "status": status}


def ready(reason: str) -> dict:
    return {"conditions": [{"type": "Ready", "status": "False", "reason": reason}]}


@pytest.fixture
def no_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "_written", {})


def test_until_the_watch_brings_our_write_back_it_is_the_current_status(no_writes: None) -> None:
    before = body("10", ready("Starting"))
    reconcile._remember_write(before, ready("CrashLoop"))
    assert reconcile._current_status(before) == ready("CrashLoop")
    reconcile._remember_write(before, ready("HostMemoryExhausted"))
    # the echo of the first write arrives: still behind the second
    assert reconcile._current_status(body("11", ready("CrashLoop"))) == ready("HostMemoryExhausted")
    # the echo of the second: the index has caught up, and is trusted from then on
    caught_up = body("12", ready("HostMemoryExhausted"))
    assert reconcile._current_status(caught_up) == ready("HostMemoryExhausted")
    assert reconcile._written == {}


def test_a_change_by_someone_else_after_our_write_is_trusted(no_writes: None) -> None:
    reconcile._remember_write(body("10", ready("Starting")), ready("CrashLoop"))
    wiped = body("13", None)
    assert reconcile._current_status(wiped) == {}


def test_a_recreated_object_starts_afresh(no_writes: None) -> None:
    reconcile._remember_write(body("10", ready("Starting")), ready("CrashLoop"))
    assert reconcile._current_status(body("10", None, uid="u2")) == {}
