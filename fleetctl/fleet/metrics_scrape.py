"""Read an instance's Prometheus /metrics for what `status` shows (requests served, cache hit ratio)
and what the autoscaler weighs (in-flight jobs, CPU time)."""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import requests

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Sample = tuple[str, dict[str, str], float]


@dataclass(frozen=True)
class InstanceMetrics:
    """The few numbers `status` reports per instance."""

    requests: int
    cache_hits: int
    cache_lookups: int
    inflight: int
    cpu_seconds: float | None = None  # the live workers' CPU time; None from an instance that predates it

    @property
    def cache_hit_ratio(self) -> float | None:
        """Hits over lookups that went to the cache (bypass excluded); None before the first lookup."""
        return None if self.cache_lookups == 0 else self.cache_hits / self.cache_lookups


def parse_samples(text: str) -> list[Sample]:
    """Prometheus text exposition -> (name, labels, value); comments and junk lines are skipped."""
    samples: list[Sample] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group("value"))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(m.group("labels") or ""))
        samples.append((m.group("name"), labels, value))
    return samples


def _sum(samples: list[Sample], name: str, **match: str) -> float:
    total = 0.0
    for sname, labels, value in samples:
        if sname == name and all(labels.get(k) == v for k, v in match.items()) and not math.isnan(value):
            total += value
    return total


def summarize(text: str) -> InstanceMetrics:
    """Reduce a /metrics page to InstanceMetrics (metric names from docs/architecture.md)."""
    samples = parse_samples(text)
    hits = _sum(samples, "ocr_cache_events_total", result="hit")
    lookups = sum(
        _sum(samples, "ocr_cache_events_total", result=r) for r in ("hit", "miss", "coalesced", "error")
    )
    return InstanceMetrics(
        requests=int(_sum(samples, "ocr_requests_total")),
        cache_hits=int(hits),
        cache_lookups=int(lookups),
        inflight=int(_sum(samples, "ocr_inflight_requests")),
        cpu_seconds=(_sum(samples, "ocr_worker_cpu_seconds")
                     if any(name == "ocr_worker_cpu_seconds" for name, _, _ in samples) else None),
    )


def direct_get(url: str, timeout: float) -> requests.Response:
    """GET without proxy settings from the environment: instances are always dialled directly."""
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, timeout=timeout)


def fetch(
    address: str, *, timeout: float = 2.0, get: Callable[..., requests.Response] = direct_get
) -> InstanceMetrics | None:
    """Scrape http://address/metrics; None when the instance does not answer (status shows '-')."""
    try:
        resp = get(f"http://{address}/metrics", timeout=timeout)
        resp.raise_for_status()
    except requests.RequestException:
        return None
    return summarize(resp.text)
