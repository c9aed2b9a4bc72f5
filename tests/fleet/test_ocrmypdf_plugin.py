"""The OCRmyPDF plugin as a user runs it: the venv's `ocrmypdf --plugin fleetctl.ocrmypdf_plugin` in a
subprocess, against a real instance, a real gateway with API keys, and tiny real HTTP servers for the
answers a healthy fleet never gives (503 for ever). Nothing is mocked.
"""
from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pikepdf
import pytest
import requests
from fpdf import FPDF
from gw_servers import ConsulAgent, Gateway
from helpers import SAFE_WORDS, CannedServer, Proc, find_font, free_port, wait_for
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

from fleetctl.config import FleetConfig
from fleetctl.gateway import keys
from fleetctl.ocr_client import FleetClient, FleetSettings, FleetUnavailable
from fleetctl.ocrmypdf_plugin import fleet_lang

BIN = Path(sys.executable).parent
OCRMYPDF = str(BIN / "ocrmypdf")
PLUGIN = "fleetctl.ocrmypdf_plugin"
PAGES = 6


def scanned_pdf(pages: int, seed: int) -> tuple[bytes, list[str]]:
    """A PDF of full-page pictures of text (150 dpi, no text layer), and each page's text."""
    rng = random.Random(seed)
    font = ImageFont.truetype(find_font("DejaVuSans.ttf"), 44)
    pdf = FPDF(unit="pt", format=(612, 792))
    pdf.set_auto_page_break(False)
    texts = []
    for number in range(1, pages + 1):
        lines = [f"Page {number} " + " ".join(rng.sample(SAFE_WORDS, 3)) for _ in range(4)]
        img = Image.new("L", (1275, 1650), "white")
        draw = ImageDraw.Draw(img)
        for row, line in enumerate(lines):
            draw.text((120, 200 + row * 140), line, fill="black", font=font)
        buf = io.BytesIO()
        img.save(buf, "PNG", dpi=(150, 150))
        pdf.add_page()
        pdf.image(io.BytesIO(buf.getvalue()), x=0, y=0, w=612, h=792)
        texts.append("\n".join(lines))
    return bytes(pdf.output()), texts


def env_without(*names: str, path: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCR_FLEET_") and k not in names}
    if path is not None:
        env["PATH"] = path
    return env


def ocrmypdf(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OCRMYPDF, "--plugin", PLUGIN, *args], capture_output=True, text=True, timeout=timeout,
                          check=False, env=env if env is not None else env_without())


def cer(got: str, want: str) -> float:
    got, want = " ".join(got.split()), " ".join(want.split())
    return Levenshtein.distance(got, want) / max(1, len(want))


def pdftotext_pages(pdf: Path) -> list[str]:
    out = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True)
    return out.stdout.split("\f")[:-1]


