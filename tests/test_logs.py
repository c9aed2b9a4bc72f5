"""Instance logs: one access line per request with the gateway's request id, in text or JSON lines."""
from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from helpers import Proc, text_image, wait_for
from inproc import RAW, FakeEngine, build_app, drop_log_handler, log_to, png

from ocr_app import Settings
from ocr_app.config import ConfigError


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """What the app's log handler writes, for apps built in this test; the handler is removed after."""
    buf = io.StringIO()
    yield buf
    drop_log_handler()


# Test-client calls here are buffered: like a real server, that closes the body, which writes the access line.
def capture(app: Flask, buf: io.StringIO) -> None:
    log_to(buf)


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def access(buf: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in lines(buf) if line["logger"] == "ocr_app.access"]


@pytest.fixture
def app(tmp_path: Path, stream: io.StringIO) -> Flask:
    app = build_app(tmp_path / "run", log_format="json")
    capture(app, stream)
    return app


def test_access_line_has_every_field_and_echoes_the_request_id(app: Flask, stream: io.StringIO) -> None:
    client = app.test_client()
    image = png(1)
    resp = client.post("/api/ocr?profile=fast", data=image, buffered=True,
                       headers={**RAW, "X-Request-Id": "abc", "X-Client": "team-a"})
    assert resp.status_code == 200 and resp.headers["X-Request-Id"] == "abc"
    [line] = access(stream)
    assert line["request_id"] == "abc"
    assert {k: line[k] for k in ("method", "path", "status", "cache", "profile", "client", "instance", "level")} == {
        "method": "POST", "path": "/api/ocr", "status": 200, "cache": "MISS", "profile": "fast",
        "client": "team-a", "instance": "inproc", "level": "INFO"}
    assert line["bytes"] == len(resp.data) and line["bytes_in"] == len(image)
    assert isinstance(line["ms"], float) and line["ms"] >= 0
    assert datetime.fromisoformat(line["ts"]).tzinfo is not None
    assert "code" not in line


def test_fast_path_hits_are_logged_too(app: Flask, stream: io.StringIO) -> None:
    client = app.test_client()
    image = png(2)
    client.post("/api/ocr", data=image, headers=RAW, buffered=True)
    hit = client.post("/api/ocr", data=image, headers={**RAW, "X-Request-Id": "hit-1"}, buffered=True)
    assert hit.headers["X-Cache"] == "HIT" and hit.headers["X-Request-Id"] == "hit-1"
    last = access(stream)[-1]
    assert (last["request_id"], last["cache"], last["status"], last["bytes"]) == ("hit-1", "HIT", 200, len(hit.data))
    assert last["client"] == "127.0.0.1"  # no X-Client: the peer address


@pytest.mark.parametrize("sent", ["", "has space", "x" * 129, "tab\there", "é", "a\x7fb"])
def test_a_missing_or_hostile_request_id_is_replaced(app: Flask, stream: io.StringIO, sent: str) -> None:
    headers = {"X-Request-Id": sent} if sent else {}
    resp = app.test_client().get("/nope", headers=headers, buffered=True)
    rid = resp.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert access(stream)[-1]["request_id"] == rid


@pytest.mark.parametrize(("query", "logged"), [
    ("profile=" + "p" * 5000, "p" * 64),  # bounded in the log
    ("profile=a&profile=b", "a"),
    ("profile=%ff%fe", "\ufffd\ufffd"),  # not UTF-8
    ("profile", None),
    ("profile=&x=1", None),
    ("%%%&&&==", None),
])
def test_hostile_profile_queries_are_logged_bounded(app: Flask, stream: io.StringIO, query: str,
                                                   logged: str | None) -> None:
    assert app.test_client().get(f"/nope?{query}", buffered=True).status_code == 404
    assert access(stream)[-1]["profile"] == logged


