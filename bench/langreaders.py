"""The readers the languages bench holds side by side, each reading a group of page files and timing it.

- PP-OCR alone: the instance's own path in a child process per profile (bench.engine_profiles' child, started
  with the environment an instance would get, one thread);
- Tesseract alone: tesserocr in this process, one `TessBaseAPI` per language and page segmentation mode,
  one thread (OMP_THREAD_LIMIT=1), as a user of Tesseract would run it;
- the fleet: `POST /api/ocr?lang=...` through the gateway, one page at a time, with no cache.
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from . import engine_profiles, score


@dataclass
class Reading:
    """What a reader made of a group of pages: lines per page file (by stem), wall seconds, and per page
    whatever the answer said about the language and route it took."""

    lines: dict[str, list[str]]
    seconds: float
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)


class EngineReader:
    """PP-OCR (or any OCR_* settings) through the instance's own page reader, in a child process."""

    def __init__(self, label: str, settings: Mapping[str, str]) -> None:
        # no lang: the profile's own languages, PP-OCR alone, whatever OCR_LANG the shell has
        self.child = engine_profiles.start(label, {"OCR_LANG": "", **settings})

    def read(self, files: Sequence[Path], code: str) -> Reading:
        reply = self.child.ask({"files": [str(p) for p in files], "answers": True})
        return Reading(reply["answers"], reply["wall_s"])

    def close(self) -> None:
        proc = self.child.proc
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=60)


class TesseractReader:
    """Tesseract's own page layout and recognition through tesserocr, with the language's traineddata."""

    def __init__(self, psm: int, tessdata: Path) -> None:
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # one thread, as the other readers get
        import tesserocr

        self.tesserocr = tesserocr
        self.psm = psm
        self.tessdata = tessdata

    def read(self, files: Sequence[Path], code: str) -> Reading:
        from PIL import Image

        from ocr_app.models import languages

        lang = "+".join(languages.resolve(code).tesseract)
        lines: dict[str, list[str]] = {}
        seconds = 0.0
        with self.tesserocr.PyTessBaseAPI(path=str(self.tessdata), lang=lang, psm=self.psm) as api:
            for path in files:
                with Image.open(path) as img:
                    img.load()
                    started = time.perf_counter()
                    api.SetImage(img)
                    text = api.GetUTF8Text()
                    seconds += time.perf_counter() - started
                lines[path.stem] = [line for line in text.splitlines() if line.strip()]
        return Reading(lines, seconds)

    def close(self) -> None:
        """Nothing to stop: each language's API is ended after its group."""

    @staticmethod
    def version() -> str:
        import tesserocr

        return str(tesserocr.tesseract_version().splitlines()[0])


class FleetReader:
    """The fleet through its gateway with `lang=` (a code, or `auto`) and maybe a `route=`, every page a cache
    miss, one page at a time."""

    def __init__(self, gateway: str, lang: str | None = None, route: str | None = None) -> None:
        self.url = f"{gateway.rstrip('/')}/api/ocr"
        self.lang = lang  # None: each page's own language code
        self.route = route  # None: the language's default route

    def read(self, files: Sequence[Path], code: str) -> Reading:
        params = {"lang": self.lang or code, **({"route": self.route} if self.route else {})}
        lines: dict[str, list[str]] = {}
        meta: dict[str, dict[str, Any]] = {}
        seconds = 0.0
        for path in files:
            started = time.perf_counter()
            resp = requests.post(self.url, params=params, data=path.read_bytes(), timeout=300,
                                 headers={"Content-Type": "image/png", "Cache-Control": "no-cache"})
            seconds += time.perf_counter() - started
            if resp.status_code != 200:
                raise RuntimeError(f"{params} got {resp.status_code}: {resp.text[:300]}")
            body = resp.json()
            lines[path.stem] = score.answer_lines(body.get("data", body))
            meta[path.stem] = recognizer_of(body)
        return Reading(lines, seconds, meta)

    def close(self) -> None:
        """Nothing to stop: the fleet is the session's."""


def recognizer_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """The answer's `recognizer` (lang, engine, route and, for lang=auto, script), beside `data` or in the
    first page's record."""
    for holder in (body, *(body.get("pages") or [])[:1]):
        if isinstance(holder, Mapping) and isinstance(holder.get("recognizer"), Mapping):
            return dict(holder["recognizer"])
    return {}
