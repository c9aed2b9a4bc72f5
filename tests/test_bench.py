"""bench/: the ab parser, the summary, the image set, the process plumbing, and a real smoke run.

The ab samples below were printed by ApacheBench 2.3 against small loopback servers: one with varying
body lengths (Length "failures"), one that also answers 503, one refused, one time-limited.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import wait_for
from werkzeug.formparser import parse_form_data
from werkzeug.test import EnvironBuilder

from bench import (
    ab,
    documents,
    engine_limit,
    fleet_runner,
    images,
    peer,
    plan,
    plots,
    procs,
    profile,
    report,
    runner,
    score,
    searchable,
    smoke,
    summary,
)
from bench.__main__ import main
from bench.fleet import FleetSession, FleetStatus
from bench.publish import publish

HEAD = """This is ApacheBench, Version 2.3 <$Revision$>
Copyright 1996 Adam Twiss, Zeus Technology Ltd, http://www.zeustech.net/
Licensed to The Apache Software Foundation, http://www.apache.org/

Benchmarking 127.0.0.1 (be patient).....done


Server Software:        BaseHTTP/0.6
Server Hostname:        127.0.0.1
Server Port:            18082

Document Path:          /api/ocr
"""

AB_LENGTH_AND_NON2XX = HEAD + """Document Length:        12 bytes

Concurrency Level:      4
Time taken for tests:   0.076 seconds
Complete requests:      20
Failed requests:        13
   (Connect: 0, Receive: 0, Length: 13, Exceptions: 0)
