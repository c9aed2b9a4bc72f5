"""The fleet matrix: for each instance count, cold then warm ab levels through the gateway.

Cold: every request carries `Cache-Control: no-cache`, so each one runs the engine. Warm: the load image
is posted once to fill the cache, a second request must come back as a hit, then ab runs. After each
instance count the instances' RSS is recorded as `fleetctl status` reports it.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from . import images as images_mod
from . import load, procs, score
from .fleet import FleetSession, FleetStatus
from .plan import Plan, all_cores_instances
from .profile import Profiler, root_pid

Record = Callable[[dict[str, Any]], None]


@dataclass
class FleetBench:
    """Everything one fleet matrix needs, passed in so the runner owns no global state."""

    session: FleetSession
    plan: Plan
    load_image: images_mod.BenchImage
    image_set: list[images_mod.BenchImage]
    raw_dir: Path
    cores: int
    say: Callable[[str], None]
    save: Callable[[], None]
    url: str | None = None
    profiler: Profiler | None = None
    ab_path: str = "ab"
    deadline: float | None = None  # monotonic time past which only the all-cores count is measured
    probe: Callable[[str], None] | None = None  # CPU speed probe between instance counts
    _access_log: Path | None = None

    def run(self, out: dict[str, Any]) -> None:
        """Fill `out` as levels complete; `save` persists it so an interrupted run keeps its data."""
        out.setdefault("levels", [])
        out.setdefault("rss", {})
        out.setdefault("cache_check", {})
        out.setdefault("profiles", {})
        full = all_cores_instances(self.plan.instances, self.cores)
        out["all_cores_instances"] = full
        out.setdefault("skipped", [])
        for n in self.plan.instances:
            if n != full and self.deadline is not None and time.monotonic() > self.deadline:
                out["skipped"].append(f"{n} instance(s): the {self.plan.name} plan's time budget was spent")
                self.say(f"fleet: skipping {n} instance(s), time budget spent")
                continue
            self.say(f"fleet: scaling to {n} instance(s)")
            status = self.session.scale_to(n)
            url = self.url or f"{(status.gateway or 'http://127.0.0.1:8080').rstrip('/')}/api/ocr"
            out["url"] = url
            ports = status.ports()
            pids = lambda ports=ports: procs.listening_pids(ports)  # noqa: E731 - re-read: workers may restart
            infra = _infra_pids(status)
            access = (status.services.get("nginx") or {}).get("access_log")
            self._access_log = Path(access) if access else None
            self._warm_up(url, n)
            if n == full and self.plan.accuracy:
                out["accuracy"] = self._accuracy(url)
                self.save()
            cold = load.Load(url, self.load_image.path, images_mod.content_type(self.load_image.path),
                             (load.NO_CACHE,))
            for c in self.plan.cold_concurrency:
                self._level(out, n, "cold", cold, c, self.plan.cold_requests(c), self.plan.cold_time_limit_s,
                            pids, infra)
            if n == full and self.profiler and self.plan.profile_s:
                out["profiles"]["cold"] = self._profile(cold, 2 * n, pids, infra, out, n, "cold")
            out["cache_check"][str(n)] = check = self._prime(url)
            if not check.get("hit"):
                self.say(f"fleet: WARNING the cache did not answer a hit ({check}); warm runs are not warm")
            warm = load.Load(url, self.load_image.path, images_mod.content_type(self.load_image.path))
            for c in self.plan.warm_concurrency:
                self._level(out, n, "warm", warm, c, self.plan.warm_requests(c), self.plan.warm_time_limit_s,
                            pids, infra)
            if n == full and self.profiler and self.plan.profile_s:
                out["profiles"]["warm"] = self._profile(warm, 50, pids, infra, out, n, "warm")
            after = self.session.ctl.status()
            out["rss"][str(n)] = after.rss() if after else []
            if self.probe is not None:
                self.probe(f"after {n} instance(s)")
            self.save()

    def _level(self, out: dict[str, Any], n: int, mode: str, what: load.Load, c: int, requests_n: int,
               limit: float, pids: Callable[[], list[int]], infra: list[int]) -> None:
        log = AccessLog.at(self._access_log)
        level = load.run_level(what, c, requests_n, limit, pids, self.raw_dir, f"fleet-{n}i-{mode}-c{c}",
                               self.ab_path, infra_pids=infra)
        level.update(target="fleet", instances=n, mode=mode)
        if log is not None:
            level["gateway_status"] = log.statuses()
        out["levels"].append(level)
        self.say(f"fleet {n}i {mode:4} {load.describe(level)}")
        self.save()

    def _warm_up(self, url: str, n: int) -> None:
        """One cold request per instance before measuring: first-request costs are not the fleet's rate."""
        with ThreadPoolExecutor(max_workers=n) as pool:
            codes = list(pool.map(lambda _: _post(url, self.load_image, cold=True)[0], range(n)))
        if not any(200 <= code < 300 for code in codes):
            raise RuntimeError(f"the fleet at {url} answered {codes} to a plain OCR request")

    def _accuracy(self, url: str) -> list[dict[str, Any]]:
        """Every image of the set once (cold), scored against its ground truth where it has one."""
        def one(image: images_mod.BenchImage) -> dict[str, Any]:
            code, elapsed, payload, _cache = _post(url, image, cold=True)
            lines = score.answer_lines(payload) if payload is not None else []
            recall = score.recall(image.truth, lines) if image.truth is not None and code == 200 else None
            return {"image": image.name, "status": code, "seconds": round(elapsed, 3), "lines": len(lines),
                    "word_accuracy": None if recall is None else round(recall, 4)}

        with ThreadPoolExecutor(max_workers=self.cores) as pool:
            return list(pool.map(one, self.image_set))

    def _prime(self, url: str) -> dict[str, Any]:
        first = _post(url, self.load_image, cold=False)
        second = _post(url, self.load_image, cold=False)
        return {"first": first[3], "second": second[3], "second_ms": round(second[1] * 1000, 1),
                "hit": second[3] == "HIT"}

    def _profile(self, what: load.Load, c: int, pids: Callable[[], list[int]], infra: list[int],
                 out: dict[str, Any], n: int, mode: str) -> dict[str, Any] | None:
        """py-spy on one instance while ab keeps the fleet busy for profile_s seconds."""
        assert self.profiler is not None
        instance_pids = procs.listening_pids([_first_port(self.session)])
        target = root_pid(instance_pids)
        if target is None:
            return None
        seconds = self.plan.profile_s
        raw = self.raw_dir / f"profile-{mode}.txt"
        try:
            proc = self.profiler.start(target, seconds + 2, raw)
        except Exception as exc:  # a profile is evidence, not a reason to lose the run
            self.say(f"profile: py-spy unavailable ({exc})")
            return {"error": str(exc)}
        time.sleep(1.0)  # py-spy attaches before the load starts
        level = load.run_level(what, c, 100_000, seconds, pids, self.raw_dir, f"fleet-{n}i-profile-{mode}",
                               self.ab_path, infra_pids=infra)
        prof = self.profiler.finish(proc, raw, timeout_s=seconds + 30)
        self.say(f"profile {mode}: {load.describe(level)}")
        return {"instances": n, "concurrency": c, "seconds": seconds, "level": level,
                "profile": prof.to_json() if prof else None, "raw": f"raw/{raw.name}"}


