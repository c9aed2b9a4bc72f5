"""Process plumbing for the bench: signals that unwind, free ports, waiting for servers and for idleness.

Everything the bench starts is undone by try/finally blocks; SIGTERM and SIGHUP are turned into the
same exception as Ctrl-C so those blocks also run when the bench is killed politely.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from types import FrameType

import psutil

from fleetctl import procs as fleet_procs
from fleetctl.procs import free_port as free_port  # re-exported: one definition for CLI, bench and tests


class Interrupted(KeyboardInterrupt):
    """SIGTERM/SIGHUP, delivered like Ctrl-C so every finally block runs."""


class WaitTimeout(RuntimeError):
    """A server did not become ready, or did not go idle, in time."""


@contextlib.contextmanager
def signals_unwind() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into Interrupted; a second signal during cleanup is ignored."""
    fired: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if fired:
            return  # already unwinding: let the cleanup finish
        fired.append(signum)
        raise Interrupted(f"signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Ignore Ctrl-C while cleaning up, so a second Ctrl-C cannot leave servers behind."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def start_group(cmd: Sequence[str], log_path: os.PathLike[str] | str,
                env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a server in its own process group so stop_group reaches its workers too."""
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed in stop_group's caller
    try:
        return subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    finally:
        log.close()


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the whole group, then SIGKILL what is left after the grace period (fleetctl's killer)."""
    fleet_procs.kill_group(proc.pid, grace_s)
    proc.wait(timeout=10)  # already collected by kill_group: this only settles the Popen object


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until the URL answers 2xx; fail early if the server process died."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise WaitTimeout(f"the server exited with code {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
                last = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise WaitTimeout(f"{url} did not answer within {timeout_s:.0f}s ({last})")


def listening_pids(ports: Sequence[int]) -> list[int]:
    """The server processes behind these ports: the listener's whole process group, plus children.

    A listening socket shared by a master and its workers is reported under one pid only, so the
    listener's process group (each instance and the peer run in their own) is what finds them all.
    """
    wanted = set(ports)
    owners: set[int] = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in wanted and conn.pid:
            owners.add(conn.pid)
    groups: set[int] = set()
    for pid in owners:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(pid))
    groups.discard(os.getpgid(0))  # never count the bench's own group as a server
    pids = set(owners)
    if groups:
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(OSError, psutil.Error):
                if os.getpgid(proc.pid) in groups:
                    pids.add(proc.pid)
    for pid in list(pids):
        with contextlib.suppress(psutil.Error):
            pids.update(child.pid for child in psutil.Process(pid).children(recursive=True))
    return sorted(pids)


def tree_rss_mb(pids: Sequence[int]) -> float:
    """Resident memory of these processes, in MiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total / (1024 * 1024)


def wait_idle(pids: Sequence[int], timeout_s: float = 180.0, busy_core_share: float = 0.15) -> float:
    """Wait until the servers stop burning CPU (work abandoned by a time-limited ab run).

    Returns the seconds waited. Idle means below `busy_core_share` of one core for two samples in a row,
    so a run never starts while the previous one's leftovers still hold a core.
    """
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            proc.cpu_percent(None)
            procs.append(proc)
    if not procs:
        return 0.0
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < timeout_s:
        time.sleep(0.5)
        busy = 0.0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                busy += proc.cpu_percent(None)
        quiet = quiet + 1 if busy < busy_core_share * 100 else 0
        if quiet >= 2:
            return time.monotonic() - started
    raise WaitTimeout(f"servers still busy after {timeout_s:.0f}s")


class CpuMeter:
    """Where the CPU went during one run: the load generator, each server group, and everything else.

    On a shared 2-core machine this separates "the fleet is slow" from "ab or a neighbour took the
    cores"; figures are CPU-seconds per wall-second (cores busy), measured over the run.
    """

    def __init__(self, groups: dict[str, Sequence[int]]) -> None:
        self._groups: dict[str, list[psutil.Process]] = {}
        for name, pids in groups.items():
            procs = []
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    procs.append(psutil.Process(pid))
            self._groups[name] = procs
        self._start_wall = 0.0
        self._start_busy = 0.0
        self._start: dict[str, float] = {}
        self._start_children = 0.0
        self.result: dict[str, float] = {}

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    @staticmethod
    def _cpu(procs: Sequence[psutil.Process]) -> float:
        total = 0.0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total

    @staticmethod
    def _children() -> float:
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def __enter__(self) -> CpuMeter:
        self._start_wall = time.monotonic()
        self._start_busy = self._busy()
        self._start = {name: self._cpu(procs) for name, procs in self._groups.items()}
        self._start_children = self._children()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(1e-9, time.monotonic() - self._start_wall)
        busy = self._busy() - self._start_busy
        used = {name: self._cpu(procs) - self._start[name] for name, procs in self._groups.items()}
        client = self._children() - self._start_children  # ab, reaped by the time we get here
        result = {"wall_s": round(wall, 3), "machine_busy_cores": round(busy / wall, 3),
                  "client_cores": round(client / wall, 3)}
        for name, cpu in used.items():
            result[f"{name}_cores"] = round(cpu / wall, 3)
        result["other_cores"] = round(max(0.0, busy - client - sum(used.values())) / wall, 3)
        self.result = result