Non-2xx responses:      5
Total transferred:      2545 bytes
Total body sent:        42780
HTML transferred:       220 bytes
Requests per second:    261.45 [#/sec] (mean)
Time per request:       15.299 [ms] (mean)
Time per request:       3.825 [ms] (mean, across all concurrent requests)
Transfer rate:          32.49 [Kbytes/sec] received
                        546.14 kb/s sent
                        578.63 kb/s total

Connection Times (ms)
              min  mean[+/-sd] median   max
Connect:        0    0   0.1      0       0
Processing:    11   12   1.2     12      15
Waiting:       11   12   1.0     12      15
Total:         11   12   1.2     12      16

Percentage of the requests served within a certain time (ms)
  50%     12
  66%     13
  75%     13
  80%     13
  90%     14
  95%     16
  98%     16
  99%     16
 100%     16 (longest request)
"""

# The -e CSV of that same run, as ab wrote it: rows 98 and 99 read past ab's sample array.
AB_CSV = "Percentage served,Time in ms\n" + "\n".join((
    "0,10.964 1,10.964 2,10.964 3,11.068 4,11.068 5,11.068 6,11.068 7,11.068 8,11.098 9,11.098 10,11.098 "
    "11,11.098 12,11.098 13,11.106 14,11.106 15,11.106 16,11.106 17,11.106 18,11.325 19,11.325 20,11.325 "
    "21,11.325 22,11.325 23,11.327 24,11.327 25,11.327 26,11.327 27,11.327 28,11.404 29,11.404 30,11.404 "
    "31,11.404 32,11.404 33,11.662 34,11.662 35,11.662 36,11.662 37,11.662 38,11.807 39,11.807 40,11.807 "
    "41,11.807 42,11.807 43,11.812 44,11.812 45,11.812 46,11.812 47,11.812 48,11.871 49,11.871 50,11.871 "
    "51,11.871 52,11.871 53,12.306 54,12.306 55,12.306 56,12.306 57,12.306 58,12.707 59,12.707 60,12.707 "
    "61,12.707 62,12.707 63,12.754 64,12.754 65,12.754 66,12.754 67,12.754 68,13.001 69,13.001 70,13.001 "
    "71,13.001 72,13.001 73,13.025 74,13.025 75,13.025 76,13.025 77,13.025 78,13.036 79,13.036 80,13.036 "
    "81,13.036 82,13.036 83,13.714 84,13.714 85,13.714 86,13.714 87,13.714 88,14.079 89,14.079 90,14.079 "
    "91,14.079 92,14.079 93,15.554 94,15.554 95,15.554 96,15.554 97,15.554 98,6073139773175706.000 "
    "99,6073139773175706.000 100,15.554").split()) + "\n"

AB_CLEAN = HEAD + """Document Length:        5 bytes

Concurrency Level:      2
Time taken for tests:   0.329 seconds
Complete requests:      30
Failed requests:        0
Total transferred:      3480 bytes
Total body sent:        64170
HTML transferred:       150 bytes
Requests per second:    91.14 [#/sec] (mean)
Time per request:       21.944 [ms] (mean)
Time per request:       10.972 [ms] (mean, across all concurrent requests)
Transfer rate:          10.32 [Kbytes/sec] received
                        190.38 kb/s sent
                        200.71 kb/s total

Connection Times (ms)
              min  mean[+/-sd] median   max
Connect:        0    0   0.7      0       4
Processing:    11   21  12.9     15      54
Waiting:       11   20  12.9     15      54
Total:         11   21  12.8     16      54

Percentage of the requests served within a certain time (ms)
  50%     16
  95%     48
  99%     54
 100%     54 (longest request)
"""

AB_REFUSED = HEAD + """Document Length:        0 bytes

Concurrency Level:      2
Time taken for tests:   0.000 seconds
Complete requests:      5
Failed requests:        9
   (Connect: 0, Receive: 6, Length: 0, Exceptions: 3)
Total transferred:      0 bytes
Requests per second:    20161.29 [#/sec] (mean)

Connection Times (ms)
              min  mean[+/-sd] median   max
Total:          0    0   0.0      0       0
"""

AB_TIME_LIMITED_NOTHING_DONE = HEAD + """Document Length:        0 bytes

Concurrency Level:      2
Time taken for tests:   3.004 seconds
Complete requests:      0
Failed requests:        0
Total transferred:      113 bytes
Total body sent:        2133
HTML transferred:       2 bytes
"""

AB_SOCKET_TIMEOUT = (HEAD.split("Benchmarking")[0] + "Benchmarking 127.0.0.1 (be patient)...apr_pollset_poll: "
                     "The timeout specified has expired (70007)\n")


# -- ab output ---------------------------------------------------------------------------------------


def test_length_mismatches_are_not_failures_and_non_2xx_is_counted_apart() -> None:
    r = ab.parse_output(AB_LENGTH_AND_NON2XX, 4, 20, AB_CSV)
    assert (r.complete, r.failed_reported, r.failed_length, r.non_2xx) == (20, 13, 13, 5)
    assert r.failed_real == 0
    assert r.ok == 15
    assert r.ok_per_s == pytest.approx(15 / 0.076)
    assert r.requests_per_s == 261.45  # ab's figure still counts the 503s
    assert r.failure_rate == pytest.approx(0.25)
    assert (r.min_ms, r.mean_ms, r.median_ms, r.max_ms) == (11, 12, 12, 16)


def test_csv_rows_past_abs_sample_array_become_the_longest_request() -> None:
    r = ab.parse_output(AB_LENGTH_AND_NON2XX, 4, 20, AB_CSV)
    assert r.pct(50) == 11.871
    assert r.pct(95) == 15.554
    assert r.pct(99) == 15.554  # ab wrote 6073139773175706.000 here
    assert all(r.percentiles[p] <= r.percentiles[p + 1] for p in range(100))
    printed = ab.parse_printed_percentiles(AB_LENGTH_AND_NON2XX)
    assert printed[95] == 16 and abs(printed[95] - r.pct(95)) < 1  # -e agrees with ab's own table


def test_clean_run() -> None:
    r = ab.parse_output(AB_CLEAN, 2, 30)
    assert (r.complete, r.failed_real, r.non_2xx, r.ok) == (30, 0, 0, 30)
    assert r.time_taken_s == 0.329 and r.sd_ms == 12.8
    assert r.percentiles == {} and r.pct(99) is None  # no CSV given: no guessed percentiles


def test_receive_and_exception_errors_are_real_failures() -> None:
    r = ab.parse_output(AB_REFUSED, 2, 5)
    assert (r.failed_receive, r.failed_exceptions, r.failed_real, r.ok) == (6, 3, 9, 0)
    assert r.failure_rate == 1.0


def test_time_limited_run_with_nothing_done() -> None:
    r = ab.parse_output(AB_TIME_LIMITED_NOTHING_DONE, 2, 50, None, time_limit_s=2)
    assert r.complete == 0 and r.time_limited and r.mean_ms is None
    assert r.ok_per_s == 0.0 and r.failed_real == 0


def test_aborted_run_counts_its_unreported_requests_as_failed() -> None:
    r = ab.parse_output(AB_SOCKET_TIMEOUT, 2, 6)
    assert r.aborted is not None and "timeout specified has expired" in r.aborted
    assert r.failed_real == 6 and r.failure_rate == 1.0


def test_unparseable_output_is_an_error() -> None:
    with pytest.raises(ab.AbError):
        ab.parse_output("ab: invalid option -- 'Z'\n", 1, 1)


def test_result_json_round_trip() -> None:
    r = ab.parse_output(AB_LENGTH_AND_NON2XX, 4, 20, AB_CSV)
    data = json.loads(json.dumps(r.to_json()))
    assert data["failed_real"] == 0 and data["p99_ms"] == 15.554
    assert ab.AbResult.from_json(data) == r


def test_ab_command_puts_time_limit_before_count(tmp_path: Path) -> None:
    spec = ab.AbSpec(url="http://127.0.0.1:1/api/ocr", body=tmp_path / "a.jpg", content_type="image/jpeg",
                     concurrency=4, requests=8, headers=("Cache-Control: no-cache",), time_limit_s=30)
    cmd = spec.command(tmp_path / "a.csv")
    assert cmd.index("-t") < cmd.index("-n")  # ab's -t resets -n to 50000
    assert cmd[cmd.index("-H") + 1] == "Cache-Control: no-cache"
    assert cmd[cmd.index("-s") + 1] == str(ab.DEFAULT_TIMEOUT_S) and "-e" in cmd and "-r" in cmd
    with pytest.raises(ValueError):
        ab.AbSpec("u", tmp_path, "x", concurrency=5, requests=4).command(tmp_path / "b.csv")


# -- summary and report -------------------------------------------------------------------------------


def _level(target: str, c: int, ok_per_s: float, instances: int | None = None, mode: str = "cold",
           failed: int = 0, non_2xx: int = 0, length: int = 0, p99: float | None = None) -> dict[str, Any]:
    lv: dict[str, Any] = {"target": target, "concurrency": c, "mode": mode, "cpu": {"server_cores": 1.9},
                          "ab": {"ok_per_s": ok_per_s, "failed_real": failed, "non_2xx": non_2xx,
                                 "failed_length": length, "complete": 10, "p99_ms": p99, "mean_ms": 5.0,
                                 "median_ms": 4.0, "p95_ms": p99, "failure_rate": 0.0}}
    if instances is not None:
        lv["instances"] = instances
    return lv


def _results() -> dict[str, Any]:
    return {
        "mode": "full",
        "engine": {"cores": 2, "limit_img_s": 2.0, "limit_set_img_s": 2.1, "runs": []},
        "fleet": {
            "all_cores_instances": 2,
            "levels": [
                _level("fleet", 1, 0.9, 1), _level("fleet", 4, 1.0, 1, non_2xx=3),
                _level("fleet", 1, 1.0, 2), _level("fleet", 4, 1.9, 2, length=9), _level("fleet", 8, 1.8, 2),
                _level("fleet", 50, 2500.0, 2, mode="warm", p99=40.0, failed=1),
                _level("fleet", 50, 900.0, 1, mode="warm", p99=90.0),
            ],
            "rss": {"1": [{"id": "a", "rss_mb": 250.0}], "2": [{"id": "a", "rss_mb": 260.5},
                                                             {"id": "b", "rss_mb": 240.0}]},
        },
        "peer": {"levels": [_level("peer", 1, 0.5), _level("peer", 4, 1.0), _level("peer", 8, 1.5)]},
    }


def test_summary_keys_and_ratios() -> None:
    s = summary.summarize(_results())
    for key in ("engine_limit_img_s", "fleet_cold_img_s", "cold_over_limit", "peer_req_s", "fleet_over_peer",
                "warm_req_s_c50", "warm_p99_ms_c50", "failed_total", "rss_mb_max"):
        assert key in s
    assert s["fleet_cold_img_s"] == 1.9 and s["fleet_cold_at_c"] == 4  # best cold level at 2 instances
    assert s["cold_over_limit"] == pytest.approx(0.95)
    assert s["peer_req_s"] == 1.5  # c >= 4 only
    assert s["fleet_over_peer_by_c"] == {"4": 1.9, "8": 1.2}
    assert s["fleet_over_peer"] == 1.2  # the worst equal-concurrency ratio
    assert (s["warm_req_s_c50"], s["warm_p99_ms_c50"]) == (2500.0, 40.0)
    assert (s["failed_total"], s["failed_real_total"], s["non_2xx_total"]) == (4, 1, 3)
    assert s["length_mismatch_total"] == 9  # listed, never added to failures
    assert s["rss_mb_max"] == 260.5


def test_per_core_ratios_discount_cores_taken_by_neighbours() -> None:
    results = _results()
    results["load_image"] = "receipt_en"
    results["engine"]["runs"] = [{"label": "receipt_en", "processes": 2, "cpu": {"engine_cores": 1.0}}]
    best = results["fleet"]["levels"][3]  # 2 instances, c=4, 1.9 img/s
    best["cpu"] = {"server_cores": 1.8, "infra_cores": 0.2}
    s = summary.summarize(results)
    assert s["engine_img_per_core_s"] == 2.0  # 2.0 img/s on the one core the engine got
    assert s["fleet_cold_img_per_core_s"] == 0.95  # 1.9 img/s on 2.0 cores, plumbing included
    assert s["cold_over_limit_per_core"] == pytest.approx(0.475)
    assert summary.per_core(1.0, {"server_cores": 0.0}, ("server",)) is None


def test_targets_say_by_how_much() -> None:
    checks = {c["key"]: c for c in summary.check_targets(summary.summarize(_results()))}
    assert checks["cold_over_limit"]["met"] is True
    assert checks["fleet_over_peer"]["met"] is False and checks["fleet_over_peer"]["gap"].startswith("-20.0%")
    assert checks["failed_total"]["gap"] == "4 instead of 0"
    assert checks["warm_p99_ms_c50"]["met"] is True
    empty = summary.check_targets(summary.summarize({}))
    assert all(c["met"] is None for c in empty)


def test_report_renders_every_section(tmp_path: Path) -> None:
    results = _results()
    results["summary"] = summary.summarize(results)
    results["fleet"]["profiles"] = {"cold": {"seconds": 20, "concurrency": 4, "instances": 2, "profile": {
        "samples": 10, "stages": {"detection": 6, "recognition": 4}, "top_frames": [{"frame": "run (x.py:1)",
                                                                                      "samples": 7}]}}}
    results["cpu_speed"] = [{"at": "start", "mops": 10.0}, {"at": "after the peer", "mops": 4.0}]
    results["fleet"]["skipped"] = ["1 instance(s): the quick plan's time budget was spent"]
    text = report.render(results, {"latency": "latency_vs_concurrency.png"}, asset_prefix="benchmarks/")
    needles = ("speed changed during the run", "Skipped: 1 instance(s)", "## Summary", "**MISSED**", "-20.0%",
               "## 1. Engine limit", "### cold", "### warm", "](benchmarks/latency_vs_concurrency.png)",
               "## 3. Peer", "## 4. Memory", "detection | 60.0%", "length (not failures)")
    for needle in needles:
        assert needle in text, needle


# -- images, accuracy, plan -----------------------------------------------------------------------------


def test_generated_images_are_deterministic(tmp_path: Path) -> None:
    first, truth = images.render("receipt_zh", seed=7)
    again, truth_again = images.render("receipt_zh", seed=7)
    other, _ = images.render("receipt_zh", seed=8)
    assert first == again and truth == truth_again
    assert first != other
    assert first[:3] == b"\xff\xd8\xff" and any("合计" in line for line in truth)


def test_generate_writes_the_set_and_its_ground_truth(tmp_path: Path) -> None:
    made = images.generate(tmp_path, names=["sign_en", "page_zh_small"])
    assert [im.name for im in made] == ["page_zh_small", "sign_en"]
    manifest = json.loads((tmp_path / images.MANIFEST).read_text(encoding="utf-8"))
    assert [m["name"] for m in manifest["images"]] == ["page_zh_small", "sign_en"]
    assert made[0].width == 800 and made[0].height == 1000 and made[0].lang == "zh"
    assert {kind for _, kind, _, _, _ in images.LAYOUT} == {"page", "receipt", "sign"}
    (tmp_path / "sign_en.txt").write_text("EXIT\nNO PARKING\n", encoding="utf-8")
    loaded = images.load_dir(tmp_path)
    assert [im.name for im in loaded] == ["page_zh_small", "sign_en"]
    assert loaded[1].truth == ("EXIT", "NO PARKING") and loaded[1].kind == "photo"


def test_word_accuracy() -> None:
    assert score.tokens("ORANGE JUICE  17.52") == ["orange", "juice", "17.52"]
    assert score.tokens("年度报告〇") == ["年", "度", "报", "告", "〇"]
    assert score.recall(["Hello world", "你好"], ["hello", "你"]) == 0.5
    assert score.recall(["a a b"], ["a b b"]) == pytest.approx(2 / 3)
    assert score.answer_lines({"data": [{"text": "x"}]}) == ["x"]
    assert score.answer_lines({"0": {"rec_txt": "y"}}) == ["y"]


def test_plans_bound_the_matrix() -> None:
    assert plan.FULL.instances == (1, 2, 3, 5) and plan.FULL.cold_concurrency == (1, 4, 8, 16, 32, 50)
    for p in (plan.FULL, plan.QUICK):
        for c in (*p.cold_concurrency, *p.warm_concurrency):
            assert p.cold_requests(c) >= c and p.warm_requests(c) >= c
    assert plan.FULL.cold_requests(4) == 8 and plan.FULL.cold_requests(50) == 50
    assert plan.FULL.warm_requests(50) == 4000
    assert plan.all_cores_instances((1, 2, 3, 5), 2) == 2
    assert plan.all_cores_instances((1, 3, 5), 2) == 3
    assert plan.all_cores_instances((1, 2), 4) == 2


# -- fleet control, peer body, profile ------------------------------------------------------------------


class RecordingCtl:
    """A fleetctl stand-in that records calls: FleetSession's restore logic without a fleet."""

    def __init__(self, running: int | None) -> None:
        self.count = running
        self.calls: list[str] = []

    def status(self) -> FleetStatus | None:
        if self.count is None:
            return None
        inst = [{"id": f"i{k}", "port": 8001 + k, "healthy": True, "in_upstream": True} for k in range(self.count)]
        return FleetStatus(inst, "http://127.0.0.1:8080", True)

    def up(self, n: int) -> None:
        self.calls.append(f"up {n}")
        self.count = n

    def scale(self, n: int) -> None:
        self.calls.append(f"scale {n}")
        self.count = n

    def down(self) -> None:
        self.calls.append("down")
        self.count = None


def test_session_restores_the_users_fleet() -> None:
    ctl = RecordingCtl(running=3)
    with FleetSession(ctl) as session:  # type: ignore[arg-type]
        session.scale_to(1)
        session.scale_to(5)
    assert ctl.calls == ["scale 1", "scale 5", "scale 3"]


def test_session_stops_a_fleet_it_started_even_on_error() -> None:
    ctl = RecordingCtl(running=None)
    with pytest.raises(KeyboardInterrupt), FleetSession(ctl) as session:  # type: ignore[arg-type]
        session.scale_to(2)
        raise KeyboardInterrupt
    assert ctl.calls == ["up 2", "down"]


def test_status_parsing() -> None:
    text = json.dumps({"instances": [{"id": "ocr-8001", "port": 8001, "healthy": True, "in_upstream": False,
                                      "rss_mb": 245.4}],
                       "services": {"nginx": {"running": True, "pid": 42}}, "gateway": "http://127.0.0.1:8080"})
    st = FleetStatus.parse(text)
    assert st.gateway_running and st.ports() == [8001] and st.ready == []
    assert st.rss() == [{"id": "ocr-8001", "rss_mb": 245.4}]
    assert st.service_pid("nginx") == 42 and st.gateway_port() == 8080


def test_peer_multipart_body_parses_as_a_form_upload(tmp_path: Path) -> None:
    image = tmp_path / "x.jpg"
    image.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    ctype = peer.multipart_body(image, tmp_path / "body.bin")
    body = (tmp_path / "body.bin").read_bytes()
    env = EnvironBuilder(method="POST", data=body, content_type=ctype).get_environ()
    _stream, _form, files = parse_form_data(env)
    upload = files["image_file"]
    try:
        assert upload.filename == "x.jpg" and upload.read() == image.read_bytes()
    finally:
        upload.close()
    assert peer.pins()[0] == "rapidocr-api" and any(p.startswith("onnxruntime") for p in peer.pins())


def test_profile_folds_stacks_into_stages() -> None:
    raw = ("process 1:\"gunicorn\";handle (gunicorn/workers/gthread.py:1);__call__ (rapidocr/ch_ppocr_det/main.py:9);"
           "run (onnxruntime/capi/onnxruntime_inference_collection.py:2) 30\n"
           "process 1:\"gunicorn\";handle (gunicorn/workers/gthread.py:1);__call__ (rapidocr/ch_ppocr_rec/main.py:3)"
           ";run (onnxruntime/capi/onnxruntime_inference_collection.py:2) 10\n"
           "process 1:\"gunicorn\";decode_image (ocr_app/documents/images.py:5) 5\n"
           "garbage line\n")
    prof = profile.fold(raw)
    assert prof.samples == 45
    assert prof.stages == {"detection": 30, "recognition": 10, "image decode and checks": 5}
    assert prof.leaves[0] == ("run (capi/onnxruntime_inference_collection.py:2)", 40)


# -- process plumbing -----------------------------------------------------------------------------------


def test_sigterm_unwinds_like_ctrl_c() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(procs.Interrupted), procs.signals_unwind():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted at once by the handler
    assert signal.getsignal(signal.SIGTERM) == before


def test_stop_group_ends_the_whole_process_group(tmp_path: Path) -> None:
    proc = procs.start_group(["sh", "-c", "sleep 60 & sleep 60"], tmp_path / "log")
    wait_for(lambda: len(_group(proc.pid)) >= 2, 10, "both sleeps to start", interval=0.05)
    procs.stop_group(proc, grace_s=5)
    assert _group(proc.pid) == []


def _group(pgid: int) -> list[str]:
    """Live members of a session (zombies are already dead and only wait for init to reap them)."""
    out = subprocess.run(["ps", "-o", "pid=,stat=", "-s", str(pgid)], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split() and not line.split()[1].startswith("Z")]


def test_engine_limit_spreads_jobs_over_processes(tmp_path: Path) -> None:
    imgs = images.generate(tmp_path, names=["sign_en", "sign_zh"])
    run = engine_limit.measure(imgs, 2, rounds=3, factory="bench.engine_limit:decode_only")
    assert run.images == 6 and len(run.jobs) == 6 and run.img_per_s > 0
    assert set(run.per_image_mean_s()) == {"sign_en", "sign_zh"}
    assert engine_limit.representative(run) in {"sign_en", "sign_zh"}


def test_engine_limit_reports_a_broken_engine(tmp_path: Path) -> None:
    imgs = images.generate(tmp_path, names=["sign_en"])
    with pytest.raises(engine_limit.EngineLimitError, match="failed"):
        engine_limit.measure(imgs, 1, factory="bench.engine_limit:no_such_factory")


# -- end to end: real ab against a real (tiny) server ---------------------------------------------------


def test_smoke_run_end_to_end(tmp_path: Path) -> None:
    started = time.monotonic()
    out_dir = smoke.run(tmp_path, say=lambda _: None)
    assert time.monotonic() - started < 30
    results = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    s = results["summary"]
    runs = len(smoke.SMOKE_CONCURRENCY) * 2
    # every fifth request is refused with 503: non-2xx, never "failed"; varying bodies: Length only
    assert s["non_2xx_total"] == runs * smoke.SMOKE_REQUESTS // smoke.REFUSE_EVERY
    assert s["failed_real_total"] == 0 and s["length_mismatch_total"] > 0
    assert s["requests_total"] == runs * smoke.SMOKE_REQUESTS
    level = results["fleet"]["levels"][0]["ab"]
    assert level["p99_ms"] is not None and level["p99_ms"] < 10_000  # the -e CSV was read and sane
    for png in ("latency_vs_concurrency.png", "throughput_vs_instances.png", "failure_rate_vs_concurrency.png",
                "cold_vs_warm.png"):
        assert (out_dir / png).stat().st_size > 1000
    text = (out_dir / "report.md").read_text(encoding="utf-8")
    assert "non-2xx" in text and "Length mismatches" in text
    assert (out_dir / "raw" / "smoke-cold-c4.txt").read_text().startswith("$ ab ")

    # the CLI re-renders that run and publishes it into a docs folder
    cli = CliRunner().invoke(main, ["--rerender", str(out_dir)])
    assert cli.exit_code == 0, cli.output
    cli = CliRunner().invoke(main, ["--publish", str(out_dir), "--docs", str(tmp_path / "docs")])
    assert cli.exit_code == 0, cli.output
    text = (tmp_path / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks") and "\n## Latest report:" in text and "\n### Summary" in text
    assert "](benchmarks/latency_vs_concurrency.png)" in text
    assert (tmp_path / "docs" / "benchmarks" / "cold_vs_warm.png").exists()
    assert publish(out_dir, tmp_path / "docs2").name == "benchmarks.md"
    # the sections the documents and searchable-PDF benches publish on their own survive a full publish
    sections = (f"{documents.BEGIN}\nDOCUMENTS-RUN\n{documents.END}\n"
                f"{searchable.BEGIN}\nSEARCHABLE-RUN\n{searchable.END}\n")
    (tmp_path / "docs2" / "benchmarks.md").write_text(f"# Benchmarks\n\n{sections}", encoding="utf-8")
    text = publish(out_dir, tmp_path / "docs2").read_text(encoding="utf-8")
    assert "DOCUMENTS-RUN" in text and "SEARCHABLE-RUN" in text and "\n## Latest report:" in text


def test_cli_rejects_bad_lists() -> None:
    result = CliRunner().invoke(main, ["--instances", "1,x", "--no-fleet", "--no-peer", "--no-engine"])
    assert result.exit_code == 2 and "comma-separated" in result.output


def test_plots_draw_partial_runs_without_warnings(tmp_path: Path) -> None:
    results = _results()
    results["fleet"]["levels"] = [lv for lv in results["fleet"]["levels"] if lv["mode"] == "cold"]
    results["peer"] = {}
    made = plots.render_all(results, tmp_path)  # warnings are errors in this suite
    assert sorted(made) == ["cold_warm", "failures", "latency", "throughput"]
    assert all((tmp_path / name).stat().st_size > 1000 for name in made.values())
    assert plots.render_all({}, tmp_path / "empty") == {}


def test_gateway_access_log_names_the_non_2xx_codes(tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    log_path.write_text('{"status":200}\n', encoding="utf-8")
    mark = fleet_runner.AccessLog.at(log_path)
    assert mark is not None
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write('{"status":200,"uri":"/api/ocr"}\n{"status":504}\n{"status":503}\n{"status":504}\nnot json\n')
    assert mark.statuses() == {"200": 1, "503": 1, "504": 2}
    assert fleet_runner.AccessLog.at(tmp_path / "missing.log") is None


def test_backfill_recovers_abs_timeout_from_the_raw_log(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "fleet-1i-cold-c1.txt").write_text(
        "$ ab -r -s 120 -n 4 -c 1 -p x.jpg -T image/jpeg -e x.csv http://127.0.0.1:8080/api/ocr\n# exit 0\n",
        encoding="utf-8")
    assert runner.backfill({}, tmp_path)["ab_timeout_s"] == 120
    assert runner.backfill({"ab_timeout_s": 300}, tmp_path)["ab_timeout_s"] == 300
