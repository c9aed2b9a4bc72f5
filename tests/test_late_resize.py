"""The big detections' model rewrite: upsamples computed when needed, the same output to the bit, made by
a child process with the `onnx` package and cached, never imported by a worker."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import Proc, start_instance, worker_pids

from ocr_app.config import Settings
from ocr_app.engine.late_resize import EMPTY_SCALES, RewriteError, late_resizes, rewritten, verified
from ocr_app.engine.sessions import session_options, tight_session
from ocr_app.models.profiles import accurate_profile, fast_profile

FALLBACK = "big detections run the model as it is"


def session(model: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model), sess_options=session_options(Settings.from_env({})),
                                providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("det", [accurate_profile().det, fast_profile().det], ids=["accurate", "fast"])
def test_rewritten_detection_gives_the_same_output_to_the_bit(det: Path, tmp_path: Path) -> None:
    path = rewritten(det, tmp_path)
    resizes = [node for node in onnx.load(str(path)).graph.node if node.op_type == "Resize"]
    late = [node for node in resizes if list(node.input)[2:3] == [EMPTY_SCALES]]
    assert len(late) == 3, "PP-OCR's neck: three upsamples that each feed an Add"
    stock, rewrite = session(det), session(path)
    rng = np.random.default_rng(5)
    for h, w in [(1024, 1024), (288, 1600), (736, 416)]:
        x = rng.uniform(-2, 2, (1, 3, h, w)).astype(np.float32)
        assert np.array_equal(stock.run(None, {"x": x})[0], rewrite.run(None, {"x": x})[0]), (h, w)
    assert verified(stock, rewrite)


def test_a_second_build_reuses_the_cache_file(tmp_path: Path) -> None:
    det = accurate_profile().det
    first = rewritten(det, tmp_path)
    written = first.stat()
    # a child could not even start within this timeout: the second build must not run one
    assert rewritten(det, tmp_path, timeout=1e-6) == first
    assert (first.stat().st_ino, first.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    assert [p.name for p in tmp_path.iterdir()] == [first.name], "no temporary file left behind"


def test_a_model_without_such_upsamples_is_left_as_it_is(tmp_path: Path) -> None:
    rec = accurate_profile().rec
    model = onnx.load(str(rec))
    assert late_resizes(model) == 0
    assert model == onnx.load(str(rec))
    with pytest.raises(RewriteError, match="no Resize that feeds an Add"):
        rewritten(rec, tmp_path)
    assert not list(tmp_path.iterdir())


def test_verification_refuses_a_different_answer() -> None:
    assert not verified(session(accurate_profile().det), session(fast_profile().det))


@pytest.mark.parametrize("data", [b"", b"\x0a\xff", b"\x07", b"\x3a\x05ab", os.urandom(4096)],
                         ids=["empty", "truncated-varint", "bad-key", "truncated-graph", "random"])
def test_bytes_that_are_not_onnx_protobuf_are_refused(data: bytes, tmp_path: Path) -> None:
    source = tmp_path / "garbage.onnx"
    source.write_bytes(data)
    cache = tmp_path / "cache"
    with pytest.raises(RewriteError):
        rewritten(source, cache)
    assert not cache.exists() or not list(cache.iterdir())


def test_a_child_past_its_timeout_is_a_rewrite_error(tmp_path: Path) -> None:
    with pytest.raises(RewriteError, match="took over"):
        rewritten(accurate_profile().det, tmp_path, timeout=1e-6)


def fallback_is_the_stock_model(fallback: ort.InferenceSession, reference: ort.InferenceSession) -> bool:
    x = np.random.default_rng(1).uniform(-2, 2, (1, 3, 320, 320)).astype(np.float32)
    return bool(np.array_equal(fallback.run(None, {"x": x})[0], reference.run(None, {"x": x})[0]))


def test_tight_session_falls_back_to_the_file_when_the_output_differs(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    det = accurate_profile().det
    reference = session(det)
    monkeypatch.setattr("ocr_app.engine.sessions.verified", lambda original, rewritten: False)
    with caplog.at_level(logging.WARNING, logger="ocr_app.engine.sessions"):
        fallback = tight_session(det, session_options(Settings.from_env({})), reference, tmp_path)
    assert "changed the output" in caplog.text and FALLBACK in caplog.text
    assert fallback_is_the_stock_model(fallback, reference)
    assert not list(tmp_path.glob("*.onnx")), "a rewrite that changed the output is not kept"


@pytest.mark.parametrize("cache", ["a-file", "garbage"])
def test_tight_session_falls_back_to_the_file_when_the_rewrite_fails(
        cache: str, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    det = accurate_profile().det
    reference = session(det)
    if cache == "a-file":  # the child cannot write there: it exits with 1
        (tmp_path / "cache").write_text("not a directory")
    else:  # a cache file ONNX Runtime refuses
        (tmp_path / "cache").mkdir()
        rewritten(det, tmp_path / "cache").write_bytes(b"\x0a\xff")
    with caplog.at_level(logging.WARNING, logger="ocr_app.engine.sessions"):
        fallback = tight_session(det, session_options(Settings.from_env({})), reference, tmp_path / "cache")
    assert FALLBACK in caplog.text
    assert fallback_is_the_stock_model(fallback, reference)
    if cache == "garbage":  # the refused file is gone, so the next start makes a good one
        assert not list((tmp_path / "cache").iterdir())
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ocr_app.engine.sessions"):
            tight_session(det, session_options(Settings.from_env({})), reference, tmp_path / "cache")
        assert FALLBACK not in caplog.text and len(list((tmp_path / "cache").iterdir())) == 1


@pytest.fixture(scope="module")
def cold_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Path]]:
    """A real instance, two workers, starting with an empty model cache (both may run the child)."""
    workdir = tmp_path_factory.mktemp("late-resize")
    proc = start_instance(workdir, extra_env={"OCR_WORKERS": "2", "XDG_CACHE_HOME": str(workdir / "cache")})
    yield proc, workdir / "cache"
    proc.stop()


def test_workers_use_the_cached_rewrite_and_never_load_onnx(cold_instance: tuple[Proc, Path]) -> None:
    proc, cache = cold_instance
    workers = worker_pids(proc.pid)
    assert len(workers) == 2
    # `import onnx` always loads its C++ extension: a worker with onnx in sys.modules maps it
    for pid in workers:
        mapped = Path(f"/proc/{pid}/maps").read_text()
        assert "onnx_cpp2py_export" not in mapped and "/onnx/" not in mapped, pid
    assert list(cache.glob("ocr-fleet/late-resize/*.onnx")), "the rewrite was made and cached"
    assert FALLBACK not in proc.log.read_text()
