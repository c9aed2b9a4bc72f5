"""What this CPU offers the engine, read once at start-up from /proc/cpuinfo, and what the instance
chose because of it. Never hard-code one machine's findings: the same image runs on CPUs with and
without AVX-512 VNNI/BF16."""
from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The flags that decide between fp32, int8 (VNNI) and bf16 kernels.
RELEVANT = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
# Native bf16: what makes OpenVINO bf16 pay (docs/benchmarks.md).
BF16 = ("avx512_bf16", "amx_bf16")
BALANCED_BF16 = {"runtime": "openvino", "precision": "bf16"}
NO_BF16 = ("this CPU has no native bf16 ({}): nothing measured without it reliably reaches 1.6x accurate within "
           "+1 point of error (OpenVINO f32 1.28x; int8 recognition 1.59-1.65x at +0.6 points even with VNNI, "
           "both models int8 1.54x at +5.9), so balanced is not offered")


def cpuinfo(keys: tuple[str, ...], path: str = "/proc/cpuinfo") -> str | None:
    """The value of the first /proc/cpuinfo line that starts with one of `keys` (the first CPU listed: all
    cores of a machine share them); None when absent or unreadable. The one reader of that file."""
    try:
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.startswith(keys):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


@lru_cache(maxsize=1)
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's flags (x86 "flags", Arm "Features"); empty when unreadable."""
    return frozenset((cpuinfo(("flags", "Features"), path) or "").split())


def flags_from_setting(raw: str) -> frozenset[str] | None:
    """OCR_CPU_FLAGS as a flag set: None when unset (read the CPU), empty for "none"."""
    raw = raw.strip().lower()
    if not raw:
        return None
    return frozenset() if raw == "none" else frozenset(f for f in re.split(r"[\s,]+", raw) if f)


def decision(flags: frozenset[str] | None = None, source: str = "/proc/cpuinfo") -> dict[str, Any]:
    """What the CPU offers and what each built-in profile runs on it; `balanced` only where it pays."""
    flags = cpu_flags() if flags is None else flags
    offered = [f for f in RELEVANT if f in flags]
    bf16 = any(f in flags for f in BF16)
    balanced = dict(BALANCED_BF16) if bf16 else None
    reason = ("this CPU computes bf16 natively ({}): OpenVINO runs the small det/rec models in bf16".format(
        ", ".join(f for f in BF16 if f in flags)) if bf16 else NO_BF16.format(" or ".join(BF16)))
    return {"offered": offered, "source": source,
            "int8_vnni": any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8")), "bf16": bf16,
            "chosen": {"accurate": "onnxruntime fp32", "fast": "onnxruntime fp32",
                       "balanced": f"{balanced['runtime']} {balanced['precision']}" if balanced else None},
            "balanced": balanced, "balanced_reason": reason}


def decide(cpu_flags_setting: str = "") -> dict[str, Any]:
    """The decision for this instance: OCR_CPU_FLAGS when set, else this CPU's flags."""
    forced = flags_from_setting(cpu_flags_setting)
    return decision(forced, "OCR_CPU_FLAGS") if forced is not None else decision()


def log_decision(cpu_flags_setting: str = "") -> dict[str, Any]:
    found = decide(cpu_flags_setting)
    log.info("cpu offers %s (from %s); balanced: %s", ", ".join(found["offered"]) or "none of " + ", ".join(RELEVANT),
             found["source"], found["balanced_reason"])
    return found
