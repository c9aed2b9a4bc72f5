"""`fleetctl logs` without a fleet: every log format we write is timed, merged, filtered and printed.

The lines below are copied from real logs of each writer (gunicorn, Python logging, nginx, Consul,
Redis, the gateway's JSON access log), plus the JSON instance lines with `ts` or `time`.
"""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleetctl.cli.main import main
from fleetctl.logs import FileReader, Filter, Stream, follow, history, line_time, parse_since

T0 = datetime(2026, 11, 30, 6, 52, 1, tzinfo=UTC).timestamp()


def local(text: str, fmt: str) -> float:
    """A zone-less stamp is the writer's local time, which is ours."""
    return datetime.strptime(text, fmt).timestamp()


@pytest.mark.parametrize("line, expected", [
    ('{"time":"2026-11-30T06:52:01+00:00","request_id":"abc","status":200}', T0),
    ('{"ts": 1796021521.5, "level": "info", "request_id": "abc"}', 1796021521.5),
    ('{"ts": "2026-11-30T06:52:01.250Z", "msg": "x"}', T0 + 0.25),
    ('{"level": "INFO", "msg": "access", "request_id": "abc", "ts": "2026-11-30T06:52:01.250000+00:00"}',
     T0 + 0.25),  # an instance's JSON line (OCR_LOG_FORMAT=json)
    ('{"timestamp": 1796021521500}', 1796021521.5),  # milliseconds
    ("[2026-11-30 06:52:01 +0000] [4242] [INFO] Listening at: http://127.0.0.1:8001", T0),
    ("[2026-11-30 08:52:01 +0200] [4242] [INFO] Booting worker with pid: 4243", T0),
    ("2026-11-30T06:52:01.500Z [WARN]  agent: Node name will not be discoverable", T0 + 0.5),
    ("2026-11-30 06:52:01,125 INFO [4243] ocr_app.engine.rapid: engine ready",
     local("2026-11-30 06:52:01", "%Y-%m-%d %H:%M:%S") + 0.125),
    ("2026/11/30 06:52:01 [notice] 77#77: signal process started", local("2026-11-30 06:52:01",
                                                                          "%Y-%m-%d %H:%M:%S")),
    ("4242:M 30 Nov 2026 06:52:01.250 * Ready to accept connections tcp",
     local("30 Nov 2026 06:52:01", "%d %b %Y %H:%M:%S") + 0.25),
    ("Traceback (most recent call last):", None),
    ('{"no_time": true}', None),
])
def test_each_writer_s_time_is_read(line: str, expected: float | None) -> None:
    ts = line_time(line)
    assert ts == (None if expected is None else pytest.approx(expected, abs=1e-3))


@pytest.mark.parametrize("line", [
    "{", '{"ts": true}', '{"ts": "soon"}', '{"ts": 1e308}', '{"ts": NaN}', '{"ts": -Infinity}', '{"ts": "-5"}',
    '{"time": "9999-99-99T00:00:00"}', '["ts"]',
    "[9999-99-99 99:99:99] impossible", "2026/13/40 25:61:61 [error]", "1:M 31 Feb 2026 06:52:01.1 *",
    "1:M 30 Foo 2026 06:52:01 *", "\x00\xff", "[]", "{" * 10000,
    '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
])
def test_hostile_lines_are_text_not_errors(line: str) -> None:
    ts = line_time(line)
    assert ts is None or isinstance(ts, float)
    (rec,) = Stream("x", Lines(line)).read()
    assert json.loads(rec.to_json())["source"] == "x"


def test_since_takes_durations_and_iso_times() -> None:
    assert parse_since("5m", now=1000.0) == 700.0
    assert parse_since("90", now=1000.0) == 910.0
    assert parse_since("1.5h", now=10000.0) == 4600.0
    assert parse_since("2026-11-30T06:52:01+00:00") == T0
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday")


def test_file_reader_returns_only_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    reader = FileReader(path)
    assert list(reader.read_new()) == []  # not there yet
    path.write_bytes(b"one\ntw")
    assert list(reader.read_new()) == ["one"]
    with path.open("ab") as fh:
        fh.write(b"o\nthree\n")
    assert list(reader.read_new()) == ["two", "three"]
    assert list(reader.read_new()) == []
    path.write_bytes(b"new\n")  # rotated: shorter than what we read
    assert list(reader.read_new()) == ["new"]


def test_file_reader_stays_bounded_on_a_log_without_newlines(tmp_path: Path) -> None:
    path = tmp_path / "junk.log"
    path.write_bytes(b"\xff" * (3 << 20) + b"\nend\n")
    lines = list(FileReader(path).read_new())
    assert lines[-1] == "end" and max(map(len, lines)) <= 2 << 20
    assert sum(map(len, lines[:-1])) == 3 << 20  # nothing lost, only cut


