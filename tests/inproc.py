"""The app in-process with a fake engine: Flask's test client, or a real HTTP server in a thread.

The fake engine stands in for the PP-OCR models only; admission, the cache, the fast path and the
error handling are the real app's.
"""
from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask
from PIL import Image
from werkzeug.serving import make_server

from ocr_app import Settings, create_app
from ocr_app.results import Line, OcrResult, Word

RAW = {"Content-Type": "image/png"}


class FakeEngine:
    """One line per image; `gate` holds every call (to fill a queue), `fail` makes calls raise."""

    cache_namespace = "fake"

    def __init__(self, settings: Settings | None = None, gate: threading.Event | None = None,
                 fail: Exception | None = None) -> None:
        self.gate = gate
        self.fail = fail
        self.calls = 0
        self.running = 0  # calls inside recognize(), waiting for the engine lock or holding it
        self._lock = threading.Lock()  # the real engine serializes calls too
        self._count = threading.Lock()  # `+=` on an attribute is not atomic across threads

    def warm_up(self) -> OcrResult:
        return OcrResult()

    def recognize(self, bgr: np.ndarray, words: bool = False) -> OcrResult:
        with self._count:
            self.calls += 1
            self.running += 1
        try:
            with self._lock:
                if self.gate is not None:
                    self.gate.wait(60)
                if self.fail is not None:
                    raise self.fail
                h, w = bgr.shape[:2]
                box = [[0.0, 0.0], [float(w), 0.0], [float(w), float(h)], [0.0, float(h)]]
                found = [Word("fake", 0.99, box)] if words else None
                return OcrResult(lines=[Line("fake text", 0.99, box, found)], elapsed=0.001)
        finally:
            with self._count:
                self.running -= 1


def png(seed: int, size: tuple[int, int] = (64, 32)) -> bytes:
    """A distinct small image per seed, so each is a cache miss unless sent twice."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def build_app(runtime_dir: Path, engine: FakeEngine | None = None, *,
              factory: Callable[[Settings], Any] | None = None, **overrides: Any) -> Flask:
    """An app with no Redis or Consul, `runtime_dir` for the drain flag, and `engine` as its engine."""
    runtime_dir.mkdir(parents=True, exist_ok=True)
    config = {"redis_url": "", "consul_addr": "", "runtime_dir": str(runtime_dir),
              "instance_id": "inproc", "max_upload_mb": 1.0, **overrides}
    app = create_app(config, engine_factory=factory or (lambda s: engine or FakeEngine(s)), background=False)
    app.config["TESTING"] = True
    return app


def log_to(buf: io.StringIO) -> None:
    """Send the app's log lines (the handler of the last app built) to `buf`."""
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "ocr_fleet", False))
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buf)


def drop_log_handler() -> None:
    """Remove the app's log handler from the root logger (after a test that captured it)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "ocr_fleet", False)]:
        root.removeHandler(handler)


class AppServer:
    """The app behind a real threaded HTTP server on a free loopback port, for the gateway to proxy to."""

    def __init__(self, runtime_dir: Path, engine: FakeEngine, **overrides: Any) -> None:
        self.engine = engine
        self._server = make_server("127.0.0.1", 0, Flask("placeholder"), threaded=True)
        self.port = int(self._server.server_port)
        self.instance_id = overrides.pop("instance_id", f"inproc-{self.port}")
        self._server.app = build_app(runtime_dir, engine, instance_id=self.instance_id, **overrides)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
