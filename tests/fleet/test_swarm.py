"""The swarm backend for real: a single-node Docker Swarm, the image `make image` builds, and the fleet.

fleetctl initialises the swarm itself; the suite leaves it again when it was in none before.
Helpers (fleets on free ports, ab under load) are the integration tests'.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_range, wait_for
from test_fleet_integration import (
    REPO,
    Fleet,
    distinct_instances_via_gateway,
    make_fleet,
    run_ab_during,
    teardown_fleet,
)

from fleetctl.backends.docker import fleet_label
from fleetctl.backends.swarm import service_name

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]
SLOTS = 8  # FLEET_SWARM_SLOTS: two windows of 8 ports above the base
TIMINGS: dict[str, float] = {}
REBUILT: list[str] = []  # image tags the module made, removed at its end


def docker_cli(*args: str, timeout: float = 120) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def swarm_state() -> str:
    return docker_cli("info", "--format", "{{.Swarm.LocalNodeState}}").strip()


@pytest.fixture(scope="module")
def engine() -> Iterator[None]:
    """The engine and the image through the project scripts; a swarm we made is left at the end."""
    from fleetctl.backends.docker import connect

    connect()
    build = subprocess.run(["bash", str(REPO / "scripts" / "build-image.sh")], capture_output=True, text=True,
                           timeout=1800, check=False)
    if build.returncode != 0:
        pytest.fail(f"scripts/build-image.sh failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
    had_swarm = swarm_state() == "active"
    yield
    if not had_swarm:
        docker_cli("swarm", "leave", "--force")
    for tag in REBUILT:  # the fleets using them are down by now
        docker_cli("image", "rm", tag)


def fleet_for(tmp: Path, backend: str) -> Fleet:
    f = make_fleet(tmp, backend)
    f.base_port = free_range(2 * SLOTS + 1)
    f.env.update(FLEET_BASE_PORT=str(f.base_port), FLEET_SWARM_SLOTS=str(SLOTS))
    return f


@pytest.fixture(scope="module")
def swarm_fleet(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = fleet_for(tmp_path_factory.mktemp("sfleet"), "swarm")
    try:
        yield f
    finally:
        teardown_fleet(f)


def replicas(f: Fleet) -> str:
    """The REPLICAS column of `docker service ls` for this fleet's service ('' when absent)."""
    name = service_name(f.cfg)
    out = docker_cli("service", "ls", "--filter", f"name={name}", "--format", "{{.Name}} {{.Replicas}}")
    return next((line.split()[1] for line in out.splitlines() if line.split()[0] == name), "")