class Lines:
    def __init__(self, *lines: str) -> None:
        self.pending = list(lines)

    def read_new(self) -> list[str]:
        out, self.pending = self.pending, []
        return out


def test_sources_are_merged_by_time_and_tracebacks_stay_with_their_line() -> None:
    sources = {
        "ocr-8001": Lines("[2026-11-30 06:52:03 +0000] [1] [ERROR] boom", "Traceback (most recent call last):",
                          "ValueError: x"),
        "gateway": Lines('{"time":"2026-11-30T06:52:02+00:00","request_id":"abc","status":200}',
                         '{"time":"2026-11-30T06:52:04+00:00","request_id":"def","status":503}'),
    }
    records = list(history(sources, Filter())[0])
    assert [r.line[:30] for r in records] == [
        '{"time":"2026-11-30T06:52:02+0', "[2026-11-30 06:52:03 +0000] [1", "Traceback (most recent call la",
        "ValueError: x", '{"time":"2026-11-30T06:52:04+0']
    assert [r.source for r in records] == ["gateway", "ocr-8001", "ocr-8001", "ocr-8001", "gateway"]


def test_since_and_grep_filter_and_json_carries_the_source() -> None:
    sources = {"gateway": Lines('{"time":"2026-11-30T06:52:01+00:00","request_id":"old"}',
                                '{"time":"2026-11-30T06:53:01+00:00","request_id":"abc","status":200}'),
               "ocr-8001": Lines("2026-11-30T06:53:02Z plain text with abc", "2026-11-30T06:53:03Z other")}
    records = list(history(sources, Filter(since=T0 + 30, pattern=re.compile("abc")))[0])
    objs = [json.loads(r.to_json()) for r in records]
    assert [o["source"] for o in objs] == ["gateway", "ocr-8001"]
    assert objs[0]["request_id"] == "abc" and objs[0]["status"] == 200
    assert objs[0]["time"] == "2026-11-30T06:53:01.000Z"
    assert objs[1]["message"] == "2026-11-30T06:53:02Z plain text with abc"
    assert records[1].to_text(8) == "ocr-8001 | 2026-11-30T06:53:02Z plain text with abc"


def test_follow_yields_new_lines_and_finds_new_sources() -> None:
    first = Lines()
    records, streams = history({"a": first}, Filter())
    assert list(records) == []  # consumed first: that is what positions the streams
    later = Lines("2026-11-30T06:52:05Z from a new instance")
    clock = iter(float(i) for i in range(1000))
    found = follow(streams, Filter(), lambda: {"a": first, "b": later}, sleep=lambda _s: None,
                   clock=lambda: next(clock))
    first.pending.append("2026-11-30T06:52:04Z appended")
    assert next(found).line == "2026-11-30T06:52:04Z appended"
    rec = next(found)
    assert (rec.source, rec.line) == ("b", "2026-11-30T06:52:05Z from a new instance")


def test_stream_ignores_blank_lines() -> None:
    assert [r.line for r in Stream("x", Lines("", "  ", "text")).read()] == ["text"]


def test_cli_merges_services_and_instances_from_fleet_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "nginx-access.log").write_text(
        '{"time":"2026-11-30T06:52:02+00:00","request_id":"abc","status":200}\n')
    (home / "logs" / "ocr-8001.log").write_text("[2026-11-30 06:52:01 +0000] [1] [INFO] Listening at: x\n"
                                               "[2026-11-30 06:52:03 +0000] [1] [INFO] abc done\n")
    (home / "logs" / "sync.log").write_text("")
    env = {"FLEET_HOME": str(home), "FLEET_CONSUL_ADDR": "", "FLEET_REDIS_URL": ""}
    out = CliRunner().invoke(main, ["logs"], env=env)
    assert out.exit_code == 0, out.output
    # stdout: the lines; stderr: that no fleet runs in this home now (these are the last one's logs).
    assert [line.split(" | ")[0].strip() for line in out.stdout.splitlines()] == ["ocr-8001", "gateway", "ocr-8001"]
    assert "note: no fleet runs in" in out.stderr
    grep = CliRunner().invoke(main, ["logs", "--json", "--grep", "abc", "gateway"], env=env)
    assert [json.loads(line)["source"] for line in grep.stdout.splitlines()] == ["gateway"]
    unknown = CliRunner().invoke(main, ["logs", "ocr-9"], env=env)
    assert unknown.exit_code == 1 and "no running instance or log source 'ocr-9'" in unknown.output
