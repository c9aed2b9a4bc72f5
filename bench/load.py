"""One load level: an ab run against a target, with where the CPU went and a wait until the servers idle.

Fleet and peer are driven through this same function, so both sides are measured the same way.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ab, procs

NO_CACHE = "Cache-Control: no-cache"


@dataclass(frozen=True)
class Load:
    """What is sent: one body to one URL, with the headers that pick cold or warm."""

    url: str
    body: Path
    content_type: str
    headers: tuple[str, ...] = ()
    keepalive: bool = False


def run_level(load: Load, concurrency: int, requests: int, time_limit_s: float | None,
              server_pids: Callable[[], Sequence[int]], raw_dir: Path, label: str,
              ab_path: str = "ab", infra_pids: Sequence[int] = (),
              idle_timeout_s: float = 180.0) -> dict[str, Any]:
    """Run ab once, then wait for the servers to finish anything ab abandoned before the next level."""
    spec = ab.AbSpec(url=load.url, body=load.body, content_type=load.content_type, concurrency=concurrency,
                     requests=requests, headers=load.headers, time_limit_s=time_limit_s,
                     keepalive=load.keepalive)
    pids = list(server_pids())
    with procs.CpuMeter({"server": pids, "infra": infra_pids}) as meter:
        result = ab.run(spec, raw_dir, label, ab_path)
    try:
        idle_wait = round(procs.wait_idle(pids, timeout_s=idle_timeout_s), 2)
    except procs.WaitTimeout:
        idle_wait = -1.0  # recorded: the next level may have started against a busy server
    return {"concurrency": concurrency, "requests": requests, "ab": result.to_json(), "cpu": meter.result,
            "idle_wait_s": idle_wait, "raw": f"raw/{label}.txt"}


def describe(level: dict[str, Any]) -> str:
    """One progress line per level for the console."""
    r = level["ab"]
    p99 = r.get("p99_ms")
    return (f"c={level['concurrency']:>3} n={r['complete']:>5} ok/s={r['ok_per_s']:8.2f} "
            f"mean={r.get('mean_ms') or 0:8.0f}ms p99={p99 if p99 is not None else '-':>8}ms "
            f"fail={r['failed_real']} non2xx={r['non_2xx']}"
            + (f" ABORTED({r['aborted']})" if r.get("aborted") else "")
            + (" [time-limited]" if r.get("time_limited") else ""))
