"""Output formats: Textract blocks checked against AWS's own API model, hOCR parsed as XHTML, plain text."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.validate import ParamValidator

from ocr_app.documents.formats import CONTENT_TYPES, as_hocr, as_text, as_textract, document_body, words_of
from ocr_app.documents.pages import DocumentResult, PageResult

LINE_A = {"text": "Hello brave Fleet", "confidence": 0.99, "box": [[10, 20], [210, 20], [210, 60], [10, 60]],
          "words": [{"text": "Hello", "confidence": 0.98, "box": [[10, 20], [70, 20], [70, 60], [10, 60]]},
                    {"text": "brave", "confidence": 0.97, "box": [[80, 20], [140, 20], [140, 60], [80, 60]]},
                    {"text": "Fleet", "confidence": 0.99, "box": [[150, 20], [210, 20], [210, 60], [150, 60]]}]}
LINE_B = {"text": "no word boxes <&>", "confidence": 0.8, "box": [[10, 100], [190, 100], [190, 130], [10, 130]]}
PAGES = [PageResult(1, 400, 300, "ocr", [LINE_A, LINE_B]), PageResult(2, 400, 300, "pdf_text", [LINE_A])]


def textract_output_shape() -> object:
    """DetectDocumentText's response shape, from the API model that AWS's SDKs are generated from."""
    model = ServiceModel(Loader().load_service_model("textract", "service-2"), "textract")
    return model.operation_model("DetectDocumentText").output_shape


def test_textract_matches_the_documented_response_shape() -> None:
    answer = json.loads(json.dumps(as_textract(PAGES)))
    shape = textract_output_shape()
    report = ParamValidator().validate(answer, shape)
    assert not report.has_errors(), report.generate_report()
    # the validator skips enums: check those against the same model
    block = shape.members["Blocks"].member.members
    assert {b["BlockType"] for b in answer["Blocks"]} <= set(block["BlockType"].enum)
    assert {b["TextType"] for b in answer["Blocks"] if "TextType" in b} <= set(block["TextType"].enum)
    relation_types = block["Relationships"].member.members["Type"].enum
    relations = {r["Type"] for b in answer["Blocks"] for r in b.get("Relationships", ())}
    assert relations == {"CHILD"} and relations <= set(relation_types)


def test_textract_blocks_and_relationships() -> None:
    blocks = as_textract(PAGES)["Blocks"]
    by_id = {b["Id"]: b for b in blocks}
    assert len(by_id) == len(blocks), "ids are unique"
    pages = [b for b in blocks if b["BlockType"] == "PAGE"]
    assert [p["Page"] for p in pages] == [1, 2]
    lines = [by_id[i] for i in pages[0]["Relationships"][0]["Ids"]]
    assert [line["Text"] for line in lines] == ["Hello brave Fleet", "no word boxes <&>"]
    words = [by_id[i] for i in lines[0]["Relationships"][0]["Ids"]]
    assert [w["Text"] for w in words] == ["Hello", "brave", "Fleet"]
    assert all(w["BlockType"] == "WORD" and w["TextType"] == "PRINTED" for w in words)
    assert words[0]["Confidence"] == pytest.approx(98.0)
    box = words[0]["Geometry"]["BoundingBox"]
    assert box == pytest.approx({"Left": 10 / 400, "Top": 20 / 300, "Width": 60 / 400, "Height": 40 / 300})
    assert len(words[0]["Geometry"]["Polygon"]) == 4
    # a line without word boxes still has WORD children, split by characters
    assert [by_id[i]["Text"] for i in lines[1]["Relationships"][0]["Ids"]] == ["no", "word", "boxes", "<&>"]
    for block in blocks:
        for value in block["Geometry"]["BoundingBox"].values():
            assert 0.0 <= value <= 1.0


def test_hocr_is_well_formed_with_pages_lines_and_words() -> None:
    root = ET.fromstring(as_hocr(PAGES))
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    pages = root.findall(".//h:div[@class='ocr_page']", ns)
    assert [p.get("title") for p in pages] == ["bbox 0 0 400 300; ppageno 0", "bbox 0 0 400 300; ppageno 1"]
    lines = pages[0].findall("h:span[@class='ocr_line']", ns)
    assert lines[0].get("title") == "bbox 10 20 210 60; x_wconf 99"
    words = lines[0].findall("h:span[@class='ocrx_word']", ns)
    assert [w.text for w in words] == ["Hello", "brave", "Fleet"]
    assert words[1].get("title") == "bbox 80 20 140 60; x_wconf 97"
    assert [w.text for w in lines[1].findall("h:span", ns)][-1] == "<&>", "text is escaped"


def test_text_is_lines_in_order_with_form_feeds_between_pages() -> None:
    assert as_text(PAGES) == "Hello brave Fleet\nno word boxes <&>\fHello brave Fleet\n"


def test_text_puts_lines_side_by_side_on_one_row() -> None:
    def line(text: str, x0: float, y0: float, x1: float, y1: float) -> dict:
        return {"text": text, "confidence": 0.9, "box": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}

    lines = [line("Total", 10, 10, 90, 40), line("Cache hits", 10, 100, 150, 130), line("0.00", 300, 102, 340, 128),
             line("below", 10, 140, 80, 170)]  # in reading order, as `data` has them
    assert as_text([PageResult(1, 400, 300, "ocr", lines)]) == "Total\nCache hits 0.00\nbelow\n"


def test_text_keeps_columns_apart() -> None:
    def line(text: str, x0: float, y0: float) -> dict:
        return {"text": text, "confidence": 0.9, "box": [[x0, y0], [x0 + 200, y0], [x0 + 200, y0 + 30], [x0, y0 + 30]]}

    lines = [line("left one", 10, 10), line("left two", 10, 50), line("right one", 400, 10),
             line("right two", 400, 50)]
    assert as_text([PageResult(1, 700, 100, "ocr", lines)]) == "left one\nleft two\nright one\nright two\n"


def test_document_json_keeps_flat_data_with_page_numbers() -> None:
    body = json.loads(document_body(DocumentResult(pages=PAGES, cache="HIT"), "i-1", "rapidocr"))
    assert [p["page"] for p in body["pages"]] == [1, 2]
    assert body["pages"][1]["source"] == "pdf_text" and body["pages"][0]["width"] == 400
    assert [(d["text"], d["page"]) for d in body["data"]] == [
        ("Hello brave Fleet", 1), ("no word boxes <&>", 1), ("Hello brave Fleet", 2)]
    assert body["cached"] is True and body["code"] == 0


def test_words_of_splits_by_characters_when_there_are_no_word_boxes() -> None:
    words = words_of({"text": "ab cd", "confidence": 0.5, "box": [[0, 0], [50, 0], [50, 10], [0, 10]]})
    assert [w["text"] for w in words] == ["ab", "cd"]
    assert words[0]["box"][1][0] == pytest.approx(20.0) and words[1]["box"][0][0] == pytest.approx(30.0)
    # a tilted line's words stay on it: split along its top and bottom edges
    tilted = words_of({"text": "ab cd", "confidence": 0.5, "box": [[0, 0], [50, 5], [49, 15], [-1, 10]]})
    assert tilted[1]["box"][1] == pytest.approx([50, 5]) and tilted[1]["box"][2] == pytest.approx([49, 15])
    assert tilted[1]["box"][0] == pytest.approx([30, 3])


def test_a_searchable_pdf_is_sent_as_application_pdf() -> None:
    assert CONTENT_TYPES["pdf"] == "application/pdf"
