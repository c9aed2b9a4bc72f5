"""report.md from results.json: the summary ratios first, then each step's tables, plots and misses."""
from __future__ import annotations

from typing import Any

from .summary import check_targets, levels

METHOD = """\
- **Images.** {images}. The engine limit runs the whole set; ab posts one file per run, so every fleet and
  peer level posts the *load image* `{load}`: the image whose single-process engine time is nearest the
  set's mean. The engine limit is measured on that same image too, and `cold_over_limit` divides by it,
  so both sides of the ratio do the same work.
- **Cold** requests carry `Cache-Control: no-cache` and always run the engine; **warm** runs follow one
  priming request and a check that the next answer is a cache hit (`X-Cache: HIT`).
- **ab** runs as `ab -r -s {ab_timeout} [-t T] -n N -c C -p IMAGE -T TYPE -e CSV URL`; mean and median come from
  ab's *Total* connection-time row, p95/p99 from its `-e` CSV. A cold request costs seconds of CPU, so
  cold levels send one wave of requests per client (ab needs n ≥ c){cold_extra}, bounded by
  `-t {cold_t:g}` s; warm levels send about 80 requests per client ({warm_min} to {warm_max}) bounded by
  `-t {warm_t:g}` s. The *done* column shows what each level sent. A time-bounded run counts only what
  finished; the bench then waits for the servers to go idle before the next level.
- **Failures.** ab calls a body whose length differs from the first a *Length* failure; OCR answers differ
  by nature, so those are listed but are not failures. *Failed* = Connect + Receive + Exceptions (+ the
  requests of an ab run aborted by its socket timeout); *non-2xx* (e.g. 503 when a queue is full) is
  counted apart. Throughput is 2xx answers per second: a fast 503 is not work done.
- **CPU.** Each level records cores busy by the instances (*srv*), by nginx and Redis (*infra*), by ab
  (*ab*), and by anything else on the machine (*other*: neighbours, the bench itself).
"""


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_f(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _level_rows(rows: list[dict[str, Any]], with_instances: bool) -> list[list[Any]]:
    out = []
    for lv in sorted(rows, key=lambda r: (r.get("instances", 0), r["concurrency"])):
        a, cpu = lv["ab"], lv.get("cpu") or {}
        codes = {k: v for k, v in (lv.get("gateway_status") or {}).items() if not k.startswith("2")}
        flags = " ".join(f for f, on in (("time-limited", a.get("time_limited")),
                                          (f"aborted: {a.get('aborted')}", a.get("aborted")),
                                          ("gateway: " + ", ".join(f"{k}×{v}" for k, v in codes.items()), codes))
                         if on)
        row = [lv["concurrency"], a["complete"], a["ok_per_s"], a.get("mean_ms"), a.get("median_ms"),
               a.get("p95_ms"), a.get("p99_ms"), a["failed_real"], a["non_2xx"], a["failed_length"],
               f"{_f(cpu.get('server_cores'))}/{_f(cpu.get('infra_cores'))}/{_f(cpu.get('client_cores'))}"
               f"/{_f(cpu.get('other_cores'))}", flags]
        out.append(([lv["instances"]] if with_instances else []) + row)
    return out


LEVEL_HEADER = ["c", "done", "2xx/s", "mean ms", "median ms", "p95 ms", "p99 ms", "failed", "non-2xx",
                "length (not failures)", "cores srv/infra/ab/other", "notes"]


NOISY_CORES = 0.25
SPEED_SPREAD = 1.2


def _machine(m: dict[str, Any], results: dict[str, Any]) -> str:
    v, s = m.get("versions") or {}, results.get("summary") or {}
    env = ", ".join(f"{k}={val}" for k, val in (m.get("fleet_env") or {}).items()) or "defaults"
    return (f"- CPU: {m.get('cpu')}; {m.get('cores_usable')} usable cores; {m.get('memory_gib')} GiB RAM; "
            f"{m.get('os')}; Python {m.get('python')}\n"
            f"- Cores busy with other work (neighbours) during measurements: mean "
            f"{_f(s.get('noise_other_cores_mean'))}, max {_f(s.get('noise_other_cores_max'))}; load average at "
            f"start / end: {m.get('load_avg_start')} / {results.get('load_avg_end')} (runnable threads, the "
            "bench's own included)\n"
            f"- Versions: {', '.join(f'{k} {val}' for k, val in v.items())}\n"
            f"- Commit: `{m.get('commit')}`; fleet settings: {env}\n"
            f"- Run: {results.get('mode')} plan, started {results.get('started')}, "
            f"{_f(results.get('duration_s'), 0)} s; fleet: {results.get('fleet_note') or '–'}\n")


def _summary(s: dict[str, Any]) -> str:
    by_c = ", ".join(f"c={c}: {_f(r)}" for c, r in (s.get("fleet_over_peer_by_c") or {}).items()) or "–"
    rows = [
        ["engine limit (load image, K = cores)", f"{_f(s.get('engine_limit_img_s'), 3)} img/s"],
        ["engine limit (whole image set, best K)", f"{_f(s.get('engine_limit_set_img_s'), 3)} img/s"],
        [f"fleet cold throughput at {s.get('all_cores_instances')} instance(s) (all cores)",
         f"{_f(s.get('fleet_cold_img_s'), 3)} img/s at c={s.get('fleet_cold_at_c')}"],
        ["**fleet cold / engine limit**", f"**{_f(s.get('cold_over_limit'), 3)}**"],
        ["↳ the same per CPU-second each side got (net of neighbours)",
         f"{_f(s.get('cold_over_limit_per_core'), 3)} ({_f(s.get('fleet_cold_img_per_core_s'), 3)} vs "
         f"{_f(s.get('engine_img_per_core_s'), 3)} img per core-second)"],
        ["rapidocr-api best throughput (c ≥ 4)", f"{_f(s.get('peer_req_s'), 3)} req/s at c={s.get('peer_at_c')}"],
        ["**fleet / rapidocr-api at equal concurrency (worst)**", f"**{_f(s.get('fleet_over_peer'), 3)}** ({by_c})"],
        ["↳ the same per CPU-second each side got (worst)", _f(s.get("fleet_over_peer_per_core"), 3)],
        ["**warm req/s at c=50**", f"**{_f(s.get('warm_req_s_c50'), 1)}**"],
        ["warm p99 at c=50", f"{_f(s.get('warm_p99_ms_c50'), 1)} ms"],
        ["**failed + non-2xx, whole fleet matrix**",
         f"**{s.get('failed_total')}** (failed {s.get('failed_real_total')}, non-2xx {s.get('non_2xx_total')};"
         f" of {s.get('requests_total')} requests; Length mismatches {s.get('length_mismatch_total')}, "
         f"not failures)"],
        ["**RSS per instance, max**", f"**{_f(s.get('rss_mb_max'), 1)} MiB**"],
    ]
    return _table(["ratio / figure", "value"], rows)


def _targets(checks: list[dict[str, Any]]) -> str:
    mark = {True: "met", False: "**MISSED**", None: "not measured"}
    return _table(["target", "bound", "measured", "result", "gap"],
                  [[c["label"], c["target"], c["value"], mark[c["met"]], c["gap"]] for c in checks])


def _engine(e: dict[str, Any]) -> str:
    if not e:
        return "_not run_\n"
    rows = [[r["processes"], r["label"], r["images"], r["wall_s"], r["img_per_s"],
             f"{_f((r.get('cpu') or {}).get('engine_cores'))}/{_f((r.get('cpu') or {}).get('other_cores'))}"]
            for r in e.get("runs", [])]
    out = _table(["K processes", "images", "jobs", "wall s", "img/s", "cores engine/other"], rows)
    sets = [r for r in e.get("runs", []) if r["label"] == "set"]
    single = min(sets, key=lambda r: r["processes"]) if sets else None
    if single:
        out += (f"\nMean engine time per image with {single['processes']} process(es) running "
                "(decode + recognize):\n\n")
        out += _table(["image", "seconds"], [[k, v] for k, v in single["per_image_mean_s"].items()])
    return out


def _peer(p: dict[str, Any], summary: dict[str, Any]) -> str:
    if not p:
        return "_not run_\n"
    if p.get("error"):
        return f"The peer could not be run: `{p['error']}`\n"
    info = p.get("info") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (info.get("versions") or {}).items())
    models = p.get("model_log") or {}
    out = (f"`rapidocr_api -ip 127.0.0.1 -p PORT -workers {p.get('workers')}`, multipart field `image_file`; "
           f"{versions}. Bundled models: {', '.join(info.get('bundled_models') or [])}; "
           f"verified on load: {models.get('bundled_models_verified')}; "
           f"download attempted: {models.get('download_attempted')}. {_peer_threads(p)}\n\n")
    out += _table(LEVEL_HEADER, _level_rows(p.get("levels") or [], False))
    return out


