"""The convergence plan is pure: every scaling decision is checked here without a process."""
from __future__ import annotations

import pytest

from fleetctl.backends.types import InstanceInfo, Plan
from fleetctl.fleet.planner import PlanError, plan

H = "cfg-now"


def inst(port: int, *, h: str = H, started: float | None = None, backend: str = "process") -> InstanceInfo:
    return InstanceInfo(
        id=f"ocr-{port}", backend=backend, host="127.0.0.1", port=port, pid=port * 10,
        started_at=float(port) if started is None else started, config_hash=h,
    )


def ports(p: Plan) -> tuple[list[int], list[int], list[int]]:
    return [s.port for s in p.start], [s.instance.port for s in p.stop], [k.port for k in p.keep]


def test_empty_fleet_scale_up_takes_ports_from_base() -> None:
    p = plan(3, [], H, base_port=9000)
    assert ports(p) == ([9000, 9001, 9002], [], [])
    assert [s.id for s in p.start] == ["ocr-9000", "ocr-9001", "ocr-9002"]
    assert all(s.reason == "scale up" for s in p.start)
    assert p.final_count == 3


def test_noop_when_count_and_hash_match() -> None:
    actual = [inst(8001), inst(8002)]
    p = plan(2, actual, H)
    assert p.is_noop
    assert ports(p) == ([], [], [8001, 8002])
    assert p.describe()[0].startswith("nothing to do")


def test_zero_on_empty_is_noop() -> None:
    assert plan(0, [], H).is_noop


def test_scale_up_skips_used_ports_and_fills_gaps() -> None:
    actual = [inst(8001), inst(8003)]
    p = plan(4, actual, H, base_port=8001)
    assert ports(p) == ([8002, 8004], [], [8001, 8003])


def test_scale_up_skips_busy_ports() -> None:
    p = plan(3, [inst(8001)], H, base_port=8001, busy_ports={8002, 8004})
    assert ports(p)[0] == [8003, 8005]


def test_scale_down_stops_highest_ports_first() -> None:
    actual = [inst(8003), inst(8001), inst(8005), inst(8002)]
    p = plan(2, actual, H)
    start, stop, keep = ports(p)
    assert start == []
    assert stop == [8005, 8003]
    assert keep == [8001, 8002]
    assert all(s.reason == "scale down" for s in p.stop)


def test_scale_down_same_port_order_prefers_stopping_newest() -> None:
    # Two backends may hold the same port number on paper; newest goes first.
    old = InstanceInfo("ocr-a", "process", "127.0.0.1", 8001, started_at=100.0, config_hash=H)
    new = InstanceInfo("ocr-b", "docker", "127.0.0.1", 8001, started_at=200.0, config_hash=H)
    p = plan(1, [new, old], H)
    assert [s.instance.id for s in p.stop] == ["ocr-b"]
    assert [k.id for k in p.keep] == ["ocr-a"]


def test_scale_to_zero_stops_everything() -> None:
    p = plan(0, [inst(8001), inst(8002)], H)
    assert ports(p) == ([], [8002, 8001], [])
    assert p.final_count == 0


def test_stale_hash_is_replaced_on_new_ports() -> None:
    actual = [inst(8001, h="old"), inst(8002, h="old")]
    p = plan(2, actual, H, base_port=8001)
    start, stop, keep = ports(p)
    assert start == [8003, 8004]  # new ones come up beside the old, no capacity gap
    assert sorted(stop) == [8001, 8002]
    assert keep == []
    assert all(s.reason == "stale config" for s in p.stop)
    assert all(s.reason == "replace stale config" for s in p.start)


def test_mixed_fresh_and_stale_keeps_fresh() -> None:
    actual = [inst(8001, h="old"), inst(8002), inst(8003, h="old")]
    p = plan(2, actual, H, base_port=8001)
    start, stop, keep = ports(p)
    assert keep == [8002]
    assert start == [8004]
    assert sorted(stop) == [8001, 8003]


def test_stale_and_scale_down_together() -> None:
    actual = [inst(8001), inst(8002), inst(8003, h="old")]
    p = plan(1, actual, H)
    start, stop, keep = ports(p)
    assert (start, keep) == ([], [8001])
    assert stop == [8002, 8003]
    assert [s.reason for s in p.stop] == ["scale down", "stale config"]


def test_scale_up_with_stale_labels_extra_starts_as_scale_up() -> None:
    p = plan(3, [inst(8001, h="old")], H, base_port=8001)
    assert [s.reason for s in p.start] == ["replace stale config", "scale up", "scale up"]
    assert ports(p)[1] == [8001]


def test_plan_is_deterministic_regardless_of_input_order() -> None:
    a = [inst(8004), inst(8001, h="old"), inst(8002), inst(8003)]
    assert plan(2, a, H) == plan(2, list(reversed(a)), H)


def test_negative_count_is_rejected() -> None:
    with pytest.raises(PlanError, match="at least 0"):
        plan(-1, [], H)


def test_runs_out_of_ports() -> None:
    with pytest.raises(PlanError, match="no free port"):
        plan(3, [], H, base_port=65534)


def test_custom_id_scheme_is_respected() -> None:
    p = plan(1, [], H, base_port=7000, make_id=lambda port: f"x{port}")
    assert p.start[0].id == "x7000"


def test_to_dict_shape() -> None:
    p = plan(1, [inst(8001), inst(8002)], H)
    d = p.to_dict()
    assert d == {
        "desired": 1,
        "start": [],
        "stop": [{"id": "ocr-8002", "port": 8002, "reason": "scale down"}],
        "keep": [{"id": "ocr-8001", "port": 8001}],
        "config_hash": H,
    }
    assert any(line.startswith("stop  ocr-8002") for line in p.describe())
