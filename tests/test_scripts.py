"""The shell entry points, run for real: install-deps.sh, start-dockerd.sh, build-image.sh and the image."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import requests
from helpers import REPO, consul_binary, free_port, text_image, wait_for

from fleetctl.config import default_home

SCRIPTS = REPO / "scripts"
CONSUL_VERSION = "1.8.7"
CONTRACT_CMD = ["gunicorn", "-c", "python:ocr_app.gunicorn_conf", "ocr_app:create_app()"]


def run_script(name: str, *args: str, env: Mapping[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run scripts/NAME with bash, as the Makefile does, and capture its output."""
    return subprocess.run(["bash", str(SCRIPTS / name), *args], capture_output=True, text=True,
                          timeout=timeout, check=False, env=dict(env) if env is not None else None)


def must(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def fleet_home() -> Path:
    """Where install-deps.sh puts Consul: FLEET_HOME (relative: from the checkout), else fleetctl's default."""
    home = Path(os.environ.get("FLEET_HOME") or default_home(os.environ))
    return home if home.is_absolute() else REPO / home


def consul_version(binary: str | Path) -> str:
    out = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=30, check=True).stdout
    return out.splitlines()[0]


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return must(subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False))


def path_without(*names: str, into: Path) -> str:
    """A PATH that finds every command on ours except those NAMES (symlinks in INTO)."""
    into.mkdir(parents=True, exist_ok=True)
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d or not Path(d).is_dir():
            continue
        for entry in Path(d).iterdir():
            link = into / entry.name
            if entry.name in names or link.exists() or not os.access(entry, os.X_OK) or entry.is_dir():
                continue
            link.symlink_to(entry)
    return str(into)


# --- install-deps.sh ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def deps_installed() -> None:
    """install-deps.sh as `make test` runs it: installs whatever is missing (apt, Consul)."""
    must(run_script("install-deps.sh", timeout=1200))


@pytest.mark.timeout(1200)
def test_install_deps_second_run_is_a_fast_noop(deps_installed: None) -> None:
    t0 = time.monotonic()
    result = must(run_script("install-deps.sh"))
    elapsed = time.monotonic() - t0
    assert "installing" not in result.stderr and "fetching" not in result.stderr, result.stderr
    assert "apt packages: all present" in result.stderr
    assert elapsed < 5, f"the no-op run took {elapsed:.1f}s"
    for tool in ("nginx", "redis-server", "ab", "chromium", "pgrep"):
        assert shutil.which(tool), tool
    consul = shutil.which("consul") or fleet_home() / "bin" / "consul"
    assert consul_version(consul) == f"Consul v{CONSUL_VERSION}"


@pytest.mark.timeout(600)
def test_install_deps_fetches_consul_without_touching_system_apt(deps_installed: None, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "FLEET_HOME": str(home), "PATH": path_without("consul", into=tmp_path / "bin")}

    # `fleetctl deps` runs the packaged copy of the script, with this FLEET_HOME.
    first = must(subprocess.run([sys.executable, "-m", "fleetctl", "deps"], capture_output=True, text=True,
                                timeout=600, check=False, env=env, cwd=tmp_path))
    assert "consul: fetching bullseye's consul package" in first.stderr
    assert "chromium" not in first.stderr  # --runtime: only what a fleet runs
    assert f"consul        {home}/bin/consul" in first.stdout
    assert consul_version(home / "bin" / "consul") == f"Consul v{CONSUL_VERSION}"
    # A private apt state: the system's package lists never see the bullseye suite.
    assert not any("bullseye" in p.name for p in Path("/var/lib/apt/lists").iterdir())

    second = must(run_script("install-deps.sh", env=env))
    assert f"{home}/bin/consul is v{CONSUL_VERSION}" in second.stderr and "fetching" not in second.stderr


