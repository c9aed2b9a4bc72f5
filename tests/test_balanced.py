"""The `balanced` profile: chosen per CPU at start-up, served where the CPU offers it, refused where not.

The CPU flags are passed in (OCR_CPU_FLAGS or `decision(flags)`), so both branches run on every machine:
OpenVINO computes a bf16 hint in f32 on a CPU without bf16, so the forced "bf16" branch still runs there.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from helpers import Proc, start_instance, text_image, worker_pids

from ocr_app.config import Settings
from ocr_app.documents.images import decode_image
from ocr_app.engine.catalog import plan
from ocr_app.engine.factory import build_engines
from ocr_app.engine.rapid import Engine
from ocr_app.engine.sessions import load_sessions
from ocr_app.models import cpu
from ocr_app.models.digests import profile_digest
from ocr_app.models.profiles import ProfileError, accurate_profile

EPYC_WITHOUT_AVX512 = frozenset({"sse4_2", "avx", "avx2", "fma", "sha_ni", "vaes", "vpclmulqdq"})
BF16 = {"OCR_CPU_FLAGS": "avx2,fma,avx512f,avx512_bf16"}
NO_BF16 = {"OCR_CPU_FLAGS": "none"}


@pytest.mark.parametrize("flags, chosen", [
    (frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}), "openvino bf16"),
    (frozenset({"avx2", "amx_bf16", "amx_int8"}), "openvino bf16"),
    (EPYC_WITHOUT_AVX512, None),
    (frozenset({"avx2", "avx512f", "avx512_vnni"}), None),  # int8 VNNI alone does not pay (docs/benchmarks.md)
    (frozenset(), None),
])
def test_decision_follows_the_cpu_flags(flags: frozenset[str], chosen: str | None) -> None:
    found = cpu.decision(flags)
    assert found["chosen"]["balanced"] == chosen
    assert found["chosen"]["accurate"] == "onnxruntime fp32"
    assert found["bf16"] is (chosen is not None)
    assert found["offered"] == [f for f in cpu.RELEVANT if f in flags]
    assert ("not offered" in found["balanced_reason"]) is (chosen is None)


@pytest.mark.parametrize("raw, expected", [
    ("", None), ("  ", None), ("none", frozenset()), ("NONE", frozenset()),
    ("avx2, avx512_bf16", frozenset({"avx2", "avx512_bf16"})),
    ("avx2 fma\tavx512f", frozenset({"avx2", "fma", "avx512f"})),
    # hostile values are only flags that match nothing: never an error, never bf16
    (",,,", frozenset()), ("avx512_bf16x", frozenset({"avx512_bf16x"})), ("\x00;rm -rf", frozenset({"\x00;rm", "-rf"})),
])
def test_cpu_flags_setting_is_parsed(raw: str, expected: frozenset[str] | None) -> None:
    assert cpu.flags_from_setting(raw) == expected
    if expected is not None and raw not in ("avx2, avx512_bf16",):
        assert cpu.decide(raw)["balanced"] is None and cpu.decide(raw)["source"] == "OCR_CPU_FLAGS"


def test_this_cpu_is_read_when_nothing_is_forced() -> None:
    found = cpu.decide("")
    assert found["source"] == "/proc/cpuinfo" and found == cpu.decision(cpu.cpu_flags())


def test_plan_offers_balanced_only_where_the_cpu_has_bf16() -> None:
    wanted = {"OCR_PROFILES": "accurate,fast,balanced"}
    with_bf16 = plan(Settings.from_env({**wanted, **BF16}))
    assert list(with_bf16) == ["accurate", "fast", "balanced"]
    balanced = with_bf16["balanced"]
    assert (balanced.runtime, balanced.precision) == ("openvino", "bf16")
    accurate = with_bf16["accurate"]  # the same files, and the same line classifier rule (OCR_LINE_CLASSIFIER)
    assert (balanced.det, balanced.rec, balanced.cls) == (accurate.det, accurate.rec, accurate.cls)
    # named on a CPU without bf16: left out (the fleet's machines may differ), not an error
    assert list(plan(Settings.from_env({**wanted, **NO_BF16}))) == ["accurate", "fast"]


def test_balanced_is_not_in_the_default_set() -> None:
    """It costs 130-250 MiB per worker: the defaults stay within the 350 MiB an instance may hold."""
    assert list(plan(Settings.from_env(BF16))) == ["accurate", "fast"]
    assert "balanced" in plan(Settings.from_env({**BF16, "OCR_PROFILE": "balanced"}))


def test_balanced_as_the_default_on_a_cpu_without_bf16_is_refused() -> None:
    with pytest.raises(ProfileError, match=r"OCR_PROFILE=balanced is not offered on this CPU: .*no native bf16"):
        plan(Settings.from_env({**NO_BF16, "OCR_PROFILE": "balanced"}))


def test_a_missing_openvino_is_named_not_blamed_on_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_app.engine import openvino as openvino_runtime

    balanced = plan(Settings.from_env({**BF16, "OCR_PROFILE": "balanced"}))["balanced"]
    openvino_runtime.core.cache_clear()
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    try:
        with pytest.raises(ProfileError, match=r"'balanced' runs on openvino, which is not installed"):
            load_sessions(balanced, None)
    finally:
        openvino_runtime.core.cache_clear()


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, Engine]]:
    yield build_engines(Settings.from_env({**BF16, "OCR_PROFILES": "accurate,balanced"}))


def bgr(data: bytes) -> np.ndarray:
    return decode_image(data, Settings.from_env({})).bgr


def test_balanced_reads_text_with_word_boxes(engines: dict[str, Engine]) -> None:
    image = bgr(text_image("Quick Brown Fox 12"))
    result = engines["balanced"].recognize(image, words=True)
    assert [line.text for line in result.lines] == ["Quick Brown Fox 12"]
    words = result.lines[0].words or []
    assert [w.text for w in words] == ["Quick", "Brown", "Fox", "12"]
    xs = [w.box[0][0] for w in words]
    assert xs == sorted(xs) and xs[-1] < image.shape[1]  # word boxes stay on the line, left to right


def test_balanced_has_its_own_cache_namespace(engines: dict[str, Engine]) -> None:
    assert engines["balanced"].cache_namespace.startswith("balanced:")
    # same files as accurate, other arithmetic: the model digest differs too
    assert profile_digest(engines["balanced"].profile) != profile_digest(engines["accurate"].profile)


def test_padded_recognition_keeps_the_unpadded_time_steps(engines: dict[str, Engine]) -> None:
    """Lines are padded to a width bucket; the answer has the time steps of the line as sent."""
    import onnxruntime as ort

    rec = load_sessions(engines["balanced"].profile, None)["rec"]  # the OpenVINO session the engine runs
    reference = ort.InferenceSession(str(accurate_profile().rec), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    for width in (12, 64, 65, 321, 703, 1000):
        x = rng.random((2, 3, 48, width), dtype=np.float32)
        got = rec.run(None, {"x": x})[0]
        assert got.shape == reference.run(None, {"x": x})[0].shape, width


@pytest.fixture(scope="module")
def bf16_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_instance(tmp_path_factory.mktemp("bf16"), extra_env={**BF16, "OCR_PROFILES": "accurate,balanced"})
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def no_bf16_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_instance(tmp_path_factory.mktemp("nobf16"),
                          extra_env={**NO_BF16, "OCR_PROFILES": "accurate,balanced"})
    yield proc
    proc.stop()


def test_api_serves_balanced_and_shows_the_decision(bf16_instance: Proc) -> None:
    base = bf16_instance.extra["url"]
    listed = requests.get(f"{base}/api/profiles", timeout=10).json()
    by_name = {p["name"]: p for p in listed["profiles"]}
    assert list(by_name) == ["accurate", "balanced"]
    assert (by_name["balanced"]["runtime"], by_name["balanced"]["precision"]) == ("openvino", "bf16")
    assert listed["cpu"]["source"] == "OCR_CPU_FLAGS" and listed["cpu"]["chosen"]["balanced"] == "openvino bf16"
    assert "avx512_bf16" in listed["cpu"]["offered"]
    for form in ("query", "multipart"):
        image = text_image(f"Balanced Profile {form.title()}")
        if form == "query":
            resp = requests.post(f"{base}/api/ocr?profile=balanced", files={"image": ("a.jpg", image)}, timeout=120)
        else:
            resp = requests.post(f"{base}/api/ocr", files={"image": ("a.jpg", image)}, data={"profile": "balanced"},
                                 timeout=120)
        assert resp.status_code == 200, resp.text
        assert resp.headers["X-OCR-Profile"] == "balanced" and resp.json()["profile"] == "balanced"
        assert [line["text"] for line in resp.json()["data"]] == [f"Balanced Profile {form.title()}"]


def test_api_without_bf16_leaves_balanced_out_and_says_why(no_bf16_instance: Proc) -> None:
    base = no_bf16_instance.extra["url"]
    listed = requests.get(f"{base}/api/profiles", timeout=10).json()
    assert [p["name"] for p in listed["profiles"]] == ["accurate"]
    assert listed["cpu"]["chosen"]["balanced"] is None and listed["cpu"]["offered"] == []
    assert "no native bf16" in listed["cpu"]["balanced_reason"]
    resp = requests.post(f"{base}/api/ocr?profile=balanced", files={"image": ("a.jpg", text_image("X"))}, timeout=60)
    assert resp.status_code == 400 and resp.json()["code"] == 40010 and "use one of accurate" in resp.json()["msg"]
    log = no_bf16_instance.log.read_text()
    assert "balanced: this CPU has no native bf16" in log


def _png(array: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


def test_odd_shapes_on_balanced_answer_and_the_worker_survives(bf16_instance: Proc) -> None:
    """Shapes OpenVINO sees rarely (a line wider than any bucket, tiny and blank pages, noise): 2xx or the
    documented 422, never a 500 or a dead worker."""
    base = bf16_instance.extra["url"]
    workers = worker_pids(bf16_instance.pid)
    rng = np.random.default_rng(3)
    corpus = {
        "wide line": (text_image("Wide " * 60, size=(9000, 70), font_size=40), 200),
        "tall strip": (text_image("T", size=(40, 3000), font_size=30), 200),
        "tiny": (text_image("x", size=(12, 12), font_size=8), 200),
        "blank": (_png(np.full((900, 700, 3), 255, np.uint8)), 200),
        "noise": (_png(rng.integers(0, 256, (800, 800, 3), dtype=np.uint8)), 200),
        "under 8 px": (_png(np.zeros((4, 400, 3), np.uint8)), 422),
    }
    for name, (image, status) in corpus.items():
        resp = requests.post(f"{base}/api/ocr?profile=balanced", files={"image": ("a.png", image)},
                             headers={"Cache-Control": "no-cache"}, timeout=300)
        assert resp.status_code == status, (name, resp.text[:200])
        if status == 200:
            assert resp.json()["profile"] == "balanced"
        else:
            assert isinstance(resp.json()["code"], int)
    wide = requests.post(f"{base}/api/ocr?profile=balanced", files={"image": ("a.jpg", corpus["wide line"][0])},
                         timeout=300).json()["data"]
    assert "Wide" in " ".join(line["text"] for line in wide)
    assert worker_pids(bf16_instance.pid) == workers


@pytest.mark.parametrize("flags", [frozenset({"avx2", "avx512_bf16"}), EPYC_WITHOUT_AVX512])
def test_bench_table_shows_the_cpu_decision_and_the_load(flags: frozenset[str]) -> None:
    from bench import engine_profiles

    row = {"variant": "accurate", "img_s": 0.5, "ratio_wall": 1.0, "ratio_cpu": 1.0, "peak_rss_mib": 700,
           "cer_ordered": 0.014, "cer_lines": 0.012, "cer_lines_by_damage": {"clean": 0.01},
           "same_text_as_accurate": True}
    text = engine_profiles.table({"pages": 1, "rounds": 1, "rows": [row], "cpu": cpu.decision(flags),
                                  "load_average": [3.31, 2.67]})
    assert "load average 3.31 → 2.67 (1 min, start and end" in text
    if "avx512_bf16" in flags:
        assert "balanced: openvino bf16, because this CPU computes bf16 natively (avx512_bf16)" in text
    else:
        assert "CPU offers: avx2, fma." in text and "balanced: not offered, because this CPU has no native bf16" in text
