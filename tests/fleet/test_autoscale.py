"""The autoscaler's decision as a table: metric histories in, desired count and kind out (pure code)."""
from __future__ import annotations

import pytest

from fleetctl.autoscale import CpuMeter, Decision, Policy, PolicyError, Sample, decide, observe, recommend
from fleetctl.backends.base import InstanceInfo
from fleetctl.metrics_scrape import InstanceMetrics, summarize

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
    ({"min": 1, "max": 3, "target": 0}, "FLEET_AUTOSCALE_TARGET must be above 0"),
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