def no_traceback(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    where = tmp_path_factory.mktemp("plugin") / "in.pdf"
    data, texts = scanned_pdf(PAGES, seed=random.randrange(1 << 30))
    where.write_bytes(data)
    return where, texts


class _Port:
    def __init__(self, port: int) -> None:
        self.port = port


@pytest.fixture
def keyed_gateway(gw_cfg: FleetConfig, gw_consul: ConsulAgent, instance: Proc) -> Iterator[tuple[Gateway, str]]:
    """The real gateway with API keys on, in front of the suite's real instance, and one key."""
    gw_consul.register(_Port(int(instance.extra["port"])))
    gateway = Gateway(gw_cfg.replace(auth=1), gw_consul)
    _, secret = keys.create(gw_consul.client, gateway.cfg, "pdfs")
    wait_for(lambda: requests.get(gateway.url("/api/profiles"), headers={"X-API-Key": secret}, timeout=5)
             .status_code == 200, 30, "the key to work on the gateway")
    yield gateway, secret
    gateway.close()


def test_six_scanned_pages_through_the_gateway_with_a_key_and_no_ghostscript(
    document: tuple[Path, list[str]], keyed_gateway: tuple[Gateway, str], instance: Proc, tmp_path: Path
) -> None:
    src, truth = document
    gateway, secret = keyed_gateway
    tools = tmp_path / "bin"  # the venv and nothing else: no gs, no tesseract
    tools.mkdir()
    path = os.pathsep.join([str(BIN), str(tools)])
    assert shutil.which("gs", path=path) is None and shutil.which("tesseract", path=path) is None
    out = tmp_path / "out.pdf"
    proc = ocrmypdf("--fleet-url", gateway.cfg.gateway_url, "--fleet-key", secret, "--output-type", "pdf",
                    "--jobs", "4", str(src), str(out), env=env_without(path=path))
    assert proc.returncode == 0, proc.stderr
    got = pdftotext_pages(out)
    assert len(got) == PAGES
    # The fleet's own reading of the same pages (the instance renders the PDF itself).
    resp = requests.post(f"{instance.extra['url']}/api/ocr", params={"format": "text"}, data=src.read_bytes(),
                         headers={"Content-Type": "application/pdf"}, timeout=300)
    assert resp.status_code == 200, resp.text
    fleet_pages = resp.text.split("\f")
    assert len(fleet_pages) == PAGES
    # Over the document: a narrow gap between two word boxes can cost pdftotext one space on a page.
    assert cer(" ".join(got), " ".join(fleet_pages)) <= 0.01, list(zip(got, fleet_pages, strict=True))
    assert cer(" ".join(got), " ".join(truth)) <= 0.01, list(zip(got, truth, strict=True))
    with pikepdf.open(out) as pdf:
        assert "OCR Fleet" in str(pdf.docinfo.get("/Creator", ""))

    # The same gateway without the key: its 401, in its own words, and no traceback.
    refused = ocrmypdf("--fleet-url", gateway.cfg.gateway_url, "--output-type", "pdf", str(src),
                       str(tmp_path / "nokey.pdf"))
    assert refused.returncode != 0
    assert "401" in no_traceback(refused) and "API key" in refused.stderr, refused.stderr


def test_default_pdfa_output_with_ghostscript_and_the_environment(
    document: tuple[Path, list[str]], instance: Proc, tmp_path: Path
) -> None:
    src, truth = document
    assert shutil.which("gs") is not None, "Debian's ghostscript: scripts/install-deps.sh"
    out = tmp_path / "out.pdf"
    env = {**env_without(), "OCR_FLEET_URL": str(instance.extra["url"]), "OCR_FLEET_PROFILE": "accurate"}
    proc = ocrmypdf("-l", "eng+chi_sim", "--pages", "1-2", str(src), str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    with pikepdf.open(out) as pdf:
        assert pdf.open_metadata().pdfa_status.startswith("2"), "PDF/A-2 by default"
    got = pdftotext_pages(out)
    assert cer(" ".join(got[:2]), " ".join(truth[:2])) <= 0.02, got


def test_an_unknown_profile_is_reported_with_the_fleets_message(
    document: tuple[Path, list[str]], instance: Proc, tmp_path: Path
) -> None:
    proc = ocrmypdf("--fleet-url", str(instance.extra["url"]), "--fleet-profile", "nosuch", "--pages", "1",
                    "--output-type", "pdf", str(document[0]), str(tmp_path / "out.pdf"))
    assert proc.returncode != 0
    err = no_traceback(proc)
    assert "400 40010" in err and "nosuch" in err, err


def test_a_fleet_that_is_down_fails_with_one_clear_message(document: tuple[Path, list[str]], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = ocrmypdf("--fleet-url", url, "--fleet-attempts", "2", "--pages", "1", "--output-type", "pdf",
                    str(document[0]), str(tmp_path / "out.pdf"))
    assert proc.returncode == 15, proc.stderr
    err = no_traceback(proc)
    assert f"the fleet at {url} did not OCR the page after 2 attempt(s)" in err and "cannot reach it" in err, err
    assert not (tmp_path / "out.pdf").exists()


def busy_fleet(retry_after: str = "0") -> CannedServer:
    """A real HTTP server that answers every POST 503 with the fleet's JSON shape and a Retry-After."""
    return CannedServer(503, {"code": 50301, "msg": "every worker is busy: retry later", "data": []},
                        {"Retry-After": retry_after})


@pytest.fixture
def busy() -> Iterator[CannedServer]:
    server = busy_fleet()
    yield server
    server.close()


def test_a_busy_fleet_is_retried_then_fails(document: tuple[Path, list[str]], busy: CannedServer,
                                            tmp_path: Path) -> None:
    proc = ocrmypdf("--fleet-url", busy.url, "--fleet-attempts", "3", "--fleet-key", "k-123", "--pages", "1",
                    "--output-type", "pdf", str(document[0]), str(tmp_path / "out.pdf"))
    assert proc.returncode == 15, proc.stderr
    err = no_traceback(proc)
    assert "after 3 attempt(s)" in err and "503: every worker is busy" in err, err
    assert len(busy.requests) == 3
    assert all(h["X-API-Key"] == "k-123" and h["Content-Type"] == "image/png" for h in busy.requests)


def test_the_client_honours_retry_after_within_its_budget() -> None:
    server = busy_fleet(retry_after="2")
    pauses: list[float] = []
    try:
        client = FleetClient(FleetSettings(url=server.url, attempts=3, timeout=60), requests.Session(),
                             sleep=pauses.append)
        with pytest.raises(FleetUnavailable, match="after 3 attempt"):
            client.ocr(b"\x89PNG", "image/png")
    finally:
        server.close()
    assert pauses == [2.0, 2.0] and len(server.requests) == 3


@pytest.mark.parametrize("args, exit_code, message", [
    (["--fleet-url", "http://127.0.0.1:9", "-l", "xyz"], 3,
     "the OCR Fleet reads no language 'xyz': http://127.0.0.1:9/api/languages lists the ones it reads"),
    ([], 1, "no fleet to send pages to: give --fleet-url URL or set OCR_FLEET_URL"),
    (["--fleet-url", "localhost:8080"], 1, "the fleet URL must be http(s)://host[:port]"),
])
def test_bad_arguments_are_refused_before_any_page(
    document: tuple[Path, list[str]], tmp_path: Path, args: list[str], exit_code: int, message: str
) -> None:
    proc = ocrmypdf(*args, str(document[0]), str(tmp_path / "out.pdf"), timeout=60)
    assert proc.returncode == exit_code, proc.stderr
    assert message in no_traceback(proc), proc.stderr


def test_other_languages_go_to_the_fleet_as_lang(instance: Proc, tmp_path: Path) -> None:
    """-l rus+eng is the fleet's lang=ru,en: a Russian scan comes back searchable in Cyrillic; -l eng stays
    a plain request, so its pages share the cache with the fleet's other plain requests."""
    font = ImageFont.truetype(find_font("DejaVuSans.ttf"), 44)
    img = Image.new("L", (1275, 1650), "white")
    ImageDraw.Draw(img).text((120, 300), "Привет мир, хорошая погода", fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, "PNG", dpi=(150, 150))
    pdf = FPDF(unit="pt", format=(612, 792))
    pdf.add_page()
    pdf.image(io.BytesIO(buf.getvalue()), x=0, y=0, w=612, h=792)
    src = tmp_path / "ru.pdf"
    src.write_bytes(bytes(pdf.output()))
    out = tmp_path / "out.pdf"
    proc = ocrmypdf("--fleet-url", str(instance.extra["url"]), "-l", "rus+eng", "--output-type", "pdf",
                    str(src), str(out))
    assert proc.returncode == 0, proc.stderr
    assert cer(pdftotext_pages(out)[0], "Привет мир, хорошая погода") <= 0.05, pdftotext_pages(out)
    assert fleet_lang(["rus", "eng"], "http://x") == "ru,en" and fleet_lang(["eng"], "http://x") == ""
    assert fleet_lang(["chi_sim", "eng"], "http://x") == "" and fleet_lang(["deu", "chi_tra"], "http://x") == "de,zh"
