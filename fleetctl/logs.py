"""`fleetctl logs`: instance, gateway and service logs merged into one stream ordered by time.

Each source is a reader of new complete lines. A line's time comes from the line itself: a JSON line's
`ts`/`time` field (instances in json mode, the gateway's access log) or the timestamp a text line starts
with (gunicorn, Python logging, nginx, Consul, Redis). A line without one (a traceback) belongs to the
line before it. No Click here: the command only parses options and prints what these functions yield.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

POLL_S = 0.2
CHUNK = 1 << 20
RESCAN_S = 1.0  # how often -f looks for new sources (instances started meanwhile)
TIME_KEYS = ("ts", "time", "timestamp", "@timestamp")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# 2026-11-30 06:52:01,123 / [2026-11-30 06:52:01 +0000] / 2026/11/30 06:52:01 / 2026-11-30T06:52:01.123Z
_ISOISH = re.compile(
    r"^\[?(\d{4})[-/](\d{2})[-/](\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*(Z|[+-]\d{2}:?\d{2})?"
)
# Redis: 1234:M 30 Nov 2026 06:52:01.123 * Ready to accept connections
_REDIS = re.compile(r"^\d+:[A-Z] (\d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2})(?:\.(\d+))?")


class LogReader(Protocol):
    """One log, read incrementally: each call yields the complete lines written since the last."""

    def read_new(self) -> Iterable[str]: ...


class FileReader:
    """A log file read from where the last call stopped, a chunk at a time, so a large log is never
    held whole; a partial last line waits for its newline."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""

    def read_new(self) -> Iterator[str]:
        try:
            fh = self.path.open("rb")
        except OSError:
            return
        with fh:
            if fh.seek(0, 2) < self.offset:  # truncated or replaced: start over
                self.offset, self._partial = 0, b""
            fh.seek(self.offset)
            while chunk := fh.read(CHUNK):
                self.offset += len(chunk)
                *lines, self._partial = (self._partial + chunk).split(b"\n")
                if len(self._partial) > CHUNK:  # a "line" without end (binary junk): cut it, stay bounded
                    lines.append(self._partial)
                    self._partial = b""
                for line in lines:
                    yield line.decode(errors="replace").rstrip("\r")


