"""The memory allocator of an instance's processes (OCR_ALLOCATOR), put in place before any worker forks.

A preload or a glibc tunable only works from process start, so the gunicorn master re-executes itself
once with the allocator's environment; its workers inherit it. The choice is about page faults and
resident memory of big tensors (docs/benchmarks.md has the measurements).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from ocr_app.config import ALLOCATORS, ConfigError

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


# mallopt's parameters (glibc's malloc.h)
M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
# glibc's own ceiling for its dynamic mmap threshold on 64-bit: where a busy worker's threshold ends up.
DEFAULT_MMAP_THRESHOLD = 32 << 20
TIGHT_MMAP_THRESHOLD = 1 << 20
# mallopt's settings belong to the whole process, so one lock guards every change to them.
HEAP_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def libc() -> Any:
    """glibc through ctypes (the process's one handle on malloc's tuning), or None elsewhere."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "mallopt"):
        return None
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def trim() -> None:
    """Hand the heap's free pages back to the OS (glibc; a no-op elsewhere)."""
    lib = libc()
    if lib is not None and hasattr(lib, "malloc_trim"):
        lib.malloc_trim(0)


def malloc_tuning(big_heap: bool = False) -> Callable[[], None]:
    """Cap glibc malloc arenas and return a trim function: keeps worker RSS close to what is in use.

    `big_heap` (OCR_ALLOCATOR=glibc-thp) serves big tensors from the huge-page heap instead of fresh
    mmaps that fault in again on every detection node; the trim after each job still hands them back.
    """
    lib = libc()
    if lib is None or not hasattr(lib, "malloc_trim"):
        return lambda: None
    with HEAP_LOCK:
        lib.mallopt(M_ARENA_MAX, 2)  # HTTP threads otherwise each grow an arena of their own
        if big_heap:
            lib.mallopt(M_MMAP_THRESHOLD, 1 << 30)
    return trim


@contextmanager
def tight_heap(enabled: bool = True) -> Iterator[None]:
    """While inside, every allocation of 1 MiB or more gets its own mapping and is unmapped on free.

    Unmapping at free keeps RSS at the live set of a big detection, for more CPU on that run; glibc maps a
    block of its own only when no free heap chunk fits, so the heap's free chunks are plugged for the run
    (`_plug_heap`; docs/benchmarks.md has the figures). It starts with a trim, so what decoding and
    preprocessing freed is not added on top. A no-op under jemalloc (its malloc ignores mallopt).
    """
    lib = libc() if enabled else None
    if lib is None:
        yield
        return
    with HEAP_LOCK:
        lib.malloc_trim(0)  # first hand back what decoding and preprocessing freed into the heap
        lib.mallopt(M_MMAP_THRESHOLD, TIGHT_MMAP_THRESHOLD)
        plugs = _plug_heap(lib) if small_pages() else []
        try:
            yield
        finally:
            for block in plugs:
                lib.free(block)
            lib.mallopt(M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD)


# glibc's chunk header: the size word just before the block, whose bit 1 says it is a mapping of its own
_IS_MMAPPED = 0x2
_SIZE_WORD = ctypes.sizeof(ctypes.c_size_t)
MAX_PLUGS = 16384  # 16 GiB of free heap: far past any worker's


def worker_env(name: str) -> dict[str, str]:
    """Variables for the workers of an instance with allocator `name`, set before they import numpy.

    numpy asks for transparent huge pages on every array of 4 MiB or more (madvise), and the heap keeps
    that flag when the array is freed, so a plug would fault in 2 MiB for a touched byte: plain glibc
    turns it off (docs/benchmarks.md)."""
    return {"NUMPY_MADVISE_HUGEPAGE": "0"} if name == "glibc" else {}


def small_pages() -> bool:
    """glibc's heap in 4 KiB pages (see worker_env): only then are its free chunks plugged."""
    return (os.environ.get("NUMPY_MADVISE_HUGEPAGE") == "0" and "jemalloc" not in os.environ.get("LD_PRELOAD", "")
            and HUGE_PAGES not in os.environ.get("GLIBC_TUNABLES", "").split(":"))


def _plug_heap(libc: Any) -> list[int]:
    """Take every free chunk of the calling thread's heap that could hold a block of TIGHT_MMAP_THRESHOLD,
    and return the blocks, to be freed after the run.

    Taking a chunk that malloc_trim has just emptied writes one header page, so the plugs cost ~8 KiB
    each and keep the tight run's big blocks out of the heap: the first block malloc cannot place in the
    heap comes back as a mapping of its own, which means nothing is left to plug."""
    plugs: list[int] = []
    while len(plugs) < MAX_PLUGS:
        block = libc.malloc(TIGHT_MMAP_THRESHOLD)
        if not block:
            break
        if ctypes.c_size_t.from_address(block - _SIZE_WORD).value & _IS_MMAPPED:
            libc.free(block)
            break
        plugs.append(block)
    return plugs
