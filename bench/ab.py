"""ApacheBench (`ab`): build the command line, run it, and parse what it prints.

ab counts a response whose body length differs from the first one as a "Length" failure. OCR answers
differ in length by nature, so those are not failures: a real failure is a Connect, Receive or
Exception error, and a `Non-2xx` response is counted on its own, never mixed into either.
"""
from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

# ab -s: one socket's silence that aborts the whole run; matches the gateway's read timeout, which covers a
# full queue, so ab never gives up on a request the gateway would still answer.
DEFAULT_TIMEOUT_S = 300


class AbError(RuntimeError):
    """ab could not be started or printed something this parser does not understand."""


@dataclass(frozen=True)
class AbResult:
    """One ab run, as ab reported it, with the failure kinds kept apart."""

    concurrency: int
    requested: int
    complete: int = 0
    failed_reported: int = 0  # ab's "Failed requests", Length mismatches included
    failed_connect: int = 0
    failed_receive: int = 0
    failed_length: int = 0  # varying body lengths: reported, never a failure
    failed_exceptions: int = 0
    non_2xx: int = 0
    time_taken_s: float = 0.0
    requests_per_s: float = 0.0  # ab's figure: every response, 503s included
    mean_ms: float | None = None  # "Connection Times" Total row: the latency a client sees
    sd_ms: float | None = None
    median_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    percentiles: dict[int, float] = field(default_factory=dict)  # from `-e`: percent -> ms
    aborted: str | None = None  # ab stopped with an error (e.g. the -s timeout) and printed no totals
    time_limited: bool = False  # the -t bound ended the run before `requested` were done

    @property
    def unaccounted(self) -> int:
        """Requests an aborted run never reported on; a client saw them fail."""
        return max(0, self.requested - self.complete) if self.aborted else 0

    @property
    def failed_real(self) -> int:
        """Connect + Receive + Exceptions (+ what an aborted run left unreported); never Length."""
        return self.failed_connect + self.failed_receive + self.failed_exceptions + self.unaccounted

    @property
    def ok(self) -> int:
        """Responses that were 2xx and not broken: the requests the service actually answered."""
        return max(0, self.complete - self.failed_connect - self.failed_receive
                   - self.failed_exceptions - self.non_2xx)

    @property
    def ok_per_s(self) -> float:
        """2xx answers per second; ab's own figure would count fast 503s as throughput."""
        return self.ok / self.time_taken_s if self.time_taken_s > 0 else 0.0

    @property
    def failure_rate(self) -> float:
        """Share of the requests that failed or were not 2xx."""
        attempts = max(self.complete, self.requested if self.aborted else 0, 1)
        return min(1.0, (self.failed_real + self.non_2xx) / attempts)

    def pct(self, percent: int) -> float | None:
        return self.percentiles.get(percent)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["percentiles"] = {str(k): v for k, v in sorted(self.percentiles.items())}
        data.update(
            failed_real=self.failed_real, ok=self.ok, ok_per_s=round(self.ok_per_s, 4),
            failure_rate=round(self.failure_rate, 4), p95_ms=self.pct(95), p99_ms=self.pct(99),
        )
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> AbResult:
        """Rebuild from results.json so reports can be re-rendered without re-running."""
        names = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in names}
        pcts = data.get("percentiles") or {}
        assert isinstance(pcts, dict)
        kwargs["percentiles"] = {int(k): float(v) for k, v in pcts.items()}
        return cls(**kwargs)  # type: ignore[arg-type]


_INT_FIELDS = {
    "complete": r"^Complete requests:\s+(\d+)",
    "failed_reported": r"^Failed requests:\s+(\d+)",
    "non_2xx": r"^Non-2xx responses:\s+(\d+)",
}
_BREAKDOWN = re.compile(
    r"\(Connect:\s*(\d+),\s*Receive:\s*(\d+),\s*Length:\s*(\d+),\s*Exceptions:\s*(\d+)\)"
)
_TOTAL_ROW = re.compile(r"^Total:\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", re.M)
_ABORT = re.compile(r"(?:apr_\w+:|Test aborted)[^\n]*")
_PARTIAL = re.compile(r"Total of (\d+) requests completed")


def parse_output(text: str, concurrency: int, requested: int, csv_text: str | None = None,
                 time_limit_s: float | None = None) -> AbResult:
    """Parse ab's stdout (and its `-e` CSV); missing sections stay None rather than guessed."""
    if "Complete requests:" not in text:
        match = _ABORT.search(text)
        if match is None:
            raise AbError("ab printed no results: " + (text.strip().splitlines() or ["<empty>"])[-1])
        partial = _PARTIAL.search(text)
        done = int(partial.group(1)) if partial else 0
        return AbResult(concurrency=concurrency, requested=requested, complete=done,
                        aborted=match.group(0).strip())
    values: dict[str, object] = {}
    for name, pattern in _INT_FIELDS.items():
        found = re.search(pattern, text, re.M)
        values[name] = int(found.group(1)) if found else 0
    breakdown = _BREAKDOWN.search(text)
    if breakdown:
        conn, recv, length, exc = (int(g) for g in breakdown.groups())
        values.update(failed_connect=conn, failed_receive=recv, failed_length=length, failed_exceptions=exc)
    taken = re.search(r"^Time taken for tests:\s+([\d.]+) seconds", text, re.M)
    values["time_taken_s"] = float(taken.group(1)) if taken else 0.0
    rps = re.search(r"^Requests per second:\s+([\d.]+)", text, re.M)
    values["requests_per_s"] = float(rps.group(1)) if rps else 0.0
    total = _TOTAL_ROW.search(text)
    if total:
        tmin, tmean, tsd, tmedian, tmax = (float(g) for g in total.groups())
        values.update(min_ms=tmin, mean_ms=tmean, sd_ms=tsd, median_ms=tmedian, max_ms=tmax)
    complete = int(values["complete"])  # type: ignore[call-overload]
    percentiles = parse_percentile_csv(csv_text, complete) if csv_text and complete > 0 else {}
    limited = bool(time_limit_s and complete < requested and float(values["time_taken_s"]) >= time_limit_s)  # type: ignore[arg-type]
    return AbResult(concurrency=concurrency, requested=requested, percentiles=percentiles,
                    time_limited=limited, **values)  # type: ignore[arg-type]


