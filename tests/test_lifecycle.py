"""Instance lifecycle against real servers: Redis failures, late Consul, and draining on SIGTERM."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import requests
from helpers import Proc, free_port, start_consul, start_instance, start_redis, text_image, wait_for

RAW = {"Content-Type": "image/jpeg"}


def passing_ids(consul_addr: str) -> set[str]:
    entries = requests.get(f"http://{consul_addr}/v1/health/service/ocr?passing=1", timeout=5).json()
    return {e["Service"]["ID"] for e in entries}


def inflight(inst: Proc) -> float:
    """The instance's in-flight gauge (summed over its workers)."""
    text = requests.get(f"{inst.extra['url']}/metrics", timeout=5).text
    found = re.search(r"^ocr_inflight_requests ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_importing_the_gunicorn_config_changes_nothing(tmp_path: Path) -> None:
    """The config module only reads settings: the environment, the allocator's re-execution and the runtime
    folder are on_starting's work, and no engine library is loaded into the master its workers fork from."""
    code = ("import os, sys; before = dict(os.environ); import ocr_app.gunicorn_conf as conf; "
            "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items()); "
            "assert not {'numpy', 'cv2', 'onnxruntime', 'paddlex'} & set(sys.modules), 'an engine library loaded'; "
            "assert callable(conf.on_starting) and conf.workers == 2")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCR_", "PROMETHEUS_"))}
    env.update(TMPDIR=str(tmp_path), OCR_ALLOCATOR="jemalloc", OCR_WORKERS="2", OCR_ENGINE="paddleocr")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == [], "a runtime folder was made"


def test_redis_killed_requests_still_succeed(tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis")
    inst = start_instance(tmp_path, redis_url=str(redis.extra["url"]))
    try:
        api = f"{inst.extra['url']}/api/ocr"
        image = text_image("Before Crash")
        assert requests.post(api, data=image, headers=RAW, timeout=60).headers["X-Cache"] == "MISS"
        assert requests.post(api, data=image, headers=RAW, timeout=60).headers["X-Cache"] == "HIT"
        redis.signal(signal.SIGKILL)
        redis.popen.wait(10)
        for word in ("After Crash", "Before Crash", "After Crash"):
            resp = requests.post(api, data=text_image(word), headers=RAW, timeout=60)
            assert resp.status_code == 200, resp.text
            assert word in " ".join(line["text"] for line in resp.json()["data"])
        metrics = requests.get(f"{inst.extra['url']}/metrics", timeout=5).text
        assert 'ocr_cache_events_total{result="error"} 0.0' not in metrics
        assert requests.get(f"{inst.extra['url']}/ready", timeout=5).status_code == 200
    finally:
        inst.stop()
        redis.stop()


def test_consul_unreachable_at_boot_then_registers(tmp_path: Path) -> None:
    consul_port = free_port()
    inst = start_instance(tmp_path, consul_addr=f"127.0.0.1:{consul_port}")
    consul = None
    try:
        assert requests.get(f"{inst.extra['url']}/ready", timeout=5).status_code == 200
        consul = start_consul(tmp_path / "consul", http_port=consul_port)
        wait_for(lambda: inst.extra["id"] in passing_ids(f"127.0.0.1:{consul_port}"), 30,
                 "the instance to register once Consul is up")
    finally:
        inst.stop()
        if consul:
            consul.stop()


def test_sigterm_deregisters_first_and_finishes_in_flight_work(tmp_path: Path, consul_agent: Proc) -> None:
    addr = str(consul_agent.extra["addr"])
    inst = start_instance(tmp_path, consul_addr=addr, extra_env={"OCR_DRAIN_SECONDS": "2"})
    wait_for(lambda: inst.extra["id"] in passing_ids(addr), 30, "the instance to pass in Consul")
    results: list[requests.Response] = []
    image = text_image("In Flight")
    worker = threading.Thread(target=lambda: results.append(
        requests.post(f"{inst.extra['url']}/api/ocr", data=image, headers=RAW, timeout=60)))
    worker.start()
    wait_for(lambda: inflight(inst) >= 1, 30, "the request to be in flight")
    inst.signal(signal.SIGTERM)
    wait_for(lambda: inst.extra["id"] not in passing_ids(addr), 5, "deregistration on SIGTERM")
    assert inst.alive(), "the instance must keep serving while it drains"
    ready = requests.get(f"{inst.extra['url']}/ready", timeout=5)
    assert ready.status_code == 503 and ready.json()["code"] == 50303
    worker.join(60)
    assert results and results[0].status_code == 200
    assert "In Flight" in results[0].text
    assert inst.popen.wait(60) == 0
    services = requests.get(f"http://{addr}/v1/agent/services", timeout=5).json()
    assert inst.extra["id"] not in services
