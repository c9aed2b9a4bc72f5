"""Four hosts on one machine, as docs/multihost.md runs them on real ones: 127.0.0.1 to 127.0.0.4.

Each simulated host has its own FLEET_HOME, Consul agent, Redis, instance and gateway, all listening
on its own loopback address on the same ports (as real hosts would), so nothing clashes. The test
follows the guide: the first host bootstraps, two more join as servers, a fourth as a client; every
gateway serves every host's instances. Under ab through one gateway, the raft leader's host and then
the client host are lost to SIGKILL: each leaves every surviving upstream, ab sees no failed request,
and the two servers left keep the cluster going.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import consul
import psutil
import pytest
import redis
import requests
from helpers import wait_for
from test_fleet_integration import AbResult, parse_ab, tool_path, word_png

from fleetctl import config as fleet_config
from fleetctl.cluster import agent as cluster
from fleetctl.cluster import consul_api
from fleetctl.fleet import metrics_scrape
from fleetctl.gateway import upstream

# One port per role, the same on every host (the block no other test uses).
PORTS = {"FLEET_GATEWAY_PORT": 64080, "FLEET_CONSUL_PORT": 64500, "FLEET_REDIS_PORT": 64379,
         "FLEET_BASE_PORT": 64101, "FLEET_CONSUL_SERF_PORT": 64301, "FLEET_CONSUL_SERVER_PORT": 64300}
ADDRS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")  # the fourth joins as a Consul client
AB_SECONDS = 120  # an upper bound: ab is stopped (SIGINT) once both hosts are lost


@dataclass
class Host:
    """One simulated machine: its address, its FLEET_HOME and the environment fleetctl runs with."""

    addr: str
    home: Path
    env: dict[str, str]

    @property
    def cfg(self) -> fleet_config.FleetConfig:
        return fleet_config.load({**self.env, "FLEET_ADVERTISE": self.addr})

    @property
    def gateway(self) -> str:
        return self.cfg.gateway_url

    @property
    def instance(self) -> str:
        """The first instance's address, as this host's fleetctl advertises it."""
        return f"{self.cfg.advertise}:{self.cfg.base_port}"

    def fleetctl(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "fleetctl", *args], env=self.env, cwd=self.home,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def run(self, *args: str, timeout: float = 240) -> str:
        proc = self.fleetctl(*args)
        out, _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            pytest.fail(f"[{self.addr}] fleetctl {' '.join(args)} exited {proc.returncode}:\n{out}")
        return out

    def consul(self) -> consul.Consul:
        """A client with the host's management token (its agent denies anonymous requests)."""
        return consul_api.client_at(self.addr, self.cfg.consul_port, consul_api.fleet_token(self.cfg), timeout=2)

    def members(self) -> set[str]:
        return upstream.upstream_members(self.cfg)

    def pids(self) -> set[int]:
        """Every process of this host: whatever its pid files or command lines name, with children."""
        roots: set[int] = set()
        for path in self.home.rglob("*.pid"):
            try:
                roots.add(int(path.read_text().split()[0]))
            except (ValueError, IndexError):
                continue
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if str(self.home) in " ".join(proc.info["cmdline"] or ()):
                roots.add(proc.pid)
        found: set[int] = set()
        for pid in roots - {os.getpid()}:
            try:  # children too: nginx's workers name no path, and outlive a SIGKILLed master
                found |= {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
            except psutil.Error:
                continue
        return found


def make_host(tmp: Path, addr: str) -> Host:
    home = tmp / addr
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "OCR_"))}
    env.update({k: str(v) for k, v in PORTS.items()}, FLEET_HOME=str(home), FLEET_BACKEND="process",
               PYTHONUNBUFFERED="1")
    tool_path(env)
    return Host(addr, home, env)


def kill_host(host: Host) -> None:
    """A machine lost at once: SIGKILL to every process it runs (agent, instance, gateway, Redis).

    All are stopped first, so no parent sees a child die and replaces it (nginx respawns workers).
    """
    pids = host.pids()
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def all_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Host]]:
    tmp = tmp_path_factory.mktemp("multihost")
    made = [make_host(tmp, addr) for addr in ADDRS]
    try:
        yield made
    finally:
        for host in made:
            try:
                host.fleetctl("down").communicate(timeout=120)
            except subprocess.TimeoutExpired:
                pass
            kill_host(host)  # whatever `down` could not stop (a killed host's leftovers)