def rebuilt_image(tag: str, ctx: Path) -> str:
    """A new image ID on top of the fleet image, as a rebuild makes one (offline: no pull)."""
    REBUILT.append(tag)
    (ctx / "Dockerfile").write_text(f"FROM ocr-fleet:latest\nLABEL ocr-fleet.test-rebuild={uuid.uuid4().hex}\n")
    subprocess.run(["docker", "build", "-q", "--network", "none", "-t", tag, str(ctx)], check=True,
                   capture_output=True, text=True, timeout=300, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    return docker_cli("image", "inspect", "-f", "{{.Id}}", tag).strip()


def test_up_runs_three_tasks_that_serve_through_the_gateway(swarm_fleet: Fleet) -> None:
    f = swarm_fleet
    t_up = f.timed("up", "-n", "3")
    assert swarm_state() == "active"
    assert replicas(f) == "3/3"  # fleetctl waited for Swarm's view too: every task's health check passed
    data = f.status()
    rows = data["instances"]
    assert [r["port"] for r in rows] == [f.base_port + s for s in (1, 2, 3)]  # FLEET_BASE_PORT + slot
    assert all(r["backend"] == "swarm" and r["node"] and r["healthy"] and r["in_upstream"] for r in rows)
    ids = {r["id"] for r in rows}
    assert f.passing() == ids
    assert distinct_instances_via_gateway(f) == ids
    table = f.run("status").stdout
    assert "NODE" in table and rows[0]["node"] in table
    merged = f.run("logs", "--since", "5m").stdout
    assert any(line.startswith(rows[0]["id"]) for line in merged.splitlines())  # the tasks' own output
    print(f"\nswarm: up -n 3 {t_up:.1f}s")


def test_scale_down_drains_under_load(swarm_fleet: Fleet) -> None:
    f = swarm_fleet
    f.run("scale", "3")
    timing: dict[str, float] = {}

    def down() -> None:
        timing["scale"] = f.timed("scale", "1")

    result = run_ab_during(f, down)
    assert result.real_failures == 0, result.output
    assert result.complete > 200
    [row] = f.status()["instances"]
    assert f.members() == {row["address"]}
    assert replicas(f) == "1/1"
    print(f"\nswarm: scale 3->1 under ab -c 20 {timing['scale']:.1f}s, {result.complete} requests, "
          f"{result.failed} ab 'failed' of which {result.length} Length only")


def test_rebuilt_image_rolls_out_start_first_under_load(swarm_fleet: Fleet, tmp_path: Path) -> None:
    f = swarm_fleet
    f.run("scale", "2")
    old = {r["id"] for r in f.status()["instances"]}
    image_id = rebuilt_image(f"ocr-fleet-test:{fleet_label(f.cfg)}", tmp_path)
    f.env["FLEET_IMAGE"] = f"ocr-fleet-test:{fleet_label(f.cfg)}"
    plan = f.run("scale", "2", "--dry-run").stdout
    assert plan.count("rolling update, start-first") == 2
    timing: dict[str, float] = {}

    def roll() -> None:
        timing["roll"] = f.timed("scale", "2")

    result = run_ab_during(f, roll, seconds=20)
    assert result.real_failures == 0, result.output
    spec = json.loads(docker_cli("service", "inspect", service_name(f.cfg)))[0]["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == image_id
    assert spec["UpdateConfig"]["Order"] == "start-first"
    rows = f.status()["instances"]
    assert len(rows) == 2 and not {r["id"] for r in rows} & old
    assert all(f.base_port + SLOTS < r["port"] <= f.base_port + 2 * SLOTS for r in rows)  # the other window
    assert f.members() == {r["address"] for r in rows}
    assert f.run("scale", "2", "--dry-run").stdout.startswith("nothing to do")
    print(f"\nswarm: rolling update of 2 tasks under ab -c 20 {timing['roll']:.1f}s, {result.complete} "
          f"requests, {result.failed} ab 'failed' of which {result.length} Length only")


def test_shrinking_and_rolling_back_in_one_scale(swarm_fleet: Fleet) -> None:
    """Swarm picks the task a scale-down stops, so the slot that is left is rolled, whichever it is."""
    f = swarm_fleet
    f.run("scale", "2")
    f.env.pop("FLEET_IMAGE", None)  # back to ocr-fleet:latest: drift again
    before = {r["port"] for r in f.status()["instances"]}
    result = run_ab_during(f, lambda: f.run("scale", "1"))
    assert result.real_failures == 0, result.output
    [row] = f.status()["instances"]
    assert f.base_port < row["port"] <= f.base_port + SLOTS  # back in the first window
    assert row["port"] + SLOTS in before  # the slot Swarm kept, rolled
    assert f.members() == {row["address"]} and replicas(f) == "1/1"
    assert f.run("scale", "1", "--dry-run").stdout.startswith("nothing to do")


def test_down_removes_the_service(swarm_fleet: Fleet) -> None:
    f = swarm_fleet
    f.run("down", timeout=240)
    assert replicas(f) == ""
    left = docker_cli("ps", "-aq", "--filter", f"label=ocr-fleet.swarm={fleet_label(f.cfg)}")
    assert not left.strip()
    assert json.loads(f.run("status", "--json").stdout)["instances"] == []


@pytest.mark.parametrize("backend", ["process", "docker", "swarm"])
def test_time_to_scale_one_to_five(engine: None, backend: str, tmp_path: Path) -> None:
    """Measured, not asserted: `scale 5` returns when all five pass in Consul and sit in the upstream."""
    f = fleet_for(tmp_path, backend)
    try:
        f.run("up", "-n", "1")
        t0 = time.monotonic()
        f.run("scale", "5", timeout=600)
        TIMINGS[backend] = time.monotonic() - t0
        wait_for(lambda: len(f.members()) == 5, 10, "five instances in the upstream")
        print(f"\n{backend}: scale 1->5 until all five are in the upstream: {TIMINGS[backend]:.1f}s")
    finally:
        teardown_fleet(f)
