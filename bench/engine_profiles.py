"""The engine section of the bench: every profile (and `accurate`'s speed-ups) in one run, on the hard set.

Each variant is its own process, started with the environment an instance would give it (so a preloaded
allocator or a glibc tunable is really in place), running the instance's own path (the service's page reader:
decode, page orientation, recognize, reading order, trim). The variants take turns round by round, so a busy
neighbour on a shared machine slows them alike.
Reported per variant: throughput and its ratio to `accurate`, CPU seconds, peak RSS (the kernel's high
water mark), and character error against the committed truth with and without reading order.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import hardset, score
from .engine_limit import instance_recognizer

# label -> the OCR_* settings an instance would run it with; "baseline" is the settings before the
# engine's arenas (glibc, no ONNX Runtime arena, no tight detection) and before the line classifier
# was dropped, pinned.
BASELINE = {"OCR_PROFILE": "accurate", "OCR_ALLOCATOR": "glibc", "OCR_ORT_ARENA": "0", "OCR_REC_ARENA": "0",
            "OCR_DET_ARENA": "0", "OCR_DET_TIGHT_PIXELS": "0"}
VARIANTS: dict[str, dict[str, str]] = {
    "baseline (pinned: glibc, no arena, line classifier)": {**BASELINE, "OCR_LINE_CLASSIFIER": "on"},
    "accurate": {"OCR_PROFILE": "accurate"},
    "accurate without detection arena": {"OCR_PROFILE": "accurate", "OCR_DET_ARENA": "0"},
    "accurate without the engine's arenas": {"OCR_PROFILE": "accurate", "OCR_REC_ARENA": "0", "OCR_DET_ARENA": "0",
                                             "OCR_DET_TIGHT_PIXELS": "0"},
    "fast": {"OCR_PROFILE": "fast"},
    # only where the CPU decision offers it (ocr_app/models/cpu.py); elsewhere the table says why not
    "balanced": {"OCR_PROFILE": "balanced"},
    # the second engine (OCR_ENGINE=paddleocr), run from its own venv on the same pages
    "paddleocr accurate": {"OCR_ENGINE": "paddleocr", "OCR_PROFILE": "accurate"},
    "paddleocr fast": {"OCR_ENGINE": "paddleocr", "OCR_PROFILE": "fast"},
}
REFERENCE = "accurate"
# `--engines`: the two engines side by side, profile by profile
ENGINE_VARIANTS = {label: VARIANTS[label] for label in ("accurate", "paddleocr accurate", "fast", "paddleocr fast")}


@dataclass
class Child:
    label: str
    proc: subprocess.Popen[str]

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"engine variant {self.label!r} exited (code {self.proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"engine variant {self.label!r}: {reply['error']}")
        return reply


def child_env(settings: Mapping[str, str]) -> dict[str, str]:
    """An instance's environment for these settings, including what its allocator needs at start."""
    from ocr_app.config import Settings
    from ocr_app.engine.allocator import allocator_env
    from ocr_app.ops.startup import engine_environment

    env = {k: v for k, v in os.environ.items() if not k.startswith("OCR_")}
    env.update(settings)
    env.update(OMP_NUM_THREADS="1", OCR_THREADS="1", OCR_LOG_LEVEL="warning")
    env.update(allocator_env(Settings.from_env(env).allocator, env))
    env.update(engine_environment(Settings.from_env(env)))
    return env


def start(label: str, settings: Mapping[str, str]) -> Child:
    proc = subprocess.Popen([python_for(settings), "-m", "bench.engine_profiles", "--child"],
                            env=child_env(settings), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return Child(label, proc)


def python_for(settings: Mapping[str, str]) -> str:
    """The interpreter an instance of these settings runs under: the paddleocr engine has a venv of its own."""
    from fleetctl import config as fleet_config
    from fleetctl.backends.engines import instance_python

    engine = settings.get("OCR_ENGINE", "rapidocr")
    return instance_python(fleet_config.load({}).replace(engine=engine))


def child_main() -> int:
    """Serve requests on stdin: load, then run rounds over image files; answers on stdout (JSON lines)."""
    import resource

    from ocr_app.config import Settings

    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write into the protocol
    recognize = instance_recognizer(Settings.from_env())  # the instance's engine, whichever OCR_ENGINE
    for line in sys.stdin:
        request = json.loads(line)
        try:
            files = [Path(p) for p in request["files"]]
            answers: dict[str, list[str]] = {}
            wall = cpu = 0.0
            for path in files:
                data = path.read_bytes()
                t, c = time.perf_counter(), time.process_time()
                answers[path.stem] = recognize(data)  # decode, then the service's page reader, then trim
                wall += time.perf_counter() - t
                cpu += time.process_time() - c
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            reply = {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": round(peak_kib / 1024),
                     "answers": answers if request.get("answers") else {}}
        except Exception as exc:  # report, never hang the parent
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply, ensure_ascii=False) + "\n")
        out.flush()
    return 0


