"""Browser tests of the page at ``/``: the real app under real gunicorn, driven by headless Chromium.

Set ``OCR_WEB_TEST_URL`` (e.g. a running gateway's address) to test an existing deployment instead
of starting an instance. Set ``CHROMIUM`` to use a browser binary that is not on ``PATH``.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import free_port, http_ok, wait_for
from PIL import Image, ImageDraw, ImageFont
from playwright.sync_api import BrowserContext, JSHandle, Page, Response, sync_playwright

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 90.0
OCR_TIMEOUT_MS = 60_000
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CACHE_STATES = {"HIT", "MISS", "COALESCED", "BYPASS"}
# The page must scale the boxes, so show the image smaller than its natural size.
VIEWPORT = {"width": 1000, "height": 800}
IMAGE_SIZE = (900, 200)
TEXT_ORIGIN = (60, 60)


def _is_ocr(response: Response) -> bool:
    """An answer of POST /api/ocr, whatever the query string the pickers add."""
    return urlsplit(response.url).path.endswith("/api/ocr") and response.request.method == "POST"


def _tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll /ready until it answers 200; the engine loads its models before that."""
    try:
        wait_for(lambda: proc.poll() is not None or http_ok(url + "ready"), READY_TIMEOUT_S, f"{url}ready")
    except TimeoutError as exc:
        pytest.fail(f"{exc}:\n{_tail(log)}")
    if proc.poll() is not None:
        pytest.fail(f"gunicorn exited with {proc.returncode} before ready:\n{_tail(log)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate gunicorn's whole process group (master and workers), killing it if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An instance's root URL: one real gunicorn instance for the module, without Consul or Redis."""
    external = os.environ.get("OCR_WEB_TEST_URL")
    if external:
        yield external.rstrip("/") + "/"
        return
    port = free_port()
    log = tmp_path_factory.mktemp("web") / "gunicorn.log"
    env = {
        **os.environ,
        "OCR_HOST": "127.0.0.1",
        "OCR_PORT": str(port),
        "OCR_CONSUL_ADDR": "",
        "OCR_REDIS_URL": "",
        "OCR_DRAIN_SECONDS": "0",
    }
    cmd = [sys.executable, "-m", "gunicorn", "-c", "python:ocr_app.gunicorn_conf", "ocr_app:create_app()"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_ready(url, proc, log)
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Headless Chromium from the system package with a fresh profile."""
    exe = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe or not os.access(exe, os.X_OK):
        pytest.fail(
            "Chromium not found: the browser tests need the system 'chromium' package "
            "(the suite's setup installs it), or CHROMIUM=<binary>"
        )
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=exe,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(base_url: str, browser: BrowserContext) -> Iterator[Page]:
    """The page, freshly loaded; fails the test on any uncaught script error.

    ``base_url`` comes first so that the browser closes before the instance stops: gunicorn's gthread
    worker waits up to its keepalive time for idle connections such as Chromium's preconnects.
    """
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base_url)
    yield page
    page.close()
    assert not errors, f"script errors on the page: {errors}"


def _font() -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf", 48)
    except OSError:
        pytest.fail("DejaVuSans-Bold.ttf not found: install the fonts-dejavu-core package")


def _render(text: str) -> tuple[bytes, tuple[int, int, int, int]]:
    """A white PNG with ``text`` in black, and the text's bounding box in image pixels."""
    image = Image.new("RGB", IMAGE_SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = _font()
    draw.text(TEXT_ORIGIN, text, font=font, fill="black")
    bbox = draw.textbbox(TEXT_ORIGIN, text, font=font)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue(), (int(bbox[0]), int(bbox[1]), int(bbox[2]), int(bbox[3]))


def _squash(text: str) -> str:
    return "".join(text.split()).upper()


def _lines(page: Page) -> list[str]:
    page.wait_for_selector("#results .line", timeout=OCR_TIMEOUT_MS)
    return page.locator("#results .line .line-text").all_inner_texts()


def _check_boxes_cover(page: Page, text_bbox: tuple[int, int, int, int]) -> None:
    """The drawn boxes sit where the text is in the displayed (scaled) image."""
    img = page.locator("#preview").bounding_box()
    overlay = page.locator("#overlay").bounding_box()
    assert img and overlay
    for key in ("x", "y", "width", "height"):
        assert abs(img[key] - overlay[key]) <= 1.5, f"overlay does not cover the image: {img} vs {overlay}"
    natural_w = page.eval_on_selector("#preview", "el => el.naturalWidth")
    scale = img["width"] / natural_w
    assert scale < 0.95, "the image should be shown scaled down for this check to mean anything"
    paths = page.locator("#overlay path")
    assert paths.count() >= 1, "no text box was drawn"
    boxes = [paths.nth(i).bounding_box() for i in range(paths.count())]
    shown = [b for b in boxes if b]
    assert len(shown) == len(boxes), "a text box is not rendered"
    x0 = min(b["x"] for b in shown)
    y0 = min(b["y"] for b in shown)
    x1 = max(b["x"] + b["width"] for b in shown)
    y1 = max(b["y"] + b["height"] for b in shown)
    ex0, ey0 = img["x"] + text_bbox[0] * scale, img["y"] + text_bbox[1] * scale
    ex1, ey1 = img["x"] + text_bbox[2] * scale, img["y"] + text_bbox[3] * scale
    inter = max(0.0, min(x1, ex1) - max(x0, ex0)) * max(0.0, min(y1, ey1) - max(y0, ey0))
    union = (x1 - x0) * (y1 - y0) + (ex1 - ex0) * (ey1 - ey0) - inter
    assert inter / union > 0.5, f"boxes {(x0, y0, x1, y1)} are not where the text is {(ex0, ey0, ex1, ey1)}"


def test_upload_shows_lines_boxes_and_meta(page: Page) -> None:
    png, bbox = _render("FLEET 42")
    with page.expect_response(_is_ocr, timeout=OCR_TIMEOUT_MS) as info:
        page.set_input_files("#file-input", files=[{"name": "fleet.png", "mimeType": "image/png", "buffer": png}])
    resp = info.value
    assert resp.status == 200, resp.text()
    texts = _lines(page)
    assert "FLEET42" in _squash(" ".join(texts)), texts
    for conf in page.locator("#results .line .line-conf").all_inner_texts():
        assert conf.endswith("%") and 0 <= float(conf[:-1]) <= 100, conf
    assert page.locator("#overlay path").count() == len(texts)
    _check_boxes_cover(page, bbox)

    assert page.get_attribute("#status", "data-state") == "done"
    cache = page.inner_text("#meta-cache")
    assert cache in CACHE_STATES and cache == resp.headers["x-cache"]
    assert page.inner_text("#meta-instance") == resp.headers["x-instance"] != ""
    cost = resp.json()["cost_time"]
    assert f"{cost:.2f} s" in page.inner_text("#meta-time")
    assert page.locator("#error").is_hidden()

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy-all")
    page.wait_for_function("document.querySelector('#copy-all').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == "\n".join(texts)


def test_non_image_shows_server_message(page: Page) -> None:
    with page.expect_response(_is_ocr, timeout=OCR_TIMEOUT_MS) as info:
        page.set_input_files(
            "#file-input", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image\n"}]
        )
    resp = info.value
    assert resp.status == 415
    body = resp.json()
    assert body["code"] != 0 and body["msg"]
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert body["msg"] in error.inner_text()
    assert "415" in error.inner_text()
    assert page.get_attribute("#status", "data-state") == "error"
    assert page.locator("#results .line").count() == 0
    assert page.locator("#copy-all").is_disabled()


def _file_transfer(page: Page, png: bytes, name: str) -> JSHandle:
    """A DataTransfer holding one PNG file, built inside the page as a real drag or paste would carry."""
    return page.evaluate_handle(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: "image/png" }));
            return dt;
        }""",
        [base64.b64encode(png).decode(), name],
    )


def test_drop_on_drop_zone(page: Page) -> None:
    png, bbox = _render("DROP 7")
    transfer = _file_transfer(page, png, "drop.png")
    page.dispatch_event("#drop-zone", "dragover", {"dataTransfer": transfer})
    assert "dragging" in (page.get_attribute("#drop-zone", "class") or "")
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    assert "DROP7" in _squash(" ".join(_lines(page)))
    assert "dragging" not in (page.get_attribute("#drop-zone", "class") or "")
    _check_boxes_cover(page, bbox)


def test_paste_from_clipboard(page: Page) -> None:
    png, _ = _render("PASTE 9")
    transfer = _file_transfer(page, png, "image.png")
    page.evaluate(
        "(dt) => document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true}))",
        transfer,
    )
    assert "PASTE9" in _squash(" ".join(_lines(page)))


def test_gateway_error_page_is_reported_plainly(page: Page) -> None:
    # A proxy in front of the gateway may still answer with an HTML page; the page must not show raw markup.
    page.route(
        "**/api/ocr*",
        lambda route: route.fulfill(
            status=502, content_type="text/html", body="<html><body><h1>502 Bad Gateway</h1></body></html>"
        ),
    )
    png, _ = _render("GATEWAY")
    page.set_input_files("#file-input", files=[{"name": "g.png", "mimeType": "image/png", "buffer": png}])
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "502" in error.inner_text() and "<" not in error.inner_text()
    assert page.get_attribute("#status", "data-state") == "error"


def test_pdf_shows_each_page_with_its_boxes(page: Page) -> None:
    from docgen import text_pdf

    pdf = text_pdf([("scan", "SCANNED PAGE"), ("digital", "DIGITAL PAGE")])
    with page.expect_response(_is_ocr, timeout=OCR_TIMEOUT_MS) as info:
        page.set_input_files("#file-input", files=[{"name": "doc.pdf", "mimeType": "application/pdf", "buffer": pdf}])
    assert info.value.status == 200, info.value.text()
    texts = _lines(page)
    assert [_squash(t) for t in texts] == ["SCANNEDPAGE", "DIGITALPAGE"]
    assert page.locator("#results .page-head").all_inner_texts() == ["Page 1", "Page 2"]
    figures = page.locator("#pages figure.doc-page")
    assert figures.count() == 2 and page.locator("#viewer").is_hidden()
    assert "text layer" in figures.nth(1).inner_text() and "OCR" in figures.nth(0).inner_text()
    for i in range(2):
        figure = figures.nth(i)
        figure.locator("img").scroll_into_view_if_needed()
        page.wait_for_function("(img) => img.complete && img.naturalWidth > 0",
                               arg=figure.locator("img").element_handle())
        img = figure.locator("img").bounding_box()
        paths = figure.locator("path")
        assert paths.count() == 1, "one box per line, on its own page"
        box = paths.nth(0).bounding_box()
        assert img and box
        # the text sits in the upper part of a letter page, inside the page image
        assert img["x"] <= box["x"] < box["x"] + box["width"] <= img["x"] + img["width"] + 1
        assert img["y"] + 0.1 * img["height"] < box["y"] < img["y"] + 0.3 * img["height"]
    assert page.get_attribute("#status", "data-state") == "done"
    assert "on 2 pages" in page.inner_text("#status-text")


def test_document_downloads_a_searchable_pdf(page: Page, tmp_path: Path) -> None:
    """A document gets the button; it posts the file again with format=pdf and saves the PDF the server made."""
    from docgen import text_pdf

    pdf = text_pdf([("scan", "SEARCHABLE SCAN")])
    with page.expect_response(_is_ocr, timeout=OCR_TIMEOUT_MS) as info:
        page.set_input_files("#file-input", files=[{"name": "scan.pdf", "mimeType": "application/pdf", "buffer": pdf}])
    assert info.value.status == 200, info.value.text()
    assert [_squash(t) for t in _lines(page)] == ["SEARCHABLESCAN"]
    button = page.locator("#download-pdf")
    assert button.is_visible() and button.is_enabled()
    with page.expect_download(timeout=OCR_TIMEOUT_MS) as download_info, \
            page.expect_response(_is_ocr, timeout=OCR_TIMEOUT_MS) as response_info:
        button.click()
    assert response_info.value.status == 200
    assert response_info.value.headers["content-type"] == "application/pdf"  # what format=pdf answers
    download = download_info.value
    assert download.suggested_filename == "scan.searchable.pdf"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(["pdftotext", str(saved), "-"], check=True, capture_output=True, text=True).stdout
    assert "SEARCHABLESCAN" in _squash(text), text
    assert page.get_attribute("#status", "data-state") == "done"
    assert page.locator("#error").is_hidden()

    png, _ = _render("NO BUTTON")  # an image has no searchable PDF to offer
    page.set_input_files("#file-input", files=[{"name": "plain.png", "mimeType": "image/png", "buffer": png}])
    assert "NOBUTTON" in _squash(" ".join(_lines(page)))
    assert button.is_hidden()


@pytest.fixture(scope="module")
def keyed_gateway(base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real nginx with API keys on (FLEET_AUTH=1) in front of the instance; yields (url, a valid key)."""
    from fleetctl import procs
    from fleetctl.config import FleetConfig
    from fleetctl.daemons import pidfiles
    from fleetctl.gateway import access, keys, upstream
    from fleetctl.gateway import nginx as gateway

    parts = urlsplit(base_url)
    cfg = FleetConfig(home=tmp_path_factory.mktemp("gw") / "fleet", gateway_port=free_port(), auth=1)
    secret = "ocr_" + "browser-test-key-0123456789abcdefghijklmnop"
    gateway.make_dirs(cfg)
    procs.write_atomic(gateway.nginx_conf_path(cfg), gateway.render_nginx_conf(cfg))
    member = upstream.Member(id="web", host=parts.hostname or "127.0.0.1", port=parts.port or 80)
    procs.write_atomic(gateway.upstream_conf_path(cfg), upstream.render_upstream([member], cfg))
    procs.write_atomic(access.clients_conf_path(cfg),
                       access.render_clients(cfg, [keys.ApiKey("browser", keys.key_hash(secret))]))
    gateway.start_nginx(cfg)
    try:
        yield cfg.gateway_url + "/", secret
    finally:
        pidfiles.stop(cfg, "nginx", sig=signal.SIGQUIT, grace=5)


def test_page_asks_for_an_api_key_once_and_keeps_it(keyed_gateway: tuple[str, str],
                                                    browser: BrowserContext) -> None:
    url, secret = keyed_gateway
    page = browser.new_page()
    asked: list[str] = []
    answers = iter(["wrong-key", secret])

    def on_dialog(dialog: object) -> None:
        asked.append(dialog.message)  # type: ignore[attr-defined]
        dialog.accept(next(answers))  # type: ignore[attr-defined]

    page.on("dialog", on_dialog)
    try:
        page.goto(url)
        png, _ = _render("KEY 7")
        # A wrong key: asked once, the gateway's 401 message is shown.
        page.set_input_files("#file-input", files=[{"name": "k.png", "mimeType": "image/png", "buffer": png}])
        page.wait_for_selector("#error:not([hidden])", timeout=OCR_TIMEOUT_MS)
        assert "API key is not valid" in page.locator("#error").inner_text()
        assert len(asked) == 1 and "API key" in asked[0]
        # Next upload: asked again (the stored key was refused), then answered with the real one.
        page.set_input_files("#file-input", files=[{"name": "k.png", "mimeType": "image/png", "buffer": png}])
        assert "KEY7" in _squash(" ".join(_lines(page)))
        assert len(asked) == 2
        assert page.evaluate("localStorage.getItem('ocr-fleet-api-key')") == secret
        # Kept: a reload and another upload ask nothing.
        page.reload()
        with page.expect_response(_is_ocr, timeout=OCR_TIMEOUT_MS) as info:
            page.set_input_files("#file-input", files=[{"name": "k.png", "mimeType": "image/png", "buffer": png}])
        assert info.value.status == 200 and len(asked) == 2
    finally:
        page.close()


# --- the language and profile pickers ----------------------------------------------------------

def _filled(page: Page) -> tuple[dict[str, object], dict[str, object]]:
    """The instance's own lists, and the page once its pickers hold them."""
    languages = page.request.get(page.url + "api/languages").json()
    profiles = page.request.get(page.url + "api/profiles").json()
    page.wait_for_function("document.querySelectorAll('#lang option').length > 2 "
                           "&& document.querySelectorAll('#profile option').length >= 1 "
                           "&& document.querySelector('#profile').value !== ''")
    return languages, profiles


def test_pickers_offer_what_the_instance_reads_with_auto_first(page: Page) -> None:
    languages, profiles = _filled(page)
    assert languages["auto"] is True, "this host has Tesseract's OSD: lang=auto must be offered"
    assert page.input_value("#lang") == "auto"  # the default where the instance can find scripts
    offered = {o["value"]: o for o in page.eval_on_selector_all(
        "#lang option", "els => els.map(e => ({value: e.value, text: e.textContent, disabled: e.disabled}))")}
    for lang in languages["languages"]:  # type: ignore[union-attr]
        assert offered[lang["code"]]["disabled"] is (not lang["installed"]), lang
        assert lang["name"] in offered[lang["code"]]["text"]
    assert not offered["ru"]["disabled"]  # the default set is installed here
    names = [p["name"] for p in profiles["profiles"]]  # type: ignore[union-attr]
    assert page.eval_on_selector_all("#profile option", "els => els.map(e => e.value)") == names
    assert page.input_value("#profile") == profiles["default"]


def test_chosen_language_and_profile_go_with_the_upload_and_show_in_the_result(page: Page) -> None:
    _, profiles = _filled(page)
    other = next(p["name"] for p in profiles["profiles"] if p["name"] != profiles["default"])  # type: ignore
    page.select_option("#lang", "ru")
    page.select_option("#profile", other)
    png, _ = _render("ПРИВЕТ МИР")  # DejaVu has Cyrillic
    with page.expect_response(_is_ocr, timeout=OCR_TIMEOUT_MS) as info:
        page.set_input_files("#file-input", files=[{"name": "ru.png", "mimeType": "image/png", "buffer": png}])
    resp = info.value
    assert resp.status == 200, resp.text()
    assert parse_qs(urlsplit(resp.request.url).query) == {"lang": ["ru"], "profile": [other]}
    body = resp.json()
    assert body["recognizer"]["lang"] == "ru" and body["profile"] == other, body
    page.wait_for_selector("#results .line", timeout=OCR_TIMEOUT_MS)
    assert "ПРИВЕТ" in _squash(" ".join(_lines(page)))
    shown = page.inner_text("#meta-lang")
    assert shown.startswith("ru") and body["recognizer"]["engine"] in shown, shown
    assert page.inner_text("#meta-profile") == other
