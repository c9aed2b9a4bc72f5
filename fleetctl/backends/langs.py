"""The fleet's languages: FLEET_LANGS (or `up --langs`), checked against the catalog, given to every instance.

Every instance gets the same set as OCR_LANGS, so that any instance can take any page of a document or a job;
the set is part of the config hash, so a changed set replaces the instances. Each language's Tesseract data
comes in a Debian pack (ocr_app/models/languages.py names it); `fleetctl deps --langs` installs the packs and
`up` installs the missing ones of the fleet's set. Empty FLEET_LANGS means the catalog's DEFAULT_SET.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetctl import procs
from fleetctl.config import FleetConfig
from fleetctl.errors import FleetError
from ocr_app.models import languages as catalog
from ocr_app.models.languages import Language

__all__ = ["IMAGE_LABEL", "INSTANCE_VAR", "Language", "LangsError", "Pack", "check", "check_image", "fleet_set",
           "image_gaps", "instance_value", "missing_packages", "parse", "tessdata_dir"]

INSTANCE_VAR = "OCR_LANGS"
# Where the instances look for Tesseract's data; fleetctl checks the same folder (the catalog's search list).
TESSDATA_VAR = "OCR_TESSDATA"
# A set is a handful of codes: more than this many is a typo or an attack, not a fleet.
MAX_CODES = 200
MAX_CODE_CHARS = 12
NAMED_IN_ERRORS = 5  # unknown codes an error message names; the rest are counted
LIST_HINT = "GET /api/languages on the gateway lists every code"
# The label scripts/build-image.sh puts on the image: the languages it carries, ISO codes comma-separated.
IMAGE_LABEL = "ocr-fleet.langs"


class LangsError(FleetError):
    """A language set names a code the catalog does not know; the message says where the list is."""


@dataclass(frozen=True)
class Pack:
    """One language of a set and whether its Tesseract data is on this host."""

    lang: Language
    present: bool

    @property
    def package(self) -> str:
        return self.lang.package


def parse(text: str, *, setting: str = "") -> tuple[Language, ...]:
    """The languages a comma-separated list names (ISO 639-1 or Tesseract codes), in order, without repeats.

    Empty means the catalog's default set; `default` may stand in the list for it (`default,it`).
    """
    where = f"{setting}: " if setting else ""
    raw = [part.strip() for part in text.split(",") if part.strip()] or ["default"]
    if len(raw) > MAX_CODES:
        raise LangsError(f"{where}{len(raw)} languages named; at most {MAX_CODES}")
    found: list[Language] = []
    unknown: list[str] = []
    for code in raw:
        if code.lower() == "default":
            found += [catalog.resolve(c) for c in catalog.DEFAULT_SET]
            continue
        try:
            if len(code) > MAX_CODE_CHARS:
                raise catalog.UnknownLanguage(code)
            found.append(catalog.resolve(code))
        except catalog.UnknownLanguage:
            unknown.append(code[:MAX_CODE_CHARS] + ("…" if len(code) > MAX_CODE_CHARS else ""))
    if unknown:
        named = ", ".join(repr(u) for u in unknown[:NAMED_IN_ERRORS])
        more = f" and {len(unknown) - NAMED_IN_ERRORS} more" if len(unknown) > NAMED_IN_ERRORS else ""
        raise LangsError(f"{where}unknown language code{'s' if len(unknown) > 1 else ''} {named}{more} ({LIST_HINT})")
    return tuple(dict.fromkeys(found))


def fleet_set(cfg: FleetConfig) -> tuple[Language, ...]:
    """The fleet's languages: FLEET_LANGS (or `up --langs`), else the catalog's default set."""
    return parse(cfg.langs, setting="FLEET_LANGS")


def instance_value(cfg: FleetConfig) -> str:
    """The set as the instances get it in OCR_LANGS: ISO 639-1 codes, comma-separated, in the set's order."""
    return ",".join(lang.code for lang in fleet_set(cfg))


def tessdata_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """The folder with Tesseract's data on this host: OCR_TESSDATA, else the catalog's first that has any."""
    env = os.environ if env is None else env
    given = env.get(TESSDATA_VAR)
    return Path(given) if given else catalog.find_tessdata()


def check(langs: Sequence[Language], tessdata: Path | None) -> list[Pack]:
    """Each language with whether its data files are in `tessdata` (what the instance will load)."""
    return [Pack(lang, catalog.has_data(lang, tessdata)) for lang in langs]


def osd_present(tessdata: Path | None) -> bool:
    """Whether Tesseract's script detection (lang=auto) has its data."""
    return tessdata is not None and catalog.traineddata(catalog.OSD_DATA, tessdata).is_file()


def missing_packages(langs: Sequence[Language], tessdata: Path | None) -> list[str]:
    """The Debian packs to install so that every language of the set (and lang=auto) can be read."""
    names = [p.package for p in check(langs, tessdata) if not p.present]
    if not osd_present(tessdata):
        names.append(catalog.OSD_PACKAGE)
    return sorted(set(names))


def install_hint(langs: Sequence[Language]) -> str:
    """The command that installs the packs of a set."""
    return f"fleetctl deps --langs {','.join(lang.code for lang in langs)}"


def image_gaps(labels: Mapping[str, str] | None, languages: Sequence[Language]) -> list[Language]:
    """The languages of a set an image does not carry, by its label (an image built before languages has
    none, and carries none)."""
    carried = set(((labels or {}).get(IMAGE_LABEL) or "").split(","))
    return [lang for lang in languages if lang.code not in carried]


def check_image(cfg: FleetConfig, client: Any) -> None:
    """Docker and swarm instances read the image's packs: refuse a set the image does not carry, naming the
    build that does. A missing image is left to the backend's own preflight."""
    try:
        labels = client.images.get(cfg.image).labels
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound and friends: preflight reports it
        return
    missing = image_gaps(labels, fleet_set(cfg))
    if missing:
        codes = ",".join(lang.code for lang in fleet_set(cfg))
        raise LangsError(f"image {cfg.image} does not carry {', '.join(lang.code for lang in missing)} "
                         f"(it has {(labels or {}).get(IMAGE_LABEL) or 'no languages'}): build one with "
                         f"`FLEET_LANGS={codes} make image`")


def save(cfg: FleetConfig) -> None:
    """Remember `up --langs` so that `scale`, `autoscale` and the autoscaler daemon keep the same set."""
    procs.remember(cfg.home / "langs", cfg.langs)


def apply_saved(cfg: FleetConfig, env: Mapping[str, str]) -> FleetConfig:
    """The set `up` last chose, unless FLEET_LANGS says otherwise."""
    saved = procs.remembered(cfg.home / "langs", env, "FLEET_LANGS")
    return cfg.replace(langs=saved) if saved else cfg