@dataclass(frozen=True)
class Record:
    """One log line with the source it came from and its time (epoch seconds; None if unknown)."""

    ts: float | None
    source: str
    line: str

    def to_json(self) -> str:
        """One JSON object: source and normalised time, then the line's own fields (or its text).

        The line is parsed again here rather than kept parsed: held records stay as small as the text.
        """
        when = None if self.ts is None else datetime.fromtimestamp(self.ts, UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        fields = _json_object(self.line)
        body = fields if fields is not None else {"message": self.line}
        return json.dumps({**body, "source": self.source, "time": when}, ensure_ascii=False)

    def to_text(self, width: int) -> str:
        return f"{self.source.ljust(width)} | {self.line}"


def parse_since(text: str, now: float | None = None) -> float:
    """`30s`, `5m`, `2h`, `1d` (ago) or an ISO time -> epoch seconds; ValueError names the format."""
    now = time.time() if now is None else now
    m = _DURATION.match(text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (30s, 5m, 2h, 1d) nor an ISO time") from None
    return stamp.timestamp()


def _epoch(value: Any) -> float | None:
    """A JSON time field: epoch seconds (or milliseconds) as a number or string, or an ISO string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value) / 1000 if value > 1e11 else float(value)
        return seconds if 0 <= seconds < 1e11 else None  # also drops NaN and infinities
    if isinstance(value, str):
        try:
            return _epoch(float(value))
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError):
            return None
    return None


def _json_object(line: str) -> dict[str, Any] | None:
    """The object a JSON line holds, or None for any other line."""
    stripped = line.lstrip()
    if not stripped.startswith("{"):
        return None
    try:
        obj = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def line_time(line: str) -> float | None:
    """The time a line carries: a JSON line's time field, or the timestamp a text line starts with."""
    obj = _json_object(line)
    if obj is not None:
        for key in TIME_KEYS:
            if key in obj:
                ts = _epoch(obj[key])
                if ts is not None:
                    return ts
        return None
    try:
        return _text_time(line.lstrip())
    except (ValueError, OverflowError):  # the right shape but no real date: just text
        return None


def _text_time(line: str) -> float | None:
    """The timestamp a text line starts with, in any of the formats our daemons write."""
    m = _ISOISH.match(line)
    if m:
        year, month, day, hour, minute, second, frac, zone = m.groups()
        micro = int((frac or "0")[:6].ljust(6, "0"))
        stamp = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
        if zone:
            zone = "+00:00" if zone == "Z" else zone
            hours, minutes = int(zone[:3]), int(zone[0] + zone[-2:])
            return stamp.replace(tzinfo=UTC).timestamp() - hours * 3600 - minutes * 60
        return stamp.timestamp()  # no zone: the writer's local time, which is ours
    m = _REDIS.match(line)
    if m:
        stamp = datetime.strptime(m.group(1), "%d %b %Y %H:%M:%S")
        return stamp.timestamp() + float(f"0.{m.group(2) or 0}")
    return None


class Stream:
    """Turns one reader's lines into records; a line without a time inherits the previous line's."""

    def __init__(self, source: str, reader: LogReader) -> None:
        self.source = source
        self.reader = reader
        self.last_ts: float | None = None

    def read(self) -> Iterator[Record]:
        for line in self.reader.read_new():
            if not line.strip():
                continue
            ts = line_time(line)
            if ts is None:
                ts = self.last_ts
            else:
                self.last_ts = ts
            yield Record(ts, self.source, line)


@dataclass(frozen=True)
class Filter:
    """--since and --grep: which records are shown."""

    since: float | None = None
    pattern: re.Pattern[str] | None = None

    def __call__(self, rec: Record) -> bool:
        if self.since is not None and (rec.ts is None or rec.ts < self.since):
            return False
        return self.pattern is None or bool(self.pattern.search(rec.line))


def _by_time(records: Iterable[Record]) -> list[Record]:
    """Time order; lines of unknown time first; a stable sort keeps each source's own order on ties."""
    return sorted(records, key=lambda r: -float("inf") if r.ts is None else r.ts)


def history(sources: Mapping[str, LogReader], keep: Filter) -> tuple[Iterator[Record], dict[str, Stream]]:
    """Everything logged so far that `keep` wants, merged; also the streams, positioned for follow()
    once the records are consumed.

    Filtered while reading, so `--since 5m` on a long log holds only the last five minutes; one
    source alone is already in its own order and streams through without being held at all.
    """
    streams = {name: Stream(name, reader) for name, reader in sources.items()}
    wanted = (rec for s in streams.values() for rec in s.read() if keep(rec))
    return (wanted if len(streams) == 1 else iter(_by_time(wanted))), streams


def follow(streams: dict[str, Stream], keep: Filter, discover: Callable[[], Mapping[str, LogReader]],
           *, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
           ) -> Iterator[Record]:
    """New records as they are written, merged per poll, until the caller stops iterating (Ctrl-C).

    `discover` is asked every RESCAN_S for the current sources, so instances started meanwhile
    appear; a new source is read from its start, since it began after the history was printed.
    """
    next_scan = clock() + RESCAN_S
    while True:
        yield from _by_time(rec for s in list(streams.values()) for rec in s.read() if keep(rec))
        if clock() >= next_scan:
            for name, reader in discover().items():
                streams.setdefault(name, Stream(name, reader))
            next_scan = clock() + RESCAN_S
        sleep(POLL_S)


def select(sources: Mapping[str, LogReader], wanted: Iterable[str]) -> dict[str, LogReader]:
    """The named sources (all when none are named); KeyError names the first unknown one."""
    names = list(wanted)
    if not names:
        return dict(sources)
    for name in names:
        if name not in sources:
            raise KeyError(name)
    return {name: sources[name] for name in names}
