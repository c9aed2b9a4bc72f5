"""The memory allocator of an instance's processes (OCR_ALLOCATOR), put in place before any worker forks.

A preload or a glibc tunable only works from process start, so the gunicorn master re-executes itself
once with the allocator's environment; its workers inherit it. Measured in-process on the bench pages
(CPU seconds of the accurate engine, same run): ONNX Runtime without its arena frees each big
detection tensor to the OS and faults it back in on the next node; transparent huge pages make those
faults 512 times rarer without holding memory between requests.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from .config import ALLOCATORS, ConfigError

JEMALLOC_PATHS = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
                  "/usr/lib/libjemalloc.so.2")
HUGE_PAGES = "glibc.malloc.hugetlb=1"
REEXEC_MARK = "OCR_ALLOCATOR_APPLIED"


def find_jemalloc() -> str | None:
    """Debian's libjemalloc2 (scripts/install-deps.sh installs it), if present."""
    return next((p for p in JEMALLOC_PATHS if Path(p).is_file()), None)


def allocator_env(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """The variables `name` needs on top of `env`; raises naming OCR_ALLOCATOR when it cannot be had."""
    if name == "glibc":
        return {}
    if name == "glibc-thp":
        tunables = env.get("GLIBC_TUNABLES", "")
        if HUGE_PAGES in tunables.split(":"):
            return {}
        return {"GLIBC_TUNABLES": f"{tunables}:{HUGE_PAGES}" if tunables else HUGE_PAGES}
    if name == "jemalloc":
        lib = find_jemalloc()
        if lib is None:
            raise ConfigError("OCR_ALLOCATOR=jemalloc but libjemalloc.so.2 is not installed "
                              "(apt package libjemalloc2, see scripts/install-deps.sh)")
        wanted = {"LD_PRELOAD": lib, "MALLOC_CONF": "background_thread:true,thp:always,metadata_thp:auto"}
        return {k: v for k, v in wanted.items() if env.get(k) != v}
    raise ConfigError(f"OCR_ALLOCATOR={name!r} is not one of {', '.join(ALLOCATORS)}")


def apply(name: str) -> None:
    """Re-execute this process once with the allocator's environment (a no-op when already in place)."""
    extra = allocator_env(name, os.environ)
    if not extra or os.environ.get(REEXEC_MARK) == name:
        return
    env = {**os.environ, **extra, REEXEC_MARK: name}
    os.execve(sys.executable, list(sys.orig_argv), env)