def _peer_threads(p: dict[str, Any]) -> str:
    threads = p.get("threads")
    if not threads:
        return "ONNX Runtime threads: rapidocr's stock default (a thread per core in every worker)."
    return (f"ONNX Runtime threads: {threads} per worker, set in the peer's rapidocr `config.yaml` (its only "
            f"knob), so {p.get('workers')} workers x {threads} thread(s) use the same cores as the fleet's "
            "instances; `--peer-threads 0` measures rapidocr's stock setting instead.")


def _profiles(profiles: dict[str, Any]) -> str:
    out = ""
    for mode, prof in (profiles or {}).items():
        if not prof or not prof.get("profile"):
            out += f"\n_{mode} profile unavailable: {(prof or {}).get('error', 'no samples')}_\n"
            continue
        p = prof["profile"]
        total = max(1, p["samples"])
        out += (f"\n**{mode}**: py-spy on one instance (and its workers) for {prof['seconds']:g} s at "
                f"c={prof['concurrency']} against {prof['instances']} instance(s); {p['samples']} samples "
                "(idle threads excluded).\n\n")
        out += _table(["stage", "share"], [[k, f"{v / total * 100:.1f}%"] for k, v in p["stages"].items()])
        out += "\n" + _table(["hottest frames (self)", "share"],
                             [[f"`{f['frame']}`", f"{f['samples'] / total * 100:.1f}%"] for f in p["top_frames"]])
    return out


