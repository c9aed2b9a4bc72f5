"""The hard set's generator still draws the committed truth, and the error scorer counts as it says."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import hardset
from bench.score import cer_lines, cer_ordered


def test_generator_draws_the_committed_truth() -> None:
    truth = hardset.load_truth()
    assert len(truth) == 16
    assert hardset.main(["--check", "--count", "16"]) == 0


def test_pages_are_deterministic_and_cover_every_damage(tmp_path: Path) -> None:
    pages = hardset.generate(tmp_path, len(hardset.DAMAGE))
    assert {p.damage for p in pages} == set(hardset.DAMAGE)
    assert hardset.render(3).data == pages[3].data
    text = "".join(line for p in pages for line in p.truth)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text) and any(ch.isascii() and ch.isalpha() for ch in text)


@pytest.mark.parametrize("answer, ordered, by_line", [
    (["abc def", "中文字"], 0.0, 0.0),
    (["中文字", "abc def"], 0.8, 0.0),  # same lines, wrong order: only the ordered error sees it
    (["abc dex"], 0.5, 4 / 9),  # one character wrong, one line missing
    ([], 1.0, 1.0),
    (["abc def", "中文字", "made up"], 7 / 10, 6 / 9),  # invented text costs its characters
])
def test_character_error_with_and_without_order(answer: list[str], ordered: float, by_line: float) -> None:
    truth = ["abc def", "中文字"]
    assert cer_ordered(truth, answer) == pytest.approx(ordered, abs=1e-3)
    assert cer_lines(truth, answer) == pytest.approx(by_line, abs=1e-3)
