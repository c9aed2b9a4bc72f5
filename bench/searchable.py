"""Searchable PDFs: `format=pdf` against the JSON answer of the same document, on 1 and 2 instances, and
OCRmyPDF running on the fleet (its plugin) against OCRmyPDF with its own engine, Tesseract.

Every request carries `Cache-Control: no-cache`, so every page runs the engine; the PDF answer costs
the same OCR plus the text layer, and the ratio says what the layer costs. OCRmyPDF rasterizes the
pages itself and its plugin sends them through the gateway, which may answer a page it has seen: each
round gives OCRmyPDF a document of its own seed, so both engines always read pages new to the fleet.
Error is the character error rate against the generator's truth, of the text `pdftotext` reads back.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

from . import documents, langpages, score
from .fleet import FleetSession

PAGES = 6
COUNTS = (1, 2)
REPEATS = 2
ROUNDS = 2
JOBS = 2  # OCRmyPDF's --jobs, for both engines: one per core of this machine
PLUGIN = "fleetctl.ocrmypdf_plugin"
ENGINES = ("fleet", "fleet-fast", "tesseract")  # OCRmyPDF's engine: the plugin on two profiles, or its own
BEGIN, END = "<!-- searchable-bench -->", "<!-- /searchable-bench -->"


def _post(url: str, doc: bytes, fmt: str) -> tuple[float, bytes]:
    started = time.monotonic()
    resp = requests.post(url, params={"format": fmt}, data=doc, timeout=900,
                         headers={"Content-Type": "application/pdf", "Cache-Control": "no-cache"})
    elapsed = time.monotonic() - started
    if resp.status_code != 200:
        raise RuntimeError(f"format={fmt} got {resp.status_code}: {resp.text[:200]}")
    return elapsed, resp.content


def pdf_text(pdf: bytes | Path) -> list[list[str]]:
    """The lines `pdftotext` reads from each page, in its reading order (blank lines dropped)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pdf if isinstance(pdf, Path) else Path(tmp) / "in.pdf"
        if not isinstance(pdf, Path):
            path.write_bytes(pdf)
        out = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], check=True, capture_output=True,
                             timeout=300).stdout.decode()
    pages = out.split("\f")
    if pages and not pages[-1].strip():
        pages.pop()
    return [[line for line in page.splitlines() if line.strip()] for page in pages]


def cer(truth: list[list[str]], read: list[list[str]]) -> float:
    """The document's ordered CER: every page read in order against its truth, over all characters."""
    flat_truth = [line for page in truth for line in page]
    flat_read = [line for page in read for line in page]
    return round(score.cer_ordered(flat_truth, flat_read), 4)


def _fleet_levels(session: FleetSession, say: Callable[[str], None], doc: bytes, truth: list[list[str]],
                  counts: Sequence[int], repeats: int, rounds: int) -> list[dict[str, Any]]:
    """format=json against format=pdf on each count, alternating, in rounds over the counts."""
    levels: dict[int, dict[str, Any]] = {}
    pages = len(truth)
    for round_no in range(1, rounds + 1):
        for n in counts:
            say(f"searchable: round {round_no}, scaling to {n} instance(s)")
            status = session.scale_to(n)
            url = f"{(status.gateway or 'http://127.0.0.1:8080').rstrip('/')}/api/ocr"
            for _ in range(n):  # warm-up, not measured: every instance imports the PDF writer once
                _post(url, doc, "json")
                _post(url, doc, "pdf")
            level = levels.setdefault(n, {"instances": n, "json_s": [], "pdf_s": []})
            for _ in range(repeats):
                for fmt in ("json", "pdf"):
                    elapsed, body = _post(url, doc, fmt)
                    level[f"{fmt}_s"].append(round(elapsed, 2))
                    if fmt == "pdf":
                        level["pdf_bytes"] = len(body)
                        level["pdf_cer"] = cer(truth, pdf_text(body))
                    else:
                        level["json_cer"] = cer(truth, _json_lines(body))
            level["json_pages_per_s"] = round(pages / min(level["json_s"]), 3)
            level["pdf_pages_per_s"] = round(pages / min(level["pdf_s"]), 3)
            level["pdf_over_json"] = round(level["pdf_pages_per_s"] / level["json_pages_per_s"], 2)
            say(f"searchable: {n} instance(s): json {level['json_pages_per_s']} pages/s, "
                f"pdf {level['pdf_pages_per_s']} pages/s")
    return [levels[n] for n in counts]


