"""The controller's work queue: each key once, one worker per key, exact later moments, backoff."""

from __future__ import annotations

import threading
import time

from nemotron_operator.shell.workqueue import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_added_many_times_before_a_worker_takes_it_is_worked_on_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a", "b"):
        queue.add(key)
    assert [queue.get(timeout=0), queue.get(timeout=0), queue.get(timeout=0)] == ["a", "b", None]


def test_a_key_added_while_in_progress_comes_back_only_when_its_worker_is_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")  # a change while the first converge runs
    assert queue.get(timeout=0) is None  # not to a second worker at the same time
    queue.done("a")
    assert queue.get(timeout=0) == "a"  # the change is not lost


def test_two_workers_never_hold_the_same_key() -> None:
    queue: WorkQueue[int] = WorkQueue()
    holding: set[int] = set()
    overlaps: list[int] = []
    guard = threading.Lock()

    def work() -> None:
        while (key := queue.get(timeout=0.5)) is not None:
            with guard:
                if key in holding:
                    overlaps.append(key)
                holding.add(key)
            time.sleep(0.001)
            with guard:
                holding.discard(key)
            queue.done(key)

    workers = [threading.Thread(target=work) for _ in range(4)]
    for worker in workers:
        worker.start()
    for round_ in range(200):
        queue.add(round_ % 3)
    for worker in workers:
        worker.join()
    assert overlaps == []


def test_add_after_hands_the_key_out_at_that_moment_and_the_earliest_wins() -> None:
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 60)
    queue.add_after("a", 30)  # sooner: wins
    queue.add_after("a", 90)  # later: ignored
    assert queue.get(timeout=0) is None
    clock.now += 29.9
    assert queue.get(timeout=0) is None
    clock.now += 0.1
    assert queue.get(timeout=0) == "a"
    queue.done("a")
    clock.now += 60
    assert queue.get(timeout=0) is None  # the later times were not kept
    assert len(queue) == 0


def test_add_now_overrides_a_later_moment() -> None:
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 600)
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.done("a")
    clock.now += 600
    assert queue.get(timeout=0) is None


def test_a_blocked_get_wakes_when_a_key_falls_due() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0.05)
    started = time.monotonic()
    assert queue.get(timeout=5) == "a"
    assert time.monotonic() - started < 4


def test_failures_back_off_exponentially_up_to_a_cap_and_success_resets() -> None:
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(base_backoff=0.5, max_backoff=30, clock=clock)
    waits = []
    for _ in range(9):
        queue.add_rate_limited("a")
        start = clock.now
        while queue.get(timeout=0) is None:
            clock.now += 0.25
        queue.done("a")
        waits.append(clock.now - start)
    assert waits == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    queue.forget("a")
    assert queue.backoff(queue.failures("a") + 1) == 0.5


def test_shut_down_releases_waiting_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    queue.shut_down()
    worker.join(timeout=5)
    assert got == [None]
