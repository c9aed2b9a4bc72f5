"""The engine's limit: K processes x 1 thread run the raw engine in-process, no HTTP, over the image set.

Each process builds its own engine and warms it up; only then does the clock start, so the figure is
steady-state images per second on this machine. Jobs come from one shared queue, biggest first, so a
slow image at the end does not leave the other cores idle and understate the limit.
"""
from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import procs
from .images import BenchImage

if TYPE_CHECKING:
    from ocr_app.config import Settings
    from ocr_app.engine.rapid import Engine

Recognizer = Callable[[bytes], list[str]]
DEFAULT_FACTORY = "bench.engine_limit:fleet_engine"
READY_TIMEOUT_S = 300.0


class EngineLimitError(RuntimeError):
    """A worker process failed to load or run the engine."""


def fleet_engine(env: Mapping[str, str]) -> Recognizer:
    """The instance's own path with the instance's settings (the profile is OCR_PROFILE's)."""
    from ocr_app.config import Settings

    return instance_recognizer(Settings.from_env(dict(env)))


def instance_recognizer(settings: Settings,
                        build: Callable[[Settings], dict[str, Engine]] | None = None) -> Recognizer:
    """What an instance runs for one image, without HTTP, the cache or admission: decode, then the
    service's own page reader (upright, reading order), then the allocator's trim.

    Only the settings' default profile is built; `build` makes the engines (the instance's by default)."""
    from ocr_app.documents.images import decode_image
    from ocr_app.engine.factory import build_engines
    from ocr_app.service.reader import PageReader

    settings = replace(settings, profiles=settings.profile)  # only the measured profile is loaded
    engine = (build or build_engines)(settings)[settings.profile]
    reader = PageReader(settings)
    if settings.warmup:
        engine.warm_up()
    reader.trim()

    def recognize(data: bytes) -> list[str]:
        image = decode_image(data, settings)
        result = reader.read(engine, image)
        del image
        reader.trim()
        return [line.text for line in result.lines]

    return recognize


def decode_only(env: Mapping[str, str]) -> Recognizer:
    """A real but model-free recognizer (decode and grey-scale): exercises the process machinery fast."""
    import io

    from PIL import Image

    def recognize(data: bytes) -> list[str]:
        with Image.open(io.BytesIO(data)) as img:
            img.convert("L").load()
            return [f"{img.width}x{img.height}"]

    return recognize


def load_factory(spec: str) -> Callable[[Mapping[str, str]], Recognizer]:
    """'module:function', importable in a spawned child (which shares no state with the parent)."""
    module, _, name = spec.partition(":")
    factory: Callable[[Mapping[str, str]], Recognizer] = getattr(importlib.import_module(module), name)
    return factory


@dataclass(frozen=True)
class JobTime:
    image: str
    seconds: float
    lines: int


@dataclass(frozen=True)
class EngineRun:
    """One K-process measurement."""

    processes: int
    images: int
    wall_s: float
    jobs: list[JobTime] = field(default_factory=list)
    label: str = "set"
    cpu: dict[str, float] = field(default_factory=dict)  # engine vs other cores busy while timed

    @property
    def img_per_s(self) -> float:
        return self.images / self.wall_s if self.wall_s > 0 else 0.0

    def per_image_mean_s(self) -> dict[str, float]:
        sums: dict[str, list[float]] = {}
        for job in self.jobs:
            sums.setdefault(job.image, []).append(job.seconds)
        return {name: sum(v) / len(v) for name, v in sums.items()}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["img_per_s"] = round(self.img_per_s, 4)
        data["per_image_mean_s"] = {k: round(v, 4) for k, v in self.per_image_mean_s().items()}
        return data


