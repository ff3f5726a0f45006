"""A keyed work queue, as client-go's `workqueue` and controller-runtime have it.

- A key waits in the queue at most once, however often it is added before a worker takes it.
- A key is never worked on by two workers at once: added while in progress, it is queued again
  when its worker is done (`done`), so the change that came in meanwhile is not lost.
- `add_after` queues a key at an exact later moment (a startup allowance running out, a
  credentials check due again); an earlier `add` or `add_after` of the same key wins.
- `add_rate_limited` queues a key that failed after a capped exponential backoff that grows
  with its failures in a row; `forget` ends the row when it succeeds.

Thread-safe; `get` blocks until a key is due or the queue shuts down (None).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from nemotron_operator.shell import metrics

K = TypeVar("K", bound=Hashable)

BASE_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0


class WorkQueue(Generic[K]):
    def __init__(
        self,
        base_backoff: float = BASE_BACKOFF_SECONDS,
        max_backoff: float = MAX_BACKOFF_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base_backoff = base_backoff
        self._max_backoff = max_backoff
        self._clock = clock
        self._changed = threading.Condition()
        self._ready: deque[K] = deque()
        self._queued: set[K] = set()  # in _ready, or due to be put there by a worker's `done`
        self._processing: set[K] = set()
        self._waiting: list[tuple[float, int, K]] = []  # heap of (due, tie-breaker, key)
        self._due: dict[K, float] = {}  # the earliest due time of each waiting key
        self._order = itertools.count()
        self._failures: dict[K, int] = {}
        self._shut_down = False

    # --- adding ---------------------------------------------------------------------------

    def add(self, key: K) -> None:
        with self._changed:
            if self._shut_down or key in self._queued:
                return
            self._queued.add(key)
            self._due.pop(key, None)  # due now: an entry still in the heap is skipped
            if key not in self._processing:
                self._ready.append(key)
                self._changed.notify()

    def add_after(self, key: K, seconds: float) -> None:
        if seconds <= 0:
            self.add(key)
            return
        with self._changed:
            if self._shut_down or key in self._queued:
                return
            due = self._clock() + seconds
            if self._due.get(key, due + 1) <= due:
                return  # already due sooner
            self._due[key] = due
            heapq.heappush(self._waiting, (due, next(self._order), key))
            self._changed.notify()

    def add_rate_limited(self, key: K) -> None:
        with self._changed:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
        metrics.workqueue_retried()
        self.add_after(key, self.backoff(failures))

    def backoff(self, failures: int) -> float:
        """Seconds before the next try after `failures` failures in a row."""
        return min(self._base_backoff * 2 ** (failures - 1), self._max_backoff)

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts a new backoff."""
        with self._changed:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        with self._changed:
            return self._failures.get(key, 0)

    def discard(self, key: K) -> None:
        """Drop what is known of a key that no longer exists (its pending retries, its row of
        failures). A key already in the queue is still handed out once."""
        with self._changed:
            self._failures.pop(key, None)
            self._due.pop(key, None)

    # --- working --------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> K | None:
        """The next key due, marked as in progress (call `done` after), or None when the queue
        shuts down or `timeout` passes."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._changed:
            while True:
                self._release_due()
                if self._ready:
                    key = self._ready.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                if self._shut_down:
                    return None
                now = self._clock()
                if deadline is not None and now >= deadline:
                    return None
                wait = None if deadline is None else deadline - now
                if self._waiting:
                    until_due = self._waiting[0][0] - now
                    wait = until_due if wait is None else min(wait, until_due)
                self._changed.wait(None if wait is None else max(wait, 0.0))

    def done(self, key: K) -> None:
        with self._changed:
            self._processing.discard(key)
            if key in self._queued:  # added again while it was worked on
                self._ready.append(key)
                self._changed.notify()

    def shut_down(self) -> None:
        with self._changed:
            self._shut_down = True
            self._changed.notify_all()

    def __len__(self) -> int:
        """Keys due now, and keys waiting for a later moment."""
        with self._changed:
            return len(self._ready) + len(self._due)

    def _release_due(self) -> None:
        now = self._clock()
        while self._waiting and self._waiting[0][0] <= now:
            due, _, key = heapq.heappop(self._waiting)
            if self._due.get(key) != due:
                continue  # replaced by an earlier time, added at once, or discarded
            del self._due[key]
            if key not in self._queued:
                self._queued.add(key)
                if key not in self._processing:
                    self._ready.append(key)
