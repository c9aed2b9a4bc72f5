"""Typed instance settings: defaults < OCR_* environment < explicit overrides, validated once."""
from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ALLOCATORS = ("glibc", "glibc-thp", "jemalloc")  # OCR_ALLOCATOR, see ocr_app/engine/allocator.py
ENGINES = ("rapidocr", "paddleocr")  # OCR_ENGINE; paddleocr runs from its own venv (docs/engines.md)


class ConfigError(ValueError):
    """A setting is invalid; the message names the variable so operators can fix it."""


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


@dataclass(frozen=True)
class Settings:
    """Everything an instance needs; field metadata maps each field to its OCR_* variable."""

    host: str = field(default="127.0.0.1", metadata={"env": "OCR_HOST"})
    port: int = field(default=8000, metadata={"env": "OCR_PORT", "min": 1, "max": 65535})
    workers: int = field(default=1, metadata={"env": "OCR_WORKERS", "min": 1, "max": 64})
    threads: int = field(default=1, metadata={"env": "OCR_THREADS", "min": 1, "max": 64})
    http_threads: int = field(default=8, metadata={"env": "OCR_HTTP_THREADS", "min": 2, "max": 256})
    max_queue: int = field(default=64, metadata={"env": "OCR_MAX_QUEUE", "min": 0, "max": 10000})
    max_upload_mb: float = field(default=20.0, metadata={"env": "OCR_MAX_UPLOAD_MB", "min": 0.001})
    max_pixels: int = field(default=40_000_000, metadata={"env": "OCR_MAX_PIXELS", "min": 1})
    det_limit_side: int = field(default=736, metadata={"env": "OCR_DET_LIMIT_SIDE", "min": 32, "max": 4096})
    det_max_side: int = field(default=1600, metadata={"env": "OCR_DET_MAX_SIDE", "min": 64, "max": 8192})
    ort_arena: bool = field(default=False, metadata={"env": "OCR_ORT_ARENA"})
    # A stage's own ONNX Runtime arena, kept from page to page and emptied once the profile has run no page
    # for OCR_ARENA_IDLE_SECONDS (engine.sessions.IdleRelease); OCR_ORT_ARENA=1 (one arena shared by every
    # stage) overrides both.
    det_arena: bool = field(default=True, metadata={"env": "OCR_DET_ARENA"})
    rec_arena: bool = field(default=True, metadata={"env": "OCR_REC_ARENA"})
    # Seconds a profile runs no page before its own arenas are emptied; 0 = after every page.
    arena_idle_seconds: float = field(default=0.5, metadata={"env": "OCR_ARENA_IDLE_SECONDS", "min": 0})
    # Detection inputs above this many pixels run with freed tensors unmapped at once (engine.allocator.tight_heap),
    # on a second detection session without an arena; 0 = never.
    det_tight_pixels: int = field(default=2_000_000, metadata={"env": "OCR_DET_TIGHT_PIXELS", "min": 0})
    allocator: str = field(default="glibc", metadata={"env": "OCR_ALLOCATOR"})
    profile: str = field(default="accurate", metadata={"env": "OCR_PROFILE"})
    profiles: str = field(default="", metadata={"env": "OCR_PROFILES"})  # enabled, comma list; "" = all
    model_dirs: str = field(default="", metadata={"env": "OCR_MODEL_DIRS"})  # own models, one folder each
    # The CPU flags the engine decision reads; "" = this CPU's (/proc/cpuinfo). Set to pin a fleet of mixed
    # machines to one choice, or to test the other branch ("none" = no relevant flag).
    cpu_flags: str = field(default="", metadata={"env": "OCR_CPU_FLAGS"})
    max_pages: int = field(default=50, metadata={"env": "OCR_MAX_PAGES", "min": 1, "max": 10000})
    max_batch: int = field(default=16, metadata={"env": "OCR_MAX_BATCH", "min": 1, "max": 1000})
    pdf_dpi: int = field(default=200, metadata={"env": "OCR_PDF_DPI", "min": 36, "max": 1200})
    pdf_max_dpi: int = field(default=400, metadata={"env": "OCR_PDF_MAX_DPI", "min": 36, "max": 1200})
    pdf_max_page_pt: float = field(default=14400.0, metadata={"env": "OCR_PDF_MAX_PAGE_PT", "min": 72})
    pdf_render_seconds: float = field(default=10.0, metadata={"env": "OCR_PDF_RENDER_SECONDS", "min": 0.001})
    # format=pdf: the searchable PDF's size, and the words its text layer may hold (checked before rendering).
    pdf_max_output_mb: float = field(default=100.0, metadata={"env": "OCR_PDF_MAX_OUTPUT_MB", "min": 0.001})
    pdf_max_words: int = field(default=50_000, metadata={"env": "OCR_PDF_MAX_WORDS", "min": 1})
    # May hold a password (a fleet of several hosts: docs/multihost.md), so it is never shown.
    redis_url: str = field(default="redis://127.0.0.1:6379/0", metadata={"env": "OCR_REDIS_URL"}, repr=False)
    redis_timeout: float = field(default=0.25, metadata={"env": "OCR_REDIS_TIMEOUT", "min": 0.001})
    cache_ttl: int = field(default=3600, metadata={"env": "OCR_CACHE_TTL", "min": 1})
    local_cache_mb: float = field(default=16.0, metadata={"env": "OCR_LOCAL_CACHE_MB", "min": 0})
    consul_addr: str = field(default="127.0.0.1:8500", metadata={"env": "OCR_CONSUL_ADDR"})
    # The ACL token registration sends (a fleet of several hosts has ACLs: docs/multihost.md); "": none.
    consul_token: str = field(default="", metadata={"env": "OCR_CONSUL_TOKEN"}, repr=False)
    service_name: str = field(default="ocr", metadata={"env": "OCR_SERVICE_NAME"})
    instance_id: str = field(default="", metadata={"env": "OCR_INSTANCE_ID"})
    advertise_host: str = field(default="", metadata={"env": "OCR_ADVERTISE_HOST"})
    advertise_port: int = field(default=0, metadata={"env": "OCR_ADVERTISE_PORT", "min": 0, "max": 65535})
    drain_seconds: float = field(default=3.0, metadata={"env": "OCR_DRAIN_SECONDS", "min": 0})
    graceful_timeout: int = field(default=90, metadata={"env": "OCR_GRACEFUL_TIMEOUT", "min": 1})
    timeout: int = field(default=120, metadata={"env": "OCR_TIMEOUT", "min": 1})
    max_requests: int = field(default=0, metadata={"env": "OCR_MAX_REQUESTS", "min": 0})
    max_requests_jitter: int = field(default=0, metadata={"env": "OCR_MAX_REQUESTS_JITTER", "min": 0})
    runtime_dir: str = field(default="", metadata={"env": "OCR_RUNTIME_DIR"})
    log_level: str = field(default="info", metadata={"env": "OCR_LOG_LEVEL"})
    log_format: str = field(default="text", metadata={"env": "OCR_LOG_FORMAT"})
    warmup: bool = field(default=True, metadata={"env": "OCR_WARMUP"})
    # Decoded images a worker holds at once (decode through recognition); the rest wait with their bytes only.
    decode_slots: int = field(default=1, metadata={"env": "OCR_DECODE_SLOTS", "min": 1, "max": 64})
    # Request bodies above this many MiB are read only while the worker holds fewer than OCR_DECODE_SLOTS of
    # them; the others wait unread in the gateway's buffer (service.ocr_service.UploadSlots). 0 = read every
    # body at once.
    read_ahead_mb: float = field(default=4.0, metadata={"env": "OCR_READ_AHEAD_MB", "min": 0})
    orientation: str = field(default="auto", metadata={"env": "OCR_ORIENTATION"})  # auto | off
    # A turned image whose short side is at most this is also read as sent, and the better-read of the two
    # kept: the orientation model sees only a few glyphs of a strip (engine.orientation.read_upright). 0 = never.
    orientation_check_side: int = field(default=400, metadata={"env": "OCR_ORIENTATION_CHECK_SIDE", "min": 0})
    # auto: the per-line direction classifier runs only when page orientation is off (models/profiles.py)
    line_classifier: str = field(default="auto", metadata={"env": "OCR_LINE_CLASSIFIER"})  # auto | on | off
    job_ttl: int = field(default=3600, metadata={"env": "OCR_JOB_TTL", "min": 1})
    job_consumers: int = field(default=1, metadata={"env": "OCR_JOB_CONSUMERS", "min": 0, "max": 16})
    job_claim_seconds: float = field(default=30.0, metadata={"env": "OCR_JOB_CLAIM_SECONDS", "min": 0.5})
    job_max_pending: int = field(default=1000, metadata={"env": "OCR_JOB_MAX_PENDING", "min": 1})
    gateway_url: str = field(default="", metadata={"env": "OCR_GATEWAY_URL"})
    fanout_pages: int = field(default=4, metadata={"env": "OCR_FANOUT_PAGES", "min": 1, "max": 64})
    fanout_inflight: int = field(default=8, metadata={"env": "OCR_FANOUT_INFLIGHT", "min": 1, "max": 256})
    engine: str = field(default="rapidocr", metadata={"env": "OCR_ENGINE"})
    # Languages (ocr_app/models/languages.py): the default lang= of requests that send none ("" = the
    # profile's own languages, as before languages; "auto" = find the script); Tesseract's data folder
    # ("" = found at start-up among Debian's); language sets a worker keeps loaded; time and pixels per page.
    lang: str = field(default="", metadata={"env": "OCR_LANG"})
    tessdata: str = field(default="", metadata={"env": "OCR_TESSDATA"})
    langs_loaded: int = field(default=3, metadata={"env": "OCR_LANGS_LOADED", "min": 1, "max": 64})
    tess_timeout_ms: int = field(default=20_000, metadata={"env": "OCR_TESS_TIMEOUT_MS", "min": 1})
    tess_max_pixels: int = field(default=6_000_000, metadata={"env": "OCR_TESS_MAX_PIXELS", "min": 10_000})
    paddle_model_dir: str = field(default="", metadata={"env": "OCR_PADDLE_MODEL_DIR"})  # own det/ + rec/ folders
    paddle_home: str = field(default="", metadata={"env": "OCR_PADDLE_HOME"})  # "": ~/.cache/ocr-fleet/paddle

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from OCR_* variables, then apply overrides; fail naming the variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            if name in env:
                values[f.name] = _convert(name, env[name], f.type)
        values.update(overrides)
        return cls(**values).finalize()

    def finalize(self) -> Settings:
        """Fill derived defaults and check bounds once, so the app never sees a bad value."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            if lo is not None and value < lo or hi is not None and value > hi:
                bounds = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
                raise ConfigError(f"{f.metadata['env']}={value} must be {bounds}")
        if self.det_max_side < self.det_limit_side:
            raise ConfigError(
                f"OCR_DET_MAX_SIDE={self.det_max_side} must be >= OCR_DET_LIMIT_SIDE={self.det_limit_side}"
            )
        if self.orientation not in ("auto", "off"):
            raise ConfigError(f"OCR_ORIENTATION={self.orientation!r} must be auto or off")
        if self.engine not in ENGINES:
            raise ConfigError(f"OCR_ENGINE={self.engine!r} is not one of {', '.join(ENGINES)}")
        if self.paddle_model_dir and self.engine != "paddleocr":
            raise ConfigError("OCR_PADDLE_MODEL_DIR needs OCR_ENGINE=paddleocr")
        if self.model_dirs and self.engine == "paddleocr":
            raise ConfigError("OCR_MODEL_DIRS holds rapidocr model folders; with OCR_ENGINE=paddleocr serve "
                              "your own PaddleOCR export with OCR_PADDLE_MODEL_DIR")
        if self.line_classifier not in ("auto", "on", "off"):
            raise ConfigError(f"OCR_LINE_CLASSIFIER={self.line_classifier!r} must be auto, on or off")
        if self.allocator not in ALLOCATORS:
            raise ConfigError(f"OCR_ALLOCATOR={self.allocator!r} is not one of {', '.join(ALLOCATORS)}")
        if self.pdf_dpi > self.pdf_max_dpi:
            raise ConfigError(f"OCR_PDF_DPI={self.pdf_dpi} must be <= OCR_PDF_MAX_DPI={self.pdf_max_dpi}")
        if self.log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigError(f"OCR_LOG_LEVEL={self.log_level!r} is not a log level")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"OCR_LOG_FORMAT={self.log_format!r} must be text or json")
        if self.consul_token and not re.fullmatch(r"[\x21-\x7e]{1,256}", self.consul_token):
            # Never echoed: it is a secret, and a bad one would otherwise reach a header (and its error).
            raise ConfigError("OCR_CONSUL_TOKEN is not a Consul token (printable, no spaces, at most 256 characters)")
        changes: dict[str, Any] = {}
        if not self.instance_id:
            changes["instance_id"] = f"ocr-{socket.gethostname()}-{self.port}"
        if not self.advertise_host:
            changes["advertise_host"] = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if not self.advertise_port:
            changes["advertise_port"] = self.port
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def pdf_max_output_bytes(self) -> int:
        return int(self.pdf_max_output_mb * 1024 * 1024)

    @property
    def read_ahead_bytes(self) -> int:
        return int(self.read_ahead_mb * 1024 * 1024)

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _convert(name: str, raw: str, type_name: Any) -> Any:
    converters: dict[str, Callable[[str], Any]] = {
        "int": int, "float": float, "bool": _parse_bool, "str": str,
    }
    convert = converters[str(type_name)]
    try:
        return convert(raw.strip()) if type_name != "str" else raw
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {type_name}") from None
