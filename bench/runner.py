"""One bench run, end to end: images, engine limit, fleet matrix, peer, then summary, report and plots.

Results are saved after every level, and whatever happens (an error, Ctrl-C, SIGTERM) the finally block
stops the peer, puts the fleet back as it was and still writes the report for what finished.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import ab, engine_limit, engine_profiles, fleet_runner, images, machine, peer, plots, procs, report, summary
from .fleet import FleetCtl, FleetSession, default_command
from .load import Load, describe, run_level
from .plan import Plan
from .profile import Profiler

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Options:
    """Everything a run is told from outside; defaults live in __main__."""

    plan: Plan
    out_root: Path = REPO / "bench" / "results"
    work_dir: Path = REPO / "bench" / ".work"
    images_dir: Path | None = None
    url: str | None = None
    fleetctl: list[str] | None = None
    load_image: str | None = None
    peer_workers: int | None = None
    peer_threads: int = 1  # ONNX threads per peer worker; 0 = rapidocr's stock default
    engine_factory: str = engine_limit.DEFAULT_FACTORY
    seed: int = images.DEFAULT_SEED
    ab_path: str = "ab"
    extra: dict[str, Any] = field(default_factory=dict)


class Run:
    """Holds one run's results and writes them; the steps below fill it in order."""

    def __init__(self, opts: Options, say: Callable[[str], None]) -> None:
        self.opts, self.say = opts, say
        self.started = datetime.now().astimezone()
        self.out_dir = opts.out_root / self.started.strftime("%Y%m%d-%H%M%S")
        self.raw = self.out_dir / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        self.cores = engine_limit.usable_cores()
        self.results: dict[str, Any] = {
            "schema": 1, "mode": opts.plan.name, "started": self.started.isoformat(timespec="seconds"),
            "machine": machine.describe(REPO), "plan": opts.plan.to_json(), "summary": {},
            "ab_timeout_s": ab.DEFAULT_TIMEOUT_S,
        }
        self._t0 = time.monotonic()
        self.session: FleetSession | None = None
        self.peer_server: peer.PeerServer | None = None
        self.stop_install = threading.Event()

    def probe(self, label: str) -> None:
        """Record the single-core speed now (see machine.cpu_speed)."""
        self.results.setdefault("cpu_speed", []).append({"at": label, "mops": machine.cpu_speed()})

    def save(self) -> None:
        tmp = self.out_dir / "results.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
        os.replace(tmp, self.out_dir / "results.json")

    # -- steps -----------------------------------------------------------------------------------------

    def image_set(self) -> list[images.BenchImage]:
        if self.opts.images_dir:
            imgs = images.load_dir(self.opts.images_dir)
            self.results["images_note"] = f"{len(imgs)} user-supplied images (`--images`)"
        else:
            imgs = images.generate(self.out_dir / "images", self.opts.seed)
            self.results["images_note"] = (
                f"{len(imgs)} generated images (seed {self.opts.seed}): pages, receipts and signs in English "
                "and Chinese, tilted, blurred and noisy, JPEG")
        self.results["images"] = [im.to_json() for im in imgs]
        return imgs

    def engine(self, imgs: list[images.BenchImage]) -> images.BenchImage:
        """K = 1..cores over the set, then K = cores on the load image the fleet will be sent."""
        plan = self.opts.plan
        out: dict[str, Any] = {"cores": self.cores, "runs": []}
        self.results["engine"] = out
        runs = []
        for k in range(1, self.cores + 1) if plan.engine_all_k else (self.cores,):
            self.say(f"engine: {k} process(es) x 1 thread over {len(imgs)} images x {plan.engine_rounds}")
            run = engine_limit.measure(imgs, k, plan.engine_rounds, self.opts.engine_factory)
            runs.append(run)
            out["runs"].append(run.to_json())
            self.say(f"engine: K={k} {run.img_per_s:.3f} img/s")
            self.save()
        load_img = self._pick_load_image(imgs, runs[0])
        jobs = max(2 * self.cores, plan.engine_rounds * len(imgs))
        run = engine_limit.measure([load_img], self.cores, jobs, self.opts.engine_factory, label=load_img.name)
        out["runs"].append(run.to_json())
        out["limit_img_s"] = round(run.img_per_s, 4)
        out["limit_set_img_s"] = round(max(r.img_per_s for r in runs), 4)
        self.say(f"engine: load image {load_img.name}, K={self.cores}: {run.img_per_s:.3f} img/s")
        self.save()
        return load_img

    def profiles(self) -> None:
        """Every engine profile (and accurate's speed-ups) on the hard set with truth, taking turns."""
        plan = self.opts.plan
        self.say(f"engine profiles: {len(engine_profiles.VARIANTS)} variants, {plan.profiles_pages} hard pages "
                 f"x {plan.profiles_rounds} rounds")
        self.results["profiles"] = engine_profiles.measure(plan.profiles_pages, plan.profiles_rounds,
                                                           work=self.out_dir / "hard")
        for row in self.results["profiles"]["rows"]:
            self.say(f"  {row['variant']}: {row['img_s']:.3f} img/s, x{row['ratio_wall']:.2f} of accurate")
        self.save()

    def _pick_load_image(self, imgs: list[images.BenchImage],
                         single: engine_limit.EngineRun | None) -> images.BenchImage:
        by_name = {im.name: im for im in imgs}
        if self.opts.load_image:
            if self.opts.load_image not in by_name:
                raise ValueError(f"--load-image {self.opts.load_image!r} is not in the set: {', '.join(by_name)}")
            name = self.opts.load_image
        elif single is not None:
            name = engine_limit.representative(single)
        else:
            name = sorted(imgs, key=lambda im: im.size_bytes)[len(imgs) // 2].name
        self.results["load_image"] = name
        return by_name[name]

    def fleet(self, imgs: list[images.BenchImage], load_img: images.BenchImage) -> None:
        assert self.session is not None
        profiler = Profiler(self.opts.work_dir / "tools-venv", self.raw / "tools-install.log")
        bench = fleet_runner.FleetBench(
            session=self.session, plan=self.opts.plan, load_image=load_img, image_set=imgs, raw_dir=self.raw,
            cores=self.cores, say=self.say, save=self.save, url=self.opts.url,
            profiler=profiler if self.opts.plan.profile_s else None, ab_path=self.opts.ab_path,
            deadline=self._t0 + self.opts.plan.time_budget_s if self.opts.plan.time_budget_s else None,
            probe=self.probe)
        self.results["fleet"] = {}
        bench.run(self.results["fleet"])

    def peer(self, python: Path, imgs: list[images.BenchImage], load_img: images.BenchImage) -> None:
        plan = self.opts.plan
        workers = self.opts.peer_workers or self.cores
        threads = self.opts.peer_threads
        peer.configure_threads(python, threads)
        out: dict[str, Any] = {"workers": workers, "threads": threads, "info": peer.describe(python), "levels": []}
        self.results["peer"] = out
        body = self.raw / "peer-body.bin"
        ctype = peer.multipart_body(load_img.path, body)
        self.peer_server = peer.PeerServer(python, workers, self.raw / "peer.log")
        self.say(f"peer: starting rapidocr_api with {workers} worker(s)")
        self.peer_server.start()
        server = self.peer_server
        target = Load(server.url, body, ctype)
        # Workers load their models on first use: two small requests each before anything is measured.
        smallest = min(imgs, key=lambda im: im.size_bytes)
        warm_body = self.raw / "peer-warmup-body.bin"
        warm = Load(server.url, warm_body, peer.multipart_body(smallest.path, warm_body))
        run_level(warm, workers, 2 * workers, plan.cold_time_limit_s, server.pids, self.raw, "peer-warmup",
                  self.opts.ab_path)
        out["model_log"] = server.model_log()
        for c in plan.peer_concurrency:
            level = run_level(target, c, plan.cold_requests(c), plan.cold_time_limit_s, server.pids, self.raw,
                              f"peer-c{c}", self.opts.ab_path)
            level.update(target="peer", mode="cold")
            out["levels"].append(level)
            self.say(f"peer    {describe(level)}")
            self.save()
        if plan.accuracy:
            out["accuracy"] = peer.accuracy(server.url, imgs)
        self.peer_server.stop()

    # -- the whole run -----------------------------------------------------------------------------------

    def execute(self) -> Path:
        plan = self.opts.plan
        install: dict[str, Any] = {}
        installer: threading.Thread | None = None
        with procs.signals_unwind():
            try:
                imgs = self.image_set()
                self.probe("start")
                self.save()
                if plan.peer:  # pip runs while the fleet starts: neither is being measured yet
                    installer = threading.Thread(target=self._install, args=(install,), daemon=True)
                    installer.start()
                if plan.fleet:
                    command = self.opts.fleetctl or default_command()
                    self.session = FleetSession(FleetCtl(self.raw / "fleetctl.log", command))
                    self.session.__enter__()
                    self.say(f"fleet: preparing {plan.instances[0]} instance(s) (fleetctl up or scale)")
                    self.session.scale_to(plan.instances[0])
                if installer is not None:
                    installer.join()
                load_img = self.engine(imgs) if plan.engine else self._pick_load_image(imgs, None)
                self.probe("after the engine limit")
                if plan.profiles:
                    self.profiles()
                if plan.fleet:
                    self.fleet(imgs, load_img)
                if plan.peer:
                    self._peer_step(install, imgs, load_img)
                    self.probe("after the peer")
            except KeyboardInterrupt as exc:
                self.results["interrupted"] = True
                self.results["error"] = f"interrupted ({exc or 'Ctrl-C'})"
                self.say("interrupted: cleaning up")
            except Exception as exc:
                self.results["error"] = f"{type(exc).__name__}: {exc}"
                (self.raw / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
                self.say(f"error: {exc} (cleaning up)")
            finally:
                with procs.shielded():
                    self._cleanup(installer)
                    self.finish()
        return self.out_dir

    def _peer_step(self, install: dict[str, Any], imgs: list[images.BenchImage],
                   load_img: images.BenchImage) -> None:
        """The peer is a comparison, not the subject: its failure is recorded and the run still completes."""
        if "error" in install:
            self.results["peer"] = {"error": install["error"]}
            return
        try:
            self.peer(install["python"], imgs, load_img)
        except Exception as exc:
            self.results.setdefault("peer", {})["error"] = f"{type(exc).__name__}: {exc}"
            (self.raw / "peer-error.txt").write_text(traceback.format_exc(), encoding="utf-8")
            self.say(f"peer: {exc}")
        finally:
            if self.peer_server is not None:
                self.peer_server.stop()

    def _install(self, out: dict[str, Any]) -> None:
        try:
            out["python"] = peer.ensure_venv(self.opts.work_dir / "peer-venv", peer.pins(),
                                             self.raw / "peer-install.log", self.stop_install)
        except Exception as exc:  # the fleet results stand without the peer
            out["error"] = f"{type(exc).__name__}: {exc}"

    def _cleanup(self, installer: threading.Thread | None) -> None:
        self.stop_install.set()
        if installer is not None:
            installer.join(timeout=30)
        if self.peer_server is not None:
            self.peer_server.stop()
        if self.session is not None and self.session.entered:
            try:
                self.results["fleet_note"] = self.session.restore()
            except Exception as exc:
                self.results["fleet_note"] = f"could not restore the fleet: {exc}"
                self.say(f"WARNING: could not restore the fleet: {exc}")

    def finish(self) -> None:
        self.results["duration_s"] = round(time.monotonic() - self._t0, 1)
        self.results["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
        write_outputs(self.results, self.out_dir)


def backfill(results: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Facts older runs did not store, recovered from their raw ab logs (the command line is kept there)."""
    if "ab_timeout_s" not in results:
        for raw in sorted((out_dir / "raw").glob("*.txt")):
            match = re.match(r"\$ \S*ab .*?-s (\d+)", raw.read_text(encoding="utf-8", errors="replace"))
            if match:
                results["ab_timeout_s"] = int(match.group(1))
                break
    return results


def write_outputs(results: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """Summary, targets, results.json, plots and report.md; also used to re-render an old run."""
    backfill(results, out_dir)
    results["summary"] = summary.summarize(results)
    results["targets"] = summary.check_targets(results["summary"])
    tmp = out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, out_dir / "results.json")
    made = plots.render_all(results, out_dir)
    (out_dir / "report.md").write_text(report.render(results, made), encoding="utf-8")
    return made