def measure(pages: int, rounds: int, variants: Mapping[str, Mapping[str, str]] = VARIANTS,
            work: Path | None = None) -> dict[str, Any]:
    """Run every variant `rounds` times over the first `pages` pages of the hard set, taking turns."""
    from ocr_app.models import cpu

    decided = cpu.decision()
    if not decided["balanced"]:
        variants = {label: v for label, v in variants.items() if v.get("OCR_PROFILE") != "balanced"}
    work = work or Path(tempfile.mkdtemp(prefix="engine-profiles-"))
    generated = hardset.generate(work / "hard", pages)
    truth = hardset.load_truth()
    files = [str(work / "hard" / f"{p.name}.jpg") for p in generated]
    load_before = os.getloadavg()[0]
    children = {label: start(label, settings) for label, settings in variants.items()}
    totals = {label: {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mib": 0} for label in variants}
    answers: dict[str, dict[str, list[str]]] = {}
    try:
        for r in range(rounds):
            for label, child in children.items():
                reply = child.ask({"files": files, "answers": r == 0})
                totals[label]["wall_s"] += reply["wall_s"]
                totals[label]["cpu_s"] += reply["cpu_s"]
                totals[label]["peak_rss_mib"] = max(totals[label]["peak_rss_mib"], reply["peak_rss_mib"])
                if r == 0:
                    answers[label] = reply["answers"]
    finally:
        for child in children.values():
            if child.proc.stdin:
                child.proc.stdin.close()
            child.proc.wait(timeout=60)
    rows = []
    images = rounds * len(files)
    ref = totals[REFERENCE]
    for label, t in totals.items():
        got = answers[label]
        ordered = [score.cer_ordered(truth[p.name], got[p.name]) for p in generated]
        by_line = [score.cer_lines(truth[p.name], got[p.name]) for p in generated]
        rows.append({
            "variant": label, "settings": dict(variants[label]), "img_s": images / t["wall_s"],
            "ratio_wall": ref["wall_s"] / t["wall_s"], "cpu_s_per_img": t["cpu_s"] / images,
            "ratio_cpu": ref["cpu_s"] / t["cpu_s"], "peak_rss_mib": t["peak_rss_mib"],
            "cer_ordered": sum(ordered) / len(ordered), "cer_lines": sum(by_line) / len(by_line),
            "cer_lines_by_damage": {p.damage: round(c, 4) for p, c in zip(generated, by_line, strict=True)},
            "same_text_as_accurate": got == answers[REFERENCE],
        })
    return {"pages": len(files), "rounds": rounds, "cpu": decided, "rows": rows,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def table(result: dict[str, Any]) -> str:
    """The engine table as Markdown."""
    head = ("| variant | img/s | × accurate (wall) | × accurate (CPU s) | peak RSS MiB | CER ordered | "
            "CER lines matched | same text as accurate |\n|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['variant']} | {r['img_s']:.3f} | {r['ratio_wall']:.2f} | {r['ratio_cpu']:.2f} | {r['peak_rss_mib']} | "
        f"{100 * r['cer_ordered']:.1f}% | {100 * r['cer_lines']:.1f}% | "
        f"{'yes' if r['same_text_as_accurate'] else 'no'} |\n"
        for r in result["rows"])
    c = result["cpu"]
    damages = sorted({d for r in result["rows"] for d in r["cer_lines_by_damage"]},
                     key=lambda d: hardset.DAMAGE.index(d))
    by_damage = ("\n| variant | " + " | ".join(damages) + " |\n|---|" + "---|" * len(damages) + "\n" + "".join(
        f"| {r['variant']} | " + " | ".join(f"{100 * r['cer_lines_by_damage'][d]:.1f}%" for d in damages) + " |\n"
        for r in result["rows"]))
    load = " → ".join(str(x) for x in result.get("load_average", ())) or "not recorded"
    base = next((r for r in result["rows"] if r["variant"].startswith("baseline")), None)
    versus = "" if base is None else (
        f"`accurate` against the pinned baseline: {1 / base['ratio_cpu']:.2f}× in CPU seconds, "
        f"{1 / base['ratio_wall']:.2f}× in wall time.\n")
    return (f"{result['pages']} hard pages × {result['rounds']} rounds, one process × 1 thread per variant, "
            f"variants taking turns; load average {load} (1 min, start and end, {os.cpu_count()} CPUs)."
            f"\n\n{head}{body}\n{versus}\nCER of lines matched to lines, by damage:\n"
            f"{by_damage}\n"
            f"CPU offers: {', '.join(c['offered']) or 'none of the relevant flags'}. Chosen: accurate and fast "
            f"run ONNX Runtime fp32; balanced: {c['chosen']['balanced'] or 'not offered'}, because "
            f"{c['balanced_reason']}.\n")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.engine_profiles [--quick]`: the engine table on its own."""
    parser = argparse.ArgumentParser(prog="python -m bench.engine_profiles", description=main.__doc__)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="8 pages x 2 rounds instead of 16 x 3")
    parser.add_argument("--engines", action="store_true",
                        help="only the two engines side by side (rapidocr and paddleocr, accurate and fast)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.child:
        return child_main()
    variants = ENGINE_VARIANTS if args.engines else VARIANTS
    result = measure(8, 2, variants) if args.quick else measure(16, 3, variants)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
