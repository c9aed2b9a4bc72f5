"""A document's pages spread over a real fleet (fleetctl: Consul, Redis, nginx, two instances)."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from docgen import tiff_pages
from helpers import CannedServer, free_port, page_lines, start_instance, wait_for
from test_fleet_integration import Fleet, make_fleet, teardown_fleet

from ocr_app.errors import PageFailed
from ocr_app.jobs.fanout import PAGE_HEADER, PageFanout


@pytest.fixture(scope="module")
def fleet2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = make_fleet(tmp_path_factory.mktemp("fanout"), "process")
    try:
        f.run("up", "-n", "2", timeout=300)
        yield f
    finally:
        teardown_fleet(f)


def words(n: int) -> list[str]:
    return page_lines(n, "Sheet")


def post_doc(url: str, data: bytes, **headers: str) -> dict[str, Any]:
    resp = requests.post(f"{url}/api/ocr", data=data, headers={"Content-Type": "image/tiff", **headers},
                         timeout=300)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def page_texts(body: dict[str, Any]) -> list[str]:
    return [" ".join(line["text"] for line in page["data"]) for page in body["pages"]]


def access_log(f: Fleet) -> list[dict[str, Any]]:
    lines = (f.home / "logs" / "nginx-access.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def instance_urls(f: Fleet) -> list[str]:
    return [f"http://127.0.0.1:{i['port']}" for i in f.status()["instances"]]


def metric_sum(urls: list[str], series: str) -> float:
    total = 0.0
    for url in urls:
        text = requests.get(f"{url}/metrics", timeout=10).text
        found = re.search(r"^" + re.escape(series) + r" ([0-9.e+]+)$", text, re.MULTILINE)
        total += float(found.group(1)) if found else 0.0
    return total


def bypass_count(urls: list[str]) -> float:
    return metric_sum(urls, 'ocr_cache_events_total{result="bypass"}')


def test_pages_spread_over_the_fleet_and_equal_local(fleet2: Fleet) -> None:
    texts = words(6)
    doc = tiff_pages(texts)
    seen = len(access_log(fleet2))
    urls = instance_urls(fleet2)
    through_fleet = metric_sum(urls, 'ocr_fanout_pages_total{where="fleet"}')
    spread = post_doc(fleet2.gateway, doc)
    assert metric_sum(urls, 'ocr_fanout_pages_total{where="fleet"}') == through_fleet + 6
    assert page_texts(spread) == texts
    assert [p["page"] for p in spread["pages"]] == list(range(1, 7))
    entries = access_log(fleet2)[seen:]
    assert len(entries) == 1 + 6  # the document, then each page as its own request
    assert len({e["upstream_addr"] for e in entries}) >= 2, entries

    # The same document OCRed locally in one instance (a page header: no fan-out), models run anew.
    seen = len(access_log(fleet2))
    local = post_doc(urls[0], doc, **{PAGE_HEADER: "1", "Cache-Control": "no-cache"})
    assert len(access_log(fleet2)) == seen  # nothing went back through the gateway
    assert [p["data"] for p in local["pages"]] == [p["data"] for p in spread["pages"]]
    assert local["data"] == spread["data"]


def test_no_cache_applies_to_each_page(fleet2: Fleet) -> None:
    doc = tiff_pages(words(3))
    urls = instance_urls(fleet2)
    post_doc(fleet2.gateway, doc)  # every page cached now
    before = bypass_count(urls)
    post_doc(fleet2.gateway, doc, **{"Cache-Control": "no-cache"})
    assert bypass_count(urls) == before + 3


def test_gateway_unreachable_falls_back_to_local(tmp_path: Path) -> None:
    inst = start_instance(tmp_path, extra_env={"OCR_WORKERS": "1",
                                                "OCR_GATEWAY_URL": f"http://127.0.0.1:{free_port()}"})
    try:
        texts = words(2)
        assert page_texts(post_doc(str(inst.extra["url"]), tiff_pages(texts))) == texts
    finally:
        inst.stop()


def _fanout(url: str) -> PageFanout:
    return PageFanout(url, per_doc=2, per_worker=4, read_timeout=10)


def status_server_for(status: int) -> CannedServer:
    """A real HTTP server answering every request with one status: an error body in our shape, or for 200
    a JSON body that is not an OCR answer."""
    return CannedServer(status, {"code": status * 100 + 1, "msg": f"answered {status}", "data": []}
                        if status >= 400 else {"ok": 1})


@pytest.fixture
def status_server() -> Iterator[Callable[[int], CannedServer]]:
    made: list[CannedServer] = []

    def make(status: int) -> CannedServer:
        made.append(status_server_for(status))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.mark.parametrize("status", [503, 502, 504, 200])
def test_pages_the_gateway_cannot_take_run_locally(status_server: Callable[[int], CannedServer],
                                                   status: int) -> None:
    """A 503 (every instance the gateway tried was full), other 5xx, or a 200 that is not OCR JSON."""
    gateway = status_server(status)
    assert _fanout(f"http://{gateway.address}").fetch(b"page", 1, bypass=False) is None
    assert _fanout(f"http://127.0.0.1:{free_port()}").fetch(b"page", 1, bypass=False) is None


def test_a_page_4xx_is_passed_on(status_server: Callable[[int], CannedServer]) -> None:
    gateway = status_server(422)
    with pytest.raises(PageFailed) as err:
        _fanout(f"http://{gateway.address}").fetch(b"page", 3, bypass=False)
    assert err.value.status == 422 and err.value.code == 42201 and "page 3" in err.value.msg


def test_a_worker_fans_out_a_bounded_number_of_documents() -> None:
    fanout = PageFanout("http://127.0.0.1:1", per_doc=2, per_worker=4, read_timeout=1)
    with fanout.document() as first, fanout.document() as second, fanout.document() as third:
        assert (first, second, third) == (2, 2, 0)  # the third runs locally
    with fanout.document(allowed=False) as page_request:
        assert page_request == 0
    with PageFanout("", per_doc=2, per_worker=4, read_timeout=1).document() as no_gateway:
        assert no_gateway == 0


def test_a_full_instance_answers_a_document_503_at_once(tmp_path: Path) -> None:
    """No room anywhere: the pages come back from the gateway as 503s and the local queue refuses too."""
    gateway = status_server_for(503)
    inst = start_instance(tmp_path, extra_env={"OCR_WORKERS": "1", "OCR_MAX_QUEUE": "0",
                                                "OCR_GATEWAY_URL": f"http://{gateway.address}"})
    try:
        url = f"{inst.extra['url']}/api/ocr"
        doc = tiff_pages(words(3))
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda _: requests.post(url, data=doc, headers={"Content-Type": "image/tiff"},
                                                            timeout=300), range(4)))
        codes = sorted(r.status_code for r in answers)
        assert set(codes) <= {200, 503} and 503 in codes, codes
        assert all(r.json()["code"] == 50302 for r in answers if r.status_code == 503)
    finally:
        inst.stop()
        gateway.close()


def test_a_job_through_the_gateway(fleet2: Fleet) -> None:
    """Jobs behind nginx: 202 and its Location pass through, polls and the cancel go to any instance."""
    texts = words(3)
    resp = requests.post(f"{fleet2.gateway}/api/jobs", data=tiff_pages(texts),
                         headers={"Content-Type": "image/tiff"}, timeout=60)
    assert resp.status_code == 202, resp.text
    location = f"{fleet2.gateway}{resp.headers['Location']}"

    def done() -> bool:
        return bool(requests.get(location, timeout=10).json()["status"] == "done")

    wait_for(done, 180, "the job to finish", interval=0.2)
    assert page_texts(requests.get(location, timeout=10).json()["result"]) == texts
    assert requests.delete(location, timeout=10).json()["status"] == "cancelled"