def ab(host: Host, image: Path, seconds: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ab", "-q", "-t", str(seconds), "-n", "1000000", "-c", "8", "-s", "30",
         "-p", str(image), "-T", "image/png", f"{host.gateway}/api/ocr"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def ocr_via(host: Host, image: Path) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.post(f"{host.gateway}/api/ocr", data=image.read_bytes(),
                      headers={"Content-Type": "image/png"}, timeout=60)


def lose(victim: Host, watchers: list[Host]) -> dict[str, float]:
    """SIGKILL a whole host; seconds until its instance left each watcher's upstream (30 s at most)."""
    t0 = time.monotonic()
    kill_host(victim)
    gone: dict[str, float] = {}
    while len(gone) < len(watchers) and time.monotonic() - t0 < 30:
        for host in watchers:
            if host.addr not in gone and victim.instance not in host.members():
                gone[host.addr] = time.monotonic() - t0
        time.sleep(0.02)
    print(f"\nhost {victim.addr} SIGKILLed: out of the upstream of "
          + ", ".join(f"{a} after {t:.2f}s" for a, t in gone.items()))
    return gone


def served(instance: str) -> int:
    """Requests an instance has answered so far (its /metrics); -1 while it does not answer."""
    found = metrics_scrape.fetch(instance, timeout=2.0)
    return -1 if found is None else found.requests


def wait_serving(instances: set[str], what: str) -> None:
    """Poll until each instance has answered more requests than now: ab's load is reaching all of them."""
    before = {i: served(i) for i in instances}
    wait_for(lambda: all(served(i) > n for i, n in before.items()), 30, what)


def leader_of(hosts: list[Host]) -> str:
    """The raft leader's address as the first host that answers sees it ('' while there is none)."""
    for host in hosts:
        try:
            return str(host.consul().status.leader()).rpartition(":")[0]
        except (requests.RequestException, consul.ConsulException):
            continue
    return ""


def environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except psutil.Error:
        return {}


def check_locked(host: Host, token: str) -> None:
    """Nobody without a token changes or sees the fleet through this host's Consul, nor uses its Redis
    without the password; the instance and the sync loop run with their own small tokens, and no
    output or command line shows a token or the password."""
    api = f"http://{host.addr}:{host.cfg.consul_port}/v1"
    with requests.Session() as s:
        s.trust_env = False
        rogue = {"Name": "ocr", "ID": "rogue", "Address": "10.6.6.6", "Port": 80}
        assert s.put(f"{api}/agent/service/register", json=rogue, timeout=5).status_code == 403
        assert s.put(f"{api}/agent/service/deregister/ocr-{host.cfg.base_port}", timeout=5).status_code == 403
        assert s.put(f"{api}/kv/ocr-fleet/ocr/keys/rogue", data="x", timeout=5).status_code == 403
        assert s.get(f"{api}/health/service/ocr", timeout=5).json() == []
    with redis.Redis(host=host.addr, port=host.cfg.redis_port, socket_timeout=5) as anonymous, \
            pytest.raises(redis.AuthenticationError):
        anonymous.set("rogue", "1")
    small = {role: (host.home / f"consul-{role}.token").read_text().strip() for role in ("instance", "gateway")}
    small["redis"] = (host.home / "redis.pass").read_text().strip()
    assert token not in small.values()
    sync = psutil.Process(int((host.home / "run" / "sync.pid").read_text().split()[0]))
    assert sync.environ().get("FLEET_CONSUL_TOKEN") == small["gateway"]
    env = next(e for e in map(environ, psutil.process_iter()) if str(host.home) in e.get("OCR_RUNTIME_DIR", ""))
    assert env["OCR_CONSUL_TOKEN"] == small["instance"] and "FLEET_CONSUL_TOKEN" not in env
    assert f":{small['redis']}@{host.addr}:" in env["OCR_REDIS_URL"]
    shown = " ".join(" ".join(p.info["cmdline"] or ()) for p in psutil.process_iter(["cmdline"]))
    assert not any(secret in shown for secret in (token, *small.values()))
    assert not any(secret in host.run("status", "--json") for secret in (token, *small.values()))
    logs = "".join(log.read_text(errors="replace") for log in host.home.rglob("*.log"))
    assert logs and not any(secret in logs for secret in (token, *small.values()))


def test_hosts_share_one_catalog_and_survive_losing_the_leader_and_a_client(
    all_hosts: list[Host], tmp_path: Path
) -> None:
    hosts, client_host = all_hosts[:3], all_hosts[3]
    first, second, third = hosts
    image = tmp_path / "word.png"
    image.write_bytes(word_png("multihost"))

    # The guide's order: the first host bootstraps, the others join it.
    out = first.run("up", "-n", "1", "--advertise", first.addr)
    assert out.strip().endswith(first.gateway) and "gossip is encrypted" in out and "Consul has ACLs" in out
    # The first host made the fleet's ACL token and gossip key; a host without them is refused before
    # its agent starts, one setting at a time (the join host tells about gossip only to a known token).
    token = (first.home / "consul.token").read_text().strip()
    key = (first.home / "gossip.key").read_text().strip()
    for missing, want in (({}, "has Consul ACLs: set FLEET_CONSUL_TOKEN"),
                          ({"FLEET_CONSUL_TOKEN": token}, "encrypts its gossip: set FLEET_CONSUL_ENCRYPT")):
        second.env.update(missing)
        refused = second.fleetctl("up", "-n", "1", "--advertise", second.addr, "--join", first.addr)
        out, _ = refused.communicate(timeout=120)
        assert refused.returncode == 1 and want in out and token not in out, out
        assert not (second.home / "consul").exists() or not any((second.home / "consul").iterdir())
    for host in (second, third, client_host):
        host.env.update(FLEET_CONSUL_TOKEN=token, FLEET_CONSUL_ENCRYPT=key)
    for host in (second, third):
        assert host.run("up", "-n", "1", "--advertise", host.addr, "--join", first.addr).strip().endswith(
            host.gateway)

    # Three voting servers now (a joining server's `up` waits for its vote: FLEET_CONSUL_SERVERS=3),
    # so a fourth host joins as a client.
    assert len(first.consul().status.peers()) == 3
    assert all(cluster.is_voter(h.cfg) for h in hosts)
    client_host.run("up", "-n", "1", "--advertise", client_host.addr, "--join", f"{first.addr},{second.addr}")
    assert client_host.consul().agent.self()["Config"]["Server"] is False
    assert len(first.consul().status.peers()) == 3
    assert all(h.consul().agent.self()["Stats"]["serf_lan"]["encrypted"] == "true" for h in all_hosts)

    everyone = {h.instance for h in all_hosts}
    for host in all_hosts:
        wait_for(lambda h=host: h.members() == everyone, 30, f"every instance in {host.addr}'s upstream")
    for host in all_hosts:
        check_locked(host, token)
    # API keys still work with ACLs: `keys` runs with each host's management token, every host sees them.
    assert second.run("keys", "create", "multihost").strip().splitlines()[-1].startswith("ocr_")
    assert [k["name"] for k in json.loads(third.run("keys", "list", "--json"))] == ["multihost"]
    client_host.run("keys", "revoke", "multihost")
    assert json.loads(first.run("keys", "list", "--json")) == []
    # Later commands on a host find its agent from the saved flags: status lists its own instance.
    assert '"address": "127.0.0.2:64101"' in second.run("status", "--json")
    assert ocr_via(second, image).status_code == 200  # warms the cache: ab is mostly hits

    # While ab runs through a server host's gateway: lose the raft leader's host whole (a new leader
    # must be elected before the catalog can mark the dead node), then the client host too.
    leader = next(h for h in hosts if h.addr == leader_of(hosts))
    through = next(h for h in hosts if h is not leader)
    survivors = [h for h in all_hosts if h is not leader]
    load = ab(through, image, AB_SECONDS)
    try:
        wait_for(lambda: ocr_via(through, image).status_code == 200, 10, "a surviving gateway serving")
        wait_serving({h.instance for h in all_hosts}, "ab's traffic through every instance before the loss")
        after_leader = lose(leader, survivors)
        wait_for(lambda: leader_of(survivors) not in ("", leader.addr), 15, "a new raft leader")
        after_client = lose(client_host, [h for h in survivors if h is not client_host])
        wait_serving({h.instance for h in survivors if h is not client_host}, "ab's traffic after both losses")
        load.send_signal(signal.SIGINT)  # ab prints its results on SIGINT
        out, _ = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    result: AbResult = parse_ab(out)
    print(f"ab -c 8 through {through.addr}: {result.complete} requests, {result.real_failures} failed "
          f"({result.length} Length-only differences, not failures)")
    assert set(after_leader) == {h.addr for h in survivors}, "a dead host stayed in a surviving upstream"
    assert set(after_client) == {h.addr for h in survivors if h is not client_host}
    assert result.real_failures == 0, result.output

    # Two servers of three go on: the catalog, both upstreams and both gateways.
    left = [h for h in hosts if h is not leader]
    assert all(h.members() == {g.instance for g in left} for h in left)
    assert all(ocr_via(h, image).status_code == 200 for h in left)
    # Each host's status shows its own instance, never another host's of the same id (ocr-64101).
    for host in left:
        rows = json.loads(host.run("status", "--json"))["instances"]
        assert [(r["address"], r["health"], r["in_upstream"]) for r in rows] == [(host.instance, "passing", True)]

    # The lost leader's host comes back: `up` (flags from cluster.json) rejoins from Consul's snapshot
    # as a server again, and its instance is back in every live upstream.
    leader.run("up", "-n", "1")
    back = {h.instance for h in (*left, leader)}
    for host in (*left, leader):
        wait_for(lambda h=host: h.members() == back, 30, f"the returned host's instance in {host.addr}'s upstream")
    assert len(through.consul().status.peers()) == 3
