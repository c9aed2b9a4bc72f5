"""The documents bench's pure parts: its report block, and publishing it without losing the full report."""
from __future__ import annotations

from pathlib import Path

from bench import documents

RESULTS = {
    "pages": 12, "format": "TIFF", "document_bytes": 400_000, "repeats": 2, "speedup_2_over_1": 1.8,
    "target_met": True, "all_identical": True,
    "levels": [
        {"instances": 1, "seconds": [20.0, 19.0], "pages_per_s": 0.632, "identical": True,
         "requests_per_upstream": {"127.0.0.1:8001": 26}},
        {"instances": 2, "seconds": [11.0, 10.5], "pages_per_s": 1.143, "identical": True,
         "requests_per_upstream": {"127.0.0.1:8001": 13, "127.0.0.1:8002": 13}},
    ],
}


def test_report_names_figures_and_verdict() -> None:
    block = documents.report(RESULTS, "2026-01-01T00:00:00+00:00")
    assert block.startswith(documents.BEGIN) and block.rstrip().endswith(documents.END)
    assert "| 2 | 1.143 | 11.0, 10.5 | yes | 13, 13 | - | - | - |" in block
    assert "**1.8x** (target 1.6x: met)" in block


def test_publish_replaces_its_block_and_full_publish_keeps_it(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nintro\n\n## Latest report: x\n\nbody\n", encoding="utf-8")
    documents.publish(documents.report(RESULTS, "RUN-ONE"), page)
    documents.publish(documents.report(RESULTS, "RUN-TWO"), page)
    text = page.read_text(encoding="utf-8")
    assert text.count(documents.BEGIN) == 1 and "RUN-TWO" in text and "RUN-ONE" not in text
    assert text.index(documents.BEGIN) < text.index("## Latest report")
    assert documents.kept_block(page).startswith(documents.BEGIN)


def test_document_is_the_same_bytes_for_a_seed() -> None:
    assert documents.make_document(2) == documents.make_document(2)


def test_report_says_when_the_fleet_was_starved_of_cores() -> None:
    starved = {**RESULTS, "cores": 2, "levels": [{**lv, "fleet_cores": [0.5]} for lv in RESULTS["levels"]]}
    assert "got at most 0.5 of 2 cores" in documents.report(starved, "now")
    fed = {**RESULTS, "cores": 2, "levels": [{**lv, "fleet_cores": [1.9]} for lv in RESULTS["levels"]]}
    assert "got at most" not in documents.report(fed, "now")
