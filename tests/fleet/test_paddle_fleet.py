"""`fleetctl up --engine paddleocr`: a real fleet whose instances run from the paddleocr venv, through the gateway."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from test_fleet_integration import REPO, Fleet, group_pids_of_port, make_fleet, teardown_fleet, word_png


@pytest.fixture(scope="module")
def paddle_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if not (REPO / ".venv-paddle" / "bin" / "python").is_file():
        pytest.fail("the paddleocr engine's venv .venv-paddle is missing: run `make venv-paddle`")
    f = make_fleet(tmp_path_factory.mktemp("paddle-fleet"), "process")
    f.env["OCR_PADDLE_HOME"] = str(f.home / "paddle")
    try:
        yield f
    finally:
        teardown_fleet(f)


def gateway_ocr(f: Fleet, image: bytes) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.post(f"{f.gateway}/api/ocr", data=image, headers={"Content-Type": "image/png"}, timeout=120)


def test_up_with_paddleocr_serves_through_the_gateway_and_scale_keeps_it(paddle_fleet: Fleet) -> None:
    f = paddle_fleet
    f.run("up", "-n", "1", "--engine", "paddleocr", timeout=400)
    resp = gateway_ocr(f, word_png("Paddle fleet"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["engine"] == "paddleocr" and [line["text"] for line in body["data"]] == ["Paddle fleet"]
    (instance,) = f.status()["instances"]
    pythons = {psutil.Process(pid).cmdline()[0] for pid in group_pids_of_port(instance["port"])}
    assert pythons == {str(REPO / ".venv-paddle" / "bin" / "python")}  # master and workers: the engine's venv
    # `scale` without --engine keeps the engine `up` chose: no drift, the same instance stays
    plan = f.run("scale", "1", "--dry-run").stdout
    assert "start" not in plan and "replace" not in plan, plan
    assert gateway_ocr(f, word_png("Still paddle")).json()["engine"] == "paddleocr"


def test_docker_backend_refuses_paddleocr_clearly(paddle_fleet: Fleet) -> None:
    proc = paddle_fleet.run("scale", "1", "--backend", "docker", "--dry-run", expect=None)
    assert proc.returncode != 0
    assert "OCR_ENGINE=paddleocr runs on the process backend only" in proc.stderr, proc.stderr


def test_missing_engine_venv_is_named_before_anything_starts(paddle_fleet: Fleet, tmp_path: Path) -> None:
    absent = {"FLEET_PADDLE_VENV": str(tmp_path / "no-venv")}
    check = paddle_fleet.run("deps", "--engine", "paddleocr", "--check", env=absent, expect=1)
    assert "run `fleetctl deps --engine paddleocr`" in check.stderr, check.stderr
    up = paddle_fleet.run("up", "-n", "1", "--engine", "paddleocr", "--no-install", env=absent, expect=1)
    assert f"{tmp_path / 'no-venv'} has none: run `fleetctl deps --engine paddleocr`" in up.stderr, up.stderr
    found = paddle_fleet.run("deps", "--engine", "paddleocr", "--check").stdout
    assert f"paddleocr venv  {REPO / '.venv-paddle' / 'bin' / 'python'}" in found
