"""OCR_ENGINE=paddleocr: a real instance running PaddleOCR's pipeline from the engine's own venv.

`make test` builds that venv (`make venv-paddle`); without it these tests fail and say so, rather than
skip: a missing engine is a failure, not a pass.
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from helpers import REPO, Proc, bad_input_failures, start_instance, text_image, unique_tag, worker_pids
from test_api import BAD_INPUTS

PADDLE_VENV = Path(os.environ.get("FLEET_PADDLE_VENV") or REPO / ".venv-paddle")
PHRASE = "Invoice 2026 total 42.50"


def paddle_python() -> str:
    python = PADDLE_VENV / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"the paddleocr engine's venv {PADDLE_VENV} is missing: run `make venv-paddle`")
    return str(python)


def export(folder: Path, profile: str = "accurate") -> Path:
    """A bundled profile written as a PaddleOCR model folder (what a user's own export looks like)."""
    subprocess.run([paddle_python(), "-m", "ocr_app.models.paddle_models", str(folder), "--profile", profile],
                   check=True, capture_output=True, text=True, timeout=300)
    return folder


@pytest.fixture(scope="module")
def own_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(tmp_path_factory.mktemp("paddle-own") / "mine")


@pytest.fixture(scope="module")
def paddle(session_dir: Path, consul_agent: Proc, redis_server: Proc, own_models: Path) -> Iterator[Proc]:
    """One paddleocr instance, two workers (an engine each), registered and caching like the default one."""
    paddle_python()
    proc = start_instance(session_dir / "paddle", consul_addr=str(consul_agent.extra["addr"]),
                          redis_url=str(redis_server.extra["url"]), venv=PADDLE_VENV, ready_timeout=300,
                          extra_env={"OCR_ENGINE": "paddleocr", "OCR_WORKERS": "2", "OCR_THREADS": "1",
                                     "OCR_PADDLE_HOME": str(session_dir / "paddle-home"),
                                     "OCR_PADDLE_MODEL_DIR": str(own_models)})
    yield proc
    proc.stop()


def url(instance: Proc, path: str = "/api/ocr") -> str:
    return f"{instance.extra['url']}{path}"


def unique(word: str = "Paddle") -> tuple[str, bytes]:
    text = f"{word} {unique_tag()}"
    return text, text_image(text)


def test_reads_known_text_and_names_its_engine(paddle: Proc) -> None:
    resp = requests.post(url(paddle), files={"image": ("a.jpg", text_image(PHRASE))}, timeout=120)
    body = resp.json()
    assert resp.status_code == 200, body
    assert [line["text"] for line in body["data"]] == [PHRASE]
    assert body["engine"] == "paddleocr" and body["profile"] == "accurate"
    assert body["data"][0]["confidence"] > 0.9 and len(body["data"][0]["box"]) == 4


def test_three_input_forms_agree(paddle: Proc) -> None:
    text, image = unique()
    forms = [
        {"files": {"image": ("a.jpg", image)}},
        {"data": image, "headers": {"Content-Type": "image/jpeg"}},
        {"json": {"image_base64": "data:image/jpeg;base64," + base64.b64encode(image).decode()}},
    ]
    answers = [requests.post(url(paddle), timeout=120, **form).json() for form in forms]  # type: ignore[arg-type]
    assert [[line["text"] for line in a["data"]] for a in answers] == [[text]] * 3
    assert [a["engine"] for a in answers] == ["paddleocr"] * 3
    assert [a["cached"] for a in answers] == [False, True, True]  # one cache entry, whatever the form


def test_fast_and_own_profiles_and_word_boxes(paddle: Proc) -> None:
    for profile in ("fast", "mine"):
        resp = requests.post(url(paddle), params={"profile": profile, "words": "1"},
                             files={"image": ("a.jpg", text_image(PHRASE))}, timeout=120)
        body = resp.json()
        assert resp.status_code == 200 and body["profile"] == profile, body
        assert [line["text"] for line in body["data"]] == [PHRASE]
        assert [w["text"] for w in body["data"][0]["words"]] == PHRASE.split()
    described = requests.get(url(paddle, "/api/profiles"), timeout=10).json()
    assert {p["name"]: p["engine"] for p in described["profiles"]} == {
        "accurate": "paddleocr", "fast": "paddleocr", "mine": "paddleocr"}


def test_cache_keeps_the_engines_apart(paddle: Proc, instance: Proc) -> None:
    """Both instances share one Redis: an image the default engine read is still a miss for PaddleOCR."""
    text, image = unique("Shared")
    first = requests.post(url(instance), data=image, headers={"Content-Type": "image/jpeg"}, timeout=120).json()
    assert first["engine"] == "rapidocr" and [line["text"] for line in first["data"]] == [text]
    second = requests.post(url(paddle), data=image, headers={"Content-Type": "image/jpeg"}, timeout=120).json()
    assert second["engine"] == "paddleocr" and second["cached"] is False
    assert [line["text"] for line in second["data"]] == [text]


def test_documents_name_the_engine(paddle: Proc) -> None:
    tiff = text_image(PHRASE, fmt="TIFF")
    body = requests.post(url(paddle), data=tiff, headers={"Content-Type": "image/tiff"}, timeout=120).json()
    assert body["engine"] == "paddleocr" and [line["text"] for line in body["data"]] == [PHRASE]


def test_bad_inputs_get_documented_errors_and_workers_survive(paddle: Proc) -> None:
    before = worker_pids(paddle.pid)
    assert len(before) == 2
    failures = bad_input_failures(url(paddle), BAD_INPUTS)
    assert not failures, "\n".join(failures)
    assert worker_pids(paddle.pid) == before
    ok = requests.post(url(paddle), files={"image": ("ok.jpg", text_image("Still Alive"))}, timeout=120)
    assert ok.status_code == 200 and ok.json()["engine"] == "paddleocr"


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The start-up check an instance runs before any worker forks (`python -m ocr_app.engine.catalog`)."""
    return subprocess.run([paddle_python(), "-m", "ocr_app.engine.catalog"], capture_output=True, text=True,
                          timeout=300,
                          env={**os.environ, "OCR_ENGINE": "paddleocr", **env})


def broken(base: Path, name: str, own_models: Path) -> Path:
    folder = base / name
    shutil.copytree(own_models, folder)
    return folder


def _edit_yml(path: Path, change: dict[str, object]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for dotted, value in change.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(last)
        else:
            node[last] = value
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_own_model_folder_is_checked_and_errors_name_the_fault(tmp_path: Path, own_models: Path) -> None:
    cases: list[tuple[str, object, str]] = []
    no_rec = broken(tmp_path, "norec", own_models)
    shutil.rmtree(no_rec / "rec")
    cases.append((str(no_rec), None, "has no rec/ folder"))
    renamed = broken(tmp_path, "renamed", own_models)
    (renamed / "det" / "inference.onnx").rename(renamed / "det" / "model.onnx")
    cases.append((str(renamed), None, "has no inference.onnx (ONNX files there: model.onnx"))
    nameless = broken(tmp_path, "nameless", own_models)
    _edit_yml(nameless / "det" / "inference.yml", {"Global.model_name": None})
    cases.append((str(nameless), None, "has no Global.model_name"))
    swapped = broken(tmp_path, "swapped", own_models)
    _edit_yml(swapped / "rec" / "inference.yml", {"PostProcess.name": "DBPostProcess"})
    cases.append((str(swapped), None, "must have PostProcess.name CTCLabelDecode"))
    unknown = broken(tmp_path, "unknown", own_models)
    _edit_yml(unknown / "det" / "inference.yml", {"Global.model_name": "PP-OCRv9_imaginary_det"})
    cases.append((str(unknown), None, "Global.model_name 'PP-OCRv9_imaginary_det' in det/inference.yml is not a "
                                      "model PaddleX knows"))
    crossed = broken(tmp_path, "crossed", own_models)
    _edit_yml(crossed / "rec" / "inference.yml", {"Global.model_name": "PP-OCRv6_small_det"})
    cases.append((str(crossed), None, "in rec/inference.yml is not a text recognition model"))
    short = broken(tmp_path, "short", own_models)
    _edit_yml(short / "rec" / "inference.yml", {"PostProcess.character_dict": ["a", "b", "c"]})
    cases.append((str(short), None, "the dictionary has 3 entries, so the recognizer needs 5 output classes"))
    garbage = broken(tmp_path, "garbage", own_models)
    (garbage / "det" / "inference.onnx").write_bytes(b"not an onnx model")
    cases.append((str(garbage), None, "does not load as an ONNX model"))
    bad_yaml = broken(tmp_path, "badyaml", own_models)
    (bad_yaml / "det" / "inference.yml").write_text("Global: [unclosed\n", encoding="utf-8")
    cases.append((str(bad_yaml), None, "is not valid YAML"))
    cases.append((str(tmp_path / "absent"), None, "is not a folder"))
    cases.append((str(broken(tmp_path, "Accurate", own_models)), None, "cannot name a profile"))
    failures = []
    for folder, _, expected in cases:
        proc = check({"OCR_PADDLE_MODEL_DIR": folder})
        if proc.returncode != 2 or expected not in proc.stderr:
            failures.append(f"{folder}: exit {proc.returncode}, {proc.stderr.strip()[-300:]!r}; want {expected!r}")
    assert not failures, "\n".join(failures)
    ok = check({"OCR_PADDLE_MODEL_DIR": str(own_models)})
    assert ok.returncode == 0 and "mine: PP-OCRv6_small_det + PP-OCRv6_small_rec" in ok.stdout, ok.stderr


def test_instance_refuses_to_start_on_a_bad_folder(tmp_path: Path, own_models: Path) -> None:
    folder = broken(tmp_path, "mine", own_models)
    shutil.rmtree(folder / "det")
    with pytest.raises(RuntimeError, match=r"OCR_PADDLE_MODEL_DIR: .*mine has no det/ folder"):
        start_instance(tmp_path, venv=PADDLE_VENV, ready_timeout=300,
                       extra_env={"OCR_ENGINE": "paddleocr", "OCR_PADDLE_MODEL_DIR": str(folder),
                                  "OCR_PADDLE_HOME": str(tmp_path / "home")})


def test_two_opencv_wheels_in_one_venv_are_refused(tmp_path: Path) -> None:
    """A venv where opencv-python-headless was added next to paddlex's opencv-contrib-python: both write cv2/."""
    dist = tmp_path / "opencv_python_headless-5.0.0.93.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: opencv-python-headless\nVersion: 5.0.0.93\n")
    proc = check({"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2
    assert "opencv-python-headless and opencv-contrib-python installed" in proc.stderr, proc.stderr


def test_default_venv_has_one_opencv_and_no_paddleocr() -> None:
    """The clash can't be hit by accident: the suite's (default) venv never gets the extra."""
    from ocr_app.models.paddle_models import opencv_distributions

    assert opencv_distributions() == ["opencv-python-headless"]
    proc = subprocess.run([sys.executable, "-m", "ocr_app.engine.catalog"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OCR_ENGINE": "paddleocr"})
    assert proc.returncode == 2 and "the paddleocr package is not installed in this venv" in proc.stderr


@pytest.mark.parametrize(("env", "message"), [
    ({"OCR_ENGINE": "tesseract"}, "OCR_ENGINE='tesseract' is not one of rapidocr, paddleocr"),
    ({"OCR_PADDLE_MODEL_DIR": "/models/mine"}, "OCR_PADDLE_MODEL_DIR needs OCR_ENGINE=paddleocr"),
    ({"OCR_ENGINE": "paddleocr", "OCR_MODEL_DIRS": "/models/mine"}, "with OCR_ENGINE=paddleocr serve your own "
                                                                     "PaddleOCR export with OCR_PADDLE_MODEL_DIR"),
])
def test_engine_settings_are_checked_once(env: dict[str, str], message: str) -> None:
    from ocr_app.config import ConfigError, Settings

    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env(env)


def test_fleet_engine_choice_is_saved_and_the_environment_wins(tmp_path: Path) -> None:
    from fleetctl.backends import engines
    from fleetctl.config import FleetConfig

    cfg = FleetConfig(home=tmp_path / "home")
    assert engines.apply_saved(cfg, {}).engine == "rapidocr"  # nothing saved yet
    engines.save(cfg.replace(engine="paddleocr"))
    assert engines.apply_saved(cfg, {}).engine == "paddleocr"  # what `up --engine` chose last
    assert engines.apply_saved(cfg, {"OCR_ENGINE": "rapidocr"}).engine == "rapidocr"
    assert engines.paddle_venv(cfg.replace(paddle_venv=str(tmp_path / "pv"))) == tmp_path / "pv"
    assert engines.paddle_venv(cfg) == Path(sys.prefix).with_name(Path(sys.prefix).name + "-paddle")
    assert engines.instance_python(cfg) == sys.executable  # rapidocr runs from fleetctl's own venv
