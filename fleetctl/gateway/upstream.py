"""Consul watch -> render -> compare -> write -> validate -> reload: consul-template's loop for nginx.

The loop keeps serving whatever was last good: a Consul outage, a broken template or a
config nginx rejects all leave the previous upstream.conf (and nginx) untouched.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import consul

from fleetctl import procs
from fleetctl.cluster import agent as cluster
from fleetctl.cluster import consul_api
from fleetctl.config import FleetConfig
from fleetctl.errors import GatewayError
from fleetctl.gateway import access
from fleetctl.gateway import nginx as gateway
from fleetctl.gateway.nginx import NginxReloader, Reloader
from fleetctl.gateway.watch import Watch, duration, run_watch

log = logging.getLogger(__name__)

# max_fails=0: a burst of queue-full 503s must not lock instances out (docs/benchmarks.md);
# dead instances leave through their failing Consul check instead.
SERVER_PARAMS = "max_fails=0"
# Never dialled: the gateway answers 503 itself while $ocr_backends is 0. It only keeps the
# block valid, because nginx refuses an upstream with no server in it.
PLACEHOLDER_SERVER = "server 127.0.0.1:9 down;  # placeholder: no passing instance"

_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$")


@dataclass(frozen=True, order=True)
class Member:
    """One passing instance as nginx dials it."""

    id: str
    host: str
    port: int
    namespace: str = ""  # the instance's cache namespace (Consul meta cache_ns): models and pipeline

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _member(entry: dict[str, Any]) -> Member | None:
    """A Consul health entry -> Member; None for an address nginx could not take safely."""
    service = entry.get("Service") or {}
    host = service.get("Address") or (entry.get("Node") or {}).get("Address") or ""
    port = service.get("Port") or 0
    sid = re.sub(r"[^\w.:\-@]", "_", str(service.get("ID") or ""))
    if not _HOST.match(host) or not 0 < int(port) < 65536:
        log.warning("ignoring instance %s with unusable address %r:%r", sid, host, port)
        return None
    meta = service.get("Meta") or {}
    namespace = str(meta.get("cache_ns") or "")
    namespace = namespace if re.fullmatch(r"[\w.:\-]{1,200}", namespace) else ""
    return Member(id=sid, host=host, port=int(port), namespace=namespace)


def passing_members(
    consul_client: consul.Consul, service: str, index: int | None, wait: str,
    down_nodes: Callable[[], set[str]] | None = None,
) -> tuple[int, list[Member]]:
    """A blocking query for the passing instances of `service` (returns at once when index is None).

    `down_nodes` names nodes gossip already knows are dead (several hosts: fleetctl/cluster/agent.py);
    their instances are left out before the catalog, which waits for a raft leader, says so.
    """
    # With down_nodes (several hosts) reads are stale: answered by any server, even mid-election.
    new_index, entries = consul_api.passing_entries(consul_client, service, index, wait,
                                                    stale=down_nodes is not None)
    down = down_nodes() if down_nodes is not None and entries else set()
    live = [e for e in entries or [] if (e.get("Node") or {}).get("Node") not in down]
    members = [b for b in (_member(e) for e in live) if b is not None]
    return int(new_index or 0), members


def _unique_sorted(members: list[Member]) -> list[Member]:
    """One line per address, in a stable order, so equal sets always render byte-identically."""
    by_addr: dict[str, Member] = {}
    for b in sorted(members, key=lambda b: (b.host, b.port, b.id)):
        by_addr.setdefault(b.address, b)
    return list(by_addr.values())


def render_upstream(members: list[Member], cfg: FleetConfig) -> str:
    """upstream.conf for these members: sorted and deterministic; a placeholder when empty."""
    unique = _unique_sorted(members)
    lines = [f"server {b.address} {SERVER_PARAMS};  # {b.id}" for b in unique] or [PLACEHOLDER_SERVER]
    return gateway.fill(
        gateway.template_text(cfg, "upstream.conf.tmpl"),
        {"servers": "\n".join(lines), "backend_count": len(unique), "cache_ns": fleet_namespace(unique)},
    )


def fleet_namespace(members: list[Member]) -> str:
    """The one cache namespace every instance announces; "" (the gateway's cache stands aside) while
    they differ, e.g. during a rolling model change, or when one announces none."""
    found = {b.namespace for b in members}
    return found.pop() if len(found) == 1 else ""


def upstream_members(cfg: FleetConfig) -> set[str]:
    """'host:port' of every server nginx serves now: the loop records them only once the reload that
    carries them has switched nginx's workers, so a caller never sees a member nginx may not route to
    yet (the file on disk leads the reload by a few ms, more on a loaded machine)."""
    return set(read_state(cfg).get("backends") or [])


# --- state file ------------------------------------------------------------------------------

def read_state(cfg: FleetConfig) -> dict[str, Any]:
    """The loop's record (reloads, last_reload, last_error, backends: the served addresses, ...); {} if none yet."""
    return procs.read_json(gateway.state_path(cfg))


def reload_count(cfg: FleetConfig) -> int:
    """How many times the sync loop has reloaded nginx (counted across loop restarts)."""
    return int(read_state(cfg).get("reloads", 0))


def _update_state(cfg: FleetConfig, **changes: Any) -> None:
    state = read_state(cfg)
    state.update(changes)
    procs.write_json(gateway.state_path(cfg), state)


# --- render, compare, write, validate, reload -------------------------------------------------

def apply_members(cfg: FleetConfig, members: list[Member], reloader: Reloader) -> bool:
    """Make nginx serve `members`; True if the file changed. Restores the last good file on failure."""
    try:
        changed = gateway.install_if_changed(gateway.upstream_conf_path(cfg), render_upstream(members, cfg), reloader)
    except GatewayError as exc:
        _update_state(cfg, last_error=str(exc), last_error_at=time.time())
        raise
    if not changed:
        return False
    addresses = sorted(b.address for b in _unique_sorted(members))
    if reloader.reload():
        state = read_state(cfg)
        reloads = int(state.get("reloads", 0)) + 1
        _update_state(cfg, reloads=reloads, last_reload=time.time(), backends=addresses, last_error=None)
        log.info("nginx reload #%d: %d backend(s) %s", reloads, len(addresses), " ".join(addresses) or "-")
    else:
        _update_state(cfg, backends=addresses, last_error=None)
        log.info("upstream.conf written (%d backend(s)); nginx not running, no reload", len(addresses))
    return True


def sync_once(cfg: FleetConfig, consul_client: consul.Consul, reloader: Reloader) -> bool:
    """One non-blocking pass of the loop; returns whether upstream.conf changed."""
    _, members = passing_members(consul_client, cfg.service_name, None, "")
    return apply_members(cfg, members, reloader)


class UpstreamWatch(Watch[list[Member]]):
    """The service's passing instances -> upstream.conf: debounced, and recorded in the state file."""

    what = "upstream"

    def __init__(self, cfg: FleetConfig, consul_client: consul.Consul, reloader: Reloader, *,
                 min_wait: float = 0.2, max_wait: float = 1.0,
                 down_nodes: Callable[[], set[str]] | None = None) -> None:
        self.cfg = cfg
        self.consul_client = consul_client
        self.reloader = reloader
        self.min_wait, self.max_wait = min_wait, max_wait
        self.down_nodes = down_nodes
        self.synced = False

    def query(self, index: int | None, wait: float) -> tuple[int, list[Member]]:
        return passing_members(self.consul_client, self.cfg.service_name, index, duration(wait), self.down_nodes)

    def same(self, a: list[Member], b: list[Member]) -> bool:
        return _unique_sorted(a) == _unique_sorted(b)

    def apply(self, value: list[Member]) -> None:
        apply_members(self.cfg, value, self.reloader)
        if not self.synced:
            # ensure_services waits for this: the loop is up and the file reflects Consul.
            _update_state(self.cfg, pid=os.getpid(), synced_at=time.time(), consul_ok=True)
            self.synced = True

    def consul_lost(self, exc: Exception) -> None:
        _update_state(self.cfg, consul_ok=False, last_error=f"consul: {exc}", last_error_at=time.time())

    def consul_back(self) -> None:
        _update_state(self.cfg, consul_ok=True)


def run_sync_loop(
    cfg: FleetConfig,
    consul_client: consul.Consul,
    stop_event: threading.Event,
    *,
    min_wait: float = 0.2,
    max_wait: float = 1.0,
    reloader: Reloader | None = None,
    query_wait: float = 5.0,
    backoff_cap: float = 5.0,
    guard: threading.Lock | None = None,
    down_nodes: Callable[[], set[str]] | None = None,
) -> None:
    """Watch Consul until `stop_event` is set, keeping upstream.conf and nginx in step (watch.run_watch)."""
    watch = UpstreamWatch(cfg, consul_client, reloader or NginxReloader(cfg), min_wait=min_wait,
                          max_wait=max_wait, down_nodes=down_nodes)
    run_watch(watch, stop_event, guard or threading.Lock(), query_wait=query_wait, backoff_cap=backoff_cap)


def run_sync_daemon(cfg: FleetConfig, *, min_wait: float = 0.2, max_wait: float = 1.0) -> int:
    """Entry point for `fleetctl sync`: run the loop until SIGTERM/SIGINT; returns an exit code.

    The loop runs in a thread so a signal stops the process at once instead of after the
    current blocking query; only a render in progress is waited for.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    guard = threading.Lock()
    failure: list[BaseException] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping the sync loop", signum)
        stop.set()

    def target() -> None:
        try:
            if cfg.clustered:
                # Gossip, not the catalog, says first that a host died; look every second.
                client = consul_api.client_for(cfg)
                # An election fails queries for a second or two: retry often, not after 5 s.
                run_sync_loop(cfg, client, stop, min_wait=min_wait, max_wait=max_wait, guard=guard,
                              query_wait=1.0, backoff_cap=0.5, down_nodes=lambda: cluster.down_nodes(client))
            else:
                run_sync_loop(
                    cfg, consul_api.client_for(cfg), stop, min_wait=min_wait, max_wait=max_wait, guard=guard
                )
        except BaseException as exc:  # noqa: BLE001 - reported below, not swallowed
            failure.append(exc)
            log.exception("sync loop crashed")
            stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=target, name="fleet-sync", daemon=True)
    thread.start()
    if cfg.auth:
        keys_thread = threading.Thread(
            target=access.run_keys_loop, name="fleet-keys", daemon=True,
            args=(cfg, consul_api.client_for(cfg), stop, guard, NginxReloader(cfg)),
        )
        keys_thread.start()
    log.info(
        "sync loop started (pid %d, service %r, consul %s)", os.getpid(), cfg.service_name, cfg.consul_address
    )
    while thread.is_alive() and not stop.is_set():
        stop.wait(0.5)
    with guard:  # a render/reload in progress finishes; a blocking query is simply abandoned
        log.info("sync loop stopped")
    return 1 if failure else 0
