"""The profiles an instance runs: planned from the settings, checked in full, and `python -m` to check them.

Light on purpose: the gunicorn master imports it (preflight) and must carry neither numpy nor ONNX Runtime.
"""
from __future__ import annotations

import os
import subprocess
import sys

from ocr_app.config import ConfigError, Settings
from ocr_app.models import cpu, paddle_models
from ocr_app.models.profiles import Profile, ProfileError, builtin_plan, enabled_profiles, split_list, validate


def plan(settings: Settings) -> dict[str, Profile]:
    """The enabled profiles of OCR_ENGINE's pipeline in order, default first; raises naming the setting at
    fault. Builds paths only (no model is loaded), so it is cheap enough for the gunicorn master."""
    if settings.engine == "paddleocr":
        return enabled_profiles(settings, paddle_models.plan(settings))
    return builtin_plan(settings)


def check_all(settings: Settings) -> dict[str, Profile]:
    """Plan and fully validate every enabled profile (loads and drops each model once)."""
    # Imported here, not above: the gunicorn master imports this module for `preflight`, and the sessions'
    # numpy must first load in the workers, after ops.startup has set what it reads from the environment.
    from ocr_app.engine.sessions import load_sessions

    enabled = plan(settings)
    for profile in enabled.values():
        if profile.engine == "paddleocr":
            paddle_models.validate(profile)
        else:
            validate(profile, load_sessions(profile, None))
    return enabled


def preflight(settings: Settings) -> None:
    """Refuse to start on a bad profile setting, before any worker forks.

    Names are checked here; own models (OCR_MODEL_DIRS) are loaded and checked in a child process,
    so the gunicorn master never carries ONNX Runtime in its memory.
    """
    plan(settings)
    if not split_list(settings.model_dirs) and not settings.paddle_model_dir:
        return
    env = {**os.environ, "OCR_MODEL_DIRS": settings.model_dirs, "OCR_PROFILES": settings.profiles,
           "OCR_PROFILE": settings.profile, "OCR_ENGINE": settings.engine,
           "OCR_PADDLE_MODEL_DIR": settings.paddle_model_dir}
    proc = subprocess.run([sys.executable, "-m", "ocr_app.engine.catalog"], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["the profile check failed"]
        raise ProfileError(lines[-1].removeprefix("error: "))


def main(argv: list[str] | None = None) -> int:
    """`python -m ocr_app.engine.catalog`: validate the configured profiles, as the instance does at start-up."""
    import argparse

    argparse.ArgumentParser(
        prog="python -m ocr_app.engine.catalog",
        description="Check every enabled profile (OCR_PROFILES, OCR_PROFILE, OCR_MODEL_DIRS): files exist and load, "
                    "dictionaries fit their recognizers. Exit 0 and list them with what the CPU decision chose "
                    "for `balanced` (from /proc/cpuinfo, or OCR_CPU_FLAGS), or exit 2 naming the file at fault.",
    ).parse_args(argv)
    try:
        settings = Settings.from_env()
        if settings.engine == "paddleocr":  # this process's own set-up, before paddlex is first imported
            os.environ.update(paddle_models.offline_environment(settings))
        enabled = check_all(settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for profile in enabled.values():
        print(f"{profile.name}: {profile.models} ({profile.runtime}, {profile.precision})")
    choice = cpu.decide(settings.cpu_flags)
    print(f"cpu ({choice['source']}): {', '.join(choice['offered']) or 'none of the relevant flags'}; "
          f"balanced: {choice['chosen']['balanced'] or 'not offered'} ({choice['balanced_reason']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
