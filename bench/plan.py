"""What a bench run measures: the matrix and its bounds, as plain data so a run records what it did.

Cold requests cost about a core-second or more each, so cold runs are bounded by count and time;
warm runs (cache hits) are cheap and need many requests for stable tail latencies.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """One bench profile; `full` is the issue's matrix, `quick` fits in a few minutes."""

    name: str
    instances: tuple[int, ...]
    cold_concurrency: tuple[int, ...]
    warm_concurrency: tuple[int, ...]
    peer_concurrency: tuple[int, ...]
    engine_rounds: int  # passes over the image set per engine-limit measurement
    engine_all_k: bool  # K = 1..cores; otherwise only K = cores (the limit itself)
    cold_min_requests: int
    cold_low_cap: int  # at low concurrency run up to this many requests (two waves) for a steadier rate
    cold_time_limit_s: float
    warm_min_requests: int
    warm_max_requests: int
    warm_time_limit_s: float
    profile_s: float  # 0: no profile
    time_budget_s: float | None = None  # past it, levels away from the all-cores count are skipped
    accuracy: bool = True
    peer: bool = True
    engine: bool = True
    fleet: bool = True
    profiles: bool = True  # the engine profiles table (bench/engine_profiles.py) on the hard set
    profiles_pages: int = 16
    profiles_rounds: int = 3

    def cold_requests(self, concurrency: int) -> int:
        """At least one full wave (ab needs n >= c), two at low concurrency, and a small floor."""
        return max(concurrency, min(2 * concurrency, self.cold_low_cap), self.cold_min_requests)

    def warm_requests(self, concurrency: int) -> int:
        """About 80 per concurrent client, so tail percentiles rest on more than a handful of samples."""
        return max(concurrency, min(self.warm_max_requests, max(self.warm_min_requests, 80 * concurrency)))

    def replace(self, **changes: object) -> Plan:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


FULL = Plan(
    name="full",
    instances=(1, 2, 3, 5),
    cold_concurrency=(1, 4, 8, 16, 32, 50),
    warm_concurrency=(1, 4, 8, 16, 32, 50),
    peer_concurrency=(1, 4, 8, 16, 32, 50),
    engine_rounds=2,
    engine_all_k=True,
    cold_min_requests=4,
    cold_low_cap=8,
    cold_time_limit_s=150.0,
    warm_min_requests=500,
    warm_max_requests=4000,
    warm_time_limit_s=15.0,
    profile_s=20.0,
)

QUICK = Plan(
    name="quick",
    instances=(2, 1),  # the all-cores count first: the summary rests on it
    cold_concurrency=(1, 4, 16),
    warm_concurrency=(1, 4, 16, 50),
    peer_concurrency=(4,),
    engine_rounds=1,
    engine_all_k=False,
    cold_min_requests=2,
    cold_low_cap=0,
    cold_time_limit_s=60.0,
    warm_min_requests=300,
    warm_max_requests=2000,
    warm_time_limit_s=5.0,
    profile_s=0.0,
    time_budget_s=240.0,
    accuracy=False,
    profiles_pages=8,
    profiles_rounds=2,
)

PLANS = {"full": FULL, "quick": QUICK}


def all_cores_instances(instances: tuple[int, ...], cores: int) -> int:
    """The instance count that uses every core: the first one >= cores (one engine thread each)."""
    at_least = [n for n in sorted(instances) if n >= cores]
    return at_least[0] if at_least else max(instances)
