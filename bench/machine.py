"""What the numbers were measured on: CPU, cores, memory, load, versions and the commit."""
from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from ocr_app.models.cpu import cpuinfo

from . import ab
from .engine_limit import usable_cores

PACKAGES = ("rapidocr", "onnxruntime", "numpy", "opencv-python-headless", "Pillow", "Flask", "gunicorn")


def cpu_speed() -> float:
    """A fixed pure-Python workload in millions of loop steps per second (best of 3).

    Taken between phases: on a shared host the same core can run 2-3x slower from one minute to the
    next without any process inside the machine showing the load, and this is how the report sees it.
    """
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i * i
        best = max(best, 1.0 / (time.perf_counter() - started))
    return round(best, 2)


def cpu_model() -> str:
    return cpuinfo(("model name",)) or platform.processor() or "unknown"


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["ab"] = ab.version()
    return out


def git_commit(repo: Path) -> str:
    """Short commit, with '+dirty' when the work tree differs: a report names the code it measured."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def describe(repo: Path) -> dict[str, Any]:
    """Machine facts at the start of a run; the load average shows how busy the neighbours were."""
    return {
        "cpu": cpu_model(),
        "cores_usable": usable_cores(),
        "cores_logical": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(),
        "commit": git_commit(repo),
        "fleet_env": fleet_env(os.environ),
    }


_PRIVATE = ("PATH", "HOME", "URL", "ADDR", "PASS", "TOKEN", "SECRET", "KEY", "DIR")


def fleet_env(env: Any) -> dict[str, str]:
    """The OCR_/FLEET_ tuning a run used, without paths, addresses or secrets."""
    return {k: v for k, v in sorted(env.items())
            if k.startswith(("OCR_", "FLEET_")) and not any(p in k for p in _PRIVATE) and "://" not in v}
