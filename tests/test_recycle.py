"""Worker memory and recycling against a real gunicorn instance: RSS per worker in /metrics, and
OCR_MAX_REQUESTS restarts workers under load without failing a request or flapping /ready."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from helpers import Proc, start_instance, text_image, wait_for, worker_pids

RSS = re.compile(r'^ocr_worker_rss_bytes\{pid="(\d+)"\} ([0-9.e+]+)$', re.MULTILINE)


def rss_by_pid(url: str) -> dict[int, float]:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return {int(pid): float(value) for pid, value in RSS.findall(text)}


def test_workers_recycle_under_a_request_storm_without_failures(tmp_path: Path, redis_server: Proc) -> None:
    inst = start_instance(tmp_path, redis_url=str(redis_server.extra["url"]), extra_env={
        "OCR_WORKERS": "2", "OCR_MAX_REQUESTS": "20", "OCR_MAX_REQUESTS_JITTER": "5", "OCR_WARMUP": "0"})
    try:
        url = str(inst.extra["url"])
        first = worker_pids(inst.pid)
        assert len(first) == 2
        wait_for(lambda: set(rss_by_pid(url)) == first, 15, "an RSS series for each worker")
        assert all(value > 20 * 2**20 for value in rss_by_pid(url).values())  # a loaded engine is > 20 MiB

        image = text_image("Recycle Me")
        headers = {"Content-Type": "image/jpeg"}

        def one(i: int) -> tuple[str, int]:
            if i % 10 == 0:  # Consul's check, during the storm
                return "ready", requests.get(f"{url}/ready", timeout=60).status_code
            return "ocr", requests.post(f"{url}/api/ocr", data=image, headers=headers, timeout=120).status_code

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(one, range(200)))
        failures = [r for r in results if r[1] != 200]
        assert failures == [], f"{len(failures)} of {len(results)} failed: {failures[:5]}"

        later = worker_pids(inst.pid)
        assert len(later) == 2 and later != first, "at least one worker must have been recycled"
        # Dead workers' series are gone, every live worker has one.
        wait_for(lambda: set(rss_by_pid(url)) == worker_pids(inst.pid), 15, "RSS series for the live workers only")
        restarts = inst.log.read_text().count("Autorestarting worker")
        assert restarts >= 1
        print(f"\n{len(results)} requests (6 threads), {restarts} worker recycles, 0 failed")
    finally:
        inst.stop()