def _json_lines(body: bytes) -> list[list[str]]:
    return [[line["text"] for line in page["data"]] for page in json.loads(body)["pages"]]


def ocrmypdf_command(engine: str, src: Path, dst: Path, gateway: str, jobs: int) -> list[str]:
    """The command line a user runs: the fleet's plugin (`fleet` on the default profile, `fleet-<profile>`
    on another) or OCRmyPDF's own Tesseract."""
    cmd = [str(Path(sys.executable).with_name("ocrmypdf")), "--jobs", str(jobs), "--output-type", "pdf",
           "--optimize", "0", "-l", "eng", "--force-ocr"]
    if engine != "tesseract":
        cmd += ["--plugin", PLUGIN, "--fleet-url", gateway]
        if engine != "fleet":
            cmd += ["--fleet-profile", engine.removeprefix("fleet-")]
    return [*cmd, str(src), str(dst)]


def _ocrmypdf_rounds(session: FleetSession, say: Callable[[str], None], pages: int, rounds: int,
                     jobs: int, instances: int) -> dict[str, Any]:
    """OCRmyPDF with the plugin on `instances` instances against OCRmyPDF with Tesseract, a new document
    (seed) each round, the two engines' order swapped every round."""
    status = session.scale_to(instances)
    gateway = (status.gateway or "http://127.0.0.1:8080").rstrip("/")
    found: dict[tuple[str, str], dict[str, Any]] = {
        (k, e): {"kind": k, "engine": e, "seconds": [], "cer": []} for k in KINDS for e in ENGINES}
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(rounds):
            for kind in KINDS:
                doc, truth = KINDS[kind](pages, 1000 + round_no)
                src = Path(tmp) / f"{kind}{round_no}.pdf"
                src.write_bytes(doc)
                for engine in ENGINES if round_no % 2 == 0 else ENGINES[::-1]:
                    dst = Path(tmp) / f"{kind}-{engine}{round_no}.pdf"
                    elapsed = _ocrmypdf(engine, src, dst, gateway, jobs)
                    found[kind, engine]["seconds"].append(round(elapsed, 2))
                    found[kind, engine]["cer"].append(cer(truth, pdf_text(dst)))
                    say(f"searchable: ocrmypdf {engine} on {kind}s, round {round_no + 1}: {elapsed:.1f} s")
    for row in found.values():
        row["pages_per_s"] = round(pages / min(row["seconds"]), 3)
    for (kind, _), row in found.items():
        row["over_tesseract"] = round(row["pages_per_s"] / found[kind, "tesseract"]["pages_per_s"], 2)
    return {"jobs": jobs, "instances": instances, "pages": pages, "rows": list(found.values()),
            "fleet_over_tesseract": found["scan", "fleet"]["over_tesseract"], "tesseract": _tesseract_version()}