@pytest.mark.timeout(600)
def test_up_installs_what_is_missing_then_starts(deps_installed: None, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "OCR_"))},
           "FLEET_HOME": str(home), "PATH": path_without("consul", into=tmp_path / "bin"),
           "FLEET_GATEWAY_PORT": str(free_port()), "FLEET_CONSUL_PORT": str(free_port()),
           "FLEET_REDIS_PORT": str(free_port()), "FLEET_BASE_PORT": str(free_port())}

    def fleetctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fleetctl", *args], capture_output=True, text=True,
                              timeout=600, check=False, env=env, cwd=tmp_path)

    try:
        refused = fleetctl("up", "-n", "0", "--no-install")
        assert refused.returncode == 1 and "run `fleetctl deps`" in refused.stderr, refused.stderr
        up = must(fleetctl("up", "-n", "0"))
        assert "installing consul (as `fleetctl deps` does" in up.stderr
        assert "consul: fetching bullseye's consul package" in up.stderr  # the installer's own progress
        assert up.stdout.strip() == f"http://127.0.0.1:{env['FLEET_GATEWAY_PORT']}"
        assert json.loads(must(fleetctl("status", "--json")).stdout)["services"]["consul"]["running"]
        again = must(fleetctl("up", "-n", "0"))
        assert "installing" not in again.stderr
    finally:
        fleetctl("down")


def mirror_of(*files: Path) -> str:
    script = f'. "{SCRIPTS}/lib.sh"; debian_mirror_from "$@"'
    return must(subprocess.run(["bash", "-c", script, "-", *map(str, files)], capture_output=True,
                               text=True, timeout=30, check=False)).stdout.strip()


def test_debian_mirror_is_read_from_deb822_sources(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb-src\nURIs: http://src.invalid/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nURIs: http://disabled.invalid/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n"
        "Types: deb\nURIs: http://sec.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "# comment\nTypes: deb deb-src\nURIs:\n http://main.invalid/debian/\n"
        "Suites: bookworm-updates\n  bookworm\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    assert mirror_of(sources) == "http://main.invalid/debian"


def test_debian_mirror_is_read_from_one_line_sources(tmp_path: Path) -> None:
    listfile = tmp_path / "sources.list"
    listfile.write_text(
        "# deb http://commented.invalid/debian bookworm main\n"
        "deb-src http://src.invalid/debian bookworm main\n"
        "deb [signed-by=/usr/share/keyrings/x.gpg arch=amd64] http://security.invalid/debian-security "
        "bookworm-security main\n"
        "  deb [arch=amd64] http://main.invalid/debian/ bookworm main contrib  # trailing\n")
    assert mirror_of(listfile) == "http://main.invalid/debian"
    assert mirror_of(tmp_path / "absent.list", listfile) == "http://main.invalid/debian"


def test_debian_mirror_of_this_machine_is_found() -> None:
    script = f'. "{SCRIPTS}/lib.sh"; debian_mirror'
    out = must(subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                              check=False)).stdout.strip()
    assert out.startswith(("http://", "https://")), out


# --- start-dockerd.sh --------------------------------------------------------------------------

def test_start_dockerd_explains_a_missing_docker(tmp_path: Path) -> None:
    path = path_without("docker", "dockerd", into=tmp_path / "bin")
    result = run_script("start-dockerd.sh", env={**os.environ, "PATH": path, "FLEET_HOME": str(tmp_path)})
    assert result.returncode != 0
    assert "install-deps.sh --with-docker" in result.stderr


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Docker and debootstrap installed and the engine running, through the project's scripts."""
    result = must(run_script("install-deps.sh", "--with-docker", timeout=1200))
    assert "docker engine is running" in result.stderr
    docker("info")


@pytest.mark.docker
@pytest.mark.timeout(1200)
def test_start_dockerd_is_idempotent(docker_engine: None) -> None:
    t0 = time.monotonic()
    result = must(run_script("start-dockerd.sh"))
    assert "docker engine is running" in result.stderr and "starting" not in result.stderr
    assert time.monotonic() - t0 < 5


