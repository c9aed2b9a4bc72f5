"""The command line through Click's CliRunner: help, usage errors, dry runs, exit codes, JSON shape.

Nothing here needs a running fleet: each test gets an empty FLEET_HOME and ports nobody listens on,
so commands that need Consul fail the way a user would see them fail.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from helpers import free_port, port_open, wait_for

from fleetctl import procs
from fleetctl.cli.main import FleetGroup, main
from fleetctl.config import FleetConfig
from fleetctl.daemons import pidfiles as daemons
from fleetctl.daemons import presence
from fleetctl.errors import FleetError
from fleetctl.fleet.metrics_scrape import parse_samples, summarize
from fleetctl.fleet.orchestrate import ScaleTimeout, oversubscription_warning
from fleetctl.fleet.status import FleetStatus, InstanceRow, render_table

COMMANDS = ("up", "scale", "status", "down", "logs", "deps", "sync", "render")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An isolated fleet: temp home, and ports with nothing behind them."""
    base = free_port()
    return {
        "FLEET_HOME": str(tmp_path / "home"),
        "FLEET_BACKEND": "process",
        "FLEET_CONSUL_PORT": str(free_port()),
        "FLEET_REDIS_PORT": str(free_port()),
        "FLEET_GATEWAY_PORT": str(free_port()),
        "FLEET_BASE_PORT": str(base if base < 65000 else 20000),
        "FLEET_CONSUL_ADDR": "",
        "FLEET_REDIS_URL": "",
    }


@pytest.fixture
def runner() -> Iterator[CliRunner]:
    yield CliRunner()


def test_group_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_help(runner: CliRunner, name: str) -> None:
    result = runner.invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize(
    "args",
    [["scale"], ["scale", "-1"], ["scale", "many"], ["up", "--backend", "kubernetes"], ["bogus"],
     ["logs", "--since", "yesterday"], ["logs", "--grep", "("], ["scale", "2", "--timeout", "0"],
     ["up", "-n", "1", "--no-install", "--bogus"]],
)
def test_usage_errors_exit_2(runner: CliRunner, env: dict[str, str], args: list[str]) -> None:
    result = runner.invoke(main, args, env=env)
    assert result.exit_code == 2, result.output


