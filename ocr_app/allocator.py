"""The memory allocator of an instance's processes (OCR_ALLOCATOR), put in place before any worker forks.

A preload or a glibc tunable only works from process start, so the gunicorn master re-executes itself
once with the allocator's environment; its workers inherit it. Measured in-process on the bench pages
(CPU seconds of the accurate engine, same run): ONNX Runtime without its arena frees each big
detection tensor to the OS and faults it back in on the next node; transparent huge pages make those
faults 512 times rarer without holding memory between requests.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

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


M_MMAP_THRESHOLD = -3
# glibc's own ceiling for its dynamic mmap threshold on 64-bit: where a busy worker's threshold ends up.
DEFAULT_MMAP_THRESHOLD = 32 << 20
TIGHT_MMAP_THRESHOLD = 1 << 20
_tight_lock = threading.Lock()


@lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") else None


def trim() -> None:
    """Hand the heap's free pages back to the OS (glibc; a no-op elsewhere)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


@contextmanager
def tight_heap(enabled: bool = True) -> Iterator[None]:
    """While inside, glibc gives every allocation of 1 MiB or more its own mapping and unmaps it on free.

    A detection at the 1600 px cap peaks at ~290 MiB of live tensors but ~550 MiB of RSS when freed
    tensors stay in the heap or an arena to be reused (measured); unmapping at free keeps RSS at the live
    set for one run, for ~40% more CPU on that run. It starts with a trim, so what decoding and
    preprocessing freed is not added on top. A no-op under jemalloc (its malloc ignores mallopt).
    """
    libc = _libc() if enabled else None
    if libc is None:
        yield
        return
    with _tight_lock:
        libc.malloc_trim(0)  # first hand back what decoding and preprocessing freed into the heap
        libc.mallopt(M_MMAP_THRESHOLD, TIGHT_MMAP_THRESHOLD)
        try:
            yield
        finally:
            libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD)
