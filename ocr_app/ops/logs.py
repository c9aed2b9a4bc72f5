"""Instance logs: text or JSON lines (OCR_LOG_FORMAT), and one access line per request with its id.

The access line is written by a WSGI middleware outside everything else, so cache hits the fast path
answers below Flask are logged like the rest. It goes straight to the log handler's stream in the
handler's format, without a LogRecord, which keeps a cache hit cheap.
The request id is the gateway's `X-Request-Id` (nginx logs the same one), or a new one when a client called
the instance directly; it is echoed in the response and attached to every log line written meanwhile.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from pythonjsonlogger.json import JsonFormatter

from ocr_app.config import Settings

ACCESS_LOGGER = "ocr_app.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
# Keys the app may set in the WSGI environ for the access line (http/handlers.py sets the error code).
ERROR_CODE_KEY = "ocr.error_code"
PROFILE_KEY = "ocr.profile"
# Probes answer every second (Consul, Prometheus); their successes are logged at DEBUG only.
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})
# A request id we accept from a client: printable ASCII, no spaces, bounded; anything else is replaced.
_VALID_ID = re.compile(r"[!-~]{1,128}")

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _ContextFilter(logging.Filter):
    """Adds the instance and the current request's id to every record."""

    def __init__(self, instance: str) -> None:
        super().__init__()
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = self.instance
        rid = request_id.get()
        if rid is not None and not hasattr(record, "request_id"):
            record.request_id = rid
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object per line: ts (ISO-8601, UTC), level, logger, msg, pid and any extra fields."""
    return JsonFormatter("{levelname}{name}{message}{process}", style="{", timestamp="ts",
                         rename_fields={"levelname": "level", "name": "logger", "message": "msg",
                                        "process": "pid"},
                         json_ensure_ascii=False)


def log_handler(fmt: str, instance: str) -> logging.StreamHandler[Any]:
    """A stderr handler in `fmt` (text or json) that stamps the instance and request id on each line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.ocr_fleet = True  # type: ignore[attr-defined]  # ours: replaced, never duplicated
    handler.setFormatter(json_formatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_ContextFilter(instance))
    return handler


def configure_logging(settings: Settings) -> logging.StreamHandler[Any]:
    """Route the app's logs to stderr in the chosen format; idempotent (tests build many apps)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "ocr_fleet", False)]:
        root.removeHandler(old)
    handler = log_handler(settings.log_format, settings.instance_id)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    if settings.log_format == "json":
        # Library warnings (Pillow's "Corrupt EXIF data" on hostile uploads) otherwise reach stderr as
        # bare text and break a log that promises one JSON object per line.
        logging.captureWarnings(True)
    return handler


def gunicorn_logger_class(settings: Settings) -> type | None:
    """With OCR_LOG_FORMAT=json, a gunicorn logger whose own lines (master and workers) are JSON too.

    Not a logconfig_dict: that turns gunicorn's access-log machinery on for every request even with its
    output dropped, at a cost per cache hit. The app writes the access line itself.
    """
    if settings.log_format != "json":
        return None
    from gunicorn.glogging import Logger

    class JsonLogger(Logger):
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            configure_logging(settings)  # the master's root handler; each worker's app replaces it
            for handler in list(self.error_log.handlers):
                self.error_log.removeHandler(handler)
            self.error_log.propagate = True  # to the root's JSON handler

    return JsonLogger


def incoming_request_id(environ: dict[str, Any]) -> str:
    """The gateway's id when it is a sane token, otherwise a fresh one (nginx's shape: 32 hex digits)."""
    sent = environ.get("HTTP_X_REQUEST_ID", "")
    return sent if _VALID_ID.fullmatch(sent) else os.urandom(16).hex()


class AccessLog:
    """Outermost WSGI middleware: request id in, echoed out, and one access line when the body is sent."""

    def __init__(self, app: WSGIApp, instance: str, handler: logging.StreamHandler[Any], fmt: str) -> None:
        self.app = app
        self.instance = instance
        self.handler = handler  # the access line goes to its stream, under its lock
        self.json = fmt == "json"
        self.log = logging.getLogger(ACCESS_LOGGER)  # only for its level

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        rid = incoming_request_id(environ)
        request_id.set(rid)  # a worker thread serves one request at a time
        seen: dict[str, Any] = {}

        def _start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"] = status
            seen["headers"] = headers
            headers.append(("X-Request-Id", rid))
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            body = self.app(environ, _start)
        except BaseException:
            request_id.set(None)
            raise
        return _LoggedBody(body, lambda sent: self._write(environ, rid, seen, sent, started))

    def _write(self, environ: dict[str, Any], rid: str, seen: dict[str, Any], sent: int, started: float) -> None:
        try:
            status = int(str(seen.get("status", "500")).split(" ", 1)[0])
            path = environ.get("PATH_INFO", "")
            level = logging.INFO
            if status >= 500:
                level = logging.ERROR if status == 500 else logging.WARNING
            elif status < 400 and path in QUIET_PATHS:
                level = logging.DEBUG
            if not self.log.isEnabledFor(level):
                return
            method = environ.get("REQUEST_METHOD", "")
            cache = next((v for k, v in seen.get("headers", ()) if k == "X-Cache"), None)
            ms = round((time.perf_counter() - started) * 1000, 2)
            client = environ.get("HTTP_X_CLIENT") or environ.get("REMOTE_ADDR")
            code = environ.get(ERROR_CODE_KEY)
            msg = (f"{method} {path} {status}" + (f" code={code}" if code is not None else "")
                   + f" cache={cache or '-'} {sent}B {ms}ms id={rid} client={client}")
            now = time.time()
            if not self.json:
                self._emit(f"{_asctime(now)} {logging.getLevelName(level)} [{os.getpid()}] {ACCESS_LOGGER}: {msg}")
                return
            line: dict[str, Any] = {
                "level": logging.getLevelName(level), "logger": ACCESS_LOGGER, "msg": msg, "pid": os.getpid(),
                "request_id": rid, "method": method, "path": path, "status": status, "cache": cache,
                "profile": _profile(environ), "bytes": sent, "bytes_in": int(environ.get("CONTENT_LENGTH") or 0),
                "ms": ms, "client": client, "instance": self.instance,
            }
            if code is not None:
                line["code"] = code
            line["ts"] = datetime.fromtimestamp(now, UTC).isoformat()
            self._emit(json.dumps(line, ensure_ascii=False, default=str))
        finally:
            request_id.set(None)

    def _emit(self, line: str) -> None:
        """One line to the handler's stream, as StreamHandler.emit writes it (a lost line never fails a request)."""
        handler = self.handler
        handler.acquire()
        try:
            handler.stream.write(line + "\n")
            handler.stream.flush()
        except (OSError, ValueError):
            pass
        finally:
            handler.release()


def _asctime(now: float) -> str:
    """logging's default asctime: local time with milliseconds."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now * 1000) % 1000:03d}"


def _profile(environ: dict[str, Any]) -> str | None:
    """The engine profile the request asked for: set by the app, else the `profile` query parameter."""
    chosen = environ.get(PROFILE_KEY)
    if chosen:
        return str(chosen)
    query = environ.get("QUERY_STRING", "")
    if "profile=" not in query:
        return None
    values = parse_qs(query).get("profile")
    return values[0][:64] if values else None


class _LoggedBody:
    """The response body, counted as it is sent; `on_close` runs once the server has sent it all."""

    def __init__(self, body: Iterable[bytes], on_close: Callable[[int], None]) -> None:
        self._body = body
        self._on_close = on_close
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close(self._sent)
