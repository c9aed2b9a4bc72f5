"""Where an instance's time goes under load: py-spy samples a running instance without restarting it.

py-spy lives in its own venv under the bench's work dir, like the peer, so the project's own
environment gains no dependency. Stacks are folded into pipeline stages for the report.
"""
from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from . import peer

# Checked in this order over the whole stack: the first stage any frame belongs to takes the sample.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("detection", ("ch_ppocr_det",)),
    ("angle classifier", ("ch_ppocr_cls",)),
    ("recognition", ("ch_ppocr_rec",)),
    ("rapidocr other (crop, sort, boxes)", ("rapidocr",)),
    ("image decode and checks", ("ocr_app/documents/images.py", "PIL/")),
    ("cache (Redis)", ("ocr_app/service/cache.py", "redis/")),
    ("metrics", ("prometheus_client",)),
    ("HTTP (gunicorn, Flask, werkzeug)", ("gunicorn/", "flask/", "werkzeug/", "socket", "selectors")),
)


@dataclass
class Profile:
    """Folded py-spy samples of one instance during one load."""

    samples: int = 0
    stages: dict[str, int] = field(default_factory=dict)
    leaves: list[tuple[str, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "stages": self.stages,
                "top_frames": [{"frame": f, "samples": n} for f, n in self.leaves]}


def fold(raw: str, top: int = 12) -> Profile:
    """Fold py-spy's raw (collapsed) stacks: 'frame;frame;... count' per line."""
    stages: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        stage = next((name for name, marks in STAGES if any(m in f for f in frames for m in marks)), "other")
        stages[stage] += count
        leaves[_short(frames[-1])] += count
    return Profile(samples=total, stages=dict(stages.most_common()), leaves=leaves.most_common(top))


def _short(frame: str) -> str:
    """'run (onnxruntime/capi/onnxruntime_inference_collection.py:273)' -> 'run (onnxruntime/capi/...:273)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    parts = where.replace("\\", "/").split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else where
    return f"{name} ({short})" if where else name


def root_pid(pids: list[int]) -> int | None:
    """The process among these whose parent is not among them: the server's master."""
    members = set(pids)
    for pid in pids:
        try:
            if psutil.Process(pid).ppid() not in members:
                return pid
        except psutil.Error:
            continue
    return None


@dataclass
class Profiler:
    """Installs py-spy on first use and records one process tree at a time."""

    venv: Path
    log: Path

    def executable(self) -> Path:
        python = peer.ensure_venv(self.venv, ["py-spy"], self.log)
        return python.parent / "py-spy"

    def start(self, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
        """Begin sampling; `--nonblocking` so the instance is never paused by the profiler."""
        cmd = [str(self.executable()), "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
               "--rate", "50", "--duration", str(int(seconds)), "--format", "raw", "-o", str(out)]
        log = open(self.log, "ab")  # noqa: SIM115 - owned by the child
        try:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

    @staticmethod
    def finish(proc: subprocess.Popen[bytes], out: Path, timeout_s: float) -> Profile | None:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not out.exists():
            return None
        return fold(out.read_text(encoding="utf-8", errors="replace"))
