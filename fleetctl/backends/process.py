"""The embedded default: one gunicorn process group per instance on its own loopback port.

Instances are found from pid files checked against live processes (pid alive and its
command line names gunicorn and the instance), never from the files alone; stale files
are removed. A small JSON sidecar keeps what the process itself cannot tell us (its
config hash).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from fleetctl import procs
from fleetctl.backends.base import StartsOneByOne
from fleetctl.backends.engines import instance_python
from fleetctl.backends.types import InstanceFailed, InstanceInfo, InstanceSpec, is_instance_id
from fleetctl.config import SECRET_SETTINGS, FleetConfig
from fleetctl.logs import FileReader, LogReader

APP = "ocr_app:create_app()"
GUNICORN_CONF = "python:ocr_app.gunicorn_conf"
SIDECAR_KIND = "ocr-fleet-instance"


def proc_tag(instance_id: str) -> str:
    """The marker put on the gunicorn command line (its proc name) so we can tell our processes apart."""
    return f"ocr-fleet:{instance_id}"


def gunicorn_argv(instance_id: str, python: str = sys.executable) -> list[str]:
    """Command line of one instance; same interpreter as fleetctl so the venv matches."""
    return [python, "-m", "gunicorn", "-c", GUNICORN_CONF, "--name", proc_tag(instance_id), APP]


def _is_ours(pid: int, instance_id: str) -> bool:
    """pid alive, not a zombie, gunicorn with our tag, and exactly our instance id (pids get reused)."""
    return procs.process_matches(pid, ("gunicorn", proc_tag(instance_id)), {"OCR_INSTANCE_ID": instance_id})


def source_hash() -> str:
    """sha256 over the ocr_app package files as installed (editable or not)."""
    import ocr_app

    root = Path(ocr_app.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


class ProcessBackend(StartsOneByOne):
    """Instances as detached gunicorn process groups under FLEET_HOME."""

    name = "process"

    def __init__(self, cfg: FleetConfig, *, python: str | None = None):
        self.cfg = cfg
        self.python = python  # None: fleetctl's own, or the engine's venv (fleetctl/backends/engines.py)

    def artifact(self) -> str:
        """A hash of the instance's code, so a code update shows as drift like a changed setting."""
        return source_hash()

    def preflight(self) -> None:
        from fleetctl.backends import engines

        engines.require_server(self.cfg)

    # -- files -------------------------------------------------------------
    def _pid_file(self, instance_id: str) -> Path:
        return self.cfg.run_dir / f"{instance_id}.pid"

    def _meta_file(self, instance_id: str) -> Path:
        return self.cfg.run_dir / f"{instance_id}.json"

    def _runtime_dir(self, instance_id: str) -> Path:
        return self.cfg.run_dir / instance_id

    def log_file(self, instance_id: str) -> Path:
        return self.cfg.log_dir / f"{instance_id}.log"

    def _forget(self, instance_id: str) -> None:
        """Remove an instance's pid file, sidecar and runtime dir (not its log: that is for post-mortems)."""
        self._pid_file(instance_id).unlink(missing_ok=True)
        self._meta_file(instance_id).unlink(missing_ok=True)
        shutil.rmtree(self._runtime_dir(instance_id), ignore_errors=True)

    # -- Backend -----------------------------------------------------------
    def instances(self) -> list[InstanceInfo]:
        found: list[InstanceInfo] = []
        if not self.cfg.run_dir.is_dir():
            return found
        # run/ also holds the services' pid files: only a sidecar marked as ours names an instance.
        for meta_file in sorted(self.cfg.run_dir.glob("*.json")):
            if procs.read_json(meta_file).get("kind") != SIDECAR_KIND:
                continue
            info = self._inspect(meta_file.stem)
            if info is not None:
                found.append(info)
        return sorted(found, key=lambda i: i.port)

    def _inspect(self, instance_id: str) -> InstanceInfo | None:
        """Check one pid file against the process table; clean it up when it is stale."""
        pid = procs.read_pid(self._pid_file(instance_id))
        if pid is None or not _is_ours(pid, instance_id):
            self._forget(instance_id)
            return None
        try:
            started_at = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            self._forget(instance_id)
            return None
        meta = procs.read_json(self._meta_file(instance_id))
        return InstanceInfo(
            id=instance_id,
            backend=self.name,
            host=str(meta.get("host", "127.0.0.1")),
            port=int(meta.get("port", 0)),
            pid=pid,
            started_at=started_at,
            config_hash=str(meta.get("config_hash", "")),
        )

    def start(self, spec: InstanceSpec) -> InstanceInfo:
        for d in (self.cfg.run_dir, self.cfg.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self._inspect(spec.id) is not None:
            raise InstanceFailed(f"{spec.id} is already running")
        runtime = self._runtime_dir(spec.id)
        # Fresh runtime dir: prometheus multiprocess files of a previous run would skew counters.
        shutil.rmtree(runtime, ignore_errors=True)
        runtime.mkdir(parents=True)
        # fleetctl's own secrets stay with it: an instance gets only its own token (OCR_CONSUL_TOKEN).
        inherited = {k: v for k, v in os.environ.items() if k not in SECRET_SETTINGS}
        env = {**inherited, **spec.env, "OCR_RUNTIME_DIR": str(runtime)}
        started = time.time()
        meta = {"kind": SIDECAR_KIND, "id": spec.id, "port": spec.port, "host": spec.host,
                "config_hash": spec.config_hash, "started": started}
        procs.write_json(self._meta_file(spec.id), meta)
        # spawn() gives the instance its own session, so one killpg reaches master and workers.
        pid = procs.spawn(gunicorn_argv(spec.id, self.python or instance_python(self.cfg)),
                          log_path=self.log_file(spec.id),
                          pid_path=self._pid_file(spec.id), env=env)
        return InstanceInfo(spec.id, self.name, spec.host, spec.port, pid=pid, started_at=started,
                            config_hash=spec.config_hash)

    def stop(self, info: InstanceInfo, grace: float) -> None:
        if info.pid is None:
            raise InstanceFailed(f"{info.id} has no pid")
        procs.kill_group(info.pid, grace)  # setsid at spawn: pgid == master pid
        self._forget(info.id)

    def stop_orphans(self, grace: float, report: Callable[[str], None]) -> int:
        groups = self.orphans()
        for pgid in groups:
            report(f"stopping orphaned instance process group {pgid} (its pid file was lost)")
            procs.kill_group(pgid, grace)
        return len(groups)

    def orphans(self) -> list[int]:
        """Process groups of this fleet's gunicorns that no pid file names any more (lost state).

        Recognised by their environment: OCR_RUNTIME_DIR lies under this FLEET_HOME's run/.
        """
        run_dir = str(self.cfg.run_dir.absolute()) + os.sep
        known = {i.pid for i in self.instances()}
        groups: set[int] = set()
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if "gunicorn" not in " ".join(proc.info["cmdline"] or ()):
                    continue
                runtime = proc.environ().get("OCR_RUNTIME_DIR", "")
                pgid = os.getpgid(proc.pid)
            except (psutil.Error, ProcessLookupError):
                continue
            if runtime.startswith(run_dir) and pgid not in known:
                groups.add(pgid)
        return sorted(groups)

    def is_alive(self, info: InstanceInfo) -> bool:
        if info.pid is None:
            return False
        return _is_ours(info.pid, info.id)

    def rss_bytes(self, info: InstanceInfo) -> int | None:
        if info.pid is None:
            return None
        try:
            master = psutil.Process(info.pid)
            procs = [master, *master.children(recursive=True)]
        except psutil.Error:
            return None
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue  # a worker exiting while we look is not an error
        return total

    def log_readers(self) -> dict[str, LogReader]:
        """Every instance log under FLEET_HOME/logs, also of instances that have stopped or died."""
        if not self.cfg.log_dir.is_dir():
            return {}
        return {path.stem: FileReader(path) for path in sorted(self.cfg.log_dir.glob("*.log"))
                if is_instance_id(path.stem)}