@dataclass
class AccessLog:
    """The gateway's JSON access log from a mark on: which status codes ab's "non-2xx" were."""

    path: Path
    offset: int

    @classmethod
    def at(cls, path: Path | None) -> AccessLog | None:
        """Mark the log's current end; None when the gateway keeps no log we can read."""
        if path is None or not path.exists():
            return None
        return cls(path, path.stat().st_size)

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            for raw in fh:
                try:
                    code = str(json.loads(raw)["status"])
                except (ValueError, KeyError, TypeError):
                    continue
                counts[code] = counts.get(code, 0) + 1
        return dict(sorted(counts.items()))


def _first_port(session: FleetSession) -> int:
    status = session.ctl.status()
    ports = status.ports() if status else []
    if not ports:
        raise RuntimeError("no instance to profile")
    return ports[0]


def _infra_pids(status: FleetStatus) -> list[int]:
    """nginx (with its workers), Redis, Consul and the sync loop: shared plumbing, apart from instances."""
    pids: list[int] = []
    for name in status.services:
        pid = status.service_pid(name)
        if pid:
            pids.append(pid)
    gateway_port = status.gateway_port()
    if gateway_port:
        pids.extend(procs.listening_pids([gateway_port]))
    return sorted(set(pids))


def _post(url: str, image: images_mod.BenchImage, cold: bool) -> tuple[int, float, Any, str]:
    """One request as a client would send it: raw body, image content type."""
    headers = {"Content-Type": images_mod.content_type(image.path)}
    if cold:
        headers["Cache-Control"] = "no-cache"
    started = time.perf_counter()
    try:
        resp = requests.post(url, data=image.path.read_bytes(), headers=headers, timeout=180)
    except requests.RequestException:
        return 0, time.perf_counter() - started, None, ""
    elapsed = time.perf_counter() - started
    try:
        payload = resp.json()
    except ValueError:
        payload = None
    return resp.status_code, elapsed, payload, resp.headers.get("X-Cache", "")