def _cores(cpu: dict[str, Any] | None) -> str:
    c = cpu or {}
    return (f"instances {_f(c.get('server_cores'))}, plumbing {_f(c.get('infra_cores'))}, ab "
            f"{_f(c.get('client_cores'))}, everything else {_f(c.get('other_cores'))} cores")


def _why(key: str, s: dict[str, Any], results: dict[str, Any]) -> str:
    """Evidence from the same run for one missed target: CPU split, per-core ratios, failing levels."""
    full = (results.get("fleet") or {}).get("all_cores_instances")
    cold = levels(results, "fleet", "cold", full)
    warm = [lv for lv in levels(results, "fleet", "warm", full) if lv["concurrency"] == 50]
    if key == "cold_over_limit" and cold:
        best = max(cold, key=lambda lv: lv["ab"]["ok_per_s"])
        eff = s.get("cold_over_limit_per_core")
        where = ("per CPU-second it matches the engine, so the gap is CPU the instances did not get"
                 if eff is not None and eff >= 0.95 else
                 "per CPU-second it is also below the engine, so the serving path itself costs time "
                 "(see the cold profile)")
        return (f"Per CPU-second the fleet reaches {_f(eff, 3)} of the engine: {where}. During its best cold "
                f"level (c={best['concurrency']}): {_cores(best.get('cpu'))}.")
    if key == "fleet_over_peer":
        by_c = ", ".join(f"c={c}: {_f(r)}" for c, r in (s.get("fleet_over_peer_by_c") or {}).items())
        share = _engine_share(results)
        inside = (f" The cold profile puts {share:.0f}% of an instance's samples inside the OCR models, the "
                  "same models the peer runs; with both sides CPU-bound on them, the ratio can exceed 1 only "
                  "by what the peer wastes." if share is not None else "")
        return (f"By concurrency: {by_c}. Per CPU-second each side got, the worst ratio is "
                f"{_f(s.get('fleet_over_peer_per_core'), 3)}, and the fleet itself runs at "
                f"{_f(s.get('cold_over_limit_per_core'), 3)} of the engine per CPU-second.{inside}")
    if key == "warm_req_s_c50" and warm:
        cpu = warm[0].get("cpu") or {}
        cores = float((results.get("machine") or {}).get("cores_usable") or 0)
        free = cores - float(cpu.get("client_cores") or 0) - float(cpu.get("other_cores") or 0)
        busy = float(cpu.get("machine_busy_cores") or 0)
        full = " all cores were busy, so CPU per request decides." if cores and busy >= 0.9 * cores else ""
        return (f"At warm c=50: {_cores(cpu)};{full} The fleet spent {_f(_ms_per_request(warm[0]), 2)} ms of "
                f"CPU per cache hit (instances and plumbing); 2000 req/s on the {_f(free)} cores left by ab "
                f"and neighbours needs at most {_f(free / 2000 * 1000, 2)} ms. The warm profile shows where it "
                "goes.")
    if key == "warm_p99_ms_c50" and warm:
        rate = warm[0]["ab"]["ok_per_s"]
        mean = 50 / rate * 1000 if rate else None
        return (f"With 50 requests always in flight, mean latency is 50 / throughput (Little's law): "
                f"{_f(rate, 0)} req/s gives {_f(mean, 1)} ms, and the tail queues behind it; a 50 ms p99 at "
                "c=50 needs well over 2000 req/s or a much tighter spread.")
    if key == "failed_total":
        bad = []
        for lv in levels(results, "fleet"):
            if lv["ab"]["failed_real"] or lv["ab"]["non_2xx"]:
                codes = {k: v for k, v in (lv.get("gateway_status") or {}).items() if not k.startswith("2")}
                seen = f" (gateway answered {', '.join(f'{k}×{v}' for k, v in codes.items())})" if codes else ""
                bad.append(f"{lv['instances']}i {lv['mode']} c={lv['concurrency']}: failed "
                           f"{lv['ab']['failed_real']}, non-2xx {lv['ab']['non_2xx']}{seen}")
        return "Levels with failures: " + "; ".join(bad) + "." if bad else ""
    if key == "rss_mb_max":
        return f"Largest RSS per instance count: {s.get('rss_mb_by_instances')}."
    return ""


