"""What the gunicorn master does once, before its workers fork: their environment, the allocator, the
profile check and the runtime folder.

ocr_app/gunicorn_conf.py calls `prepare` from its on_starting hook, so importing the config module
changes nothing. The master must not import numpy, OpenCV, ONNX Runtime or PaddleX before this ran:
workers are forked from it and inherit what those libraries read from the environment when loaded.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from ocr_app.config import Settings
from ocr_app.engine import allocator
from ocr_app.engine.catalog import preflight
from ocr_app.models.paddle_models import offline_environment

# One thread per pool: processes of one thread each serve more than fewer, wider ones (docs/benchmarks.md);
# OCR_THREADS sets ONNX Runtime's.
THREAD_POOLS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def worker_defaults(settings: Settings) -> dict[str, str]:
    """Variables the workers read when they load numpy and ONNX Runtime; the operator's own values win."""
    return {**dict.fromkeys(THREAD_POOLS, "1"), **allocator.worker_env(settings.allocator),
            "HOME": tempfile.gettempdir()}  # ONNX Runtime writes under $HOME/.cache


def engine_environment(settings: Settings) -> dict[str, str]:
    """Variables OCR_ENGINE's library reads once, when it is imported, and that must hold: PaddleX's
    switches, so that no process of a paddleocr instance reaches a model hoster or finds an official model
    by chance. Every process that builds that engine gets them at its start (engine/paddle.py checks)."""
    return offline_environment(settings) if settings.engine == "paddleocr" else {}


def set_worker_environment(settings: Settings, env: MutableMapping[str, str]) -> None:
    """Put the workers' variables into `env` (this process's, which they inherit)."""
    for name, value in worker_defaults(settings).items():
        env.setdefault(name, value)
    env.update(engine_environment(settings))


def prepare_runtime(settings: Settings, env: MutableMapping[str, str]) -> Path:
    """The instance's runtime folder (OCR_RUNTIME_DIR, else a new temporary one) without an earlier run's
    state, named in `env` for the workers: OCR_RUNTIME_DIR, and PROMETHEUS_MULTIPROC_DIR under it."""
    runtime = Path(settings.runtime_dir or tempfile.mkdtemp(prefix="ocr-fleet-"))
    metrics = runtime / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)  # counters from an earlier run must not leak into this one
    metrics.mkdir(parents=True, exist_ok=True)
    (runtime / "draining").unlink(missing_ok=True)
    shutil.rmtree(runtime / "ready", ignore_errors=True)  # per-worker "engine loaded" markers
    (runtime / "warm").unlink(missing_ok=True)  # "every worker was ready once": set by the first full /ready
    env["OCR_RUNTIME_DIR"] = str(runtime)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    return runtime


def prepare(settings: Settings) -> Path:
    """Everything before the first fork, in order; returns the runtime folder. Raises ConfigError naming
    the setting or file at fault (a bad profile or model folder stops the instance here).

    The allocator (OCR_ALLOCATOR) needs a preload or a glibc tunable from process start, so `allocator.apply`
    may re-execute this process once with it: gunicorn then starts again and comes back here."""
    set_worker_environment(settings, os.environ)
    allocator.apply(settings.allocator)
    preflight(settings)
    return prepare_runtime(settings, os.environ)


def runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder `prepare` chose, as a worker finds it in its environment."""
    return Path((os.environ if env is None else env)["OCR_RUNTIME_DIR"])