def test_errors_carry_their_code_and_the_request_id(tmp_path: Path, stream: io.StringIO) -> None:
    engine = FakeEngine(fail=RuntimeError("engine exploded"))
    app = build_app(tmp_path / "run", engine, log_format="json")
    capture(app, stream)
    client = app.test_client()
    bad_image = client.post("/api/ocr", data=b"not an image", headers={**RAW, "X-Request-Id": "bad-1"}, buffered=True)
    crash = client.post("/api/ocr", data=png(3), headers={**RAW, "X-Request-Id": "boom-1"}, buffered=True)
    assert (bad_image.status_code, crash.status_code) == (415, 500)
    bad, boom = access(stream)
    assert (bad["status"], bad["code"], bad["level"]) == (415, 41501, "INFO")
    assert (boom["status"], boom["code"], boom["level"]) == (500, 50001, "ERROR")
    traceback = [line for line in lines(stream) if line["logger"] == "ocr_app.http.handlers"]
    assert traceback and traceback[0]["request_id"] == "boom-1" and "engine exploded" in traceback[0]["exc_info"]


def test_probe_successes_stay_quiet_but_their_failures_are_logged(app: Flask, stream: io.StringIO,
                                                                  tmp_path: Path) -> None:
    client = app.test_client()
    for path in ("/health", "/ready", "/metrics"):
        assert client.get(path, buffered=True).status_code == 200
    assert access(stream) == []
    (tmp_path / "run" / "draining").touch()
    assert client.get("/ready", buffered=True).status_code == 503
    [line] = access(stream)
    assert (line["path"], line["code"], line["level"]) == ("/ready", 50303, "WARNING")


def test_text_format_is_one_readable_line(tmp_path: Path, stream: io.StringIO) -> None:
    app = build_app(tmp_path / "run", log_format="text")
    capture(app, stream)
    app.test_client().get("/nope", headers={"X-Request-Id": "t-1"}, buffered=True)
    [line] = stream.getvalue().splitlines()
    assert "ocr_app.access: GET /nope 404 code=40401" in line and "id=t-1" in line


def test_access_lines_have_the_shape_of_every_other_line(tmp_path: Path, stream: io.StringIO) -> None:
    """The access line is written without a LogRecord: it must still look like the formatter's lines."""
    app = build_app(tmp_path / "json", log_format="json")
    capture(app, stream)
    app.test_client().get("/nope", buffered=True)
    logging.getLogger("ocr_app.test").warning("a plain line")
    access_line, plain = lines(stream)
    base = {"ts", "level", "logger", "msg", "pid", "instance"}
    assert base <= set(access_line) and base <= set(plain)
    assert access_line["pid"] == plain["pid"] and access_line["instance"] == plain["instance"]
    for line in (access_line, plain):
        assert datetime.fromisoformat(line["ts"]).utcoffset() is not None

    text = io.StringIO()
    app = build_app(tmp_path / "text", log_format="text")
    capture(app, text)
    app.test_client().get("/nope", buffered=True)
    logging.getLogger("ocr_app.test").warning("a plain line")
    shape = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) \[\d+\] ocr_app\.[a-z]+: .+")
    assert all(shape.fullmatch(line) for line in text.getvalue().splitlines()), text.getvalue()


def test_log_format_is_validated() -> None:
    with pytest.raises(ConfigError, match="OCR_LOG_FORMAT"):
        Settings.from_env({"OCR_LOG_FORMAT": "xml"})


def test_real_instance_writes_json_lines_with_the_request_id(instance: Proc) -> None:
    """The session instance runs with OCR_LOG_FORMAT=json: gunicorn's own lines are JSON too."""
    rid = f"test-{uuid.uuid4().hex[:8]}"
    resp = requests.post(f"{instance.extra['url']}/api/ocr", data=text_image("Log Line"),
                         headers={"Content-Type": "image/jpeg", "X-Request-Id": rid}, timeout=60)
    assert resp.status_code == 200 and resp.headers["X-Request-Id"] == rid

    def found() -> dict[str, Any] | None:
        for raw in instance.log.read_text().splitlines():
            if rid in raw:
                return dict(json.loads(raw))
        return None

    line = wait_for(found, 10, "the access line in the instance log")
    assert isinstance(line, dict) and line["status"] == 200 and line["instance"] == instance.extra["id"]
    parsed = [json.loads(raw) for raw in instance.log.read_text().splitlines() if raw.strip()]
    assert any(p["logger"] == "gunicorn.error" for p in parsed)
