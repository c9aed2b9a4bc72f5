"""Small helpers for the fleet's daemons: spawn detached, find by pid file, stop, wait for readiness.

A pid file alone proves nothing (pids are reused), so every lookup checks that the
process is alive and that its command line (or environment) still matches.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
import requests

GROUP_POLL_S = 0.05


class ProcessError(RuntimeError):
    """A daemon could not be started, found or stopped; the message says which and why."""


def find_binary(name: str, home: Path | None = None) -> str | None:
    """The copy `fleetctl deps` installed under `home/bin` first (a pinned version), then PATH,
    then sbin (nginx lives there and a user's PATH often lacks it)."""
    if home is not None:
        path = home / "bin" / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    for sbin in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        path = Path(sbin) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock held for the block: serialises fleetctl commands that would race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_atomic(path: Path, data: str) -> None:
    """Write via a temp file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_secret(path: Path, text: str) -> None:
    """Written with mode 600 from the start: a key or token is never readable by others, even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, 0o600)


def read_state_file(path: Path) -> str:
    """A small state file's text (pid, token, saved flag, JSON record); "" while there is none.

    Missing means "not written yet"; a file we may not read is an error and says so.
    """
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return ""


def remember(path: Path, value: str) -> None:
    """Keep one choice of `up` (its engine, its languages) in a state file, so that `scale`, `autoscale` and
    the autoscaler daemon keep it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n", encoding="utf-8")


def remembered(path: Path, env: Mapping[str, str], env_var: str) -> str:
    """The choice `remember` kept, "" for none; `env_var` set in `env` wins over it (then "" too)."""
    return "" if env.get(env_var) else read_state_file(path).strip()


def read_json(path: Path) -> dict[str, Any]:
    """A JSON state file as a dict: {} while there is none, or when it is torn or not an object."""
    try:
        data = json.loads(read_state_file(path) or "{}")
    except ValueError:  # torn by a crash, or not UTF-8: as good as none
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """A JSON state file, written atomically so that read_json never sees half of it."""
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_secret(path: Path) -> str:
    """A saved key, token or password ("" when there is none)."""
    return read_state_file(path).strip()


def read_pid(pid_path: Path) -> int | None:
    """The pid a pid file names, None when there is none (or no number in it)."""
    text = read_state_file(pid_path).strip()
    return int(text) if text.isdigit() else None


def reap(pid: int) -> None:
    """Collect a dead child of ours so it does not linger as a zombie (no-op for others)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def process_matches(
    pid: int, cmdline_contains: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> bool:
    """True when `pid` is alive (not a zombie) and its cmdline/environment match what we started."""
    reap(pid)
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        joined = " ".join(proc.cmdline())
        if not all(part in joined for part in cmdline_contains):
            return False
        if environ:
            env = proc.environ()
            if any(env.get(k) != v for k, v in environ.items()):
                return False
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def exec_pending(pid: int) -> bool:
    """Whether `pid`, just spawned, is alive but shows no command line yet. posix_spawn resumes the
    caller while the kernel still sets up the new program, and /proc/PID/cmdline reads empty until it
    has, so a check made at once must ask again rather than take it for a process that died."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return not proc.cmdline()
    except psutil.ZombieProcess:  # psutil's word for an empty read of a process that is no zombie
        return True
    except psutil.Error:
        return False


def live_pid(
    pid_path: Path, cmdline_contains: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> int | None:
    """The pid in `pid_path` if that process is alive and matches; else None."""
    pid = read_pid(pid_path)
    if pid is None or not process_matches(pid, cmdline_contains, environ):
        return None
    return pid


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    pid_path: Path,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start `argv` in its own session with output appended to `log_path`; record its pid.

    posix_spawn leaves no Popen object behind (no ResourceWarning, no tie to the caller),
    so the daemon outlives the command that started it.
    """
    exe = shutil.which(argv[0]) if os.sep not in argv[0] else argv[0]
    if exe is None:
        raise ProcessError(f"cannot start {argv[0]!r}: not found on PATH")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    # No cwd argument: posix_spawn has none before Python 3.13 and a chdir here would move
    # every thread of the caller. Our daemons get absolute paths for everything.
    pid = os.posix_spawn(
        exe,
        list(argv),
        dict(os.environ if env is None else env),
        file_actions=file_actions,
        setsid=True,
        # Python ignores SIGPIPE and that would be inherited; daemons expect the default.
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT),
    )
    write_atomic(pid_path, f"{pid}\n")
    return pid


def stop_process(pid: int, *, sig: int = signal.SIGTERM, grace: float = 10.0) -> bool:
    """Send `sig`, wait up to `grace` seconds, then SIGKILL it and any children left.

    Returns True if the process had to be killed. Children are collected first so that
    killing a master (nginx) never orphans its workers.
    """
    try:
        proc = psutil.Process(pid)
        children = proc.children(recursive=True)
        proc.send_signal(sig)
    except psutil.NoSuchProcess:
        reap(pid)
        return False
    killed = False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        reap(pid)
        if not _alive(proc):
            break
        time.sleep(0.05)
    else:
        killed = True
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    for child in children:
        if _alive(child):
            killed = True
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
    # A zombie counts as gone: its parent (maybe init, for a daemon) reaps it in its own time.
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in (proc, *children)) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.02)
    return killed


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[psutil.Process]:
    """Every live (non-zombie) process in a process group: master, workers, anything they spawned."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, deadline: float) -> bool:
    while True:
        reap(pgid)
        if not group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(GROUP_POLL_S)


def kill_group(pgid: int, grace: float) -> None:
    """SIGTERM a whole process group, SIGKILL what is left after `grace`; returns once it is gone.

    The group, not the leader's children: workers that outlived their master are reached too.
    """
    _killpg(pgid, signal.SIGTERM)
    if not _wait_group_gone(pgid, time.monotonic() + grace):
        _killpg(pgid, signal.SIGKILL)
        _wait_group_gone(pgid, time.monotonic() + 10.0)


def wait_for(
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
    fatal: tuple[type[BaseException], ...] = (),
) -> None:
    """Poll `check` until it returns True; raise ProcessError naming `what` after `timeout`.

    An exception from `check` means "not yet", except the `fatal` ones, which end the wait.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except fatal:
            raise
        except Exception:  # noqa: BLE001 - a failing probe just means "not yet"
            pass
        if time.monotonic() >= deadline:
            raise ProcessError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True if GET `url` answers 2xx."""
    try:
        return requests.get(url, timeout=timeout).ok
    except requests.RequestException:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for internal ports nobody else needs to know)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
