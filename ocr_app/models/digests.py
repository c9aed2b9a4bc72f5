"""What names answers in the cache: a profile's model bytes, settings, pipeline version and limits, and the
one namespace of a whole instance that the gateway's cache keys on."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping

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


def instance_namespace(profiles: Mapping[str, Profile], s: Settings) -> str:
    """One digest of every enabled profile's `cache_namespace`, announced in Consul (cache_ns) for the
    gateway's cache: a change to any profile's models or settings is a new key."""
    h = hashlib.sha256()
    for name, profile in sorted(profiles.items()):
        h.update(f"|{name}={cache_namespace(profile, s)}".encode())
    return h.hexdigest()[:32]
