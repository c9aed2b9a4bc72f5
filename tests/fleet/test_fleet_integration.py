"""The fleet for real: Consul, Redis, nginx, gunicorn (and Docker) on free loopback ports.

Every fleet gets its own FLEET_HOME in a temp dir and its own ports, so the suite never
touches a developer's running fleet. fleetctl runs as a subprocess, as a user would run it.
Requests use one small generated image so almost all of them are cache hits and the suite
stays fast; `ab` drives the load and its failures are parsed (Length mismatches are not
failures: OCR bodies carry a timing and the instance id, so their lengths vary).
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import consul
import psutil
import pytest
import requests
from helpers import consul_binary, free_port, free_range, live_processes, wait_for

from fleetctl import config as fleet_config
from fleetctl.gateway import upstream

# The checkout root, found from an installed module of ours.
REPO = Path(fleet_config.__file__).resolve().parents[1]
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
TOOLS = ("consul", "redis-server", "nginx", "ab")
AB_SECONDS = 10


# --- helpers -----------------------------------------------------------------------------------

def word_png(text: str = "fleet") -> bytes:
    """A 320x64 PNG with one word: OCR takes about a second, cache hits take milliseconds."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (320, 64), "white")
    font = ImageFont.truetype(str(FONT), 36) if FONT.exists() else ImageFont.load_default()
    ImageDraw.Draw(img).text((12, 10), text, fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class AbResult:
    complete: int
    failed: int
    connect: int
    receive: int
    length: int
    exceptions: int
    non_2xx: int
    output: str

    @property
    def real_failures(self) -> int:
        """Connect/Receive/Exceptions plus non-2xx; Length is ignored on purpose (bodies vary)."""
        return self.connect + self.receive + self.exceptions + self.non_2xx


def parse_ab(output: str) -> AbResult:
    def num(pattern: str) -> int:
        m = re.search(pattern, output)
        return int(m.group(1)) if m else 0

    if "Complete requests" not in output:
        raise AssertionError(f"ab did not finish:\n{output}")
    return AbResult(
        complete=num(r"Complete requests:\s+(\d+)"),
        failed=num(r"Failed requests:\s+(\d+)"),
        connect=num(r"Connect: (\d+), Receive"),
        receive=num(r"Receive: (\d+)"),
        length=num(r"Length: (\d+)"),
        exceptions=num(r"Exceptions: (\d+)"),
        non_2xx=num(r"Non-2xx responses:\s+(\d+)"),
        output=output,
    )


def test_parse_ab_separates_length_failures() -> None:
    sample = (
        "Complete requests:      4506\nFailed requests:        37\n"
        "   (Connect: 0, Receive: 0, Length: 37, Exceptions: 0)\n"
    )
    r = parse_ab(sample)
    assert (r.complete, r.failed, r.length, r.real_failures) == (4506, 37, 37, 0)
    bad = parse_ab(sample.replace("Receive: 0", "Receive: 2") + "Non-2xx responses:      3\n")
    assert bad.real_failures == 5


@dataclass
class Fleet:
    """One fleet under test: its environment, ports and shortcuts to ask each part of it."""

    home: Path
    env: dict[str, str]
    gateway_port: int
    consul_port: int
    redis_port: int
    base_port: int
    image_path: Path
    seen_pids: set[int] = field(default_factory=set)

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def cfg(self) -> fleet_config.FleetConfig:
        return fleet_config.load(self.env)

    def run(self, *args: str, timeout: float = 240, expect: int | None = 0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "fleetctl", *args], env={**self.env, **(env or {})}, capture_output=True,
            text=True, timeout=timeout, check=False, cwd=self.home,
        )
        if expect is not None and proc.returncode != expect:
            pytest.fail(f"fleetctl {' '.join(args)} exited {proc.returncode} (wanted {expect}):\n"
                        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def timed(self, *args: str, timeout: float = 240) -> float:
        t0 = time.monotonic()
        self.run(*args, timeout=timeout)
        return time.monotonic() - t0

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run("status", "--json").stdout)
        for inst in data["instances"]:
            self.seen_pids.update(group_pids_of_port(inst["port"]))
        for svc in data["services"].values():
            if svc.get("pid"):
                self.seen_pids.add(int(svc["pid"]))
        return data

    def consul(self) -> consul.Consul:
        return consul.Consul(host="127.0.0.1", port=self.consul_port)

    def passing(self) -> set[str]:
        _, entries = self.consul().health.service("ocr", passing=True)
        return {e["Service"]["ID"] for e in entries}

    def members(self) -> set[str]:
        return upstream.upstream_members(self.cfg)

    def ocr(self, session: requests.Session) -> requests.Response:
        return session.post(f"{self.gateway}/api/ocr", data=self.image_path.read_bytes(),
                            headers={"Content-Type": "image/png"}, timeout=60)

    def ab(self, seconds: int, concurrency: int = 20) -> subprocess.Popen[str]:
        """ab in the background; -t bounds it in time, -n only lifts ab's own request cap."""
        return subprocess.Popen(
            ["ab", "-q", "-t", str(seconds), "-n", "1000000", "-c", str(concurrency), "-s", "60",
             "-p", str(self.image_path), "-T", "image/png", f"{self.gateway}/api/ocr"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def served(self) -> int:
        """Requests the instances have answered so far, from the gateway's access log."""
        log = self.home / "logs" / "nginx-access.log"
        try:
            with log.open("rb") as fh:
                return sum(1 for _ in fh)
        except FileNotFoundError:
            return 0

    def leftovers(self) -> list[psutil.Process]:
        """Processes that still belong to this fleet: by home path, instance tags or remembered pids."""
        ports = [self.gateway_port, self.consul_port, self.redis_port]
        tags = [f"ocr-fleet:ocr-{p}" for p in range(self.base_port, self.base_port + 16)]
        found = []
        for proc, cmd in live_processes():
            mine = (str(self.home) in cmd or any(t in cmd for t in tags)
                    or any(f"--port {p}" in cmd or f"-http-port {p}" in cmd for p in ports)
                    or proc.pid in self.seen_pids)
            if mine and proc.is_running():
                found.append(proc)
        return found


def group_pids_of_port(port: int) -> set[int]:
    """Master and workers of the gunicorn tagged with this port (what `down` must remove)."""
    pids: set[int] = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if f"ocr-fleet:ocr-{port}" in " ".join(proc.info["cmdline"] or ()):
            pids.add(proc.pid)
    return pids


def tool_path(env: dict[str, str]) -> None:
    """Make the tools findable and fail (never skip) with the fix when one is missing."""
    # `make deps` puts Consul in the user's FLEET_HOME/bin; each test fleet has its own FLEET_HOME.
    try:
        extra = [str(Path(consul_binary()).parent)]
    except FileNotFoundError:
        extra = []  # reported below, with the other missing tools
    extra += ["/usr/sbin", "/usr/local/sbin"]
    env["PATH"] = os.pathsep.join([*extra, env.get("PATH", "")])
    missing = [t for t in TOOLS if shutil.which(t, path=env["PATH"]) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run scripts/install-deps.sh")


def make_fleet(tmp: Path, backend: str) -> Fleet:
    home = tmp / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "OCR_"))}
    fleet = Fleet(
        home=home, env=env, gateway_port=free_port(), consul_port=free_port(), redis_port=free_port(),
        base_port=free_range(16), image_path=tmp / "word.png",
    )
    env.update(
        FLEET_HOME=str(home), FLEET_BACKEND=backend, FLEET_GATEWAY_PORT=str(fleet.gateway_port),
        FLEET_CONSUL_PORT=str(fleet.consul_port), FLEET_REDIS_PORT=str(fleet.redis_port),
        FLEET_BASE_PORT=str(fleet.base_port), PYTHONUNBUFFERED="1",
    )
    tool_path(env)
    fleet.image_path.write_bytes(word_png())
    return fleet


