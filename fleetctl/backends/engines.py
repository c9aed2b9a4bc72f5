"""Which Python runs an instance: fleetctl's own for rapidocr, the engine's own venv for paddleocr.

PaddleOCR's extra cannot share a venv with the default engine (paddlex pins opencv-contrib-python,
whose cv2 clashes with opencv-python-headless), so OCR_ENGINE=paddleocr instances run from a venv of
their own: FLEET_PADDLE_VENV, by default next to fleetctl's venv (`.venv` -> `.venv-paddle`, which is
where `make venv-paddle` builds it; FLEET_HOME/venv-paddle when fleetctl runs outside a venv). The
packaged scripts/venv-paddle.sh builds it (pip's cache keeps its wheels, so a rebuild is quick).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path

from fleetctl import procs, resources
from fleetctl.config import FleetConfig
from fleetctl.errors import FleetError

PADDLE = "paddleocr"
# What an instance imports from the `server` extra (setup.cfg): a light install (the client and the OCRmyPDF
# plugin) has none of them.
SERVER_MODULES = ("flask", "gunicorn", "rapidocr", "onnxruntime", "cv2", "numpy", "pypdfium2")
SERVER_INSTALL = "pip install 'ocr-fleet[server]'"


class EngineVenvError(FleetError):
    """The engine's venv is missing or could not be built; the message says what to run."""


def paddle_venv(cfg: FleetConfig) -> Path:
    """Where the paddleocr engine's venv lives (FLEET_PADDLE_VENV, else beside fleetctl's venv)."""
    if cfg.paddle_venv:
        return Path(cfg.paddle_venv).expanduser().absolute()
    prefix = Path(sys.prefix)
    if prefix == Path(sys.base_prefix):  # fleetctl runs outside any venv: keep it with the fleet's state
        return cfg.home / "venv-paddle"
    return prefix.with_name(prefix.name + "-paddle")


class ServerExtraMissing(EngineVenvError):
    """fleetctl runs from a light install, which cannot run instances on the process backend."""


def missing_server_modules(find: Callable[[str], object] = importlib.util.find_spec) -> list[str]:
    """The server extra's modules this interpreter cannot import (fleetctl's own: it runs the rapidocr
    instances)."""
    return [name for name in SERVER_MODULES if find(name) is None]


def require_server(cfg: FleetConfig) -> None:
    """Fail at once, naming the command, when the process backend's instances could not start from here.

    The paddleocr engine runs from its own venv, which scripts/venv-paddle.sh builds with the extra."""
    if cfg.engine == PADDLE:
        return
    missing = missing_server_modules()
    if missing:
        raise ServerExtraMissing(
            f"this ocr-fleet is the light client install ({', '.join(missing)} missing): instances on the "
            f"process backend need the engine and the web app: run `{SERVER_INSTALL}` (or `make venv` in a "
            "checkout), or use --backend docker with the instance image")


def instance_python(cfg: FleetConfig) -> str:
    """The interpreter that runs this fleet's instances."""
    if cfg.engine != PADDLE:
        return sys.executable
    python = paddle_venv(cfg) / "bin" / "python"
    if not python.is_file():
        raise EngineVenvError(f"OCR_ENGINE=paddleocr runs from its own venv, and {paddle_venv(cfg)} has none: "
                              "run `fleetctl deps --engine paddleocr` (or `make venv-paddle` in a checkout)")
    return str(python)


def package_source() -> str:
    """What the engine's venv installs ocr-fleet from: this checkout (editable installs) or the wheel it came
    from, as pip recorded it."""
    try:
        raw = metadata.distribution("ocr-fleet").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        raw = None
    url = str(json.loads(raw).get("url", "")) if raw else ""
    if url.startswith("file://"):
        return url.removeprefix("file://")
    raise EngineVenvError("ocr-fleet was not installed from a checkout or a wheel file, so the paddleocr venv "
                          "has nothing to install it from: run scripts/venv-paddle.sh VENV SOURCE yourself")


def build_paddle_venv(cfg: FleetConfig, report: Callable[[str], None] = lambda _line: None) -> Path:
    """Build (or refresh) the paddleocr venv with the packaged script, passing its lines to `report`."""
    venv = paddle_venv(cfg)
    argv = ["bash", str(resources.script("venv-paddle.sh")), str(venv), package_source()]
    tail: list[str] = []
    with subprocess.Popen(argv, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, env={**os.environ, "PYTHON": sys.executable}) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            report(line.rstrip("\n"))
            tail = [*tail[-19:], line.rstrip("\n")]
    if proc.returncode != 0:
        raise EngineVenvError(f"building the paddleocr venv {venv} failed (exit {proc.returncode}):\n"
                              + "\n".join(tail))
    return venv


def ensure(cfg: FleetConfig, *, allow_install: bool, report: Callable[[str], None]) -> None:
    """Make sure the fleet's engine can start: builds the paddleocr venv when missing, unless told not to."""
    if cfg.engine != PADDLE or (paddle_venv(cfg) / "bin" / "python").is_file():
        return
    if not allow_install:
        instance_python(cfg)  # raises, naming the command
    report(f"building the paddleocr venv {paddle_venv(cfg)} (as `fleetctl deps --engine paddleocr` does)")
    build_paddle_venv(cfg, report)


def save(cfg: FleetConfig) -> None:
    """Remember `up --engine` so that `scale`, `autoscale` and the autoscaler daemon keep the same engine."""
    procs.remember(cfg.home / "engine", cfg.engine)


def apply_saved(cfg: FleetConfig, env: Mapping[str, str]) -> FleetConfig:
    """The engine `up` last chose, unless OCR_ENGINE says otherwise."""
    saved = procs.remembered(cfg.home / "engine", env, "OCR_ENGINE")
    return cfg.replace(engine=saved) if saved else cfg
