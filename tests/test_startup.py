"""What the gunicorn master prepares before its workers fork (ocr_app.ops.startup), on plain mappings."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ocr_app.config import Settings
from ocr_app.models.paddle_models import offline_environment
from ocr_app.ops.startup import THREAD_POOLS, engine_environment, prepare_runtime, runtime_dir, set_worker_environment


def test_workers_get_one_thread_per_pool_unless_the_operator_says_otherwise() -> None:
    env = {"OMP_NUM_THREADS": "4"}
    set_worker_environment(Settings(), env)
    assert env["OMP_NUM_THREADS"] == "4"
    assert all(env[name] == "1" for name in THREAD_POOLS if name != "OMP_NUM_THREADS")
    assert env["NUMPY_MADVISE_HUGEPAGE"] == "0" and env["HOME"]  # plain glibc: small pages for the heap plugs


def test_paddlex_switches_are_set_for_the_paddleocr_engine_only(tmp_path: Path) -> None:
    paddle = Settings(engine="paddleocr", paddle_home=str(tmp_path))
    assert engine_environment(Settings()) == {}
    env = {"PADDLE_PDX_CACHE_HOME": "/elsewhere"}
    set_worker_environment(paddle, env)
    assert {k: env[k] for k in offline_environment(paddle)} == offline_environment(paddle)
    assert env["PADDLE_PDX_CACHE_HOME"] == str(tmp_path / "paddlex"), "PaddleX's cache is ours, whatever was set"


def test_runtime_folder_starts_without_an_earlier_runs_state(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    (runtime / "metrics").mkdir(parents=True)
    (runtime / "metrics" / "counter_1.db").write_bytes(b"old")
    (runtime / "ready").mkdir()
    (runtime / "ready" / "123").touch()
    (runtime / "draining").touch()
    (runtime / "warm").touch()
    env: dict[str, str] = {}
    assert prepare_runtime(Settings(runtime_dir=str(runtime)), env) == runtime
    assert sorted(p.name for p in runtime.iterdir()) == ["metrics"] and not any((runtime / "metrics").iterdir())
    assert env == {"OCR_RUNTIME_DIR": str(runtime), "PROMETHEUS_MULTIPROC_DIR": str(runtime / "metrics")}
    assert runtime_dir(env) == runtime


def test_without_a_runtime_folder_a_temporary_one_is_made() -> None:
    env: dict[str, str] = {}
    made = prepare_runtime(Settings(), env)
    try:
        assert made.is_dir() and made.name.startswith("ocr-fleet-") and str(made.parent) == tempfile.gettempdir()
        assert env["OCR_RUNTIME_DIR"] == str(made)
    finally:
        shutil.rmtree(made)
