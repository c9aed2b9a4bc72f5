"""Languages: line-matched CER per language, reader and kind of page, pages/s, and lang=auto's script picks.

Every listed language gets N generated scans and N photo-like pages (bench/langpages.py, fixed seeds).
PP-OCR alone (`accurate`, `fast`), Tesseract alone (psm 6 and 3) and, where the fleet has them, the
product's routes through the gateway (`lang=CODE` on its default route, `lang=auto`) read the same pages,
taking turns language by language so a busy neighbour slows them alike. Speeds are quoted against
`accurate` on the Chinese and English pages of the same run. The recommended route per language is the
reader that meets the targets with the lowest CER (scan + photo); within half a point, PP-OCR, then lines.
Zero-width format characters (Tesseract writes a ZWNJ after each Tamil pulli) are not counted: they do not
show, and the catalog's readers differ on them only.
"""
from __future__ import annotations

import os
import tempfile
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from . import documents, langpages, score
from .fleet import FleetSession
from .langreaders import EngineReader, FleetReader, Reading, TesseractReader

BEGIN, END = "<!-- languages-bench -->", "<!-- /languages-bench -->"
COUNTS = (1,)  # instances: the fleet part runs on one
PAGES = 2  # per language and kind: 80 pages in all, about 10 minutes on 2 cores
LINES = 8
SEED = 20261204
SCAN_TARGET, PHOTO_TARGET, AUTO_TARGET = 0.03, 0.10, 0.98
AUTO_DEFAULT_SPEED = 0.95  # lang=auto may become the default if it keeps 95% of the pages/s on zh and en
REFERENCE = "PP-OCR accurate"
PPOCR_SCRIPTS = ("Latin", "Han", "Japanese")  # what lang=auto sends to PP-OCR
SPEED_BASE = ("zh", "en")  # the reference's pages/s on these is 1.0x
# reader label -> the route it stands for in the catalog (the readers that are one of them)
ROUTES = {"PP-OCR accurate": "ppocr", "Tesseract psm 6": "tesseract", "Tesseract psm 3": "tesseract",
          "lines": "lines"}
CLOSE = 0.005  # CERs within half a point of the best count as a tie
PREFERENCE = ("ppocr", "lines", "tesseract")  # ties go to the reference, then to the detector's lines


class Reader(Protocol):
    def read(self, files: Sequence[Path], code: str) -> Reading: ...

    def close(self) -> None: ...


def make_pages(work: Path, codes: Sequence[str], pages: int = PAGES, lines: int = LINES,
               seed: int = SEED) -> dict[str, list[tuple[Path, str, list[str]]]]:
    """Write each language's pages as PNG files; per code: (file, kind, truth) in a fixed order."""
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[tuple[Path, str, list[str]]]] = {}
    for code in codes:
        for kind in langpages.KINDS:
            for n in range(pages):
                png, truth = langpages.page(code, kind, seed + n, lines)
                path = work / f"{code}-{kind}-{n}.png"
                path.write_bytes(png)
                out.setdefault(code, []).append((path, kind, truth))
    return out


def local_readers(tessdata: Path) -> dict[str, Reader]:
    """The readers that need no fleet: PP-OCR's two profiles and Tesseract's two page modes."""
    return {
        "PP-OCR accurate": EngineReader("PP-OCR accurate", {"OCR_PROFILE": "accurate"}),
        "PP-OCR fast": EngineReader("PP-OCR fast", {"OCR_PROFILE": "fast"}),
        "Tesseract psm 6": TesseractReader(6, tessdata),
        "Tesseract psm 3": TesseractReader(3, tessdata),
    }


