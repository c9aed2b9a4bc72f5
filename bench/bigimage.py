"""`python -m bench.bigimage`: hostile big images at a fleet, and the peak RSS of its workers meanwhile.

Sends N concurrent 6000x6000 noisy JPEGs (~19 MB each, seeded, different bytes so no cache answers)
and samples the RSS of every gunicorn worker under FLEET_HOME while they run. The figure the memory
target in docs/api.md ("Memory") is checked against.
"""
from __future__ import annotations

import io
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import numpy as np
import psutil
import requests
from PIL import Image, ImageDraw, ImageFont

from fleetctl.config import default_home

from .images import find_font


def noisy_jpeg(seed: int, side: int = 6000, quality: int = 75) -> bytes:
    """Noise with a few white text bands: nearly incompressible, so ~19 MB at 6000x6000."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(find_font("DejaVu Sans"), side // 30)
    for k in range(3):
        top = side // 15 + k * side * 3 // 10
        draw.rectangle((side // 30, top, side - side // 30, top + side // 20), fill="white")
        draw.text((side // 25, top + side // 300), f"HOSTILE PAGE {seed} LINE {k}", fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


class PeakRss:
    """Samples the RSS of processes in a thread until stopped; keeps the highest value seen per process."""

    def __init__(self, pids: set[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.peak = {pid: 0 for pid in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            for proc in self.procs:
                try:
                    self.peak[proc.pid] = max(self.peak[proc.pid], proc.memory_info().rss)
                except psutil.Error:
                    continue

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def max_mib(self) -> float:
        return max(self.peak.values(), default=0) / 2**20


def fleet_workers(home: Path) -> set[int]:
    """gunicorn workers (not masters) whose runtime dir is under the fleet's home."""
    prefix = str(home.resolve())
    found: set[int] = set()
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            env = proc.info["environ"] or {}
            if not env.get("OCR_RUNTIME_DIR", "").startswith(prefix):
                continue
            parent = proc.parent()
            if parent is not None and "gunicorn" in " ".join(parent.cmdline()):
                found.add(proc.pid)
        except (psutil.Error, TypeError):
            continue
    return found


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", default="http://127.0.0.1:8080/api/ocr", show_default=True, help="OCR endpoint.")
@click.option("--fleet-home", type=click.Path(file_okay=False, path_type=Path),
              default=lambda: os.environ.get("FLEET_HOME") or default_home(os.environ),
              help="[default: FLEET_HOME, else fleetctl's default, ~/.local/state/ocr-fleet]")
@click.option("-n", "--count", type=click.IntRange(min=1), default=8, show_default=True,
              help="Concurrent uploads.")
@click.option("--side", type=click.IntRange(min=64), default=6000, show_default=True, help="Image side in px.")
def main(url: str, fleet_home: Path, count: int, side: int) -> None:
    """Send COUNT concurrent SIDE x SIDE noisy JPEGs and print the workers' peak RSS as JSON."""
    images = [noisy_jpeg(seed, side) for seed in range(count)]
    workers = fleet_workers(fleet_home)
    if not workers:
        raise click.ClickException(f"no fleet workers found under {fleet_home} (FLEET_HOME)")

    def post(data: bytes) -> int:
        return requests.post(url, data=data, timeout=600, headers={
            "Content-Type": "image/jpeg", "Cache-Control": "no-cache"}).status_code

    with PeakRss(workers) as peak, ThreadPoolExecutor(count) as pool:
        statuses = list(pool.map(post, images))
    click.echo(json.dumps({
        "images": count, "side": side, "mb_each": round(sum(map(len, images)) / count / 1e6, 1),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "peak_rss_mib": {str(pid): round(v / 2**20) for pid, v in sorted(peak.peak.items())},
        "max_peak_rss_mib": round(peak.max_mib),
    }))


if __name__ == "__main__":
    main()
