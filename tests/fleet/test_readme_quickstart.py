"""The README's quick start, then its "Running the fleet" lines, run in order as a user types them.

A fresh HOME (so ~/.local/state is empty) and no FLEET_HOME in the environment: `make up` and the bare
`.venv/bin/fleetctl` lines must find the fleet by their defaults alone, which is what went wrong when
the Makefile set its own FLEET_HOME (issue 15). The commands are read from the README, so the test
follows it when it changes. What a user could choose is chosen here too: free ports through the
FLEET_* variables (a developer's own fleet may hold 8080), and Consul on PATH (no download).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from helpers import REPO, consul_binary, free_port, free_range, live_processes

README = REPO / "README.md"
# `scale 5` on this suite's 2-core machine means 5 engines on 2 cores, minutes of start-up and the
# oversubscription warning; 3 still starts one instance beside the 2 of `make up` and waits for it.
SCALE_TO = 3
FLEETCTL = ".venv/bin/fleetctl"
COMMANDS = ("scale", "status", "logs", "down")  # `up` is `make up`'s; `autoscale` runs in the foreground
LIMITS = {"make": 240.0, "scale": 150.0}  # seconds; scale's own timeout (180 s) would come later
LIMIT = 60.0  # any other line


def block(readme: str, heading: str) -> list[str]:
    """The command lines of the first ```sh block under `heading`, without their comments."""
    section = readme.split(f"\n{heading}\n", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, f"no ```sh block under {heading!r} in README.md"
    return [re.sub(r"\s+#.*$", "", line).strip() for line in found.group(1).splitlines() if line.strip()]


def quick_start_then_running_the_fleet(readme: str) -> list[list[str]]:
    """`make up` (not `make test`), then every scale/status/logs/down line that returns by itself."""
    steps = [shlex.split(line) for line in block(readme, "## Quick start") if line != "make test"]
    assert steps and steps[0] == ["make", "up"], steps
    for line in block(readme, "## Running the fleet"):
        argv = shlex.split(line)
        if argv[0] == FLEETCTL and argv[1] in COMMANDS and not {"-f", "--follow"} & set(argv):
            if argv[1] == "scale" and "--dry-run" not in argv and int(argv[2]) > SCALE_TO:
                argv[2] = str(SCALE_TO)
            steps.append(argv)
    names = [argv[1] for argv in steps[1:]]
    assert "scale" in names and "status" in names and names[-1] == "down", steps  # what this test is about
    return steps


def user_env(home: Path, tools: Path) -> dict[str, str]:
    """A login shell of a user with no fleet yet: a fresh HOME, and no FLEET_* / OCR_* settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLEET_", "OCR_", "MAKE", "MFLAGS", "XDG_STATE_HOME"))}
    tools.mkdir()
    (tools / "consul").symlink_to(consul_binary())
    env.update(HOME=str(home), PATH=os.pathsep.join([str(tools), env.get("PATH", "")]),
               FLEET_GATEWAY_PORT=str(free_port()), FLEET_CONSUL_PORT=str(free_port()),
               FLEET_REDIS_PORT=str(free_port()), FLEET_BASE_PORT=str(free_range(16)), PYTHONUNBUFFERED="1")
    return env


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    name = argv[1] if argv[0] == FLEETCTL else argv[0]
    limit = LIMITS.get(name, LIMIT)
    t0 = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`{shlex.join(argv)}` did not finish within {limit:.0f}s:\n{exc.stdout}\n{exc.stderr}")
    print(f"{shlex.join(argv)}: exit {done.returncode} in {time.monotonic() - t0:.1f}s")
    assert done.returncode == 0, f"`{shlex.join(argv)}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert "no fleet runs" not in done.stdout + done.stderr, f"`{shlex.join(argv)}`:\n{done.stdout}\n{done.stderr}"
    return done


def leftovers(home: Path) -> list[str]:
    """Processes of a fleet under this HOME: its path in their command line (Consul, Redis, nginx), or
    in their FLEET_HOME (the sync loop) or OCR_RUNTIME_DIR (instances)."""
    found = []
    for proc, cmd in live_processes():
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        if str(home) in cmd or any(env.get(name, "").startswith(str(home))
                                   for name in ("FLEET_HOME", "OCR_RUNTIME_DIR")):
            found.append(f"{proc.pid} {cmd}")
    return found


@pytest.mark.timeout(600)
def test_readme_quick_start_then_running_the_fleet_drive_one_fleet(tmp_path: Path) -> None:
    if subprocess.run(["make", "-q", "venv"], cwd=REPO, check=False).returncode != 0:
        pytest.fail("the checkout's venv is older than setup.cfg: run `make venv` (this test reuses it, "
                    "and `make up` would rebuild it under the test's empty HOME)")
    steps = quick_start_then_running_the_fleet(README.read_text(encoding="utf-8"))
    home = tmp_path / "home"
    home.mkdir()
    env = user_env(home, tmp_path / "tools")
    try:
        up = run(steps[0], env)
        assert f"http://127.0.0.1:{env['FLEET_GATEWAY_PORT']}" in up.stdout.splitlines(), up.stdout
        for argv in steps[1:]:
            done = run(argv, env)
            if argv[1] == "scale" and "--dry-run" not in argv:
                assert "instance(s) ready" in done.stderr, done.stderr  # waited for them in the gateway
            if argv[1] == "status":
                rows = [line.split() for line in done.stdout.splitlines() if line.startswith("ocr-")]
                assert len(rows) == SCALE_TO and all(r[4:6] == ["passing", "yes"] for r in rows), done.stdout
            if argv[1] == "down":
                assert f"stopped {SCALE_TO} instance(s)" in done.stdout, done.stdout
        assert (home / ".local" / "state" / "ocr-fleet" / "run").is_dir()  # the default home, nothing else
        assert not leftovers(home)
    finally:
        # Whatever happened, nothing of this user's fleet stays: in either home the old Makefile knew.
        for argv in (["make", "down"], [FLEETCTL, "down"]):
            subprocess.run(argv, cwd=REPO, env=env, capture_output=True, timeout=180, check=False)
