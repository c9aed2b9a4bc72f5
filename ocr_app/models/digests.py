"""What names a profile's answers in the cache: its model bytes, settings, pipeline version and limits."""
from __future__ import annotations

import hashlib

from ocr_app.config import Settings
from ocr_app.digest import sha256_file
from ocr_app.models.profiles import Profile
from ocr_app.pipeline import PIPELINE_VERSION, orientation_key


def profile_digest(profile: Profile) -> str:
    """A short digest of the model bytes and settings, so a model change never serves stale cache entries."""
    h = hashlib.sha256(f"{profile.name}|{sorted(profile.det_params.items())}".encode())
    if (profile.runtime, profile.precision) != ("onnxruntime", "fp32") or profile.rec_params:
        h.update(f"|{profile.runtime}|{profile.precision}|{sorted(profile.rec_params.items())}".encode())
    for path in profile.files():
        h.update(sha256_file(path).encode())
    return h.hexdigest()[:16]


def cache_namespace(profile: Profile, s: Settings) -> str:
    """The engine, profile, models, pipeline, detection limits and page orientation: all of an answer's
    inputs besides the image bytes."""
    return (f"{profile.name}:{profile.engine}:{profile_digest(profile)}:p{PIPELINE_VERSION}"
            f":d{s.det_limit_side}-{s.det_max_side}:o{orientation_key(s.orientation, s.orientation_check_side)}")
