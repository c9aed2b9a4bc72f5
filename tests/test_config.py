"""Settings: defaults < environment < overrides, validated once with messages that name the variable."""
from __future__ import annotations

import pytest

from ocr_app.config import ConfigError, Settings


def test_defaults_and_derived_values() -> None:
    s = Settings.from_env({})
    assert (s.workers, s.threads, s.max_upload_mb, s.max_pixels, s.cache_ttl) == (1, 1, 20.0, 40_000_000, 3600)
    assert s.ort_arena is False
    assert s.advertise_host == "127.0.0.1" and s.advertise_port == s.port == 8000
    assert s.instance_id.startswith("ocr-") and s.instance_id.endswith("-8000")
    assert s.max_upload_bytes == 20 * 1024 * 1024


def test_environment_then_overrides() -> None:
    env = {"OCR_PORT": "9001", "OCR_THREADS": "2", "OCR_ORT_ARENA": "yes", "OCR_HOST": "0.0.0.0"}
    s = Settings.from_env(env, threads=3)
    assert (s.port, s.threads, s.ort_arena) == (9001, 3, True)
    assert s.advertise_host == "127.0.0.1", "a wildcard bind is not an address others can dial"


@pytest.mark.parametrize("env, message", [
    ({"OCR_PORT": "eighty"}, "OCR_PORT='eighty' is not a valid int"),
    ({"OCR_WORKERS": "0"}, "OCR_WORKERS=0 must be between 1 and 64"),
    ({"OCR_ORT_ARENA": "maybe"}, "OCR_ORT_ARENA='maybe' is not a valid bool"),
    ({"OCR_DET_MAX_SIDE": "500"}, "OCR_DET_MAX_SIDE=500 must be >= OCR_DET_LIMIT_SIDE=736"),
    ({"OCR_LOG_LEVEL": "loud"}, "OCR_LOG_LEVEL='loud' is not a log level"),
    ({"OCR_READ_AHEAD_MB": "-1"}, "OCR_READ_AHEAD_MB=-1.0 must be at least 0"),
])
def test_bad_values_fail_fast_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert message in str(err.value)


@pytest.mark.parametrize("bad", ["has space", "line\nbreak", "tab\there", "x" * 257, "\x00", "é"])
def test_a_hostile_consul_token_is_refused_and_never_echoed(bad: str) -> None:
    with pytest.raises(ConfigError, match="OCR_CONSUL_TOKEN") as err:
        Settings.from_env({"OCR_CONSUL_TOKEN": bad})
    assert bad not in str(err.value)


def test_secrets_are_kept_out_of_the_settings_repr() -> None:
    token, url = "0b6f7c3e-5a1d-4e2f-9c8b-7a6d5e4f3a2b", "redis://:s3cret-pass@10.0.0.1:6379/0"
    s = Settings.from_env({"OCR_CONSUL_TOKEN": token, "OCR_REDIS_URL": url})
    assert (s.consul_token, s.redis_url) == (token, url)
    assert token not in repr(s) and "s3cret-pass" not in repr(s)
