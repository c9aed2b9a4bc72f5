"""The engine in-process: bundled models only, correct text, bounded detection size, no leaking options."""
from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from helpers import text_image
from PIL import Image

from ocr_app.config import Settings
from ocr_app.documents.images import decode_image
from ocr_app.engine.rapid import Engine, capped_preprocess
from ocr_app.models.digests import profile_digest
from ocr_app.models.profiles import accurate_profile

SETTINGS = Settings.from_env({})


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    yield Engine(SETTINGS)


def bgr(data: bytes) -> np.ndarray:
    return decode_image(data, SETTINGS).bgr


def test_models_come_from_the_installed_wheel() -> None:
    profile = accurate_profile()
    for path in profile.files():
        assert path.is_file() and "rapidocr" in path.parts
    assert len(profile_digest(profile)) == 16


def test_recognizes_rendered_text(engine: Engine) -> None:
    result = engine.recognize(bgr(text_image("Quick Brown Fox 12")))
    assert [line.text for line in result.lines] == ["Quick Brown Fox 12"]
    assert result.lines[0].confidence > 0.9
    xs = [p[0] for p in result.lines[0].box]
    assert min(xs) < 60 and max(xs) < 640


def test_results_do_not_depend_on_earlier_calls(engine: Engine) -> None:
    image = bgr(text_image("Same Answer"))
    first = engine.recognize(image)
    engine.recognize(bgr(text_image("Something Else Entirely", size=(900, 160))))
    assert engine.recognize(image).lines == first.lines


def test_blank_image_has_no_lines(engine: Engine) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (200, 100), "white").save(buf, "PNG")
    assert engine.recognize(bgr(buf.getvalue())).lines == []


@pytest.mark.parametrize("size, expected", [
    ((132, 709), (288, 1600)),    # a strip: lifted only until the long side hits the cap (stock: 3968x736)
    ((1000, 1500), (992, 1504)),  # a photo already big enough keeps its size (multiples of 32)
    ((3000, 4000), (1216, 1600)),  # a big one is brought down to the cap
    ((20, 20), (736, 736)),
])
def test_detection_size_is_bounded(size: tuple[int, int], expected: tuple[int, int]) -> None:
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    pre = capped_preprocess(DetPreProcess, 736, 1600)(736, "min")
    out = pre.resize(np.zeros((*size, 3), dtype=np.uint8))
    assert out is not None
    h, w = out.shape[:2]
    assert max(h, w) <= 1600 + 16 and (h, w) == expected


@pytest.mark.parametrize("mean, std", [(None, None), ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
def test_detection_input_is_rapidocrs_to_the_bit_in_c_order(mean: list[float] | None, std: list[float] | None) -> None:
    """Normalized band by band into a C-ordered tensor (which ONNX Runtime need not copy again), with
    the same float64 arithmetic as rapidocr's own preprocessing (stock: mean/std 0.5; fast: ImageNet's)."""
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    capped = capped_preprocess(DetPreProcess, 736, 1600)
    ours = capped(736, "min", mean, std)
    stock = DetPreProcess(736, "min", mean, std)
    rng = np.random.default_rng(3)
    for shape in [(2000, 2000, 3), (132, 709, 3), (1200, 900, 3), (37, 2999, 3)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        got = ours(img)
        resized = ours.resize(img)
        assert got is not None and resized is not None and got.flags["C_CONTIGUOUS"]
        want = np.expand_dims(stock.permute(stock.normalize(resized)), axis=0).astype(np.float32)
        assert got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32)), shape


def test_cache_namespace_changes_with_detection_limits() -> None:
    a = Settings.from_env({})
    b = Settings.from_env({}, det_max_side=2000)
    assert Engine(a).cache_namespace != Engine(b).cache_namespace


def test_word_boxes_are_per_call_and_never_stick(engine: Engine) -> None:
    image = bgr(text_image("Alpha Beta Gamma"))
    with_words = engine.recognize(image, words=True)
    line = with_words.lines[0]
    assert line.words is not None and [w.text for w in line.words] == ["Alpha", "Beta", "Gamma"]
    lefts = [w.box[0][0] for w in line.words]
    assert lefts == sorted(lefts) and all(0 < w.confidence <= 1 for w in line.words)
    plain = engine.recognize(image)
    assert plain.lines[0].words is None and "words" not in plain.lines[0].to_dict()
    assert [ln.text for ln in plain.lines] == [ln.text for ln in with_words.lines]