def _worker(factory: str, env: dict[str, str], blobs: dict[str, bytes], jobs: Any, results: Any,
            go: Any) -> None:
    """Child body: load, warm up, report ready, wait for the common start, drain the job queue."""
    try:
        os.environ.update(env)
        recognize = load_factory(factory)(env)
        recognize(min(blobs.values(), key=len))  # warm-up: graph set-up and first-call costs
        results.put(("ready", os.getpid(), None))
        go.wait()
        while True:
            name = jobs.get(timeout=60)
            if name is None:  # one sentinel per worker ends the run
                break
            started = time.perf_counter()
            lines = recognize(blobs[name])
            results.put(("job", os.getpid(), (name, time.perf_counter() - started, len(lines))))
        results.put(("done", os.getpid(), None))
    except BaseException as exc:  # report, do not hang the parent
        results.put(("error", os.getpid(), f"{type(exc).__name__}: {exc}"))


def engine_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The instances' engine settings (their OCR_* environment), one ONNX thread per process."""
    env = {k: v for k, v in (base if base is not None else os.environ).items() if k.startswith("OCR_")}
    env.update(OCR_THREADS="1", OMP_NUM_THREADS="1", OCR_LOG_LEVEL=env.get("OCR_LOG_LEVEL", "warning"))
    return env


def measure(images: Sequence[BenchImage], processes: int, rounds: int = 1,
            factory: str = DEFAULT_FACTORY, env: Mapping[str, str] | None = None,
            label: str = "set", timeout_s: float = 1800.0) -> EngineRun:
    """Run every image `rounds` times spread over `processes` spawned workers; time the whole set."""
    ctx = mp.get_context("spawn")
    blobs = {im.name: im.path.read_bytes() for im in images}
    order = sorted(images, key=lambda im: im.size_bytes, reverse=True)
    jobs = ctx.Queue()
    for _ in range(rounds):
        for im in order:
            jobs.put(im.name)
    for _ in range(processes):
        jobs.put(None)
    total = rounds * len(images)
    results = ctx.Queue()
    go = ctx.Event()
    workers = [ctx.Process(target=_worker, args=(factory, dict(env or engine_env()), blobs, jobs, results, go),
                           daemon=True) for _ in range(processes)]
    for proc in workers:
        proc.start()
    try:
        _await(results, "ready", processes, READY_TIMEOUT_S, workers)
        meter = procs.CpuMeter({"engine": [p.pid for p in workers if p.pid is not None]}).__enter__()
        started = time.perf_counter()
        go.set()
        timed: list[JobTime] = []
        finished = 0
        deadline = time.monotonic() + timeout_s
        while finished < processes:
            kind, _pid, payload = _get(results, deadline, workers)
            if kind == "job":
                name, seconds, lines = payload
                timed.append(JobTime(name, round(seconds, 4), lines))
            elif kind == "done":
                finished += 1
        wall = time.perf_counter() - started
        meter.__exit__(None, None, None)
    finally:
        for proc in workers:
            if proc.is_alive():
                proc.terminate()
        for proc in workers:
            proc.join(timeout=10)
    if len(timed) != total:
        raise EngineLimitError(f"{len(timed)} of {total} jobs reported")
    return EngineRun(processes=processes, images=total, wall_s=round(wall, 4), jobs=timed, label=label,
                     cpu=meter.result)


def _get(results: Any, deadline: float, workers: Sequence[Any]) -> tuple[str, int, Any]:
    while True:
        try:
            kind, pid, payload = results.get(timeout=1.0)
        except queue.Empty:
            if time.monotonic() > deadline:
                raise EngineLimitError("engine workers timed out") from None
            if not any(proc.is_alive() for proc in workers):
                raise EngineLimitError("all engine workers exited without reporting") from None
            continue
        if kind == "error":
            raise EngineLimitError(f"engine worker {pid} failed: {payload}")
        return kind, pid, payload


def _await(results: Any, kind: str, count: int, timeout_s: float, workers: Sequence[Any]) -> None:
    deadline = time.monotonic() + timeout_s
    seen = 0
    while seen < count:
        got, _pid, _payload = _get(results, deadline, workers)
        if got == kind:
            seen += 1


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def representative(run: EngineRun) -> str:
    """The image whose single-process time is nearest the set's mean: the fleet's load image."""
    means = run.per_image_mean_s()
    overall = sum(means.values()) / len(means)
    return min(sorted(means), key=lambda name: abs(means[name] - overall))
