"""The engine's memory policy: when a profile's own arenas are emptied, and what the tight heap does."""
from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np
import pytest
from helpers import wait_for

from ocr_app.engine import allocator
from ocr_app.engine.allocator import tight_heap
from ocr_app.engine.sessions import ArenaSession, IdleRelease, det_size


class CountingArena:
    """Stands in for an ArenaSession: counts how often it is emptied."""

    def __init__(self) -> None:
        self.released = 0

    def release(self) -> None:
        self.released += 1


def test_arenas_are_emptied_once_the_profile_goes_idle() -> None:
    arena, lock = CountingArena(), threading.Lock()
    idle = IdleRelease([arena], lock, after=0.2)  # type: ignore[list-item]
    for _ in range(5):  # a busy stream of pages: each page pushes the release back
        with lock:
            idle.page_done()
    assert arena.released == 0, "a busy profile keeps its arenas"
    wait_for(lambda: arena.released == 1, 10, "the arena emptied after the last page")


def test_zero_seconds_empties_the_arenas_after_every_page() -> None:
    arena, lock = CountingArena(), threading.Lock()
    idle = IdleRelease([arena], lock, after=0)  # type: ignore[list-item]
    with lock:
        idle.page_done()
        idle.page_done()
    assert arena.released == 2


class TinyModel:
    """Records what an ArenaSession feeds the model when it empties the arena."""

    def __init__(self) -> None:
        self.fed: list[tuple[Any, dict[str, np.ndarray], Any]] = []

    def get_inputs(self) -> list[Any]:
        class Input:
            name = "x"
            shape = ["batch", 3, 48, "width"]
        return [Input()]

    def run(self, names: Any, feed: dict[str, np.ndarray], options: Any = None) -> list[np.ndarray]:
        self.fed.append((names, feed, options))
        return [np.zeros(1)]


def test_release_runs_the_model_once_on_a_tiny_input_with_shrinkage() -> None:
    model = TinyModel()
    session = ArenaSession(model)
    session.run(None, {"x": np.zeros((6, 3, 48, 640), np.float32)})
    assert model.fed[0][2] is None, "ordinary runs keep the arena"
    session.release()
    _, feed, options = model.fed[1]
    assert feed["x"].shape == (1, 3, 48, 32)
    assert options is not None, "the emptying run carries the shrinkage option"


def test_tight_heap_can_be_entered_again_and_from_threads() -> None:
    def allocate() -> None:
        with tight_heap():
            block = np.ones(8 << 20, np.uint8)  # its own mapping while tight, unmapped when freed
            del block

    threads = [threading.Thread(target=allocate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with tight_heap(enabled=False):
        assert np.ones(4).sum() == 4


def test_detection_size_lifts_the_short_side_and_caps_the_long_one() -> None:
    assert det_size(2000, 2000, 736, 1600) == (1600, 1600)
    assert det_size(132, 709, 736, 1600) == (288, 1600)
    assert det_size(900, 1100, 736, 1600) == (896, 1088)


def test_a_big_detection_empties_the_arenas_first_and_the_timer_then_does_nothing() -> None:
    arena, lock = CountingArena(), threading.Lock()
    idle = IdleRelease([arena], lock, after=0.2)  # type: ignore[list-item]
    with lock:
        idle.page_done()  # a dense page leaves the arenas full, a timer pending
        idle.empty_now()  # then a big image arrives
    assert arena.released == 1
    done = threading.Event()
    threading.Timer(0.5, done.set).start()
    wait_for(done.is_set, 10, "the pending timer's time to pass")
    assert arena.released == 1, "the pending timer found nothing left to empty"


def _own_mapping(block: int) -> bool:
    """glibc's chunk header says whether a block is a mapping of its own (bit 1 of the size word)."""
    return bool(ctypes.c_size_t.from_address(block - ctypes.sizeof(ctypes.c_size_t)).value & 2)


def test_tight_heap_keeps_big_blocks_out_of_free_heap_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's heap holds big free chunks from loading and earlier pages: a tight run's big blocks must
    still get mappings of their own (unmapped, so out of RSS, when freed), not those chunks."""
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "0")  # what ops.startup sets for OCR_ALLOCATOR=glibc
    libc = allocator.libc()
    assert libc is not None, "glibc is the allocator of this test run"
    with allocator.HEAP_LOCK:  # leave big free chunks in this thread's heap, as a busy worker does
        libc.mallopt(allocator.M_MMAP_THRESHOLD, 256 << 20)
        blocks = [libc.malloc(8 << 20) for _ in range(6)]
        fences = [libc.malloc(64 << 10) for _ in range(6)]  # keep the freed blocks from merging into the top
        for block in blocks:
            libc.free(block)
        libc.mallopt(allocator.M_MMAP_THRESHOLD, allocator.DEFAULT_MMAP_THRESHOLD)
    try:
        with tight_heap():
            inside = [libc.malloc(4 << 20) for _ in range(6)]
            assert all(_own_mapping(block) for block in inside), "a tight run's block took a free heap chunk"
            for block in inside:
                libc.free(block)
        reused = libc.malloc(4 << 20)
        assert not _own_mapping(reused), "after the run the free chunks serve the heap again"
        libc.free(reused)
    finally:
        for fence in fences:
            libc.free(fence)


def test_without_small_pages_nothing_is_plugged(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's huge-page advice (its default) would make each plug fault in 2 MiB: no plugs then."""
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    assert not allocator.small_pages()
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "0")
    assert allocator.small_pages()
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert not allocator.small_pages()
