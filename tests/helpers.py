"""The one home of test helpers: free ports, polling waits, real server processes and generated images.

Port and HTTP probes are fleetctl's own (fleetctl.procs), so tests and the CLI agree on what "free" means.
"""
from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import requests
from PIL import Image, ImageDraw, ImageFont

from fleetctl.config import default_home
from fleetctl.fleet.orchestrate import port_free
from fleetctl.procs import find_binary
from fleetctl.procs import free_port as free_port  # re-exported: the one definition
from fleetctl.procs import http_ok as http_ok
from fleetctl.procs import port_open as port_open

REPO = Path(__file__).resolve().parent.parent
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/wqy")


def free_range(size: int) -> int:
    """A base port below the ephemeral range with `size` free ports after it (for FLEET_BASE_PORT)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - size)
        if all(port_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError("no free port range found")


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    """Poll until `predicate` returns something truthy; fail naming what we waited for."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the condition is not met yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_exc})")


def find_font(name: str) -> str:
    for d in FONT_DIRS:
        path = Path(d) / name
        if path.exists():
            return str(path)
    raise FileNotFoundError(f"font {name} not found: run scripts/install-deps.sh")


def text_image(text: str, size: tuple[int, int] = (640, 160), font: str = "DejaVuSans.ttf",
               font_size: int = 48, fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    """An image with `text` rendered on white, as the bytes of `fmt`."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.text((20, (size[1] - font_size) // 2 - 4), text, fill="black",
              font=ImageFont.truetype(find_font(font), font_size))
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def consul_binary() -> str:
    """The Consul fleetctl would run: FLEET_HOME's (by default the user's home, where `make deps` puts
    it), then PATH; else the one an older `make deps` put in the checkout's .fleet."""
    home = Path(os.environ.get("FLEET_HOME") or default_home(os.environ))
    found = find_binary("consul", home) or find_binary("consul", REPO / ".fleet")
    if found is None:
        raise FileNotFoundError("consul not found: run scripts/install-deps.sh")
    return found


@dataclass
class Proc:
    """A real server process in its own process group, stopped with everything it spawned."""

    popen: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(10)
        return self.popen.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = log.open("ab")
    popen = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                             start_new_session=True)
    fh.close()
    return Proc(popen, log)


