"""The page-runner seam: an app can run a document's pages elsewhere (e.g. through the gateway)."""
from __future__ import annotations

import hashlib
import threading

from docgen import text_pdf

from ocr_app import create_app
from ocr_app.documents.pages import PageAnswer, PageDispatch
from ocr_app.errors import Overloaded
from ocr_app.http.app_services import services_of
from ocr_app.options import PageOptions


class RecordingRunner:
    """Answers each page with one line naming its hash, and records what it was sent and how many at once."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, PageOptions]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, data: bytes, options: PageOptions) -> PageAnswer:
        with self._lock:
            self.calls.append((data, options))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            line = {"text": hashlib.sha256(data).hexdigest()[:8], "confidence": 0.9,
                    "box": [[0, 0], [10, 0], [10, 10], [0, 10]]}
            return PageAnswer(lines=[line], cache="HIT")
        finally:
            with self._lock:
                self.in_flight -= 1


def test_pages_go_through_the_installed_runner_in_order() -> None:
    app = create_app({"redis_url": "", "consul_addr": ""}, load_engine=False)
    runner = RecordingRunner()
    services_of(app).page_dispatch = PageDispatch(runner, parallel=3)
    pdf = text_pdf([("scan", f"Page {i}") for i in range(1, 8)] + [("digital", "Born digital")])
    resp = app.test_client().post("/api/ocr?format=hocr&pages=7,1-6,8", data=pdf,
                                  headers={"Content-Type": "application/pdf", "Cache-Control": "no-cache"})
    assert resp.status_code == 200, resp.data
    assert len(runner.calls) == 7, "the born-digital page never reaches the runner"
    assert all(data.startswith(b"\x89PNG") for data, _ in runner.calls), "pages travel as ordinary images"
    assert {options for _, options in runner.calls} == {PageOptions(words=True, bypass_cache=True)}
    assert 1 <= runner.most_in_flight <= 3
    html = resp.data.decode()
    order = [html.index(f'id="page_{n}"') for n in (7, 1, 2, 3, 4, 5, 6, 8)]
    assert order == sorted(order), "pages come back in the order asked"
    first = hashlib.sha256(runner.calls[0][0]).hexdigest()[:8]
    assert first in html and resp.headers["X-Cache"] == "HIT"



def test_a_failing_page_fails_the_document_and_stops_sending_pages() -> None:
    app = create_app({"redis_url": "", "consul_addr": ""}, load_engine=False)
    calls: list[bytes] = []

    def busy_from_the_second_page(data: bytes, options: PageOptions) -> PageAnswer:
        calls.append(data)
        if len(calls) >= 2:
            raise Overloaded(64)
        return PageAnswer(lines=[])

    services_of(app).page_dispatch = PageDispatch(busy_from_the_second_page, parallel=1)
    pdf = text_pdf([("scan", f"Page {i}") for i in range(1, 7)])
    resp = app.test_client().post("/api/ocr", data=pdf, headers={"Content-Type": "application/pdf"})
    assert resp.status_code == 503 and resp.get_json()["code"] == 50302
    assert len(calls) <= 3, "pages after the failure are not sent"
