"""The summary block and the target checks, computed from one run's results only.

Other tools read `summary` from results.json, so its keys are a contract: engine_limit_img_s,
fleet_cold_img_s, cold_over_limit, peer_req_s, fleet_over_peer, warm_req_s_c50, warm_p99_ms_c50,
failed_total, rss_mb_max. Throughput everywhere is 2xx answers per second: a fast 503 is not work done.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WARM_C = 50
PEER_MIN_C = 4


@dataclass(frozen=True)
class Target:
    """One acceptance target from the issue."""

    key: str
    label: str
    op: str  # ">=" or "<=" or "=="
    bound: float

    def check(self, value: float | None) -> dict[str, Any]:
        if value is None:
            return {"key": self.key, "label": self.label, "target": f"{self.op} {self.bound:g}",
                    "value": None, "met": None, "gap": "not measured"}
        met = {">=": value >= self.bound, "<=": value <= self.bound, "==": value == self.bound}[self.op]
        if met:
            gap = "met"
        elif self.op == "==":
            gap = f"{value:g} instead of {self.bound:g}"
        else:
            gap = f"{(value - self.bound) / self.bound * 100:+.1f}% ({value:.4g} vs {self.bound:g})"
        return {"key": self.key, "label": self.label, "target": f"{self.op} {self.bound:g}",
                "value": value, "met": met, "gap": gap}


TARGETS = (
    Target("cold_over_limit", "cold throughput / engine limit (all cores)", ">=", 0.95),
    Target("fleet_over_peer", "fleet / rapidocr-api at equal concurrency >= 4 (worst)", ">=", 1.5),
    Target("warm_req_s_c50", "warm req/s at c=50", ">=", 2000),
    Target("warm_p99_ms_c50", "warm p99 ms at c=50", "<=", 50),
    Target("failed_total", "failed + non-2xx requests, whole matrix", "==", 0),
    Target("rss_mb_max", "RSS per instance, MiB", "<=", 350),
)


def levels(results: dict[str, Any], target: str, mode: str | None = None,
           instances: int | None = None) -> list[dict[str, Any]]:
    """Matrix levels of one target (fleet or peer), optionally one mode and instance count."""
    source = (results.get(target) or {}).get("levels") or []
    return [lv for lv in source
            if (mode is None or lv.get("mode") == mode)
            and (instances is None or lv.get("instances") == instances)]


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def per_core(rate: float | None, cpu: dict[str, Any] | None, groups: tuple[str, ...]) -> float | None:
    """Images per CPU-second the measured side actually got: robust to neighbours taking cores.

    The fleet is charged for its instances and its plumbing (nginx, Redis, Consul, sync loop).
    """
    if rate is None or not cpu:
        return None
    cores = sum(float(cpu.get(f"{g}_cores") or 0.0) for g in groups)
    return round(rate / cores, 4) if cores > 0 else None


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """The ratios the issue asks for, all from this one run."""
    engine = results.get("engine") or {}
    limit = engine.get("limit_img_s")
    fleet = results.get("fleet") or {}
    full = fleet.get("all_cores_instances")

    cold = levels(results, "fleet", "cold", full)
    best_cold = max(cold, key=lambda lv: lv["ab"]["ok_per_s"], default=None)
    fleet_cold = best_cold["ab"]["ok_per_s"] if best_cold else None

    limit_run = next((r for r in engine.get("runs", []) if r.get("label") == results.get("load_image")), None)
    engine_eff = per_core(limit, limit_run.get("cpu") if limit_run else None, ("engine",))
    fleet_eff = per_core(fleet_cold, best_cold.get("cpu") if best_cold else None, ("server", "infra"))

    peer_levels = [lv for lv in levels(results, "peer") if lv["concurrency"] >= PEER_MIN_C]
    best_peer = max(peer_levels, key=lambda lv: lv["ab"]["ok_per_s"], default=None)
    by_c: dict[str, float | None] = {}
    by_c_core: dict[str, float | None] = {}
    cold_by_c = {lv["concurrency"]: lv for lv in cold}
    for lv in peer_levels:
        c = lv["concurrency"]
        if c in cold_by_c:
            mine = cold_by_c[c]
            by_c[str(c)] = _ratio(mine["ab"]["ok_per_s"], lv["ab"]["ok_per_s"])
            by_c_core[str(c)] = _ratio(per_core(mine["ab"]["ok_per_s"], mine.get("cpu"), ("server", "infra")),
                                       per_core(lv["ab"]["ok_per_s"], lv.get("cpu"), ("server",)))
    ratios = [v for v in by_c.values() if v is not None]
    core_ratios = [v for v in by_c_core.values() if v is not None]

    warm50 = next((lv for lv in levels(results, "fleet", "warm", full) if lv["concurrency"] == WARM_C), None)
    matrix = levels(results, "fleet")
    failed_real = sum(lv["ab"]["failed_real"] for lv in matrix)
    non_2xx = sum(lv["ab"]["non_2xx"] for lv in matrix)
    rss = [float(i["rss_mb"]) for snap in (fleet.get("rss") or {}).values() for i in snap
           if i.get("rss_mb") is not None]
    peer_matrix = levels(results, "peer")
    others = [float((x.get("cpu") or {}).get("other_cores", 0.0))
              for x in [*matrix, *peer_matrix, *engine.get("runs", [])]]

    return {
        "engine_limit_img_s": limit,
        "engine_limit_set_img_s": engine.get("limit_set_img_s"),
        "all_cores_instances": full,
        "fleet_cold_img_s": fleet_cold,
        "fleet_cold_at_c": best_cold["concurrency"] if best_cold else None,
        "cold_over_limit": _ratio(fleet_cold, limit),
        # The same ratio per CPU-second each side got: what the serving stack costs, net of neighbours.
        "engine_img_per_core_s": engine_eff,
        "fleet_cold_img_per_core_s": fleet_eff,
        "cold_over_limit_per_core": _ratio(fleet_eff, engine_eff),
        "peer_req_s": best_peer["ab"]["ok_per_s"] if best_peer else None,
        "peer_at_c": best_peer["concurrency"] if best_peer else None,
        "fleet_over_peer": min(ratios) if ratios else None,
        "fleet_over_peer_by_c": by_c,
        "fleet_over_peer_per_core": min(core_ratios) if core_ratios else None,
        "fleet_over_peer_per_core_by_c": by_c_core,
        "warm_req_s_c50": warm50["ab"]["ok_per_s"] if warm50 else None,
        "warm_p99_ms_c50": warm50["ab"].get("p99_ms") if warm50 else None,
        "failed_total": failed_real + non_2xx if matrix else None,
        "failed_real_total": failed_real,
        "non_2xx_total": non_2xx,
        "length_mismatch_total": sum(lv["ab"]["failed_length"] for lv in matrix),
        "requests_total": sum(lv["ab"]["complete"] for lv in matrix),
        "peer_failed_total": sum(lv["ab"]["failed_real"] + lv["ab"]["non_2xx"] for lv in peer_matrix),
        "rss_mb_max": max(rss) if rss else None,
        # Cores busy with anything but the measured servers and ab: neighbours on a shared machine.
        "noise_other_cores_mean": round(sum(others) / len(others), 3) if others else None,
        "noise_other_cores_max": round(max(others), 3) if others else None,
        "rss_mb_by_instances": {n: max((float(i["rss_mb"]) for i in snap if i.get("rss_mb") is not None),
                                       default=None)
                                for n, snap in (fleet.get("rss") or {}).items()},
    }


def check_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [t.check(summary.get(t.key)) for t in TARGETS]
