"""A small client of the fleet's POST /api/ocr: one page image in, the fleet's JSON answer out.

It knows nothing of OCRmyPDF (the plugin translates its errors), so it stays testable and reusable. A fleet
that is starting, scaling or overloaded answers 503/429 or refuses connections for a while: those are
retried with backoff (Retry-After honoured) within a bounded number of attempts and seconds; any other 4xx
is the caller's mistake and is reported at once with the fleet's own JSON `msg`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

RETRIED_STATUSES = frozenset({429, 502, 503, 504})  # 502/504: the gateway while an instance restarts
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0


class FleetClientError(Exception):
    """The fleet could not OCR the page; the message says why and what to check."""

    def __init__(self, msg: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(msg)
        self.msg, self.status, self.code = msg, status, code


class FleetUnavailable(FleetClientError):
    """Down, refusing or overloaded for longer than the retry budget allowed."""


class FleetRefused(FleetClientError):
    """A 4xx answer: the request itself is wrong (bad key, unknown profile, image over a limit)."""


@dataclass(frozen=True)
class FleetSettings:
    """Where the fleet is and how long to keep trying; resolved once from flags and environment."""

    url: str
    key: str | None = None
    profile: str | None = None
    lang: str = ""  # the fleet's lang= ("ru", "de,en"); "" for the profile's own languages (Chinese, English)
    timeout: float = 300.0  # seconds for one page, retries and waits included
    attempts: int = 8

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the fleet URL must be http(s)://host[:port], got {self.url!r}")
        if self.timeout <= 0 or self.attempts < 1:
            raise ValueError("the fleet timeout must be > 0 seconds and attempts >= 1")

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + "/api/ocr"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (the fleet sends delta-seconds; an HTTP date is ignored)."""
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except ValueError:
        return None


def _error_msg(resp: requests.Response) -> tuple[str, int | None]:
    """The fleet's JSON `msg` and `code`, or the start of whatever else answered (a proxy's HTML page)."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("msg"):
        code = body.get("code")
        return str(body["msg"]), code if isinstance(code, int) else None
    return (resp.text.strip()[:200] or resp.reason or "no body"), None


class FleetClient:
    """POSTs page images to one fleet URL through one requests.Session (its connection pool)."""

    def __init__(self, settings: FleetSettings, session: requests.Session,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.session, self.sleep, self.clock = settings, session, sleep, clock

    def _headers(self, content_type: str) -> dict[str, str]:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if self.settings.key:
            headers["X-API-Key"] = self.settings.key  # the gateway also takes `Authorization: Bearer`
        return headers

    def ocr(self, image: bytes, content_type: str) -> dict[str, Any]:
        """The fleet's answer for one image (with word boxes); raises FleetClientError once retries are spent."""
        s = self.settings
        params = {"words": "1", **({"profile": s.profile} if s.profile else {}), **({"lang": s.lang} if s.lang else {})}
        deadline = self.clock() + s.timeout
        delay, last = BACKOFF_FIRST, "no answer"
        for attempt in range(1, s.attempts + 1):
            left = deadline - self.clock()
            if left <= 0:
                break
            wait: float | None = None
            try:
                resp = self.session.post(s.endpoint, params=params, data=image, headers=self._headers(content_type),
                                         timeout=(min(10.0, left), left))
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"cannot reach it ({type(exc).__name__})"
            else:
                if resp.status_code == 200:
                    return self._parsed(resp)
                msg, code = _error_msg(resp)
                if resp.status_code not in RETRIED_STATUSES:
                    kind = FleetRefused if 400 <= resp.status_code < 500 else FleetClientError
                    raise kind(f"the fleet at {s.url} answered {resp.status_code}"
                               f"{f' {code}' if code else ''}: {msg}", resp.status_code, code)
                last, wait = f"it answered {resp.status_code}: {msg}", _retry_after(resp.headers)
            if attempt == s.attempts:
                break
            pause = min(wait if wait is not None else delay, BACKOFF_MAX * 3, max(0.0, deadline - self.clock()))
            self.sleep(pause)
            delay = min(delay * 2, BACKOFF_MAX)
        raise FleetUnavailable(f"the fleet at {s.url} did not OCR the page after {attempt} attempt(s) within "
                               f"{s.timeout:g}s (--fleet-attempts, --fleet-timeout): {last}")

    def _parsed(self, resp: requests.Response) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise FleetClientError(f"{self.settings.endpoint} answered 200 without the fleet's JSON "
                                   "(is the URL the fleet's gateway?)", 200)
        return body