def _ocrmypdf(engine: str, src: Path, dst: Path, gateway: str, jobs: int) -> float:
    """One OCRmyPDF run, its wall time."""
    started = time.monotonic()
    proc = subprocess.run(ocrmypdf_command(engine, src, dst, gateway, jobs), capture_output=True, text=True,
                          timeout=1800, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        raise RuntimeError(f"ocrmypdf ({engine}) exited {proc.returncode}: {proc.stderr[-400:]}")
    return time.monotonic() - started


def photo_document(pages: int, seed: int) -> tuple[bytes, list[list[str]]]:
    """A PDF of English photo-like pages (bench/langpages.py: perspective, uneven light, blur, heavy JPEG) at
    200 dpi, and each page's lines."""
    frames, truth = [], []
    for n in range(pages):
        img, lines = langpages.render("en", "photo", seed * 100 + n)
        frames.append(img)
        truth.append(lines)
    buf = io.BytesIO()
    stamp = time.gmtime(0)  # fixed dates: the bytes are the seed's alone
    frames[0].save(buf, format="PDF", save_all=True, append_images=frames[1:], resolution=200.0,
                   creationDate=stamp, modDate=stamp)
    return buf.getvalue(), truth


# OCRmyPDF's documents: the documents bench's clean scans, and photos of paper
KINDS: dict[str, Callable[[int, int], tuple[bytes, list[list[str]]]]] = {
    "scan": lambda pages, seed: documents.document_with_truth(pages, seed=seed), "photo": photo_document}


def _tesseract_version() -> str:
    exe = shutil.which("tesseract")
    if not exe:
        return "missing"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "unknown"


def run(session: FleetSession, say: Callable[[str], None], counts: Sequence[int] = COUNTS,
        repeats: int = REPEATS, pages: int = PAGES, rounds: int = ROUNDS, jobs: int = JOBS) -> dict[str, Any]:
    doc, truth = documents.document_with_truth(pages)
    out: dict[str, Any] = {"pages": pages, "document_bytes": len(doc), "repeats": repeats, "rounds": rounds,
                           "cores": os.cpu_count() or 1}
    out["levels"] = _fleet_levels(session, say, doc, truth, counts, repeats, rounds)
    by_n = {lv["instances"]: lv["pdf_pages_per_s"] for lv in out["levels"]}
    if 1 in by_n and 2 in by_n:
        out["pdf_2_over_1"] = round(by_n[2] / by_n[1], 2)
    out["ocrmypdf"] = _ocrmypdf_rounds(session, say, pages, rounds, jobs, max(counts))
    return out


LABELS = {"fleet": "OCRmyPDF + the fleet plugin (default profile)",
          "fleet-fast": "OCRmyPDF + the fleet plugin (`--fleet-profile fast`)", "tesseract": "OCRmyPDF + Tesseract"}


def report(results: dict[str, Any], when: str) -> str:
    """The markdown block docs/benchmarks.md keeps for this bench."""
    rows = "\n".join(
        f"| {lv['instances']} | {lv['json_pages_per_s']} | {lv['pdf_pages_per_s']} | {lv['pdf_over_json']} | "
        f"{', '.join(map(str, lv['json_s']))} | {', '.join(map(str, lv['pdf_s']))} | "
        f"{lv['json_cer']:.2%} | {lv['pdf_cer']:.2%} | {lv['pdf_bytes'] // 1024} |"
        for lv in results["levels"])
    om = results["ocrmypdf"]
    om_rows = "\n".join(
        f"| {r.get('kind', 'scan')}s | {LABELS.get(r['engine'], r['engine'])} | {r['pages_per_s']} | "
        f"{r.get('over_tesseract', '-')} | {', '.join(map(str, r['seconds']))} | "
        f"{', '.join(f'{c:.2%}' for c in r['cer'])} |"
        for r in om["rows"])
    scaling = (f"Searchable PDF, 2 instances / 1: **{results['pdf_2_over_1']}x**. "
               if "pdf_2_over_1" in results else "")
    return f"""{BEGIN}
## Searchable PDFs

`python -m bench --searchable` sends one {results['pages']}-page scanned PDF ({results['document_bytes'] // 1024} KiB,
the documents bench's generated pages) through the gateway with `Cache-Control: no-cache`, as `format=json`
and as `format=pdf` in turn, {results['repeats']} of each per level in {results['rounds']} rounds over the
instance counts, each level after one unmeasured request of each per instance. Pages/s is pages over the
best wall time. Error is the ordered character error rate against the generator's truth: of the JSON's
lines, and of the text `pdftotext` reads back from the searchable PDF.

Latest run: {when}

| instances | JSON pages/s | PDF pages/s | PDF / JSON | JSON s | PDF s | JSON error | PDF error | PDF KiB |
|---|---|---|---|---|---|---|---|---|
{rows}

{scaling}

OCRmyPDF 17 on two kinds of {om['pages']}-page document, a new seed each round so the fleet reads pages
it has not seen: the same kind of clean scans, and English photos of paper (`bench/langpages.py`:
perspective, uneven light, low contrast, blur, heavy JPEG),
`--jobs {om['jobs']} --output-type pdf --optimize 0 -l eng --force-ocr`, with the fleet's plugin on
{om['instances']} instances against its own engine ({om['tesseract']}), the order swapped every round:

| pages | OCRmyPDF with | pages/s | × Tesseract | seconds | error (pdftotext) |
|---|---|---|---|---|---|
{om_rows}

The plugin on the default profile / Tesseract, on the scans: **{om['fleet_over_tesseract']}x** in pages/s. Both run on
this machine's cores: OCRmyPDF's own rasterizing and PDF writing take cores from the fleet here, which
a fleet on other hosts would not lose.
{END}
"""


def publish(block: str, page: Path) -> None:
    """Put the block into the page, replacing the previous one (or before the latest full report)."""
    documents.publish(block, page, BEGIN, END)
