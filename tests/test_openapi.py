"""GET /openapi.json: a valid OpenAPI 3.1 document that matches the app's real routes and error codes."""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from docgen import text_pdf
from flask import Flask
from helpers import REPO
from inproc import RAW, build_app, png
from jsonschema import Draft202012Validator, ValidationError
from openapi_spec_validator import validate

from fleetctl.gateway import access
from ocr_app import errors
from ocr_app.http.openapi import document

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return build_app(tmp_path / "run")


@pytest.fixture
def served(app: Flask) -> dict[str, Any]:
    resp = app.test_client().get("/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.get_json()
    assert isinstance(body, dict)
    return body


def app_routes(app: Flask) -> set[tuple[str, str]]:
    """(path in OpenAPI spelling, method) for every route the app serves, Flask's static files aside."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes |= {(path, m.lower()) for m in rule.methods or () if m.lower() in HTTP_METHODS}
    return routes


def test_document_is_valid_openapi_3_1(served: dict[str, Any]) -> None:
    assert served["openapi"].startswith("3.1")
    validate(served)


def test_document_lists_exactly_the_app_routes(app: Flask, served: dict[str, Any]) -> None:
    documented = {(path, method) for path, item in served["paths"].items() for method in item
                  if method in HTTP_METHODS}
    assert documented == app_routes(app)


def test_every_error_code_is_documented(served: dict[str, Any]) -> None:
    documented = {c["const"]: c for c in served["components"]["schemas"]["ErrorCode"]["oneOf"]}
    for cls in errors.error_classes()[1:]:
        assert cls.code in documented, f"{cls.__name__} ({cls.code}) is not in the OpenAPI document"
        assert str(cls.code).startswith(str(cls.status)), f"{cls.__name__}: the code must start with the status"
    for code in (*errors.HTTP_CODES.values(), errors.INTERNAL_ERROR, 50201, 50401):
        assert code in documented
    ocr = served["paths"]["/api/ocr"]["post"]["responses"]
    assert ocr["422"]["x-error-codes"] == [42201, 42202, 42203, *range(42230, 42239), 42240]
    assert {40040, 40041, 40042, 40043} <= set(ocr["400"].get("x-error-codes") or errors_of_status(served, 400))
    assert ocr["503"]["x-error-codes"] == [50301, 50302]
    assert served["paths"]["/ready"]["get"]["responses"]["503"]["x-error-codes"] == [50301, 50303]
    for item in served["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["x-error-codes"], f"{status} of {operation['operationId']} lists no code"
                    assert all(str(code).startswith(status) for code in response["x-error-codes"])


def test_every_code_the_gateway_answers_with_is_documented(served: dict[str, Any]) -> None:
    documented = {c["const"]: c for c in served["components"]["schemas"]["ErrorCode"]["oneOf"]}
    templates = "".join(path.read_text(encoding="utf-8") for path in sorted((REPO / "nginx").glob("*.tmpl")))
    answered = {(int(status), int(code)) for status, code in re.findall(r"return (\d{3}) '\{\"code\": (\d{5})",
                                                                        templates)}
    answered |= {(401, access.MISSING[0]), (401, access.INVALID[0])}  # the 401's code is a variable
    assert len(answered) >= 15
    for status, code in answered:
        assert code in documented, f"the gateway's {code} is not in the OpenAPI document"
        assert documented[code]["description"].startswith(f"HTTP {status}:"), documented[code]


def test_error_codes_are_unique_per_class() -> None:
    codes = [cls.code for cls in errors.error_classes()]
    assert len(codes) == len(set(codes))


def check(served: dict[str, Any], schema: str, body: Any) -> None:
    """Validate `body` against a schema of the document (its $refs resolve within the document)."""
    Draft202012Validator({**served, "$ref": f"#/components/schemas/{schema}"}).validate(body)


def test_real_answers_match_their_documented_shapes(app: Flask, served: dict[str, Any]) -> None:
    client = app.test_client()
    check(served, "Health", client.get("/health").get_json())
    check(served, "Ready", client.get("/ready").get_json())
    check(served, "OcrResult", client.post("/api/ocr", data=png(1), headers=RAW).get_json())
    for resp in (client.get("/nope"), client.post("/api/ocr", data=b"x", headers=RAW),
                 client.post("/api/ocr", json={"image_base64": "%%"})):
        check(served, "Error", resp.get_json())
    with pytest.raises(ValidationError):
        check(served, "Error", {"code": 12345, "msg": "not a documented code", "data": []})


def test_document_batch_and_textract_answers_match_their_shapes(app: Flask, served: dict[str, Any]) -> None:
    client = app.test_client()
    pdf = text_pdf([("scan", "Scanned"), ("digital", "Born digital")])
    pdf_type = {"Content-Type": "application/pdf"}
    check(served, "DocumentResult", client.post("/api/ocr?words=1&preview=1", data=pdf, headers=pdf_type).get_json())
    batch = client.post("/api/ocr", data={"image": [(io.BytesIO(png(2)), "a.png"), (io.BytesIO(b"x"), "b.bin"),
                                                     (io.BytesIO(pdf), "c.pdf")]}).get_json()
    check(served, "BatchResult", batch)
    assert [entry["code"] for entry in batch["results"]] == [0, 41501, 0]
    check(served, "TextractResult", client.post("/api/ocr?format=textract", data=pdf, headers=pdf_type).get_json())
    check(served, "OcrResult", client.post("/api/ocr?words=1", data=png(3), headers=RAW).get_json())


def test_a_searchable_pdf_answer_is_documented(app: Flask, served: dict[str, Any]) -> None:
    resp = app.test_client().post("/api/ocr?format=pdf", data=png(4, size=(120, 60)), headers=RAW)
    assert resp.status_code == 200 and resp.data.startswith(b"%PDF-")
    ocr = served["paths"]["/api/ocr"]["post"]
    assert resp.mimetype in ocr["responses"]["200"]["content"]
    assert "pdf" in next(p for p in ocr["parameters"] if p["name"] == "format")["schema"]["enum"]
    assert {41332, 41333} <= set(ocr["responses"]["413"].get("x-error-codes") or errors_of_status(served, 413))


def errors_of_status(served: dict[str, Any], status: int) -> set[int]:
    return {c["const"] for c in served["components"]["schemas"]["ErrorCode"]["oneOf"]
            if str(c["const"]).startswith(str(status))}


def test_document_is_a_fresh_copy() -> None:
    first = document()
    first["paths"].clear()
    assert document()["paths"]


def test_the_web_page_links_to_the_document(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/", buffered=True).get_data(as_text=True)
    link = re.search(r'href="([^"]*openapi\.json)"', page)
    assert link, "the page must link to the OpenAPI document"
    assert client.get("/" + link.group(1).lstrip("/")).status_code == 200


def test_every_operation_takes_and_echoes_a_request_id(app: Flask, served: dict[str, Any]) -> None:
    for path, item in served["paths"].items():
        for method, operation in item.items():
            refs = [p.get("$ref") for p in operation["parameters"]]
            assert "#/components/parameters/X-Request-ID" in refs, (path, method)
            for response in operation["responses"].values():
                assert "X-Request-ID" in response["headers"], (path, method)
    assert app.test_client().get("/openapi.json", headers={"X-Request-ID": "doc-1"}).headers["X-Request-ID"] == "doc-1"