ENGINE_STAGES = ("detection", "recognition", "angle classifier", "rapidocr other (crop, sort, boxes)")


def _engine_share(results: dict[str, Any]) -> float | None:
    prof = (((results.get("fleet") or {}).get("profiles") or {}).get("cold") or {}).get("profile")
    if not prof or not prof.get("samples"):
        return None
    return sum(prof["stages"].get(k, 0) for k in ENGINE_STAGES) / prof["samples"] * 100


def _ms_per_request(level: dict[str, Any]) -> float | None:
    cpu, rate = level.get("cpu") or {}, level["ab"]["ok_per_s"]
    cores = float(cpu.get("server_cores") or 0) + float(cpu.get("infra_cores") or 0)
    return cores / rate * 1000 if rate and cores else None


def _misses(checks: list[dict[str, Any]], results: dict[str, Any]) -> str:
    missed = [c for c in checks if c["met"] is False]
    if not missed:
        return "Every measured target was met in this run.\n"
    s = results.get("summary") or {}
    out = ""
    for c in missed:
        why = _why(c["key"], s, results)
        out += f"- **{c['label']}**: {c['gap']}." + (f" {why}" if why else "") + "\n"
    return out


def render(results: dict[str, Any], plots: dict[str, str], asset_prefix: str = "") -> str:
    """The whole report; `asset_prefix` is where the PNGs sit relative to the markdown file."""
    s, m = results.get("summary") or {}, results.get("machine") or {}
    checks = results.get("targets") or check_targets(s)
    plan = results.get("plan") or {}
    image_note = results.get("images_note") or "the generated set"
    out = f"# OCR Fleet benchmark: {results.get('started', '')} ({results.get('mode')})\n\n"
    if results.get("interrupted") or results.get("error"):
        out += f"> **Incomplete run**: {results.get('error') or 'interrupted'}. Figures below cover what finished.\n\n"
    out += "## Machine\n\n" + _machine(m, results)
    speeds = [p["mops"] for p in results.get("cpu_speed") or [] if p.get("mops")]
    if speeds:
        out += ("- Single-core speed probe (M loop steps/s, taken between phases): "
                + ", ".join(f"{p['at']} {p['mops']}" for p in results["cpu_speed"]) + "\n")
    if speeds and max(speeds) / min(speeds) > SPEED_SPREAD:
        out += (f"\n> **The CPU's speed changed during the run** ({min(speeds)} to {max(speeds)} M steps/s on the "
                "same probe): a shared host slowed every core for a while. Figures from different phases were "
                "taken at different speeds; the per-CPU-second ratios do not correct for this.\n")
    if (s.get("noise_other_cores_mean") or 0) > NOISY_CORES:
        out += (f"\n> **Shared machine.** On average {_f(s['noise_other_cores_mean'])} of "
                f"{m.get('cores_usable')} cores were busy with work other than the measured servers and ab "
                "(see the *other* column). Ratios taken in different minutes of this run compare different "
                "amounts of free CPU; treat them as indicative.\n")
    out += "\n## Summary (ratios from this run only)\n\n" + _summary(s)
    out += "\n## Targets\n\n" + _targets(checks)
    out += "\n## Where targets were missed\n\n" + _misses(checks, results)
    if (results.get("fleet") or {}).get("profiles"):
        out += "\nWhere an instance's time goes (profile):\n" + _profiles(results["fleet"]["profiles"])
    cap, floor = plan.get("cold_low_cap") or 0, plan.get("cold_min_requests") or 0
    cold_extra = (f", two waves up to {cap} requests at low concurrency" if cap else "") + (
        f", at least {floor}" if floor else "")
    out += "\n## Method\n\n" + METHOD.format(
        ab_timeout=results.get("ab_timeout_s", "?"),
        images=image_note, load=results.get("load_image"), cold_extra=cold_extra,
        cold_t=plan.get("cold_time_limit_s", 0),
        warm_t=plan.get("warm_time_limit_s", 0), warm_min=plan.get("warm_min_requests"),
        warm_max=plan.get("warm_max_requests"))
    out += "\n## 1. Engine limit (in-process, no HTTP, K processes x 1 thread)\n\n"
    out += _engine(results.get("engine") or {})
    if results.get("profiles"):
        from .engine_profiles import table

        out += "\n## 1b. Engine profiles (hard set with truth)\n\n" + table(results["profiles"])
    fleet = results.get("fleet") or {}
    out += f"\n## 2. Fleet through nginx (`{fleet.get('url', '–')}`)\n\n"
    for mode in ("cold", "warm"):
        rows = levels(results, "fleet", mode)
        if rows:
            out += f"### {mode}\n\n" + _table(["instances", *LEVEL_HEADER], _level_rows(rows, True)) + "\n"
    if fleet.get("skipped"):
        out += "Skipped: " + "; ".join(fleet["skipped"]) + ".\n\n"
    checks_cache = fleet.get("cache_check") or {}
    if checks_cache:
        out += "Cache priming check per instance count: " + "; ".join(
            f"{n}: first {c.get('first')}, then {c.get('second')} in {c.get('second_ms')} ms"
            for n, c in checks_cache.items()) + "\n\n"
    for name, title in (("latency", "Latency vs concurrency"), ("throughput", "Throughput vs instances"),
                        ("failures", "Failure rate vs concurrency"), ("cold_warm", "Cold vs warm")):
        if name in plots:
            out += f"![{title}]({asset_prefix}{plots[name]})\n\n"
    out += "## 3. Peer: rapidocr-api (same images, concurrency and cores)\n\n" + _peer(results.get("peer") or {}, s)
    out += "\n## 4. Memory (RSS per instance after its run, from `fleetctl status`)\n\n"
    rss = fleet.get("rss") or {}
    out += _table(["instances", "RSS MiB per instance"],
                  [[n, ", ".join(_f(i.get("rss_mb"), 1) for i in snap)] for n, snap in rss.items()]) if rss else "–\n"
    acc = fleet.get("accuracy")
    if acc:
        out += "\n## Word accuracy of the fleet's answers (generated set, cold)\n\n"
        out += _table(["image", "HTTP", "seconds", "lines", "word accuracy"],
                      [[a["image"], a["status"], a["seconds"], a["lines"], a["word_accuracy"]] for a in acc])
        peer_acc = (results.get("peer") or {}).get("accuracy")
        if peer_acc:
            out += "\nrapidocr-api on the same images: " + ", ".join(
                f"{a['image']} {_f(a['word_accuracy'])}" for a in peer_acc) + "\n"
    out += ("\n## Raw data\n\n`results.json` holds every figure above; `raw/` holds each ab run's output and "
            "`-e` CSV, the engine job times and the profiles.\n")
    return out
