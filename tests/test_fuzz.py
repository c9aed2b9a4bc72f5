"""Property tests: mutated JPEG, PNG, TIFF and PDF files on the decode path give a typed 4xx error or pages,
and a JSON body is read, or refused as too deep exactly when it nests past the limit.

In-process and bounded, so it stays a few seconds in the suite. Any other exception would be a 500 (or a
crash of the worker, which would take the test process down with it).
"""
from __future__ import annotations

import json
import os

import pytest
from docgen import raw_tiff, text_pdf, tiff_pages
from helpers import text_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocr_app.config import Settings
from ocr_app.documents.images import decode_image
from ocr_app.documents.pages import load_pages
from ocr_app.errors import JsonTooDeep, OcrError
from ocr_app.http.api import JSON_MAX_CONTAINERS, JSON_MAX_DEPTH, parse_json_body
from ocr_app.options import PageOptions, RequestOptions

SETTINGS = Settings.from_env({}, max_pixels=4_000_000, max_pages=4)
OPTIONS = RequestOptions(page=PageOptions(words=True), dpi=36, preview=True)  # every page rendered and read
# Per file kind; FUZZ_EXAMPLES=2000 for a longer hunt (1,500 each ran clean).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))


def _seeds() -> dict[str, bytes]:
    return {
        "jpeg": text_image("Fuzz", size=(96, 48), font_size=20),
        "png": text_image("Fuzz", size=(96, 48), font_size=20, fmt="PNG"),
        "tiff": tiff_pages(["Fuzz one", "Fuzz two"], size=(96, 32), font_size=14),
        "tiff_ifds": raw_tiff([(64, 64), (64, 64), (64, 64)]),
        "pdf": text_pdf([("digital", "Fuzz text"), ("scan", "Fuzz scan")]),
    }


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> bytes:
    """A seed file with a few bytes flipped, a slice cut out or inserted, or the tail cut off."""
    data = bytearray(SEEDS[kind])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            del data[max(8, at):]
    return bytes(data)


def decode_all(data: bytes) -> None:
    """What an instance does before the engine: open the document, check it, read and render every page."""
    if load_pages(data, SETTINGS, OPTIONS) is None:
        decode_image(data, SETTINGS)


@pytest.mark.filterwarnings("ignore")  # Pillow warns about odd files; warnings are not failures here
@pytest.mark.parametrize("kind", list(SEEDS))
def test_mutated_files_fail_cleanly(kind: str) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(mutated(kind))
    def check(data: bytes) -> None:
        try:
            decode_all(data)
        except OcrError as exc:
            assert 400 <= exc.status < 500, exc

    check()


def test_the_seeds_decode() -> None:
    for data in SEEDS.values():
        decode_all(data)


# JSON bodies: any value, with brackets and escapes in its strings, wrapped in up to 40 more arrays or objects.
SCALARS = st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(alphabet="[{ab", max_size=3), inner, max_size=3), max_leaves=12)


def _depth(value: object) -> int:
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    return 0 if children is None else 1 + max(map(_depth, children), default=0)


@given(VALUES, st.lists(st.booleans(), max_size=40))
@settings(max_examples=EXAMPLES * 2, deadline=None, database=None)
def test_json_bodies_are_read_or_too_deep_exactly_past_the_limit(value: object, wrappers: list[bool]) -> None:
    for as_object in wrappers:
        value = {"k": value} if as_object else [value]
    body = json.dumps(value).encode()
    if _depth(value) > JSON_MAX_DEPTH or body.count(b"[") + body.count(b"{") > JSON_MAX_CONTAINERS:
        with pytest.raises(JsonTooDeep):
            parse_json_body(body)
    else:
        assert parse_json_body(body) == value