@pytest.mark.docker
@pytest.mark.timeout(1200)
def test_fleetctl_deps_with_docker_finds_everything_and_the_engine(docker_engine: None, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "consul").symlink_to(consul_binary())  # no fetch: this test is about Docker
    env = {**os.environ, "FLEET_HOME": str(home)}
    result = must(subprocess.run([sys.executable, "-m", "fleetctl", "deps", "--with-docker"], capture_output=True,
                                 text=True, timeout=600, check=False, env=env, cwd=tmp_path))
    assert "docker engine is running" in result.stderr and "apt packages: all present" in result.stderr
    assert f"consul        {home}/bin/consul" in result.stdout


# --- build-image.sh and the image --------------------------------------------------------------

@pytest.fixture(scope="session")
def image(docker_engine: None) -> str:
    """The fleet image, built by the script (a no-op when it already has the current source hash)."""
    tag = os.environ.get("FLEET_IMAGE", "ocr-fleet:latest")
    t0 = time.monotonic()
    must(run_script("build-image.sh", tag, timeout=2400))
    print(f"\nbuild-image.sh: {time.monotonic() - t0:.0f}s")
    return tag


@pytest.mark.docker
@pytest.mark.timeout(2400)
def test_image_follows_the_contract(image: str) -> None:
    info = json.loads(docker("image", "inspect", image).stdout)[0]
    cfg = info["Config"]
    assert cfg["Cmd"] == CONTRACT_CMD
    assert cfg["User"] == "ocr"
    assert cfg["StopSignal"] == "SIGTERM"
    assert {"OCR_HOST=127.0.0.1", "OCR_PORT=8000"} <= set(cfg["Env"])
    assert "/health" in " ".join(cfg["Healthcheck"]["Test"])
    assert len(cfg["Labels"]["ocr-fleet.source-hash"]) == 16

    # Unchanged sources: the script sees the label and does not rebuild.
    t0 = time.monotonic()
    again = must(run_script("build-image.sh", image))
    assert "is up to date" in again.stderr, again.stderr
    assert time.monotonic() - t0 < 60
    assert json.loads(docker("image", "inspect", image).stdout)[0]["Id"] == info["Id"]


@pytest.mark.docker
@pytest.mark.timeout(2400)
def test_image_runs_native_wheels_as_non_root(image: str) -> None:
    probe = ("import os, pathlib, cv2, onnxruntime, rapidocr;"
             "p = pathlib.Path.home() / '.cache' / 'probe'; p.parent.mkdir(parents=True, exist_ok=True);"
             "p.write_text('ok'); print(os.getuid(), cv2.__version__, onnxruntime.get_device())")
    out = docker("run", "--rm", "--network", "none", image, "python3", "-c", probe).stdout.split()
    assert out[0] != "0" and out[2] == "CPU", out


@pytest.fixture
def container(image: str) -> Iterator[tuple[str, int]]:
    """One instance container on the host network, without Consul or Redis, removed afterwards."""
    port = free_port()
    name = f"ocr-fleet-test-{os.getpid()}-{port}"
    docker("run", "-d", "--name", name, "--network", "host",
           "-e", f"OCR_PORT={port}", "-e", "OCR_CONSUL_ADDR=", "-e", "OCR_REDIS_URL=",
           # The image's own HEALTHCHECK command, polled faster than its 10 s default.
           "--health-interval", "1s", "--health-start-period", "60s", image)
    try:
        yield name, port
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)


def get_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def health_status(name: str) -> str:
    return docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()


@pytest.mark.docker
@pytest.mark.timeout(2400)
def test_container_serves_and_drains_on_sigterm(container: tuple[str, int]) -> None:
    name, port = container
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: get_ok(f"{base}/health"), 120, f"{base}/health in container {name}", interval=0.5)
    wait_for(lambda: get_ok(f"{base}/ready"), 120, f"{base}/ready (engine loaded)", interval=0.5)

    resp = requests.post(f"{base}/api/ocr", data=text_image("OCR Fleet works"),
                         headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert resp.status_code == 200, resp.text
    assert "Fleet" in " ".join(line["text"] for line in resp.json()["data"])

    wait_for(lambda: health_status(name) == "healthy", 60, "docker health status 'healthy'", interval=0.5)

    docker("stop", "-t", "60", name, timeout=90)
    state = json.loads(docker("inspect", name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, docker("logs", name).stderr[-2000:]
