"""`python -m bench --smoke`: the whole pipeline against a tiny real HTTP server, in seconds.

The server answers like an OCR endpoint (JSON bodies of varying length, so ab reports Length
"failures") and refuses every fifth request with 503, so the report must show non-2xx responses apart
from failures. Real ab, real parsing, the real summary, report and plots; no fleet and no models.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import ab, engine_limit, images, load, machine
from .plan import QUICK
from .runner import REPO, write_outputs

REFUSE_EVERY = 5
SMOKE_CONCURRENCY = (1, 4)
SMOKE_REQUESTS = 20


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        return

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.count += 1
            count = self.server.count
        if count % REFUSE_EVERY == 0:
            code, body = 503, b'{"code":503,"msg":"busy"}'
        else:
            text = "word " * (count % 7)
            code, body = 200, json.dumps({"code": 0, "data": [{"text": text}]}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Cache", "HIT")
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.count = 0


@contextmanager
def tiny_server() -> Iterator[_Server]:
    """A loopback server in a thread, shut down on exit."""
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run(out_root: Path | None = None, say: Callable[[str], None] = print) -> Path:
    """Generate two images, time the decode-only engine, run ab levels, write the report."""
    started = datetime.now().astimezone()
    out_dir = (out_root or REPO / "bench" / "results") / f"smoke-{started.strftime('%Y%m%d-%H%M%S-%f')}"
    raw = out_dir / "raw"
    raw.mkdir(parents=True)
    imgs = images.generate(out_dir / "images", names=["sign_en", "receipt_zh"])
    engine = engine_limit.measure(imgs, 1, 1, "bench.engine_limit:decode_only")
    results: dict[str, Any] = {
        "schema": 1, "mode": "smoke", "started": started.isoformat(timespec="seconds"),
        "ab_timeout_s": ab.DEFAULT_TIMEOUT_S,
        "machine": machine.describe(REPO), "plan": QUICK.to_json(), "load_image": imgs[0].name,
        "images": [im.to_json() for im in imgs], "images_note": "2 generated images (smoke)",
        "engine": {"cores": 1, "runs": [engine.to_json()], "limit_img_s": round(engine.img_per_s, 4),
                   "limit_set_img_s": round(engine.img_per_s, 4)},
        "fleet": {"levels": [], "all_cores_instances": 1, "rss": {"1": []}},
    }
    with tiny_server() as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/ocr"
        results["fleet"]["url"] = url
        for mode, headers in (("cold", (load.NO_CACHE,)), ("warm", ())):
            target = load.Load(url, imgs[0].path, "image/jpeg", headers)
            for c in SMOKE_CONCURRENCY:
                level = load.run_level(target, c, SMOKE_REQUESTS, 20, lambda: [os.getpid()], raw,
                                       f"smoke-{mode}-c{c}", idle_timeout_s=5)
                level.update(target="fleet", instances=1, mode=mode)
                results["fleet"]["levels"].append(level)
                say(f"smoke {mode} {load.describe(level)}")
    results["duration_s"] = round((datetime.now().astimezone() - started).total_seconds(), 1)
    write_outputs(results, out_dir)
    return out_dir
