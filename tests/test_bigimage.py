"""bench.bigimage: its images and its worker discovery (the measurement itself runs by hand on a fleet)."""
from __future__ import annotations

import io
import os
from pathlib import Path

from click.testing import CliRunner
from helpers import wait_for
from PIL import Image

from bench.bigimage import PeakRss, fleet_workers, main, noisy_jpeg


def test_noisy_jpegs_are_distinct_decodable_and_sized() -> None:
    one, two = noisy_jpeg(0, side=300), noisy_jpeg(1, side=300)
    assert one != two, "different bytes, so the cache never answers"
    assert Image.open(io.BytesIO(one)).size == (300, 300)


def test_no_workers_under_an_empty_home_is_an_error(tmp_path: Path) -> None:
    assert fleet_workers(tmp_path) == set()
    result = CliRunner().invoke(main, ["--fleet-home", str(tmp_path), "-n", "1", "--side", "64"])
    assert result.exit_code != 0 and "no fleet workers" in result.output


def test_peak_rss_samples_this_process() -> None:
    with PeakRss({os.getpid()}) as peak:
        wait_for(lambda: peak.peak[os.getpid()] > 0, 10, "one RSS sample")
    assert peak.max_mib > 10
