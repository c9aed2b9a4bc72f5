"""Profiles over HTTP: choosing one per request, the answer naming it, caching by it, and own models."""
from __future__ import annotations

import base64
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import Proc, spawn, start_instance, text_image, unique_tag, wait_for
from test_profiles import own_model

RAW = {"Content-Type": "image/jpeg"}


def url(instance: Proc, path: str = "/api/ocr") -> str:
    return f"{instance.extra['url']}{path}"


def unique_image(word: str) -> bytes:
    return text_image(f"{word} {unique_tag()}")


def test_profiles_are_listed(instance: Proc) -> None:
    body = requests.get(url(instance, "/api/profiles"), timeout=10).json()
    assert body["default"] == "accurate"
    by_name = {p["name"]: p for p in body["profiles"]}
    assert list(by_name) == ["accurate", "fast"]
    for profile in by_name.values():
        assert profile["runtime"] == "onnxruntime" and profile["precision"] == "fp32" and profile["models"]
    assert by_name["fast"]["files"]["dict"] == "ppocrv6_tiny_dict.txt"


@pytest.mark.parametrize("form", ["query", "multipart", "json", "raw"])
def test_each_input_form_chooses_the_profile(instance: Proc, form: str) -> None:
    image = unique_image("Profile")
    if form == "query":
        resp = requests.post(url(instance) + "?profile=fast", files={"image": ("a.jpg", image)}, timeout=60)
    elif form == "multipart":
        resp = requests.post(url(instance), files={"image": ("a.jpg", image)}, data={"profile": "fast"}, timeout=60)
    elif form == "json":
        resp = requests.post(url(instance), json={"image_base64": base64.b64encode(image).decode(),
                                                   "profile": "fast"}, timeout=60)
    else:
        resp = requests.post(url(instance) + "?profile=fast", data=image, headers=RAW, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["profile"] == "fast" and resp.headers["X-OCR-Profile"] == "fast"
    assert resp.json()["data"][0]["text"].startswith("Profile")


def test_default_profile_is_named_in_the_answer(instance: Proc) -> None:
    resp = requests.post(url(instance), files={"image": ("a.jpg", unique_image("Default"))}, timeout=60)
    assert resp.json()["profile"] == "accurate" and resp.headers["X-OCR-Profile"] == "accurate"


@pytest.mark.parametrize("headers", [RAW, {}])
def test_cache_is_kept_per_profile(instance: Proc, headers: dict[str, str]) -> None:
    """The same bytes under another profile are a miss; the raw-body fast path keys by the query too."""
    image = unique_image("Keyed")
    send = (lambda q: requests.post(url(instance) + q, data=image, headers=headers, timeout=60)) if headers \
        else (lambda q: requests.post(url(instance) + q, files={"image": ("a.jpg", image)}, timeout=60))
    assert send("").headers["X-Cache"] == "MISS"
    fast = send("?profile=fast")
    assert fast.headers["X-Cache"] == "MISS" and fast.json()["profile"] == "fast"
    again = send("?profile=fast")
    assert again.headers["X-Cache"] == "HIT" and again.headers["X-OCR-Profile"] == "fast"
    assert again.json()["profile"] == "fast" and again.json()["data"] == fast.json()["data"]
    default = send("?profile=accurate")
    assert default.headers["X-Cache"] == "HIT" and default.json()["profile"] == "accurate"


HOSTILE_NAMES = ["nope", "FAST", "fast ", "../accurate", "x" * 1000, "%00", "fast\u202e", "accurate;fast"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("form", ["query", "raw", "json", "multipart"])
def test_unknown_profile_is_400_listing_the_valid_ones(instance: Proc, name: str, form: str) -> None:
    image = text_image("Never Run")
    if form == "query":
        resp = requests.post(url(instance), params={"profile": name}, files={"image": ("a.jpg", image)},
                             timeout=60)
    elif form == "raw":
        resp = requests.post(url(instance), params={"profile": name}, data=image, headers=RAW, timeout=60)
    elif form == "json":
        resp = requests.post(url(instance), json={"image_base64": base64.b64encode(image).decode(),
                                                   "profile": name}, timeout=60)
    else:
        resp = requests.post(url(instance), files={"image": ("a.jpg", image)}, data={"profile": name},
                             timeout=60)
    body = resp.json()
    assert resp.status_code == 400 and body["code"] == 40010, body
    assert "accurate, fast" in body["msg"] and len(body["msg"]) < 300 and body["data"] == []


@pytest.mark.parametrize("value", [5, ["fast"], {"a": 1}, True])
def test_profile_of_the_wrong_json_type_is_400(instance: Proc, value: object) -> None:
    """JSON values are read as the query string would carry them, so these are unknown names."""
    resp = requests.post(url(instance), json={"image_base64": base64.b64encode(text_image("X")).decode(),
                                              "profile": value}, timeout=60)
    assert resp.status_code == 400 and resp.json()["code"] == 40010


@pytest.fixture(scope="module")
def own_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """An instance that serves only someone's own model folder as its default profile."""
    root = tmp_path_factory.mktemp("own")
    folder = own_model(root, "mymodel")
    proc = start_instance(root / "instance", extra_env={"OCR_MODEL_DIRS": str(folder), "OCR_PROFILE": "mymodel",
                                                        "OCR_PROFILES": "mymodel"})
    yield proc
    proc.stop()


def test_own_model_is_served_under_its_folder_name(own_instance: Proc) -> None:
    listed = requests.get(url(own_instance, "/api/profiles"), timeout=10).json()
    assert [p["name"] for p in listed["profiles"]] == ["mymodel"] and listed["default"] == "mymodel"
    resp = requests.post(url(own_instance), files={"image": ("a.jpg", text_image("Own Model 42"))}, timeout=60)
    assert resp.status_code == 200 and resp.headers["X-OCR-Profile"] == "mymodel"
    assert [line["text"] for line in resp.json()["data"]] == ["Own Model 42"]
    wrong = requests.post(url(own_instance) + "?profile=fast", files={"image": ("a.jpg", text_image("X"))},
                          timeout=60)
    assert wrong.status_code == 400 and "use one of mymodel" in wrong.json()["msg"]


def test_instance_with_a_broken_model_folder_refuses_to_start(tmp_path: Path) -> None:
    folder = own_model(tmp_path, "broken", dict_lines=100)
    env = {**os.environ, "OCR_MODEL_DIRS": str(folder), "OCR_PORT": "1", "OCR_RUNTIME_DIR": str(tmp_path / "run")}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = spawn([gunicorn, "-c", "python:ocr_app.gunicorn_conf", "ocr_app:create_app()"], tmp_path / "log",
                 env=env)
    wait_for(lambda: not proc.alive(), 120, "the instance to refuse its broken model folder")
    assert proc.popen.returncode != 0
    log = proc.log.read_text()
    assert f"{folder / 'keys.txt'} has 100 entries" in log and "has 6906" in log
