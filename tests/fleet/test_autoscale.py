"""The autoscaler's decision as a table: metric histories in, desired count and kind out (pure code)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import free_port

from fleetctl.autoscale.loop import Autoscaler, CpuMeter, observe, policy_from, read_state
from fleetctl.autoscale.policy import Decision, Policy, PolicyError, Sample, decide, recommend
from fleetctl.backends.environment import config_hash
from fleetctl.backends.types import InstanceInfo
from fleetctl.cli.main import main
from fleetctl.config import FleetConfig, load
from fleetctl.errors import FleetError
from fleetctl.fleet.metrics_scrape import InstanceMetrics, summarize
from fleetctl.fleet.status import FleetStatus, render_table

P = Policy(min=1, max=3, target=2.0, cpu_target=0.8, up_window=6, down_window=30, cooldown=10)


def series(loads: list[float], *, n: int = 1, step: float = 2.0, cpu: float | None = None) -> list[Sample]:
    """One sample every `step` seconds ending at t = 100."""
    start = 100 - step * (len(loads) - 1)
    return [Sample(t=start + i * step, instances=n, load=x, cpu=cpu) for i, x in enumerate(loads)]


CASES = [
    # (name, history, current, last_action, desired, kind)
    ("no metrics yet", [], 1, None, 1, "no-metrics"),
    ("below min is fixed at once", series([0] * 3), 0, 99.0, 1, "min"),
    ("above max is fixed at once", series([0] * 3, n=5), 5, 99.0, 3, "max"),
    ("idle at min holds", series([0] * 20), 1, None, 1, "hold"),
    ("sustained c=8 on one instance goes to max", series([8, 8, 8, 8]), 1, None, 3, "up"),
    ("sustained load of 5 jobs needs 3", series([5, 5, 5, 5]), 1, None, 3, "up"),
    ("sustained load of 3 jobs needs 2", series([3, 3, 3, 3]), 1, None, 2, "up"),
    ("a spike is not sustained", series([0, 0, 0, 8]), 1, None, 1, "pending-up"),
    ("load shorter than the up window waits", series([8, 8]), 1, None, 1, "pending-up"),
    ("a dip inside the up window holds", series([8, 8, 0, 8]), 1, None, 1, "pending-up"),
    ("load within tolerance of the target holds", series([4.2] * 4, n=2), 2, None, 2, "hold"),
    ("load gone but the down window is not over", series([8] * 10 + [0] * 5, n=3), 3, None, 3, "window"),
    ("down window not yet watched in full", series([0] * 5, n=3), 3, None, 3, "window"),
    ("quiet for the whole down window shrinks to min", series([0] * 16, n=3), 3, None, 1, "down"),
    ("down to what the window's peak needs", series([3] + [0] * 15, n=3), 3, None, 2, "down"),
    ("busy CPU keeps the fleet", series([0] * 16, n=3, cpu=1.9), 3, None, 3, "window"),
    ("some CPU keeps part of it", series([0] * 16, n=3, cpu=0.7), 3, None, 1, "down"),
    ("cooldown delays scale-up", series([8] * 4), 1, 95.0, 1, "cooldown"),
    ("cooldown over", series([8] * 4), 1, 89.0, 3, "up"),
    ("cooldown delays scale-down", series([0] * 16, n=3), 3, 95.0, 3, "cooldown"),
    ("never above max", series([100] * 4, n=3), 3, None, 3, "hold"),
]


@pytest.mark.parametrize("name, history, current, last_action, desired, kind", CASES, ids=[c[0] for c in CASES])
def test_decide(name: str, history: list[Sample], current: int, last_action: float | None,
                desired: int, kind: str) -> None:
    d = decide(history, current, P, now=100.0, last_action=last_action)
    assert (d.desired, d.kind) == (desired, kind), d.line()
    assert d.reason  # every decision says why
    assert P.min <= d.desired <= P.max


def test_decisions_name_their_action() -> None:
    assert Decision(1, 3, "up", "x").line() == "scale up 1 -> 3 [up]: x"
    assert Decision(3, 1, "down", "y").action == "scale down"
    assert Decision(2, 2, "hold", "z").action == "hold"


def test_recommend_counts_workers() -> None:
    two_workers = Policy(min=1, max=10, target=2.0, workers=2)
    assert recommend(Sample(0, 1, 8.0), two_workers) == 2
    assert recommend(Sample(0, 1, 9.0), two_workers) == 3


def test_up_window_zero_reacts_to_one_sample() -> None:
    p = Policy(min=1, max=3, up_window=0, down_window=0, cooldown=0)
    assert decide([Sample(100, 1, 8)], 1, p, 100.0, None).desired == 3
    assert decide([Sample(100, 3, 0)], 3, p, 100.0, None).desired == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"min": 0, "max": 3}, "--min must be at least 1"),
    ({"min": 4, "max": 3}, "--max 3 is below --min 4"),
    ({"min": 1, "max": 3, "target": 0}, "FLEET_AUTOSCALE_TARGET\\) must be above 0"),
    ({"min": 1, "max": 3, "down_window": float("nan")}, "FLEET_AUTOSCALE_DOWN_WINDOW\\) must be a finite"),
])
def test_bad_policies_name_the_flag(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy(**kwargs)  # type: ignore[arg-type]


def test_cpu_meter_rates_over_its_span_and_survives_a_recycled_worker() -> None:
    meter = CpuMeter(span=20)
    assert meter.add("a", 0, 10.0) is None
    assert meter.add("a", 2, 11.0) is None  # too short a span to trust
    assert meter.add("a", 10, 15.0) == pytest.approx(0.5)
    assert meter.add("a", 40, 30.0) == pytest.approx(0.5)  # (30 - 15) / 30: older points dropped
    assert meter.add("a", 42, 1.0) is None  # the sum fell: a worker was recycled, start again
    meter.forget(set())
    assert meter.seen == {}


def _info(port: int) -> InstanceInfo:
    return InstanceInfo(id=f"ocr-{port}", backend="process", host="127.0.0.1", port=port, config_hash="h",
                        started_at=0.0)


def test_observe_sums_jobs_and_skips_silent_instances() -> None:
    metrics = {"127.0.0.1:1": InstanceMetrics(0, 0, 0, 5, 1.0), "127.0.0.1:2": None}
    meter = CpuMeter()
    s = observe([_info(1), _info(2)], 0.0, meter, metrics.get)
    assert s is not None and (s.instances, s.load, s.cpu) == (2, 5.0, None)
    metrics["127.0.0.1:1"] = InstanceMetrics(0, 0, 0, 1, 11.0)
    s = observe([_info(1), _info(2)], 10.0, meter, metrics.get)
    assert s is not None and s.cpu == pytest.approx(1.0)
    assert observe([_info(2)], 20.0, meter, metrics.get) is None


def test_scrape_reads_the_cpu_gauge() -> None:
    text = "ocr_inflight_requests 3.0\nocr_worker_cpu_seconds 12.5\n"
    assert summarize(text).inflight == 3 and summarize(text).cpu_seconds == 12.5
    assert summarize("ocr_inflight_requests 1\n").cpu_seconds is None


# --- the command line and status (no fleet needed) ------------------------------------------------

@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """An empty fleet home and a Consul port nobody listens on."""
    return {"FLEET_HOME": str(tmp_path / "home"), "FLEET_CONSUL_PORT": str(free_port()),
            "FLEET_CONSUL_ADDR": "", "FLEET_REDIS_URL": ""}


@pytest.mark.parametrize("value", ["", "3", "0:2", "3:1", "1:", ":3", "a:b", "1:2:3", "-1:2", "1.5:3",
                                   "1:99999999999999999999999x", "1:9999999", "１:３", "1;3", "\x00:1"])
def test_up_rejects_bad_bounds_before_doing_anything(cli_env: dict[str, str], value: str) -> None:
    result = CliRunner().invoke(main, ["up", "--no-install", "--autoscale", value], env=cli_env)
    assert result.exit_code == 2, result.output
    assert "MIN:MAX" in result.output
    assert not Path(cli_env["FLEET_HOME"], "run").exists()


@pytest.mark.parametrize("args, code, message", [
    ([], 2, "--min and --max are both required"),
    (["--min", "1"], 2, "--min and --max are both required"),
    (["--min", "0", "--max", "3"], 2, "0 is not in the range x>=1"),
    (["--min", "3", "--max", "1"], 1, "--max 1 is below --min 3"),
    (["--min", "1", "--max", "3", "--poll", "0"], 2, "0.2<=x<=60"),
    (["--min", "1", "--max", "3", "--scale-down-window", "-5"], 2, "x>=0"),
    (["--min", "1", "--max", "3", "--target", "nan"], 1, "--target (FLEET_AUTOSCALE_TARGET) must be a finite"),
    (["--min", "1", "--max", "3", "--cooldown", "inf"], 1, "--cooldown (FLEET_AUTOSCALE_COOLDOWN) must be a finite"),
    (["--min", "1", "--max", "3"], 1, "no fleet runs in"),  # checked before Consul: `fleetctl up` first
])
def test_autoscale_usage_errors(cli_env: dict[str, str], args: list[str], code: int, message: str) -> None:
    result = CliRunner().invoke(main, ["autoscale", *args], env=cli_env)
    assert result.exit_code == code, result.output
    assert message in result.output


def test_autoscale_settings_come_from_the_table(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["autoscale", "--min", "1", "--max", "2"],
                                env={**cli_env, "FLEET_AUTOSCALE_POLL": "0.1"})
    assert result.exit_code == 2 and "FLEET_AUTOSCALE_POLL=0.1 must be between 0.2 and 60" in result.output
    cfg = load({"FLEET_HOME": "/x", "FLEET_AUTOSCALE_DOWN_WINDOW": "30", "OCR_WORKERS": "2"})
    p = policy_from(cfg, 1, 3)
    assert (p.down_window, p.up_window, p.cooldown, p.target, p.workers) == (30, 5, 30, 2, 2)
    assert config_hash(cfg, "process") == config_hash(cfg.replace(autoscale_cooldown=1.0), "process")


def test_up_checks_the_autoscale_settings_before_starting_anything(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["up", "--no-install", "--autoscale", "1:3"],
                                env={**cli_env, "FLEET_AUTOSCALE_CPU_TARGET": "inf"})
    assert result.exit_code == 1 and "FLEET_AUTOSCALE_CPU_TARGET must be a finite" in result.output
    assert not Path(cli_env["FLEET_HOME"], "run").exists()


def test_stop_without_an_autoscaler_says_so(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["autoscale", "--stop"], env=cli_env)
    assert result.exit_code == 0 and "no autoscaler was running" in result.output


def test_status_shows_target_and_last_decision() -> None:
    auto = {"running": True, "min": 1, "max": 3, "target": 3, "load": 8.0, "cpu": 0.6,
            "last_decision": "scale up 1 -> 3 [up]: 8 job(s) on 1 instance(s)",
            "last_change": "scale up 1 -> 3 [up]: 8 job(s) on 1 instance(s)", "last_change_time": 0}
    table = render_table(FleetStatus(instances=[], services={"autoscale": auto}, gateway="http://x"))
    assert "autoscale: target 3 instance(s) within 1..3, load 8.0 job(s), CPU 0.6 core(s)" in table
    assert "last decision: scale up 1 -> 3" in table and "last change at" in table
    stopped = render_table(FleetStatus(instances=[], services={"autoscale": {**auto, "running": False}},
                                       gateway="http://x"))
    assert "autoscale (not running): target 3" in stopped


class ListedBackend:
    """The one backend call the loop makes: instances(); scaling goes through `apply`, recorded here."""

    name = "process"

    def __init__(self, n: int) -> None:
        self.infos = [_info(p) for p in range(1, n + 1)]

    def instances(self) -> list[InstanceInfo]:
        return list(self.infos)


@dataclass
class LoopFleet:
    cfg: FleetConfig
    backend: ListedBackend


def test_the_loop_applies_records_and_survives_a_failed_scale(tmp_path: Path) -> None:
    now = [0.0]
    load = {"jobs": 8}
    fleet = LoopFleet(FleetConfig(home=tmp_path), ListedBackend(1))
    applied: list[int] = []

    def apply(f: LoopFleet, n: int) -> None:
        applied.append(n)
        if n == 2:
            raise FleetError("timed out waiting for new instances")
        f.backend.infos = [_info(p) for p in range(1, n + 1)]

    scaler = Autoscaler(fleet=fleet, policy=Policy(min=1, max=3, up_window=4, down_window=10, cooldown=5),
                        apply=apply, clock=lambda: now[0],
                        scrape=lambda a: InstanceMetrics(0, 0, 0, load["jobs"] if a.endswith(":1") else 0))
    kinds = []
    for _ in range(4):
        kinds.append(scaler.step().kind)
        now[0] += 2
    assert kinds == ["pending-up", "pending-up", "up", "hold"] and applied == [3]
    state = read_state(fleet.cfg)
    assert state["target"] == 3 and state["last_change"]["line"].startswith("scale up 1 -> 3 [up]")
    load["jobs"] = 0
    while len(fleet.backend.infos) > 1 and now[0] < 60:
        scaler.step()
        now[0] += 2
    assert applied == [3, 1] and now[0] >= 8 + 10  # not before the scale-down window
    assert max(s.t for s in scaler.history) - scaler.history[0].t <= 10 + 1 + 2  # history is trimmed

    load["jobs"] = 3  # wants 2: the scale fails, is logged and recorded, and the loop goes on
    now[0] += 10
    for _ in range(4):
        scaler.step()
        now[0] += 2
    assert applied[2] == 2 and "timed out" in read_state(fleet.cfg)["last_change"]["error"]
