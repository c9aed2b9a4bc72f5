"""The Grafana dashboard (docs/grafana/ocr-fleet.json) queries only metrics and labels a real instance exports."""
from __future__ import annotations

import json
import re
from typing import Any

import requests
from helpers import REPO, Proc, text_image
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = REPO / "docs" / "grafana" / "ocr-fleet.json"
# Labels Prometheus adds when it scrapes a target.
SCRAPE_LABELS = {"instance", "job"}


def queries(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    found += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def exported(instance: Proc) -> dict[str, set[str]]:
    """Sample name -> its label names, from the instance's /metrics."""
    text = requests.get(f"{instance.extra['url']}/metrics", timeout=5).text
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def test_every_queried_metric_and_label_exists(instance: Proc) -> None:
    url = f"{instance.extra['url']}/api/ocr"
    # Traffic first, so counters with labels have samples: a success (runs the engine) and an error.
    assert requests.post(url, data=text_image("Dashboard"), headers={"Content-Type": "image/jpeg"},
                         timeout=60).status_code == 200
    bad = requests.post(url, data=b"not an image", headers={"Content-Type": "image/jpeg"}, timeout=10)
    assert bad.status_code == 415
    dashboard = json.loads(DASHBOARD.read_text())
    samples = exported(instance)
    exprs = queries(dashboard)
    assert len(exprs) >= 10
    used = set()
    for expr in exprs:
        names = set(re.findall(r"\bocr_[a-z_]+\b", expr))
        assert names, f"no OCR metric in {expr!r}"
        for name in names:
            assert name in samples, f"{name} (in {expr!r}) is not exported by an instance"
        labels = set(SCRAPE_LABELS).union(*(samples[n] for n in names))
        grouped = {label.strip() for group in re.findall(r"\bby \(([^)]*)\)", expr) for label in group.split(",")}
        matched = set(re.findall(r"[{,]\s*([a-z_]+)\s*=~?", expr))
        legend_and_values = set(re.findall(r"label_values\([a-z_]+, ([a-z_]+)\)", expr))
        for label in grouped | matched | legend_and_values:
            assert label in labels, f"label {label!r} (in {expr!r}) is not on {sorted(names)}"
        used |= names
    # The dashboard covers requests, latency, cache outcomes, in-flight work, rejections and memory.
    for family in ("ocr_requests_total", "ocr_request_seconds_bucket", "ocr_cache_events_total",
                   "ocr_inflight_requests", "ocr_rejections_total", "ocr_worker_rss_bytes"):
        assert family in used


def test_dashboard_is_importable_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "ocr-fleet" and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            assert "$instance" in target["expr"], "every query follows the instance selector"
