"""The languages bench's pure parts: figures from rows, the route it recommends, lang=auto's score, its
report block, and publishing it so that a full report keeps it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from bench import languages, smoke
from bench.__main__ import main
from bench.publish import publish

READERS = ["PP-OCR accurate", "PP-OCR fast", "Tesseract psm 6", "Tesseract psm 3"]


def _rows(cers: dict[tuple[str, str], tuple[float, float]], seconds: dict[tuple[str, str], float]) -> list[Any]:
    rows: list[dict[str, Any]] = []
    for (code, reader), (scan, photo) in cers.items():
        rows.append({"lang": code, "reader": reader, "kind": "scan", "cer": scan, "cers": [scan]})
        rows.append({"lang": code, "reader": reader, "kind": "photo", "cer": photo, "cers": [photo]})
        rows.append({"lang": code, "reader": reader, "kind": "time", "seconds": seconds[(code, reader)], "pages": 4})
    return rows


CERS = {
    ("zh", "PP-OCR accurate"): (0.0, 0.01), ("zh", "PP-OCR fast"): (0.0, 0.02),
    ("zh", "Tesseract psm 6"): (0.02, 0.44), ("zh", "Tesseract psm 3"): (0.07, 0.5),
    ("en", "PP-OCR accurate"): (0.0, 0.0), ("en", "PP-OCR fast"): (0.0, 0.0),
    ("en", "Tesseract psm 6"): (0.0, 0.14), ("en", "Tesseract psm 3"): (0.0, 0.55),
    ("vi", "PP-OCR accurate"): (0.15, 0.16), ("vi", "PP-OCR fast"): (0.2, 0.25),
    ("vi", "Tesseract psm 6"): (0.0, 0.03), ("vi", "Tesseract psm 3"): (0.0, 0.033),
    ("ru", "PP-OCR accurate"): (1.0, 1.0), ("ru", "PP-OCR fast"): (2.0, 2.0),
    ("ru", "Tesseract psm 6"): (0.0, 0.4), ("ru", "Tesseract psm 3"): (0.0, 0.5),
}
SECONDS = {key: (8.0 if reader == "PP-OCR accurate" else 2.0 if reader == "PP-OCR fast" else 1.0)
           for key in CERS for reader in [key[1]]}
SECONDS[("vi", "Tesseract psm 3")] = 0.5  # psm 3 is faster on vi and within half a point of psm 6


def _results(**changes: Any) -> dict[str, Any]:
    codes = ["zh", "en", "vi", "ru"]
    base = {"pages": 2, "lines": 8, "seed": 1, "codes": codes, "readers": READERS, "tesseract": "tesseract 5.5.4",
            "fleet_skipped": "the fleet has no /api/languages yet (404)", "cores": 2, "load_average": [1.0, 1.5],
            "routes": {"zh": "ppocr", "en": "ppocr", "vi": "lines", "ru": "lines"},
            "scripts": {"zh": "Han", "en": "Latin", "vi": "Latin", "ru": "Cyrillic"},
            "rows": _rows(CERS, SECONDS), "auto_answers": {}}
    return {**base, **changes}


def test_speeds_are_against_accurate_on_chinese_and_english() -> None:
    rows = _results()["rows"]
    assert languages.reference_speed(rows) == 8 / 16
    assert languages.speeds(rows)[("vi", "Tesseract psm 3")] == 8.0


def test_recommend_meets_the_targets_first_then_the_lowest_cer_then_speed() -> None:
    results = _results()
    cer, speed = languages.cer_table(results["rows"]), languages.speeds(results["rows"])
    assert languages.recommend(cer, speed, "en") == ("ppocr", "PP-OCR accurate")
    assert languages.recommend(cer, speed, "vi") == ("tesseract", "Tesseract psm 3")  # faster, within 0.5 pt
    # no reader meets the photo target on ru: the lowest CER wins and the report says missed
    assert languages.recommend(cer, speed, "ru") == ("tesseract", "Tesseract psm 6")
    checks = {t["lang"]: t for t in languages.targets(results)}
    assert checks["ru"]["scan_met"] and not checks["ru"]["photo_met"]
    assert checks["vi"]["judged_on"] == "Tesseract psm 3"


def test_auto_accuracy_counts_the_script_found_and_the_route_taken() -> None:
    answers = {"ru": [{"page": "ru-scan-0", "script": "Cyrillic"}, {"page": "ru-photo-0", "lang": "uk"}],
               "zh": [{"page": "zh-scan-0", "lang": "ja"}, {"page": "zh-photo-0", "route": "ppocr"}]}
    got = languages.auto_accuracy(answers, {"ru": "Cyrillic", "zh": "Han"})
    assert got["pages"] == 4 and got["right"] == 1 and got["share"] == 0.25
    assert got["routed"] == 2  # no script found, PP-OCR read it: right for a Chinese page
    assert {m["page"]: m["got"] for m in got["misses"]} == {"ru-photo-0": None, "zh-scan-0": None,
                                                             "zh-photo-0": None}


def test_report_names_every_language_reader_and_verdict() -> None:
    block = languages.report(_results(), "RUN-ONE")
    assert block.startswith(languages.BEGIN) and block.rstrip().endswith(languages.END)
    assert "| vi | Latin | 15.0% | 20.0% | **0.0%** | **0.0%** |" in block  # scans, bold = target met
    assert "| ru | Cyrillic | 100.0% | 200.0% | 40.0% | 50.0% |" in block  # photos
    assert "| zh | 0.50 (1.00x) | 2.00 (4.00x) | 4.00 (8.00x) | 4.00 (8.00x) |" in block
    assert "| ru | tesseract (Tesseract psm 6) | lines | Tesseract psm 6 | 0.0% (met) | 40.0% (missed) |" in block
    assert "scans met for 4 of 4 languages, photos for 3 of 4" in block
    assert "were not run: the fleet has no /api/languages yet (404)" in block


def test_report_quotes_auto_against_its_target() -> None:
    answers = {"ru": [{"page": f"ru-{n}", "script": "Cyrillic"} for n in range(49)] + [{"page": "ru-x"}]}
    block = languages.report(_results(auto_answers=answers, fleet_skipped=None), "now")
    assert "right script on 49 of 50 pages (**98.0%**, target 98%: met), and sent 49 (98.0%)" in block
    assert "route taken): ru-x (none for Cyrillic, None)." in block


def test_publish_replaces_its_block_and_a_full_publish_keeps_it(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    page.write_text("# Benchmarks\n\nintro\n", encoding="utf-8")
    languages.publish(languages.report(_results(), "RUN-ONE"), page)
    languages.publish(languages.report(_results(), "RUN-TWO"), page)
    text = page.read_text(encoding="utf-8")
    assert text.count(languages.BEGIN) == 1 and "RUN-TWO" in text and "RUN-ONE" not in text
    # a full report's publish (a real smoke run) rewrites the page and keeps this section before it
    run_dir = smoke.run(tmp_path, say=lambda _: None)
    publish(run_dir, page.parent)
    text = page.read_text(encoding="utf-8")
    assert text.count(languages.BEGIN) == 1 and "RUN-TWO" in text
    assert text.index(languages.END) < text.index("\n## Latest report:")


def test_cli_offers_the_languages_section() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "--languages" in result.output and "lang=auto" in result.output


def test_the_recognizer_is_read_beside_the_data_or_from_the_first_page() -> None:
    from bench.langreaders import recognizer_of

    rec = {"lang": "ru", "engine": "tesseract", "route": "lines"}
    assert recognizer_of({"data": [], "recognizer": rec}) == rec
    assert recognizer_of({"pages": [{"page": 1, "recognizer": {**rec, "script": "Cyrillic"}}]})["script"] == "Cyrillic"
    assert recognizer_of({"data": []}) == {}


def test_a_tie_within_half_a_point_goes_to_pp_ocr_then_lines() -> None:
    rows = _rows({("fr", "PP-OCR accurate"): (0.0, 0.001), ("fr", "Tesseract psm 3"): (0.0, 0.0),
                  ("fr", "lines"): (0.0, 0.004)},
                 {("fr", "PP-OCR accurate"): 8.0, ("fr", "Tesseract psm 3"): 1.0, ("fr", "lines"): 2.0})
    cer, speed = languages.cer_table(rows), languages.speeds(rows)
    assert languages.recommend(cer, speed, "fr") == ("ppocr", "PP-OCR accurate")
    del cer[("fr", "PP-OCR accurate", "scan")]
    assert languages.recommend(cer, speed, "fr") == ("lines", "lines")


def test_zero_width_format_characters_are_not_counted() -> None:
    assert languages.visible(["மற்றும்\u200c ஆண்டு", "\u200fשלום"]) == ["மற்றும் ஆண்டு", "שלום"]


def test_auto_cost_on_chinese_and_english_decides_the_default() -> None:
    rows = [{"lang": c, "reader": r, "kind": "time", "seconds": sec, "pages": 4}
            for c in ("zh", "en") for r, sec in (("lang=CODE", 4.0), ("lang=auto", 4.1))]
    cost = languages.auto_cost(rows, {"zh": True, "en": True})
    assert cost == {"speed_ratio": round(8 / 8.2, 3), "same_text": True, "fits_default": True}
    assert not languages.auto_cost(rows, {"zh": True, "en": False})["fits_default"]  # type: ignore[index]
    slow = [{**r, "seconds": 6.0} if r["reader"] == "lang=auto" else r for r in rows]
    block = languages.report(_results(rows=_rows(CERS, SECONDS) + slow, fleet_skipped=None,
                                      auto_answers={"zh": [{"page": "zh-0", "script": "Han"}]},
                                      auto_same_text={"zh": True, "en": True}), "now")
    assert "`lang=auto` ran at **0.667x** the pages/s of `lang=zh`/`lang=en` and read the same text" in block
    assert "as the default it does not fit" in block