def start_redis(workdir: Path, port: int | None = None) -> Proc:
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    redis = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = spawn([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--dir", str(workdir)], workdir / "redis.log")
    proc.extra["url"] = f"redis://127.0.0.1:{port}/0"
    proc.extra["port"] = port
    wait_for(lambda: port_open("127.0.0.1", port), 15, f"redis on port {port}")
    return proc


def start_consul(workdir: Path, http_port: int | None = None, extra: tuple[str, ...] = ()) -> Proc:
    http = http_port or free_port()
    serf_lan, serf_wan, server = (free_port() for _ in range(3))
    workdir.mkdir(parents=True, exist_ok=True)
    proc = spawn([consul_binary(), "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
                  "-http-port", str(http), "-dns-port", "-1", "-grpc-port", "-1",
                  "-serf-lan-port", str(serf_lan), "-serf-wan-port", str(serf_wan),
                  "-server-port", str(server), "-log-level", "warn", *extra], workdir / "consul.log")
    proc.extra["addr"] = f"127.0.0.1:{http}"
    proc.extra["port"] = http
    wait_for(lambda: requests.get(f"http://127.0.0.1:{http}/v1/status/leader", timeout=1).json(),
             30, "a Consul leader")
    return proc


def start_instance(workdir: Path, *, consul_addr: str = "", redis_url: str = "",
                   instance_id: str | None = None, extra_env: dict[str, str] | None = None,
                   ready_timeout: float = 120.0, venv: Path | None = None) -> Proc:
    """A real instance under gunicorn, as fleetctl starts it; returns once /ready answers 200.

    `venv`: run it from that venv's gunicorn (the paddleocr engine's), else from the suite's own."""
    port = free_port()
    env = dict(os.environ)
    env.update({
        "OCR_HOST": "127.0.0.1", "OCR_PORT": str(port), "OCR_CONSUL_ADDR": consul_addr,
        "OCR_REDIS_URL": redis_url, "OCR_INSTANCE_ID": instance_id or f"test-{port}",
        "OCR_RUNTIME_DIR": str(workdir / f"run-{port}"), "OCR_DRAIN_SECONDS": "1",
    })
    env.update(extra_env or {})
    gunicorn = str(venv / "bin" / "gunicorn") if venv else str(Path(sys.executable).with_name("gunicorn"))
    proc = spawn([gunicorn, "-c", "python:ocr_app.gunicorn_conf", "ocr_app:create_app()"],
                 workdir / f"instance-{port}.log", env=env, cwd=REPO)
    proc.extra.update(port=port, url=f"http://127.0.0.1:{port}", id=env["OCR_INSTANCE_ID"])
    try:
        wait_for(lambda: proc.alive() and http_ok(f"http://127.0.0.1:{port}/ready") or not proc.alive(),
                 ready_timeout, f"instance on port {port} to be ready")
    except TimeoutError:
        proc.stop()
        raise
    if not proc.alive():
        raise RuntimeError(f"instance exited during start-up:\n{proc.tail()}")
    return proc


def bad_input_failures(url: str, corpus: list[tuple[str, dict[str, object], int, int]]) -> list[str]:
    """Each hostile request of `corpus` (name, request kwargs, status, code) that did not get its documented
    JSON error with an empty `data`."""
    failures = []
    for name, kwargs, status, code in corpus:
        resp = requests.post(url, timeout=60, **kwargs)  # type: ignore[arg-type]
        try:
            body = resp.json()
        except ValueError:
            body = {"raw": resp.text[:200]}
        if (resp.status_code, body.get("code")) != (status, code) or not body.get("msg") \
                or body.get("data") != []:
            failures.append(f"{name}: got {resp.status_code} {body}, want {status}/{code}")
    return failures


def worker_pids(master_pid: int) -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process(master_pid).children()}


def pid_alive(pid: int) -> bool:
    """True while `pid` runs and is not a zombie (never reaps: it may not be our child)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# Words the recognizer reads reliably, so a random line is unique and still read back exactly.
SAFE_WORDS = ("Alpha", "Bravo", "Delta", "Echo", "Golf", "Hotel", "Kilo", "Lima", "Mike", "Oscar", "Papa",
              "Romeo", "Sierra", "Tango", "Victor", "Yankee", "Zulu", "Quebec", "India", "Juliet")


def unique_tag() -> str:
    """Two random safe words: a line no other test sent (cache misses) that OCR still reads exactly.
    Random hex flaked: 0/O and 8/B misread, and a short line like "Profile 9080" can look turned."""
    import random

    return " ".join(random.Random().sample(SAFE_WORDS, 2))


def page_lines(n: int, prefix: str = "Page") -> list[str]:
    """One line per page, "<prefix> <n> <word> <word>", fresh on every call (cache misses)."""
    import random

    rng = random.Random()
    tag = " ".join(rng.sample(SAFE_WORDS, 2))
    return [f"{prefix} {i} {tag}" for i in range(1, n + 1)]


def live_processes() -> Iterator[tuple[psutil.Process, str]]:
    """Every live process but this one and zombies, with its command line: what leftover checks scan."""
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and proc.pid != os.getpid():
                yield proc, " ".join(proc.info["cmdline"] or ())
        except psutil.Error:
            continue


class CannedServer:
    """A real HTTP server in a thread that answers every POST with one status and one JSON body (plus
    `headers`), keeping each request's headers: a fleet or gateway that answers only one way."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.requests: list[dict[str, str]] = []
        payload = json.dumps(body).encode()
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.address}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