def measure(readers: Mapping[str, Reader], pages: Mapping[str, list[tuple[Path, str, list[str]]]],
            say: Callable[[str], None]) -> dict[str, Any]:
    """Every reader on every language's pages, readers taking turns per language; rows of CER and time."""
    rows: list[dict[str, Any]] = []
    auto: dict[str, list[dict[str, Any]]] = {}
    same: dict[str, bool] = {}
    for code, group in pages.items():
        files = [path for path, _, _ in group]
        texts: dict[str, dict[str, list[str]]] = {}
        for label, reader in readers.items():
            reading = reader.read(files, code)
            texts[label] = reading.lines
            for kind in langpages.KINDS:
                cers = [score.cer_lines(truth, visible(reading.lines.get(path.stem, [])))
                        for path, k, truth in group if k == kind]
                rows.append({"lang": code, "reader": label, "kind": kind, "cer": round(sum(cers) / len(cers), 4),
                             "cers": [round(c, 4) for c in cers]})
            rows.append({"lang": code, "reader": label, "kind": "time", "seconds": round(reading.seconds, 3),
                         "pages": len(files)})
            if reading.meta and label == "lang=auto":
                auto[code] = [{"page": path.stem, **reading.meta.get(path.stem, {})} for path in files]
            worst = max(r["cer"] for r in rows[-3:-1])
            say(f"languages: {code} {label}: worst CER {100 * worst:.1f}%, {reading.seconds:.1f} s")
        if "lang=auto" in texts and "lang=CODE" in texts:
            same[code] = texts["lang=auto"] == texts["lang=CODE"]
    return {"rows": rows, "auto_answers": auto, "auto_same_text": same}


def auto_cost(rows: Sequence[Mapping[str, Any]], same: Mapping[str, bool],
              base: Sequence[str] = SPEED_BASE) -> dict[str, Any] | None:
    """lang=auto against lang=CODE on the Chinese and English pages: its share of their pages/s, and whether
    it read the same text (auto may be the default only at >= 95% and the same text)."""
    timed = {(r["reader"], r["lang"]): r for r in rows if r["kind"] == "time" and r["lang"] in base}
    pairs = [(timed[("lang=auto", c)], timed[("lang=CODE", c)]) for c in base
             if ("lang=auto", c) in timed and ("lang=CODE", c) in timed]
    if not pairs:
        return None
    auto_s, code_s = sum(a["seconds"] for a, _ in pairs), sum(b["seconds"] for _, b in pairs)
    ratio = round(code_s / auto_s, 3) if auto_s else None
    identical = all(same.get(c, False) for c in base)
    return {"speed_ratio": ratio, "same_text": identical,
            "fits_default": bool(ratio and ratio >= AUTO_DEFAULT_SPEED and identical)}


def visible(lines: Sequence[str]) -> list[str]:
    """The lines without Unicode format characters (ZWNJ, ZWJ, marks of direction): they do not show."""
    return ["".join(ch for ch in line if unicodedata.category(ch) != "Cf") for line in lines]


def run(session: FleetSession, say: Callable[[str], None], counts: Sequence[int] = COUNTS,
        codes: Sequence[str] = langpages.CODES, pages: int = PAGES) -> dict[str, Any]:
    """The whole section: the local readers, then (with the fleet up on one instance) lang= and lang=auto."""
    from ocr_app.models import languages

    tessdata = languages.find_tessdata()
    if tessdata is None:
        raise RuntimeError("no Tesseract data found: install tesseract-ocr and the language packs")
    missing = [c for c in codes if not languages.has_data(languages.resolve(c), tessdata)]
    if missing:
        raise RuntimeError("missing Tesseract packs: " + " ".join(languages.package(c) for c in missing))
    work = Path(tempfile.mkdtemp(prefix="bench-languages-"))
    page_files = make_pages(work, codes, pages)
    load_before = os.getloadavg()[0]
    readers: dict[str, Reader] = dict(local_readers(tessdata))
    status = session.scale_to(counts[0])
    gateway = status.gateway or "http://127.0.0.1:8080"
    fleet_note = fleet_languages(gateway)
    if fleet_note is None:
        readers["lines"] = FleetReader(gateway, route="lines")
        readers["lang=CODE"] = FleetReader(gateway)
        readers["lang=auto"] = FleetReader(gateway, "auto")
    try:
        measured = measure(readers, page_files, say)
    finally:
        for reader in readers.values():
            reader.close()
    return {"pages": pages, "lines": LINES, "seed": SEED, "codes": list(codes), "readers": list(readers),
            "tesseract": TesseractReader.version(), "fleet_skipped": fleet_note, "cores": os.cpu_count() or 1,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "routes": {c: languages.resolve(c).route for c in codes},
            "scripts": {c: languages.resolve(c).script for c in codes}, **measured}


