"""OCR_ALLOCATOR: the environment each choice needs, and a real instance running under it."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Proc, start_instance, worker_pids

from ocr_app.config import ConfigError, Settings
from ocr_app.engine.allocator import HUGE_PAGES, allocator_env, find_jemalloc, worker_env


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)


def test_glibc_needs_nothing() -> None:
    assert allocator_env("glibc", {}) == {}


def test_only_plain_glibc_turns_numpys_huge_pages_off() -> None:
    """Its tight big detections plug the heap's free chunks, which huge pages would make cost 2 MiB each."""
    assert worker_env("glibc") == {"NUMPY_MADVISE_HUGEPAGE": "0"}
    assert worker_env("glibc-thp") == {} and worker_env("jemalloc") == {}


def test_huge_pages_join_existing_tunables() -> None:
    assert allocator_env("glibc-thp", {}) == {"GLIBC_TUNABLES": HUGE_PAGES}
    assert allocator_env("glibc-thp", {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) == {
        "GLIBC_TUNABLES": f"glibc.malloc.arena_max=2:{HUGE_PAGES}"}
    assert allocator_env("glibc-thp", {"GLIBC_TUNABLES": HUGE_PAGES}) == {}


def test_jemalloc_preloads_debians_library() -> None:
    lib = find_jemalloc()
    assert lib is not None, "libjemalloc2 is missing: run scripts/install-deps.sh"
    assert allocator_env("jemalloc", {})["LD_PRELOAD"] == lib


def test_unknown_allocator_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="OCR_ALLOCATOR='tcmalloc' is not one of glibc, glibc-thp, jemalloc"):
        Settings.from_env({"OCR_ALLOCATOR": "tcmalloc"})


def test_default_instance_keeps_glibc_as_it_is(instance: Proc) -> None:
    """The default (glibc) needs no re-execution: the processes' environment is left alone."""
    for pid in worker_pids(instance.pid) | {instance.pid}:
        env = environ(pid)
        assert HUGE_PAGES not in env.get("GLIBC_TUNABLES", "") and "OCR_ALLOCATOR_APPLIED" not in env


def test_jemalloc_instance_serves(tmp_path: Path) -> None:
    proc = start_instance(tmp_path, extra_env={"OCR_ALLOCATOR": "jemalloc", "OCR_PROFILES": "fast",
                                               "OCR_PROFILE": "fast", "OCR_WARMUP": "0"})
    try:
        for pid in worker_pids(proc.pid):
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert "libjemalloc.so.2" in maps
    finally:
        proc.stop()