def parse_percentile_csv(text: str, done: int | None = None) -> dict[int, float]:
    """`-e` output: a header, then "percent,ms" rows for 0..100.

    ab 2.3 picks row p as sample[int(0.5 + done * p / 100)] of its sorted latencies, which for fewer than
    100 finished requests reads one past the end for the top rows (garbage such as 6e15 ms). That nearest
    rank is the largest sample, so those rows are set to row 100 (the longest request).
    """
    out: dict[int, float] = {}
    for line in text.splitlines():
        parts = line.strip().split(",")
        if len(parts) != 2 or not parts[0].strip().isdigit():
            continue
        out[int(parts[0])] = float(parts[1])
    longest = out.get(100)
    if longest is not None:
        for pct, value in out.items():
            past_end = done is not None and int(0.5 + done * pct / 100.0) >= done
            if pct < 100 and (past_end or value > longest):
                out[pct] = longest
    return out


_PRINTED = re.compile(r"^\s*(\d+)%\s+(\d+)", re.M)


def parse_printed_percentiles(text: str) -> dict[int, float]:
    """ab's own 'served within a certain time' table (whole ms, floor rank): a cross-check for -e."""
    section = text.split("Percentage of the requests served", 1)
    return {int(p): float(ms) for p, ms in _PRINTED.findall(section[1])} if len(section) == 2 else {}


@dataclass(frozen=True)
class AbSpec:
    """What one ab run sends: a body file to a URL at a concurrency, bounded in count and time."""

    url: str
    body: Path
    content_type: str
    concurrency: int
    requests: int
    headers: tuple[str, ...] = ()
    time_limit_s: float | None = None
    timeout_s: int = DEFAULT_TIMEOUT_S
    keepalive: bool = False

    def command(self, csv_path: Path, ab: str = "ab") -> list[str]:
        """-t must precede -n: ab's -t resets the request count to 50000."""
        if self.requests < self.concurrency:
            raise ValueError(f"ab needs requests ({self.requests}) >= concurrency ({self.concurrency})")
        cmd = [ab, "-r", "-s", str(self.timeout_s)]
        if self.time_limit_s:
            cmd += ["-t", str(max(1, int(round(self.time_limit_s))))]
        cmd += ["-n", str(self.requests), "-c", str(self.concurrency)]
        if self.keepalive:
            cmd.append("-k")
        for header in self.headers:
            cmd += ["-H", header]
        cmd += ["-p", str(self.body), "-T", self.content_type, "-e", str(csv_path), self.url]
        return cmd


def run(spec: AbSpec, work_dir: Path, label: str, ab: str = "ab") -> AbResult:
    """Run ab once and keep its raw output next to the results, so every number can be checked."""
    work_dir.mkdir(parents=True, exist_ok=True)
    csv_path = work_dir / f"{label}.csv"
    csv_path.unlink(missing_ok=True)
    cmd = spec.command(csv_path, ab)
    # ab's own bounds (-t, -s) end it; this outer bound only catches a wedged process.
    bound = (spec.time_limit_s or 0) + spec.timeout_s * 2 + 30
    started = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise AbError(f"cannot run ab ({exc}); install apache2-utils") from exc
    try:
        out, err = proc.communicate(timeout=bound)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    (work_dir / f"{label}.txt").write_text(
        f"$ {' '.join(cmd)}\n# exit {proc.returncode} after {time.monotonic() - started:.1f}s\n{out}\n{err}",
        encoding="utf-8",
    )
    csv_text = csv_path.read_text(encoding="utf-8") if csv_path.exists() else None
    return parse_output(out + "\n" + err, spec.concurrency, spec.requests, csv_text, spec.time_limit_s)


def version(ab: str = "ab") -> str:
    """ab's version line for the report."""
    try:
        out = subprocess.run([ab, "-V"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "not installed"
    first = out.splitlines()[0] if out else ""
    return first.replace("This is ", "").split(" <")[0]


def spread(results: Sequence[AbResult]) -> dict[str, float]:
    """Totals over several runs, for the whole-run failure count."""
    return {
        "requests": sum(r.complete for r in results),
        "failed_real": sum(r.failed_real for r in results),
        "non_2xx": sum(r.non_2xx for r in results),
        "length_mismatch": sum(r.failed_length for r in results),
    }
