"""The searchable-PDF bench's pure parts: its report block, its OCRmyPDF command lines and its error rate."""
from __future__ import annotations

from pathlib import Path

from bench import searchable

LEVEL = {"json_s": [10.0, 9.5], "pdf_s": [10.4, 9.9], "json_pages_per_s": 0.632, "pdf_pages_per_s": 0.606,
         "pdf_over_json": 0.96, "json_cer": 0.004, "pdf_cer": 0.006, "pdf_bytes": 204_800}
RESULTS = {
    "pages": 6, "document_bytes": 300_000, "repeats": 2, "rounds": 2, "cores": 2, "pdf_2_over_1": 1.7,
    "levels": [{**LEVEL, "instances": 1}, {**LEVEL, "instances": 2}],
    "ocrmypdf": {"jobs": 2, "instances": 2, "pages": 6, "fleet_over_tesseract": 2.5, "tesseract": "tesseract 5.3.0",
                 "rows": [{"engine": "fleet", "pages_per_s": 1.0, "seconds": [6.0, 6.5], "cer": [0.01, 0.0],
                           "over_tesseract": 2.5},
                          {"engine": "tesseract", "pages_per_s": 0.4, "seconds": [15.0, 16.0], "cer": [0.02, 0.03],
                           "over_tesseract": 1.0}]},
}


def test_report_names_figures_and_ratios() -> None:
    block = searchable.report(RESULTS, "2026-01-01T00:00:00+00:00")
    assert block.startswith(searchable.BEGIN) and block.rstrip().endswith(searchable.END)
    assert "| 2 | 0.632 | 0.606 | 0.96 | 10.0, 9.5 | 10.4, 9.9 | 0.40% | 0.60% | 200 |" in block
    assert "2 instances / 1: **1.7x**" in block
    assert "| scans | OCRmyPDF + Tesseract | 0.4 | 1.0 | 15.0, 16.0 | 2.00%, 3.00% |" in block
    assert "(default profile) | 1.0 | 2.5 |" in block and "**2.5x** in pages/s" in block


def test_commands_differ_only_by_the_plugin() -> None:
    fleet = searchable.ocrmypdf_command("fleet", Path("in.pdf"), Path("out.pdf"), "http://127.0.0.1:8080", 2)
    tess = searchable.ocrmypdf_command("tesseract", Path("in.pdf"), Path("out.pdf"), "http://127.0.0.1:8080", 2)
    assert fleet[-2:] == tess[-2:] == ["in.pdf", "out.pdf"]
    assert [a for a in fleet if a not in tess] == ["--plugin", searchable.PLUGIN, "--fleet-url",
                                                   "http://127.0.0.1:8080"]
    fast = searchable.ocrmypdf_command("fleet-fast", Path("in.pdf"), Path("out.pdf"), "http://127.0.0.1:8080", 2)
    assert fast[fast.index("--fleet-profile") + 1] == "fast"


def test_cer_reads_the_pages_in_order() -> None:
    truth = [["Invoice 12"], ["Total 40"]]
    assert searchable.cer(truth, truth) == 0.0
    assert searchable.cer(truth, [["Total 40"], ["Invoice 12"]]) > 0.0


def test_photo_document_is_a_pdf_of_its_pages() -> None:
    doc, truth = searchable.photo_document(2, seed=3)
    assert doc.startswith(b"%PDF-") and len(truth) == 2 and all(truth)
    assert searchable.photo_document(2, seed=3)[0] == doc
