"""One Consul watch loop for every file the gateway renders, as consul-template runs its templates.

A blocking query wakes the loop on a change (or after `query_wait`); the watched file then renders,
compares, writes atomically, validates and reloads (its `apply`). Whatever was last good keeps
serving: a Consul outage backs off exponentially, and a render or a config nginx rejects is logged
once and retried on the next wake-up.
"""
from __future__ import annotations

import abc
import logging
import threading
import time
from typing import Generic, TypeVar

from fleetctl.cluster import consul_api
from fleetctl.errors import GatewayError

log = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_RETRY_S = 0.25


def duration(seconds: float) -> str:
    """A Consul `wait` parameter: whole milliseconds, at least one."""
    return f"{max(1, int(seconds * 1000))}ms"


class Watch(abc.ABC, Generic[T]):
    """What one file is rendered from, and how it is applied; the loop in `run_watch` drives it."""

    what: str = "file"  # in the logs: "kept the last good <what>"
    # Debounce (consul-template's wait): apply once the answer is quiet for min_wait, never later than
    # max_wait after the first change; 0 applies every change at once.
    min_wait: float = 0.0
    max_wait: float = 0.0

    @abc.abstractmethod
    def query(self, index: int | None, wait: float) -> tuple[int, T]:
        """A blocking query: returns on a change since `index`, else after `wait` s (at once without index)."""

    @abc.abstractmethod
    def apply(self, value: T) -> None:
        """Render, compare, write atomically, validate, reload; a GatewayError leaves the last good file."""

    def same(self, a: T, b: T) -> bool:
        """Whether two answers render the same file (a change that is none is not debounced)."""
        return a == b

    def consul_lost(self, exc: Exception) -> None:  # noqa: B027 - optional hook
        """Consul stopped answering (called once per outage)."""

    def consul_back(self) -> None:  # noqa: B027 - optional hook
        """Consul answers again after an outage."""


class _Loop(Generic[T]):
    """The state of one running watch: where the blocking query stands, what was applied, the backoff."""

    def __init__(self, watch: Watch[T], stop_event: threading.Event, query_wait: float, backoff_cap: float):
        self.watch = watch
        self.stop_event = stop_event
        self.query_wait = query_wait
        self.backoff_cap = backoff_cap
        self.index: int | None = None
        self.applied: T | None = None
        self.delay = FIRST_RETRY_S
        self.consul_down = False
        self.last_error = ""

    def next_value(self) -> T:
        """The next answer worth applying: after a change, once the burst has settled."""
        new_index, value = self.watch.query(self.index, self.query_wait)
        if self.index is not None and new_index < self.index:
            new_index = 0  # the agent restarted or its raft index went back: start over
        if self.applied is not None and self.watch.max_wait > 0 and not self.watch.same(value, self.applied):
            new_index, value = self.debounce(new_index, value)
        self.index = new_index or None
        return value

    def debounce(self, index: int, pending: T) -> tuple[int, T]:
        """Wait until the answer has been quiet for min_wait, but never past max_wait since the first change."""
        now = time.monotonic()
        quiet_until, hard_deadline = now + self.watch.min_wait, now + self.watch.max_wait
        while not self.stop_event.is_set():
            remaining = min(quiet_until, hard_deadline) - time.monotonic()
            if remaining <= 0:
                break
            new_index, value = self.watch.query(index, remaining)
            index = 0 if new_index < index else new_index
            if not self.watch.same(value, pending):
                pending = value
                quiet_until = time.monotonic() + self.watch.min_wait
        return index, pending

    def consul_failed(self, exc: Exception) -> None:
        """Keep the last good file and retry later, backing off up to backoff_cap."""
        if not self.consul_down:
            self.watch.consul_lost(exc)
        self.consul_down = True
        log.warning("consul unreachable (%s); keeping the last %s, retry in %.2fs", exc, self.watch.what, self.delay)
        self.index = None
        self.stop_event.wait(self.delay)
        self.delay = min(self.delay * 2, self.backoff_cap)

    def consul_answered(self) -> None:
        if self.consul_down:
            log.info("consul reachable again")
            self.consul_down = False
            self.watch.consul_back()
        self.delay = FIRST_RETRY_S

    def apply(self, value: T) -> None:
        """Apply one answer; a failure is logged once per distinct error, and retried on the next wake-up."""
        try:
            self.watch.apply(value)
        except GatewayError as exc:
            if str(exc) != self.last_error:
                log.error("kept the last good %s: %s", self.watch.what, exc)
            self.last_error = str(exc)
            return
        self.last_error = ""
        self.applied = value


def run_watch(watch: Watch[T], stop_event: threading.Event, guard: threading.Lock, *,
              query_wait: float = 5.0, backoff_cap: float = 5.0) -> None:
    """Keep `watch`'s file in step with Consul until `stop_event` is set.

    Every wake-up (a change, or `query_wait` with none) applies again, which also picks up an edited
    template or a deleted file. `guard` is held while files are written and nginx reloaded, so a
    stopping process can wait for exactly that.
    """
    loop = _Loop(watch, stop_event, query_wait, backoff_cap)
    while not stop_event.is_set():
        try:
            value = loop.next_value()
        except consul_api.CONSUL_ERRORS as exc:
            loop.consul_failed(exc)
            continue
        loop.consul_answered()
        with guard:
            if stop_event.is_set():
                break
            loop.apply(value)