def fleet_languages(gateway: str) -> str | None:
    """None when the fleet serves `lang=` (it lists /api/languages); else why its readers are skipped."""
    import requests

    try:
        resp = requests.get(f"{gateway.rstrip('/')}/api/languages", timeout=30)
    except requests.RequestException as exc:
        return f"the gateway did not answer: {exc}"
    return None if resp.status_code == 200 else f"the fleet has no /api/languages yet ({resp.status_code})"


# ---- pure: figures from the rows ----

def cer_table(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], float]:
    """(lang, reader, kind) -> mean line-matched CER."""
    return {(r["lang"], r["reader"], r["kind"]): r["cer"] for r in rows if r["kind"] in langpages.KINDS}


def speeds(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """(lang, reader) -> pages per second over that language's scans and photos."""
    return {(r["lang"], r["reader"]): r["pages"] / r["seconds"] for r in rows if r["kind"] == "time" and r["seconds"]}


def reference_speed(rows: Sequence[Mapping[str, Any]], base: Sequence[str] = SPEED_BASE) -> float | None:
    """`accurate`'s pages/s on the Chinese and English pages: the 1.0x of the speed table."""
    timed = [r for r in rows if r["kind"] == "time" and r["reader"] == REFERENCE and r["lang"] in base]
    seconds = sum(r["seconds"] for r in timed)
    return sum(r["pages"] for r in timed) / seconds if timed and seconds else None


def auto_accuracy(answers: Mapping[str, Sequence[Mapping[str, Any]]], scripts: Mapping[str, str]) -> dict[str, Any]:
    """lang=auto's script picks: the share of pages whose script it found right (the answer's
    `recognizer.script`), and the share it routed as their script's languages are (a page it found no script
    on goes to PP-OCR, which is right for Latin, Han and Japanese); the pages it got wrong."""
    right = routed = 0
    misses = []
    for code, pages in answers.items():
        want = scripts[code]
        for page in pages:
            picked = page.get("script")
            right += picked == want
            fine = picked == want or (picked is None and page.get("route") == "ppocr" and want in PPOCR_SCRIPTS)
            routed += fine
            if picked != want:
                misses.append({"page": page["page"], "want": want, "got": picked, "route": page.get("route")})
    total = sum(len(pages) for pages in answers.values())
    return {"pages": total, "right": right, "share": round(right / total, 4) if total else None,
            "routed": routed, "routed_share": round(routed / total, 4) if total else None, "misses": misses}


def recommend(cer: Mapping[tuple[str, str, str], float], speed: Mapping[tuple[str, str], float],
              code: str) -> tuple[str, str] | None:
    """The best route for a language on these figures, and the reader that stands for it: the lowest scan +
    photo CER among the readers that meet both targets (else among all); within half a point of it, the
    route earlier in PREFERENCE wins (PP-OCR is the fleet's reference), then the faster reader."""
    options = []
    for label, route in ROUTES.items():
        if (code, label, "scan") not in cer:
            continue
        scan, photo = cer[(code, label, "scan")], cer[(code, label, "photo")]
        options.append((not (scan <= SCAN_TARGET and photo <= PHOTO_TARGET), scan + photo,
                        PREFERENCE.index(route), -speed.get((code, label), 0.0), label, route))
    if not options:
        return None
    best = min(options)
    close = [o for o in options if o[0] == best[0] and o[1] <= best[1] + CLOSE]
    pick = min(close, key=lambda o: (o[2], o[3]))
    return pick[5], pick[4]


# ---- the report block ----

def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _cer_rows(results: Mapping[str, Any], kind: str, cer: Mapping[tuple[str, str, str], float]) -> str:
    target = SCAN_TARGET if kind == "scan" else PHOTO_TARGET
    out = []
    for code in results["codes"]:
        cells = []
        for label in results["readers"]:
            value = cer.get((code, label, kind))
            text = _pct(value)
            cells.append(f"**{text}**" if value is not None and value <= target else text)
        out.append(f"| {code} | {results['scripts'][code]} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _speed_rows(results: Mapping[str, Any], speed: Mapping[tuple[str, str], float], ref: float | None) -> str:
    out = []
    for code in results["codes"]:
        cells = []
        for label in results["readers"]:
            value = speed.get((code, label))
            cells.append("-" if value is None else f"{value:.2f}" + (f" ({value / ref:.2f}x)" if ref else ""))
        out.append(f"| {code} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def served(cer: Mapping[tuple[str, str, str], float], code: str, pick: tuple[str, str] | None) -> tuple[str, str]:
    """The reader whose figures the targets are judged on: the fleet's `lang=` where measured, else the pick."""
    if (code, "lang=CODE", "scan") in cer:
        return "lang=CODE", "the fleet's default route"
    return (pick[1], "the recommended route") if pick else ("", "")


def targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per language: the recommended route, and whether the served reader meets both CER targets."""
    cer, speed = cer_table(results["rows"]), speeds(results["rows"])
    out = []
    for code in results["codes"]:
        pick = recommend(cer, speed, code)
        label, basis = served(cer, code, pick)
        scan, photo = cer.get((code, label, "scan")), cer.get((code, label, "photo"))
        out.append({"lang": code, "route": pick[0] if pick else None, "by": pick[1] if pick else None,
                    "catalog": results["routes"].get(code), "judged_on": label, "basis": basis, "scan": scan,
                    "photo": photo, "scan_met": scan is not None and scan <= SCAN_TARGET,
                    "photo_met": photo is not None and photo <= PHOTO_TARGET})
    return out


def report(results: Mapping[str, Any], when: str) -> str:
    """The markdown block docs/benchmarks.md keeps for this bench."""
    cer, speed = cer_table(results["rows"]), speeds(results["rows"])
    ref = reference_speed(results["rows"])
    readers = results["readers"]
    head = "| language | script | " + " | ".join(readers) + " |\n|---|---|" + "---|" * len(readers)
    speed_head = "| language | " + " | ".join(readers) + " |\n|---|" + "---|" * len(readers)
    checks = targets(results)
    route_rows = "\n".join(
        f"| {t['lang']} | {t['route'] or '-'} ({t['by'] or '-'}) | {t['catalog'] or '-'} | {t['judged_on']} | "
        f"{_pct(t['scan'])} ({'met' if t['scan_met'] else 'missed'}) | "
        f"{_pct(t['photo'])} ({'met' if t['photo_met'] else 'missed'}) |" for t in checks)
    scans_met = sum(t["scan_met"] for t in checks)
    photos_met = sum(t["photo_met"] for t in checks)
    auto = auto_accuracy(results.get("auto_answers") or {}, results["scripts"])
    if auto["pages"]:
        misses = ", ".join(f"{m['page']} ({m['got'] or 'none'} for {m['want']}, {m['route']})"
                           for m in auto["misses"][:16])
        auto_text = (f"`lang=auto` picked the right script on {auto['right']} of {auto['pages']} pages "
                     f"(**{_pct(auto['share'])}**, target {AUTO_TARGET:.0%}: "
                     f"{'met' if (auto['share'] or 0) >= AUTO_TARGET else 'missed'}), and sent "
                     f"{auto['routed']} ({_pct(auto['routed_share'])}) where their script goes (a page with no "
                     "script found goes to PP-OCR: right for Latin, Han and Japanese)"
                     + (f". Not found right (found, for the truth, route taken): {misses}." if misses else "."))
        cost = auto_cost(results["rows"], results.get("auto_same_text") or {})
        if cost:
            auto_text += (f"\n\nOn the Chinese and English pages `lang=auto` ran at **{cost['speed_ratio']}x** the "
                          f"pages/s of `lang=zh`/`lang=en` and read {'the same' if cost['same_text'] else 'other'} "
                          f"text: as the default it {'fits' if cost['fits_default'] else 'does not fit'} (it may "
                          f"cost at most {1 - AUTO_DEFAULT_SPEED:.0%} and change none of their text).")
    else:
        auto_text = f"`lang=auto` not measured: {results.get('fleet_skipped') or 'no answers'}."
    judged = "the recommended route" if results.get("fleet_skipped") else "the fleet with `lang=CODE`"
    verdict = (f"Targets are judged on {judged}: scans met for {scans_met} of {len(checks)} languages, photos for "
               f"{photos_met} of {len(checks)}.")
    skipped = (f"\nThe fleet's readers (`lang=CODE`, `lang=auto`) were not run: {results['fleet_skipped']}.\n"
               if results.get("fleet_skipped") else "")
    load = " → ".join(str(x) for x in results.get("load_average", ()))
    return f"""{BEGIN}
## Languages

`python -m bench --languages` reads, for each of {len(results['codes'])} languages, {results['pages']}
generated scans and {results['pages']} photo-like pages ({results['lines']} lines of random common words
each, `bench/langpages.py`, seeds from {results['seed']}; photos add a slight perspective, uneven light, low
contrast, blur and JPEG quality {langpages.PHOTO_JPEG_QUALITY}) with every reader, readers taking turns
language by language. PP-OCR runs the instance's own page reader in a process of its own with one thread;
Tesseract ({results['tesseract']}) runs through tesserocr with the language's traineddata and one thread,
psm 6 (one block) and psm 3 (its own page layout). The product's routes go through the gateway to one
instance with `Cache-Control: no-cache`, one page at a time: `lines` (`lang=CODE&route=lines`: PP-OCR's
detector, each line read by Tesseract), `lang=CODE` (the catalog's default route) and `lang=auto`; their
pages/s include HTTP. CER is line-matched (`bench/score.py`: NFKC, spaces ignored,
lines paired by edit distance, unmatched lines cost all their characters; zero-width format characters
such as the ZWNJ Tesseract writes after a Tamil pulli are dropped first); bold meets the target
({SCAN_TARGET:.0%} on scans, {PHOTO_TARGET:.0%} on photos). Load average {load} (start → end, {results['cores']}
CPUs).
{skipped}
Latest run: {when}

### CER on scans

{head}
{_cer_rows(results, 'scan', cer)}

### CER on photo-like pages

{head}
{_cer_rows(results, 'photo', cer)}

### Pages per second

Pages/s over each language's scans and photos, and in brackets against `accurate` on the Chinese and
English pages of this run ({f'{ref:.2f}' if ref else '-'} pages/s = 1.00x): the machine is shared, so
only the ratios carry over.

{speed_head}
{_speed_rows(results, speed, ref)}

### lang=auto

{auto_text}

### Route per language

The recommended route is the reader, of PP-OCR accurate (`ppocr`), Tesseract alone (`tesseract`) and
`lines`, that meets both targets with the lowest scan + photo CER (else the lowest); within
half a point, `ppocr` first (the fleet's reference), then `lines`, then the faster reader. {verdict}

| language | recommended (reader) | catalog today | judged on | scan CER | photo CER |
|---|---|---|---|---|---|
{route_rows}
{END}
"""


def publish(block: str, page: Path) -> None:
    """Put the block into docs/benchmarks.md between this bench's markers."""
    documents.publish(block, page, BEGIN, END)