def test_invalid_fleet_setting_is_a_usage_error(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(main, ["status"], env={**env, "FLEET_BACKEND": "kubernetes"})
    assert result.exit_code == 2
    assert "FLEET_BACKEND" in result.output


def test_dry_run_on_empty_fleet_plans_ports_from_base(runner: CliRunner, env: dict[str, str]) -> None:
    base = int(env["FLEET_BASE_PORT"])
    with socket.socket() as blocker:  # a port someone else holds is skipped
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            blocker.bind(("127.0.0.1", base + 1))
            blocker.listen()
            held = True
        except OSError:
            held = False
        result = runner.invoke(main, ["scale", "3", "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    starts = [line for line in result.output.splitlines() if line.startswith("start ")]
    assert len(starts) == 3
    assert f"on port {base} " in starts[0]
    if held:
        assert all(f"port {base + 1} " not in line for line in starts)
    assert not Path(env["FLEET_HOME"], "run").exists() or not list(Path(env["FLEET_HOME"], "run").glob("*.pid"))


def test_dry_run_zero_is_a_noop(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(main, ["scale", "0", "--dry-run"], env=env)
    assert result.exit_code == 0
    assert result.output.startswith("nothing to do")


def test_scale_where_no_fleet_runs_says_run_up_first_and_starts_nothing(
        runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(main, ["scale", "1"], env=env)
    assert result.exit_code == 1
    assert f"no fleet runs in {env['FLEET_HOME']} (FLEET_HOME): start one with `fleetctl up`" in result.output
    assert not list(Path(env["FLEET_HOME"]).glob("run/*.json"))  # no instance was started


def test_dry_run_where_no_fleet_runs_plans_and_says_so(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(main, ["scale", "1", "--dry-run"], env=env)
    assert result.exit_code == 0
    assert result.stdout.startswith("start ") and "note: no fleet runs in" in result.stderr


def test_instances_need_the_gateway_of_their_home(tmp_path: Path) -> None:
    """Consul and Redis alone are no fleet to scale: without nginx and the sync loop (as a half-stopped
    fleet has), no instance would ever be in an upstream."""
    cfg = FleetConfig(home=tmp_path)
    presence.require_gateway(cfg, ["consul", "redis", "nginx", "sync"])
    presence.require_gateway(cfg, ["nginx", "sync"])  # an external Consul and Redis (FLEET_CONSUL_ADDR...)
    with pytest.raises(presence.NoFleet, match="no fleet runs in .*`fleetctl up`"):
        presence.require_gateway(cfg, [])
    with pytest.raises(presence.NoFleet, match=r"not running \(sync stopped\): `fleetctl up` starts it again"):
        presence.require_gateway(cfg, ["consul", "redis", "nginx"])
    with pytest.raises(presence.NoFleet, match=r"\(nginx and sync stopped\)"):
        presence.require_gateway(cfg, ["consul", "redis", "autoscale"])


def test_render_without_consul_is_an_error_not_a_traceback(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(main, ["render"], env=env)
    assert result.exit_code == 1
    assert result.output.startswith("Error:")


def test_logs_where_no_fleet_ever_ran_says_so_and_exits_1(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(main, ["logs", "ocr-nope"], env=env)
    assert result.exit_code == 1
    assert f"Error: no fleet runs in {env['FLEET_HOME']}" in result.output and "`fleetctl up`" in result.output


def test_logs_of_unknown_instance_exits_1(runner: CliRunner, env: dict[str, str]) -> None:
    Path(env["FLEET_HOME"], "logs").mkdir(parents=True)
    Path(env["FLEET_HOME"], "logs", "sync.log").write_text("")  # a fleet ran here once
    result = runner.invoke(main, ["logs", "ocr-nope"], env=env)
    assert result.exit_code == 1
    assert "no running instance" in result.output


def test_logs_of_a_dead_process_instance_still_shows_its_log(runner: CliRunner, env: dict[str, str]) -> None:
    logs = Path(env["FLEET_HOME"], "logs")
    logs.mkdir(parents=True)
    (logs / "ocr-7.log").write_text("Traceback: the engine failed to load\n")
    result = runner.invoke(main, ["logs", "ocr-7"], env=env)
    assert result.exit_code == 0
    assert result.stdout == "ocr-7 | Traceback: the engine failed to load\n"
    assert result.stderr.startswith(f"note: no fleet runs in {env['FLEET_HOME']}")


def test_status_json_shape_with_nothing_running(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(main, ["status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"instances", "services", "gateway", "warnings"}
    assert data["warnings"] == [f"no fleet runs in {env['FLEET_HOME']} (FLEET_HOME): start one with `fleetctl up`"]
    assert data["instances"] == []
    assert set(data["services"]) == {"consul", "redis", "nginx", "sync"}
    assert data["gateway"] == f"http://127.0.0.1:{env['FLEET_GATEWAY_PORT']}"
    assert all(s["running"] is False for s in data["services"].values())


def test_status_with_nothing_running_says_where_it_looked(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(main, ["status"], env=env)
    assert result.exit_code == 0
    assert result.output == f"no fleet runs in {env['FLEET_HOME']} (FLEET_HOME): start one with `fleetctl up`\n"


def test_down_with_nothing_running_says_so_and_succeeds(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(main, ["down"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output == (f"nothing to stop: no fleet runs in {env['FLEET_HOME']} (FLEET_HOME): "
                             "start one with `fleetctl up`\n")


def test_a_fleet_an_older_make_up_left_in_dot_fleet_is_named(
        runner: CliRunner, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make up` kept its fleet in the checkout's .fleet before: a user who finds none in the default
    home is told where the old one runs and how to stop it (here its Redis, a real one)."""
    old = FleetConfig(home=tmp_path / "checkout" / ".fleet", redis_port=free_port())
    argv = [shutil.which("redis-server") or "/usr/sbin/redis-server", "--port", str(old.redis_port),
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(old.home / "redis"),
            "--set-proc-title", "no"]
    (old.home / "redis").mkdir(parents=True)
    pid = procs.spawn(argv, log_path=daemons.log_file(old, "redis"), pid_path=daemons.pid_file(old, "redis"))
    try:
        wait_for(lambda: daemons.live(old, "redis") == pid and port_open("127.0.0.1", old.redis_port), 15,
                 "the old fleet's redis")
        monkeypatch.chdir(tmp_path / "checkout")
        result = runner.invoke(main, ["status"], env=env)
        assert result.exit_code == 0
        assert f"an older `make up` started runs in {old.home}: `FLEET_HOME={old.home} fleetctl down`" \
            in result.output
        monkeypatch.chdir(tmp_path)
        assert "make up" not in runner.invoke(main, ["status"], env=env).output  # no .fleet here
    finally:
        procs.stop_process(pid, grace=5)


def _group_raising(exc: BaseException) -> click.Group:
    """A throwaway group of the same class as `main`, to check the one place errors are translated."""

    @click.group(cls=FleetGroup)
    def grp() -> None:
        pass

    @grp.command()
    def boom() -> None:
        raise exc

    return grp


def test_timeout_exits_3_and_lists_pending(runner: CliRunner) -> None:
    grp = _group_raising(ScaleTimeout("timed out waiting", ["ocr-8003: not yet passing in Consul"]))
    result = runner.invoke(grp, ["boom"])
    assert result.exit_code == 3
    assert "still pending: ocr-8003: not yet passing in Consul" in result.output


def test_fleet_error_exits_1_with_message(runner: CliRunner) -> None:
    result = runner.invoke(_group_raising(FleetError("image missing: run make image")), ["boom"])
    assert result.exit_code == 1
    assert result.output == "Error: image missing: run make image\n"


def test_unexpected_errors_are_not_hidden(runner: CliRunner) -> None:
    result = runner.invoke(_group_raising(ZeroDivisionError("bug")), ["boom"])
    assert isinstance(result.exception, ZeroDivisionError)


def test_oversubscription_warning() -> None:
    cfg = FleetConfig()
    assert oversubscription_warning(cfg, 2, cpus=2) is None
    warning = oversubscription_warning(cfg, 3, cpus=2)
    assert warning is not None and "3 instance(s)" in warning and "0.98 img/s" in warning
    assert oversubscription_warning(cfg.replace(threads=2), 2, cpus=4) is None
    assert oversubscription_warning(cfg.replace(workers=2, threads=2), 2, cpus=4) is not None


METRICS = """\
# HELP ocr_requests_total OCR API requests by HTTP status
# TYPE ocr_requests_total counter
ocr_requests_total{status="200"} 41.0
ocr_requests_total{status="503"} 2.0
# HELP ocr_cache_events_total Cache outcomes
# TYPE ocr_cache_events_total counter
ocr_cache_events_total{result="hit"} 30.0
ocr_cache_events_total{result="miss"} 8.0
ocr_cache_events_total{result="coalesced"} 2.0
ocr_cache_events_total{result="bypass"} 3.0
ocr_cache_events_total{result="error"} 0.0
# HELP ocr_inflight_requests OCR API requests being served
# TYPE ocr_inflight_requests gauge
ocr_inflight_requests 1.0
ocr_request_seconds_bucket{le="+Inf"} 43.0
"""


def test_metrics_summary() -> None:
    m = summarize(METRICS)
    assert m.requests == 43
    assert m.inflight == 1
    assert m.cache_hits == 30 and m.cache_lookups == 40  # bypass is not a lookup
    assert m.cache_hit_ratio == pytest.approx(0.75)
    assert summarize("").cache_hit_ratio is None


def test_metrics_parser_handles_labels_and_junk() -> None:
    samples = parse_samples('a{x="1",y="q\\"z"} 2\nnot a sample\nb 3 1700000000\nc NaN\n')
    assert samples[0] == ("a", {"x": "1", "y": 'q\\"z'}, 2.0)
    assert ("b", {}, 3.0) in samples
    assert len(samples) == 3


def test_status_table_renders_every_column() -> None:
    row = InstanceRow(id="ocr-8001", backend="process", address="127.0.0.1:8001", port=8001, healthy=True,
                      health="passing", in_upstream=True, rss_mb=412.5, uptime_s=3725.0, requests=10,
                      cache_hit_ratio=0.5)
    status = FleetStatus(instances=[row], gateway="http://127.0.0.1:8080",
                         services={"consul": {"name": "consul", "managed": True, "running": True, "pid": 42,
                                              "address": "127.0.0.1:8500"}})
    text = render_table(status)
    assert "ocr-8001" in text and "412.5" in text and "1h02m" in text and "50%" in text
    assert "consul   running  pid=42 address=127.0.0.1:8500" in text
    assert status.to_dict()["instances"][0]["cache_hit_ratio"] == 0.5


def test_status_shows_the_node_of_a_placed_instance() -> None:
    row = InstanceRow(id="ocr-8002", backend="swarm", address="10.0.0.7:8002", port=8002, healthy=True,
                      health="passing", in_upstream=True, rss_mb=None, uptime_s=5.0, requests=None,
                      cache_hit_ratio=None, node="worker-2")
    text = render_table(FleetStatus(instances=[row], gateway="http://127.0.0.1:8080", services={}))
    assert text.splitlines()[0].split()[:4] == ["ID", "BACKEND", "NODE", "ADDRESS"]
    assert text.splitlines()[1].split()[:4] == ["ocr-8002", "swarm", "worker-2", "10.0.0.7:8002"]
    assert FleetStatus(instances=[row], gateway="", services={}).to_dict()["instances"][0]["node"] == "worker-2"


def test_swarm_slots_follow_swarm_filling_the_lowest_missing_ones() -> None:
    from fleetctl.backends.swarm import RUN, rolled_slots

    assert rolled_slots([], 3) == [1, 2, 3]
    assert rolled_slots([4, 5], 3) == [1, 4, 5]  # a scale-down left slots 4 and 5
    assert rolled_slots([4, 5], 2) == [4, 5]
    assert rolled_slots([1, 2, 3], 1) == [1]
    proc = subprocess.run(["sh", "-n", "-c", RUN], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr  # the task's entry point is valid shell