def teardown_fleet(fleet: Fleet) -> None:
    """`down`, then make sure nothing is left (killing stragglers so one failure does not leak)."""
    fleet.run("down", timeout=180, expect=None)
    left = fleet.leftovers()
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = make_fleet(tmp_path_factory.mktemp("fleet"), "process")
    try:
        yield f
    finally:
        teardown_fleet(f)


def instance_ids(f: Fleet) -> list[str]:
    return [i["id"] for i in f.status()["instances"]]


def distinct_instances_via_gateway(f: Fleet, requests_: int = 30) -> set[str]:
    with requests.Session() as s:
        s.trust_env = False
        assert f.ocr(s).status_code == 200  # the one miss: the result is cached from here on

    def one(_: int) -> str:
        with requests.Session() as s:
            s.trust_env = False
            resp = f.ocr(s)
            assert resp.status_code == 200, resp.text
            return resp.headers["X-Instance"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        return set(pool.map(one, range(requests_)))


def run_ab_during(f: Fleet, action: Callable[[], object], seconds: int = AB_SECONDS) -> AbResult:
    """Start ab, wait until traffic flows, do `action`, then collect ab's verdict."""
    with requests.Session() as s:
        s.trust_env = False
        assert f.ocr(s).status_code == 200  # warm the cache so ab is mostly hits
    before = f.served()
    ab = f.ab(seconds)
    try:
        wait_for(lambda: f.served() >= before + 100, 20, "ab traffic through the gateway", interval=0.05)
        action()
        out, _ = ab.communicate(timeout=seconds + 90)
    finally:
        if ab.poll() is None:
            ab.kill()
            ab.wait()
    return parse_ab(out)


# --- the process backend -----------------------------------------------------------------------

def test_up_is_idempotent_then_scale_to_three_reaches_all(fleet: Fleet) -> None:
    t_up = fleet.timed("up", "-n", "1")
    first = fleet.status()
    assert len(first["instances"]) == 1
    again = fleet.run("up", "-n", "1")
    assert again.stdout.strip().endswith(fleet.gateway)
    assert "start " not in again.stdout and "stop " not in again.stdout
    second = fleet.status()
    assert [(i["id"], i["port"]) for i in second["instances"]] == [(i["id"], i["port"]) for i in first["instances"]]
    assert second["instances"][0]["uptime_s"] >= first["instances"][0]["uptime_s"]

    t_scale = fleet.timed("scale", "3")
    ids = instance_ids(fleet)
    assert len(ids) == 3
    assert fleet.passing() == set(ids)
    assert fleet.members() == {f"127.0.0.1:{fleet.base_port + k}" for k in range(3)}
    assert distinct_instances_via_gateway(fleet) == set(ids)

    data = fleet.status()
    assert set(data) == {"instances", "services", "gateway", "warnings"}
    assert data["gateway"] == fleet.gateway
    assert set(data["services"]) >= {"consul", "redis", "nginx", "sync"}
    for inst in data["instances"]:
        assert set(inst) >= {"id", "backend", "address", "port", "healthy", "in_upstream", "rss_mb",
                             "uptime_s", "requests", "cache_hit_ratio"}
        assert inst["backend"] == "process" and inst["healthy"] and inst["in_upstream"]
        assert inst["rss_mb"] > 20  # master + worker with the models loaded
    assert sum(i["requests"] for i in data["instances"]) >= 31
    ratios = [i["cache_hit_ratio"] for i in data["instances"] if i["cache_hit_ratio"] is not None]
    assert ratios and max(ratios) > 0.5
    print(f"\nup -n 1: {t_up:.1f}s, scale 1->3: {t_scale:.1f}s")


def test_timeout_exits_3_and_names_what_is_pending(fleet: Fleet) -> None:
    fleet.run("scale", "3")
    proc = fleet.run("scale", "4", "--timeout", "1", expect=3)
    assert "still pending" in proc.stderr and f"ocr-{fleet.base_port + 3}" in proc.stderr
    # The next run converges from whatever state the timeout left.
    fleet.run("scale", "3")
    assert len(instance_ids(fleet)) == 3
    assert len(fleet.members()) == 3


def test_scale_down_under_load_fails_no_request(fleet: Fleet) -> None:
    fleet.run("scale", "3")
    removed = [fleet.base_port + 1, fleet.base_port + 2]
    removed_pids = set().union(*(group_pids_of_port(p) for p in removed))
    assert removed_pids
    timing: dict[str, float] = {}

    def scale_down() -> None:
        timing["scale"] = fleet.timed("scale", "1")

    result = run_ab_during(fleet, scale_down)
    assert result.complete > 200
    assert result.real_failures == 0, result.output
    assert fleet.members() == {f"127.0.0.1:{fleet.base_port}"}
    assert fleet.passing() == {f"ocr-{fleet.base_port}"}
    assert not [p for p in removed_pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    print(f"\nscale 3->1 under ab -c 20: {timing['scale']:.1f}s, {result.complete} requests, "
          f"{result.failed} ab 'failed' of which {result.length} Length only")


def test_sigkilled_instance_leaves_upstream_fast_and_fails_no_request(fleet: Fleet) -> None:
    fleet.run("scale", "2")
    victim = fleet.base_port + 1
    victim_pid = json.loads((fleet.home / "run" / f"ocr-{victim}.json").read_text())
    pid = int((fleet.home / "run" / f"ocr-{victim}.pid").read_text())
    assert victim_pid["port"] == victim
    timing: dict[str, float] = {}

    def kill() -> None:
        os.killpg(pid, signal.SIGKILL)
        t0 = time.monotonic()
        wait_for(lambda: f"127.0.0.1:{victim}" not in fleet.members(), 5, "the killed instance to leave the upstream",
                 interval=0.05)
        timing["left"] = time.monotonic() - t0

    result = run_ab_during(fleet, kill)
    assert result.real_failures == 0, result.output
    assert timing["left"] < 5
    assert instance_ids(fleet) == [f"ocr-{fleet.base_port}"]  # its stale pid file was cleaned
    assert not (fleet.home / "run" / f"ocr-{victim}.pid").exists()
    print(f"\nSIGKILLed instance left the upstream after {timing['left']:.2f}s; "
          f"{result.complete} requests, 0 failed")
    fleet.run("scale", "2")
    assert len(fleet.members()) == 2


def test_logs_and_status_table(fleet: Fleet) -> None:
    iid = instance_ids(fleet)[0]
    out = fleet.run("logs", iid).stdout
    assert "Listening at" in out or "Booting worker" in out
    table = fleet.run("status").stdout
    assert iid in table and "passing" in table and "SERVICE" in table
    missing = fleet.run("logs", "ocr-1", expect=1)
    assert "no running instance" in missing.stderr
    render = fleet.run("render").stdout
    assert f"127.0.0.1:{iid.removeprefix('ocr-')}" in render


def _post_with_id(f: Fleet, request_id: str) -> None:
    with requests.Session() as s:
        s.trust_env = False
        resp = s.post(f"{f.gateway}/api/ocr", data=f.image_path.read_bytes(), timeout=60,
                      headers={"Content-Type": "image/png", "X-Request-Id": request_id})
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Request-ID"] == request_id


def test_logs_merge_every_source_and_find_a_request_id(fleet: Fleet) -> None:
    iid = instance_ids(fleet)[0]
    rid = f"abc-{uuid.uuid4().hex}"
    _post_with_id(fleet, rid)
    found = [json.loads(line) for line in fleet.run("logs", "--since", "5m", "--json").stdout.splitlines()
             if rid in line]
    assert found and all(o["source"] == "gateway" or o["source"].startswith("ocr-") for o in found), found
    assert any(o["source"] == "gateway" and o["request_id"] == rid and o["status"] == 200 for o in found)
    # The instance that served it logged a JSON access line with the same id (OCR_LOG_FORMAT=json).
    assert any(o["source"].startswith("ocr-") and o.get("request_id") == rid and o.get("status") == 200
               for o in found), found

    merged = [json.loads(line) for line in fleet.run("logs", "--json").stdout.splitlines()]
    assert {"gateway", "consul", "redis", "sync", iid} <= {o["source"] for o in merged}  # nginx: often empty
    times = [o["time"] for o in merged if o["time"] is not None]
    assert times == sorted(times)
    assert fleet.run("logs", "--grep", rid, "gateway").stdout.count(rid) == 1

    # -f: a request made after it started shows up, then Ctrl-C ends it cleanly.
    rid2 = f"abc-{uuid.uuid4().hex}"
    # SIGINT as a terminal sends it (a suite started in the background would hand it down ignored).
    seen: list[str] = []
    with subprocess.Popen([sys.executable, "-m", "fleetctl", "logs", "-f", "gateway"], env=fleet.env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=fleet.home,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) as proc:
        out = proc.stdout
        assert out is not None

        def collect() -> None:
            for line in out:
                seen.append(line)

        reader = threading.Thread(target=collect, daemon=True)
        reader.start()
        try:
            # The history (earlier requests) is printed first: after it, only following can show rid2.
            wait_for(lambda: any(rid in line for line in seen), 20, "the history from fleetctl logs -f")
            _post_with_id(fleet, rid2)
            wait_for(lambda: any(rid2 in line for line in seen), 20, "the new request in fleetctl logs -f")
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()  # never leave it behind, then fail
                raise
            reader.join(timeout=5)
        errors = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0, errors
    assert any(line.startswith("gateway") and rid2 in line for line in seen), seen


def test_stale_config_is_replaced_new_before_old(fleet: Fleet) -> None:
    fleet.run("scale", "2")
    old = instance_ids(fleet)
    changed = {"OCR_MAX_UPLOAD_MB": "19"}  # part of the config hash
    plan = fleet.run("scale", "2", "--dry-run", env=changed).stdout
    assert all(f"stop  {i}" in plan for i in old)
    assert plan.count("(stale config)") == 2 and plan.count("(replace stale config)") == 2
    out = fleet.run("scale", "2", env=changed).stderr
    # Both replacements were in the upstream before the old instances started draining.
    first_drain = min(out.index(f"{i}: draining") for i in old)
    assert out.count("in the nginx upstream") == 2 and out.rindex("in the nginx upstream") < first_drain
    new = instance_ids(fleet)
    assert len(new) == 2 and not set(new) & set(old)
    assert fleet.members() == {f"127.0.0.1:{i.removeprefix('ocr-')}" for i in new}
    assert fleet.run("scale", "2", "--dry-run", env=changed).stdout.startswith("nothing to do")


def test_down_leaves_no_process(fleet: Fleet) -> None:
    fleet.status()  # remember every pid of the running fleet
    t_down = fleet.timed("down", timeout=180)
    left = fleet.leftovers()
    assert not left, [(p.pid, " ".join(p.cmdline())) for p in left]
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in fleet.seen_pids)
    data = json.loads(fleet.run("status", "--json").stdout)
    assert data["instances"] == []
    print(f"\ndown: {t_down:.1f}s")


# --- the docker backend ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def docker_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Starts dockerd and builds the image through the project scripts, then a docker-backed fleet."""
    from fleetctl.backends.docker import connect

    f = make_fleet(tmp_path_factory.mktemp("dfleet"), "docker")
    connect()  # runs scripts/start-dockerd.sh when the engine is installed but down
    build = subprocess.run(["bash", str(REPO / "scripts" / "build-image.sh")], env=f.env, capture_output=True,
                           text=True, timeout=1800, check=False)
    if build.returncode != 0:
        pytest.fail(f"scripts/build-image.sh failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
    try:
        yield f
    finally:
        teardown_fleet(f)


@pytest.mark.docker
@pytest.mark.timeout(2400)
def test_docker_backend_scale_up_down_under_load(docker_fleet: Fleet) -> None:
    f = docker_fleet
    t_up = f.timed("up", "-n", "1")
    t_scale = f.timed("scale", "3")
    data = f.status()
    ids = [i["id"] for i in data["instances"]]
    assert len(ids) == 3 and all(i["backend"] == "docker" for i in data["instances"])
    assert f.passing() == set(ids)
    assert len(f.members()) == 3
    assert distinct_instances_via_gateway(f) == set(ids)
    assert all(i["rss_mb"] and i["rss_mb"] > 20 for i in f.status()["instances"])
    rid = f"abc-{uuid.uuid4().hex}"
    _post_with_id(f, rid)
    merged = [json.loads(line) for line in f.run("logs", "--since", "5m", "--json").stdout.splitlines()]
    assert set(ids) <= {o["source"] for o in merged}  # the containers' own output
    assert any(o["source"] == "gateway" and o.get("request_id") == rid for o in merged)

    result = run_ab_during(f, lambda: f.run("scale", "1"))
    assert result.real_failures == 0, result.output
    assert f.members() == {f"127.0.0.1:{f.base_port}"}

    f.run("down", timeout=180)
    import docker

    client = docker.from_env()
    left = client.containers.list(all=True, filters={"label": "ocr-fleet=1"})
    assert not [c for c in left if c.labels.get("ocr-fleet.port", "").isdigit()
                and f.base_port <= int(c.labels["ocr-fleet.port"]) < f.base_port + 16]
    assert not f.leftovers()
    print(f"\ndocker: up -n 1 {t_up:.1f}s, scale 1->3 {t_scale:.1f}s, scale 3->1 under load ok")
