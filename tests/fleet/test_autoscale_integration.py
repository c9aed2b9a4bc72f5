"""Autoscaling for real: `up --autoscale 1:3` on the process backend, cold ab load, and back to one.

The windows are short (FLEET_AUTOSCALE_*) so the test is bounded: a 30 s scale-down window, a
5 s cooldown, a 1 s poll. Cold load is ab at c=8 with `Cache-Control: no-cache`, so every request
runs the engine. A light trickle of requests runs from the start of the load until the fleet is
back to one instance, so the scale-down's drain is under traffic too.
"""
from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import pid_alive, wait_for
from test_fleet_integration import Fleet, make_fleet, parse_ab, teardown_fleet

WINDOW_S = 30
LOAD_S = 40
SETTINGS = {"FLEET_AUTOSCALE_DOWN_WINDOW": str(WINDOW_S), "FLEET_AUTOSCALE_COOLDOWN": "5",
            "FLEET_AUTOSCALE_POLL": "1", "FLEET_AUTOSCALE_UP_WINDOW": "5"}


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = make_fleet(tmp_path_factory.mktemp("autoscale"), "process")
    f.env.update(SETTINGS)
    try:
        yield f
    finally:
        teardown_fleet(f)


def autoscale_state(f: Fleet) -> dict[str, Any]:
    state: dict[str, Any] = f.status()["services"].get("autoscale") or {}
    return state



def count(f: Fleet) -> int:
    return len(f.status()["instances"])


class Trickle:
    """One request every quarter second through the gateway; every answer that is not 200 is kept."""

    def __init__(self, f: Fleet) -> None:
        self.fleet, self.stop, self.sent = f, threading.Event(), 0
        self.bad: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with requests.Session() as s:
            s.trust_env = False
            while not self.stop.wait(0.25):
                try:
                    resp = self.fleet.ocr(s)
                    if resp.status_code != 200:
                        self.bad.append(f"{resp.status_code} {resp.text[:200]}")
                except requests.RequestException as exc:
                    self.bad.append(repr(exc))
                self.sent += 1


def cold_ab(f: Fleet, seconds: int, concurrency: int = 8) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ab", "-q", "-t", str(seconds), "-n", "1000000", "-c", str(concurrency), "-s", "60",
         "-H", "Cache-Control: no-cache", "-p", str(f.image_path), "-T", "image/png", f"{f.gateway}/api/ocr"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.mark.timeout(420)
def test_cold_load_grows_the_fleet_and_its_end_shrinks_it_after_the_window(scaled: Fleet) -> None:
    f = scaled
    out = f.run("up", "-n", "1", "--autoscale", "1:3", timeout=240)
    assert "autoscaler running" in out.stderr
    assert count(f) == 1
    state = autoscale_state(f)
    assert state["running"] and (state["min"], state["max"], state["target"]) == (1, 3, 1)
    assert f.run("up", "-n", "1", "--autoscale", "1:3").stderr.count(f"pid {state['pid']}") == 1  # kept

    trickle = Trickle(f)
    with requests.Session() as s:
        s.trust_env = False
        assert f.ocr(s).status_code == 200  # the trickle's image is cached; ab's bypasses the cache
    t_load = time.monotonic()
    trickle.thread.start()
    ab = cold_ab(f, LOAD_S)
    try:
        wait_for(lambda: count(f) >= 2, LOAD_S, "the autoscaler to add an instance under c=8", interval=0.5)
        t_grown = time.monotonic() - t_load
        grown = autoscale_state(f)
        peak = count(f)
        while ab.poll() is None:
            peak = max(peak, count(f))
            time.sleep(1)
        ab_out, _ = ab.communicate(timeout=90)
    finally:
        if ab.poll() is None:
            ab.kill()
            ab.wait()
    t_end = time.monotonic()
    result = parse_ab(ab_out)
    assert result.complete > 0
    assert result.real_failures == 0, result.output
    assert "scale up" in (grown.get("last_change") or ""), grown

    wait_for(lambda: count(f) == 1, WINDOW_S + 90, "the fleet to shrink back to one instance", interval=1)
    t_shrunk = time.monotonic() - t_end
    trickle.stop.set()
    trickle.thread.join(timeout=90)
    state = autoscale_state(f)
    print(f"\nautoscale under ab -c 8 cold for {LOAD_S}s: >= 2 instances after {t_grown:.1f}s, peak {peak}; "
          f"ab {result.complete} requests, {result.failed} 'failed' of which {result.length} Length only; "
          f"back to 1 instance {t_shrunk:.1f}s after the load (window {WINDOW_S}s); "
          f"trickle {trickle.sent} requests, {len(trickle.bad)} failed")
    assert trickle.bad == [] and trickle.sent > 0
    assert "scale down" in state["last_change"] and state["target"] == 1
    assert t_shrunk >= WINDOW_S * 0.8  # the window held the fleet: no shrink right after the load
    table = f.run("status").stdout
    assert "autoscale: target 1" in table and "last decision:" in table
    assert "scale down" in f.run("logs", "autoscale").stdout

    f.run("up", "-n", "1", "--autoscale", "1:2")  # new bounds: the daemon is replaced
    old, state = int(state["pid"]), autoscale_state(f)
    assert state["running"] and state["max"] == 2 and state["pid"] != old and not pid_alive(old)
    pid = int(state["pid"])
    f.run("down", timeout=180)
    assert not pid_alive(pid)
    assert not Path(f.home / "run" / "autoscale.json").exists()
