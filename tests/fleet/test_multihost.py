"""Three hosts on one machine, as docs/multihost.md runs them on three: 127.0.0.1, .2 and .3.

Each simulated host has its own FLEET_HOME, Consul server agent, Redis, instance and gateway, all
listening on its own loopback address on the same ports (as real hosts would), so nothing clashes.
The test follows the guide: the first host bootstraps, the others join; every gateway serves every
host's instances; a host lost to SIGKILL leaves every surviving gateway's upstream while ab keeps
running through one of them with no failed request; and the two servers left keep the cluster going.
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
import requests
from helpers import wait_for
from test_fleet_integration import AbResult, parse_ab, word_png
from test_fleet_integration import _tool_path as tool_path

from fleetctl import config as fleet_config
from fleetctl import upstream

# One port per role, the same on every host (the block no other test uses).
PORTS = {"FLEET_GATEWAY_PORT": 64080, "FLEET_CONSUL_PORT": 64500, "FLEET_REDIS_PORT": 64379,
         "FLEET_BASE_PORT": 64101, "FLEET_CONSUL_SERF_PORT": 64301, "FLEET_CONSUL_SERVER_PORT": 64300}
ADDRS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")  # the fourth: a gateway-only client host
AB_SECONDS = 16


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
        return f"http://{self.addr}:{PORTS['FLEET_GATEWAY_PORT']}"

    @property
    def instance(self) -> str:
        return f"{self.addr}:{PORTS['FLEET_BASE_PORT']}"

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
        return consul.Consul(host=self.addr, port=PORTS["FLEET_CONSUL_PORT"], connections_timeout=2)

    def members(self) -> set[str]:
        return upstream.upstream_members(self.cfg)

    def pids(self) -> set[int]:
        """Every process of this host: its services (by FLEET_HOME in the command line or environment)
        and its instances' process groups (their pid files)."""
        found: set[int] = set()
        for path in (self.home / "run").rglob("*.pid"):
            try:
                pid = int(path.read_text().split()[0])
                found |= {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
            except (ValueError, IndexError, psutil.Error):
                continue
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if str(self.home) in " ".join(proc.info["cmdline"] or ()):
                found.add(proc.pid)
        found.discard(os.getpid())
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
    """A machine lost at once: SIGKILL to every process it runs (agent, instance, gateway, Redis)."""
    for pid in host.pids():
        try:
            os.kill(pid, signal.SIGKILL)
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


def test_three_hosts_share_one_catalog_and_survive_losing_one(all_hosts: list[Host], tmp_path: Path) -> None:
    hosts, gateway_only = all_hosts[:3], all_hosts[3]
    first, second, third = hosts
    image = tmp_path / "word.png"
    image.write_bytes(word_png("multihost"))

    # The guide's order: the first host bootstraps, the others join it (in parallel: order is free).
    assert first.run("up", "-n", "1", "--advertise", first.addr).strip().endswith(first.gateway)
    joining = [h.fleetctl("up", "-n", "1", "--advertise", h.addr, "--join", first.addr)
               for h in (second, third)]
    for host, proc in zip((second, third), joining, strict=True):
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"[{host.addr}] up --join failed:\n{out}"

    # Three servers now (FLEET_CONSUL_SERVERS=3), so a fourth host joins as a client, here without
    # instances of its own: a gateway-only host.
    assert len(first.consul().status.peers()) == 3
    gateway_only.run("up", "-n", "0", "--advertise", gateway_only.addr, "--join", f"{first.addr},{second.addr}")
    assert gateway_only.consul().agent.self()["Config"]["Server"] is False
    assert len(first.consul().status.peers()) == 3

    everyone = {h.instance for h in hosts}
    for host in all_hosts:
        wait_for(lambda h=host: h.members() == everyone, 30, f"all three instances in {host.addr}'s upstream")
    # Later commands on a host find its agent from the saved flags: status lists its own instance.
    assert '"address": "127.0.0.2:64101"' in second.run("status", "--json")
    assert ocr_via(second, image).status_code == 200  # warms the cache: ab is mostly hits

    # Lose the raft leader's host whole (the harder case: a new leader must be elected before the
    # catalog can mark the dead node) while ab runs through a surviving gateway.
    leader = str(first.consul().status.leader()).rpartition(":")[0]
    victim = next(h for h in hosts if h.addr == leader)
    survivors = [h for h in all_hosts if h is not victim]
    load = ab(survivors[0], image, AB_SECONDS)
    try:
        wait_for(lambda: ocr_via(survivors[0], image).status_code == 200, 10, "a surviving gateway serving")
        time.sleep(2)  # ab's traffic is flowing through all three instances before the loss
        t0 = time.monotonic()
        kill_host(victim)
        gone: dict[str, float] = {}
        while len(gone) < len(survivors) and time.monotonic() - t0 < 30:
            for host in survivors:
                if host.addr not in gone and victim.instance not in host.members():
                    gone[host.addr] = time.monotonic() - t0
            time.sleep(0.02)
        out, _ = load.communicate(timeout=AB_SECONDS + 60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    result: AbResult = parse_ab(out)
    print(f"\nleader host {victim.addr} SIGKILLed: out of the upstream of "
          + ", ".join(f"{a} after {t:.2f}s" for a, t in gone.items())
          + f"; ab -c 8 through {survivors[0].addr}: {result.complete} requests, {result.real_failures} failed "
          f"({result.length} Length-only differences, not failures)")
    assert set(gone) == {h.addr for h in survivors}, "a dead host's instance stayed in a surviving upstream"
    assert result.real_failures == 0, result.output

    # Two servers of three elect a leader and go on: the survivors' catalog, upstreams and gateways.
    new_leader = wait_for(lambda: first.consul().status.leader() if first is not victim
                          else second.consul().status.leader(), 15, "a new raft leader")
    assert str(new_leader).rpartition(":")[0] != victim.addr
    left = {h.instance for h in hosts if h is not victim}
    assert all(h.members() == left for h in survivors)
    assert all(ocr_via(h, image).status_code == 200 for h in survivors)
    # Each host's status shows its own instance, never another host's of the same id (ocr-64101).
    for host in (h for h in hosts if h is not victim):
        rows = json.loads(host.run("status", "--json"))["instances"]
        assert [(r["address"], r["health"], r["in_upstream"]) for r in rows] == [(host.instance, "passing", True)]
