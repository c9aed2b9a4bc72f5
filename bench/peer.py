"""The peer: rapidocr-api (RapidOCR's own FastAPI server) in its own venv, loaded by ab like the fleet.

It is pinned to the fleet's rapidocr and onnxruntime versions so both sides run the same bundled
PP-OCR models; onnxruntime is added because rapidocr-api does not depend on it.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import requests

from . import procs, score
from .images import BenchImage, content_type

PACKAGE = "rapidocr-api"
READY_TIMEOUT_S = 180.0


class PeerError(RuntimeError):
    """The peer could not be installed or started."""


def pins() -> list[str]:
    """rapidocr-api plus the fleet's own rapidocr and onnxruntime versions."""
    wanted = [PACKAGE]
    for name in ("rapidocr", "onnxruntime"):
        try:
            wanted.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            wanted.append(name)
    return wanted


def ensure_venv(venv: Path, packages: list[str], log: Path, stop: threading.Event | None = None) -> Path:
    """Create the venv once and pip-install into it; later runs reuse it. Returns its python.

    `stop` lets an interrupted bench end a pip that is still running in the background.
    """
    python = venv / "bin" / "python"
    marker = venv / ".bench-installed.json"
    if python.exists() and marker.exists() and json.loads(marker.read_text()) == packages:
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as out:
        if not python.exists():
            _run([sys.executable, "-m", "venv", str(venv)], out, stop)
        _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *packages], out, stop)
    marker.write_text(json.dumps(packages))
    return python


def _run(cmd: list[str], out: TextIO, stop: threading.Event | None, timeout_s: float = 900) -> None:
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None:
            if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
                raise PeerError(f"{' '.join(cmd[:4])} ... stopped before it finished")
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise PeerError(f"{' '.join(cmd[:4])} ... failed with code {proc.returncode}; see the install log")


_PROBE = """
import json, importlib.metadata as md, pathlib, rapidocr
root = pathlib.Path(rapidocr.__file__).parent / "models"
print(json.dumps({
    "versions": {n: md.version(n) for n in ("rapidocr-api", "rapidocr", "onnxruntime", "fastapi", "uvicorn")},
    "bundled_models": sorted(p.name for p in root.glob("*.onnx")),
}))
"""


def describe(python: Path) -> dict[str, object]:
    """Versions and the model files the peer's rapidocr ships, for the report."""
    out = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise PeerError(f"cannot inspect the peer venv: {out.stderr.strip()[-300:]}")
    info: dict[str, object] = json.loads(out.stdout)
    return info


_CONFIGURE = """
import pathlib, shutil, sys, rapidocr, yaml
path = pathlib.Path(rapidocr.__file__).parent / "config.yaml"
stock = path.with_name("config.yaml.bench-stock")
if not stock.exists():
    shutil.copy2(path, stock)
cfg = yaml.safe_load(stock.read_text(encoding="utf-8"))
threads = int(sys.argv[1])
if threads > 0:
    ort = cfg["EngineConfig"]["onnxruntime"]
    ort["intra_op_num_threads"] = threads
    ort["inter_op_num_threads"] = 1
path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
"""


def configure_threads(python: Path, threads: int) -> None:
    """ONNX Runtime threads per peer worker, through rapidocr's config.yaml: the server's only knob.

    0 restores rapidocr's stock setting (ONNX Runtime's default: a thread per core in every worker).
    The stock file is kept beside it, so any setting can be undone.
    """
    out = subprocess.run([str(python), "-c", _CONFIGURE, str(threads)], capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        raise PeerError(f"cannot configure the peer's threads: {out.stderr.strip()[-300:]}")


def multipart_body(image: Path, out: Path, field: str = "image_file") -> str:
    """Write a one-file multipart body for `ab -p`; returns the Content-Type with its boundary."""
    boundary = "bench" + uuid.uuid5(uuid.NAMESPACE_URL, image.name).hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{image.name}\"\r\n"
            f"Content-Type: {content_type(image)}\r\n\r\n").encode()
    out.write_bytes(head + image.read_bytes() + f"\r\n--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}"


@dataclass
class PeerServer:
    """A running rapidocr_api: started in its own process group, stopped with all its workers."""

    python: Path
    workers: int
    log: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ocr"

    def start(self) -> None:
        self.port = self.port or procs.free_port()
        exe = self.python.parent / "rapidocr_api"
        cmd = [str(exe), "-ip", "127.0.0.1", "-p", str(self.port), "-workers", str(self.workers)]
        self.proc = procs.start_group(cmd, self.log)
        try:
            procs.wait_http(f"http://127.0.0.1:{self.port}/", READY_TIMEOUT_S, self.proc)
        except BaseException:
            self.stop()
            raise

    def pids(self) -> list[int]:
        return procs.listening_pids([self.port]) if self.port else []

    def model_log(self) -> dict[str, bool]:
        """What rapidocr logged about its models: verified bundled files, or a download attempt."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return {
            "bundled_models_verified": "File exists and is valid" in text,
            "download_attempted": any(m in text for m in ("Initiating download", "redownloading",
                                                           "Download failed")),
        }

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop_group(self.proc)
            self.proc = None

    def __enter__(self) -> PeerServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with procs.shielded():
            self.stop()


def accuracy(url: str, imgs: list[BenchImage]) -> list[dict[str, Any]]:
    """Each image once through the peer, scored like the fleet's answers."""
    out = []
    for image in imgs:
        started = time.perf_counter()
        try:
            with open(image.path, "rb") as fh:
                resp = requests.post(url, files={"image_file": (image.path.name, fh, content_type(image.path))},
                                     timeout=300)
            code, payload = resp.status_code, resp.json()
        except (requests.RequestException, ValueError):
            code, payload = 0, None
        lines = score.answer_lines(payload) if payload is not None else []
        recall = score.recall(image.truth, lines) if image.truth is not None and code == 200 else None
        out.append({"image": image.name, "status": code, "seconds": round(time.perf_counter() - started, 3),
                    "lines": len(lines), "word_accuracy": None if recall is None else round(recall, 4)})
    return out
