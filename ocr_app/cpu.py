"""What this CPU offers the engine, read once at start-up from /proc/cpuinfo, and what the instance
chose because of it. Never hard-code one machine's findings: the same image runs on CPUs with and
without AVX-512 VNNI/BF16."""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The flags that decide between fp32, int8 (VNNI) and bf16 kernels.
RELEVANT = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The flags of the first CPU listed (all cores of a machine share them); empty when unreadable."""
    try:
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def decision(flags: frozenset[str] | None = None) -> dict[str, Any]:
    """What the CPU offers and what the instance runs; `balanced` is reported, not guessed."""
    flags = cpu_flags() if flags is None else flags
    offered = [f for f in RELEVANT if f in flags]
    int8_fast = "avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags
    reason = ("balanced (int8 QDQ of the small models) is not built in this version: no int8 models are shipped, "
              "and building them at request time is never done")
    if not int8_fast:
        reason += "; this CPU has no VNNI, where int8 kernels gain least"
    return {"offered": offered, "int8_vnni": int8_fast, "bf16": "avx512_bf16" in flags or "amx_bf16" in flags,
            "chosen": {"accurate": "onnxruntime fp32", "fast": "onnxruntime fp32", "balanced": None},
            "balanced_reason": reason}


def log_decision() -> dict[str, Any]:
    found = decision()
    log.info("cpu offers %s; balanced: %s", ", ".join(found["offered"]) or "none of " + ", ".join(RELEVANT),
             found["balanced_reason"])
    return found
