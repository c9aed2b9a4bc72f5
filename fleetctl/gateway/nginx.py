"""The nginx gateway's files and controls: templates, paths, `nginx -t`, reload.

Shared by the upstream loop (which rewrites upstream.conf) and the service manager
(which writes nginx.conf and runs the master), so neither imports the other.
"""
from __future__ import annotations

import math
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import psutil

from fleetctl import procs, resources
from fleetctl.config import FleetConfig, format_value
from fleetctl.errors import GatewayError

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_UNSAFE_PATH = re.compile(r'["\\$;{}\n\r]')




class TemplateError(GatewayError):
    """A template is missing or names a placeholder fleetctl does not fill."""


class ValidationError(GatewayError):
    """`nginx -t` rejected the rendered config; the message carries nginx's own words."""


class Reloader(Protocol):
    """What the upstream loop needs from the proxy: check a config, then apply it."""

    def validate(self) -> None: ...

    def reload(self) -> bool: ...


# --- paths ---------------------------------------------------------------------------------

def prefix(cfg: FleetConfig) -> Path:
    return cfg.nginx_dir


def nginx_conf_path(cfg: FleetConfig) -> Path:
    return cfg.nginx_dir / "nginx.conf"


def upstream_conf_path(cfg: FleetConfig) -> Path:
    return cfg.nginx_dir / "upstream.conf"


def state_path(cfg: FleetConfig) -> Path:
    """Where the sync loop records reloads and errors (read by status, never trusted for liveness)."""
    return cfg.nginx_dir / "sync-state.json"


def pid_path(cfg: FleetConfig) -> Path:
    return cfg.run_dir / "nginx.pid"


def error_log_path(cfg: FleetConfig) -> Path:
    return cfg.log_dir / "nginx-error.log"


def access_log_path(cfg: FleetConfig) -> Path:
    return cfg.log_dir / "nginx-access.log"


# --- templates -----------------------------------------------------------------------------

def builtin_templates_dir() -> Path:
    """The templates shipped in the package (nginx/ at the top of the source tree)."""
    return resources.data_path("nginx")


def template_text(cfg: FleetConfig, name: str) -> str:
    """An operator's copy in $FLEET_HOME/nginx/templates/ wins over the built-in one.

    Like consul-template, the template is read on every render, so an edit takes effect
    at the next change without restarting anything.
    """
    for directory in (cfg.nginx_dir / "templates", builtin_templates_dir()):
        path = directory / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise TemplateError(f"template {name} not found in {cfg.nginx_dir / 'templates'} or {builtin_templates_dir()}")


def fill(template: str, values: Mapping[str, str | int]) -> str:
    """Replace each double-brace placeholder; a multi-line value keeps the line's indentation."""
    out: list[str] = []
    for line in template.splitlines():
        indent = line[: len(line) - len(line.lstrip())]

        def sub(match: re.Match[str], indent: str = indent) -> str:
            key = match.group(1)
            if key not in values:
                raise TemplateError(f"template placeholder {key!r} is not one fleetctl fills")
            return str(values[key]).replace("\n", "\n" + indent)

        out.append(_PLACEHOLDER.sub(sub, line))
    return "\n".join(out) + "\n"


def quote_path(path: Path) -> str:
    """A path as an nginx string; refuse characters nginx would read as syntax or variables."""
    text = str(path)
    if _UNSAFE_PATH.search(text):
        raise GatewayError(f"FLEET_HOME path {text!r} contains characters nginx cannot take")
    return f'"{text}"'


def render_nginx_conf(cfg: FleetConfig) -> str:
    """The main config: our own prefix, pid, logs and temp paths; the gateway listener."""
    tmp = cfg.nginx_dir / "tmp"
    values: dict[str, str | int] = {
        # Workers must read the prefix; as root, nginx would otherwise drop them to "nobody".
        "user_directive": "user root;" if os.geteuid() == 0 else "# (not root: workers run as us)",
        "pid_file": quote_path(pid_path(cfg)),
        "lock_file": quote_path(cfg.nginx_dir / "nginx.lock"),
        "error_log": quote_path(error_log_path(cfg)),
        "access_log": quote_path(access_log_path(cfg)),
        "temp_client_body": quote_path(tmp / "client_body"),
        "temp_proxy": quote_path(tmp / "proxy"),
        "temp_fastcgi": quote_path(tmp / "fastcgi"),
        "temp_uwsgi": quote_path(tmp / "uwsgi"),
        "temp_scgi": quote_path(tmp / "scgi"),
        "upstream_conf": quote_path(upstream_conf_path(cfg)),
        "clients_conf": quote_path(cfg.nginx_dir / "clients.conf"),
        **front_door(cfg),
        "max_upload_mb": format_value(cfg.max_upload_mb),
        "body_buffer": f"{BODY_BUFFER_KB}k",
        "worker_processes": cfg.gateway_workers,
        # nginx sizes are whole numbers: a fractional MB limit is rounded up to whole KiB, never down.
        "max_body_size": f"{math.ceil(cfg.max_upload_mb * 1024)}k",
    }
    return fill(template_text(cfg, "nginx.conf.tmpl"), values)


LUA_MODULES = ("ndk_http_module.so", "ngx_http_lua_module.so")  # the Lua module needs NDK loaded first
MODULE_DIRS = (Path("/usr/lib/nginx/modules"), Path("/usr/lib64/nginx/modules"), Path("/usr/share/nginx/modules"))


def lua_modules() -> list[Path]:
    """Debian's libnginx-mod-http-lua, which FLEET_AUTH needs to hash keys."""
    for directory in MODULE_DIRS:
        found = [directory / name for name in LUA_MODULES]
        if all(p.is_file() for p in found):
            return found
    raise GatewayError("FLEET_AUTH needs nginx's Lua module: run `fleetctl deps` "
                       "(apt-get install libnginx-mod-http-lua)")


def front_door(cfg: FleetConfig) -> dict[str, str]:
    """The placeholders that turn API keys (FLEET_AUTH) and HTTPS (FLEET_TLS) on; off, nginx.conf is as before."""
    listen = [f"listen {cfg.gateway_host}:{cfg.gateway_port};"] if cfg.gateway_http else []
    if cfg.tls:
        from fleetctl.gateway import tls

        cert, key = tls.certificate(cfg)
        listen += [f"listen {cfg.gateway_host}:{cfg.gateway_tls_port} ssl;",
                   f"ssl_certificate {quote_path(cert)};", f"ssl_certificate_key {quote_path(key)};",
                   "ssl_protocols TLSv1.2 TLSv1.3;", "ssl_session_cache shared:fleet_tls:1m;"]
    if not listen:
        raise GatewayError("FLEET_GATEWAY_HTTP=0 turns plain HTTP off: it needs FLEET_TLS=1 (up --tls)")
    values = {"listen": "\n".join(listen), "modules": "# (none: FLEET_AUTH and FLEET_GATEWAY_CACHE are off)",
              "auth_headers": "# (FLEET_AUTH off: no keys)", "auth_server": "# (FLEET_AUTH off: /api/ is open)",
              **_cache(cfg)}
    if cfg.auth or cfg.gateway_cache:
        values["modules"] = "\n".join(f"load_module {quote_path(p)};" for p in lua_modules())
    if cfg.auth:
        # The instance learns who called (X-Client); the key itself goes no further than the gateway.
        values["auth_headers"] = ('proxy_set_header X-Client $fleet_client;\n'
                                  'proxy_set_header Authorization "";\nproxy_set_header X-API-Key "";')
        values["auth_server"] = template_text(cfg, "auth-server.conf.tmpl").rstrip("\n")
    return values


# Typical images stay in memory (and only those are hashed for the gateway's cache); bigger ones spill.
BODY_BUFFER_KB = 1024
AUTH_CHECK = 'if ($fleet_client = "") {\n    return 401;\n}'


def cache_dir(cfg: FleetConfig) -> Path:
    return cfg.nginx_dir / "cache"


def _cache(cfg: FleetConfig) -> dict[str, str]:
    """The gateway's own cache of answers (FLEET_GATEWAY_CACHE): a size bound and OCR_CACHE_TTL."""
    if not cfg.gateway_cache:
        return {"cache_http": "# (FLEET_GATEWAY_CACHE off: every request reaches an instance)",
                "cache_server": "# (FLEET_GATEWAY_CACHE off)"}
    http = "\n".join([
        f"proxy_cache_path {quote_path(cache_dir(cfg))} levels=1:2 keys_zone=fleet_cache:10m "
        f"max_size={cfg.gateway_cache_mb}m inactive={cfg.cache_ttl}s use_temp_path=off;",
        "map $upstream_cache_status $fleet_x_cache {", "    HIT HIT;", "    default $upstream_http_x_cache;", "}",
        # Stored only when the instance says its answer is a cacheable one: a batch (per-file errors
        # inside a 200) has no X-Cache, and BYPASS is a no-cache request.
        "map $upstream_http_x_cache $fleet_no_store {", '    MISS "";', '    HIT "";', '    COALESCED "";',
        "    default 1;", "}",
    ])
    server = fill(template_text(cfg, "cache-server.conf.tmpl"), {
        "auth_check": AUTH_CHECK if cfg.auth else "# (FLEET_AUTH off)", "cache_ttl": cfg.cache_ttl,
        "body_buffer_bytes": BODY_BUFFER_KB * 1024,
    }).rstrip("\n")
    return {"cache_http": http, "cache_server": server}


def front_door_state(cfg: FleetConfig) -> dict[str, object]:
    """What the nginx.conf on disk turns on (`up --auth/--tls/--cache` may differ from the environment)."""
    try:
        text = nginx_conf_path(cfg).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    tls = re.search(r"^\s*listen\s+(\S+)\s+ssl;", text, re.MULTILINE)
    return {"auth": "set_by_lua_block $fleet_key_hash" in text, "tls": f"https://{tls.group(1)}" if tls else None,
            "gateway_cache": "proxy_cache fleet_cache;" in text}


def make_dirs(cfg: FleetConfig) -> None:
    for d in (cfg.nginx_dir / "tmp", cfg.nginx_dir / "logs", cfg.nginx_dir / "cache", cfg.run_dir, cfg.log_dir):
        d.mkdir(parents=True, exist_ok=True)


# --- the nginx process -----------------------------------------------------------------------

def nginx_binary(cfg: FleetConfig) -> str:
    found = procs.find_binary("nginx", cfg.home)
    if found is None:
        raise GatewayError("nginx not found (run `fleetctl deps`, or put it on PATH)")
    return found


def nginx_argv(cfg: FleetConfig, *extra: str) -> list[str]:
    """-e, -p and -c so that nothing falls back to the distro's compiled-in /etc, /run or /var paths."""
    return [
        nginx_binary(cfg),
        "-e", str(error_log_path(cfg)),
        "-p", f"{prefix(cfg)}/",
        "-c", str(nginx_conf_path(cfg)),
        *extra,
    ]


def master_pid(cfg: FleetConfig) -> int | None:
    """Our nginx master, if its pid file names a live nginx started with our config."""
    return procs.live_pid(pid_path(cfg), ("nginx", str(nginx_conf_path(cfg))))


def install_validated(path: Path, new: str, old: str | None, reloader: Reloader) -> None:
    """Write `new` atomically and have nginx check it; on failure put `old` back (or remove the file)
    and re-raise, so a bad render never stays on disk for the next reload to pick up."""
    procs.write_atomic(path, new)
    try:
        reloader.validate()
    except GatewayError:
        if old is None:
            path.unlink(missing_ok=True)
        else:
            procs.write_atomic(path, old)
        raise


def install_if_changed(path: Path, new: str, reloader: Reloader) -> bool:
    """Compare with the file on disk and, when they differ, write and validate (install_validated);
    True if it changed. Reloading is the caller's: it records what nginx now serves."""
    try:
        old: str | None = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = None
    if new == old:
        return False
    install_validated(path, new, old, reloader)
    return True


class NginxReloader:
    """Validates with `nginx -t` and reloads our master with SIGHUP, waiting for new workers."""

    def __init__(self, cfg: FleetConfig, *, timeout: float = 10.0) -> None:
        self.cfg = cfg
        self.timeout = timeout

    def validate(self) -> None:
        result = subprocess.run(
            nginx_argv(self.cfg, "-t", "-q"), capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise ValidationError((result.stderr or result.stdout).strip() or "nginx -t failed")

    def reload(self) -> bool:
        """SIGHUP the master; True once a worker with the new config runs, False if nginx is down."""
        pid = master_pid(self.cfg)
        if pid is None:
            return False
        before = _worker_pids(pid)
        os.kill(pid, signal.SIGHUP)
        # The master forks workers with the new config, then tells the old ones to stop
        # accepting. Once only new workers accept, every request from now on sees the new
        # upstream, which callers (scale waits, tests) rely on.

        def switched() -> bool:
            accepting = _worker_pids(pid)
            return bool(accepting - before) and not (accepting & before)

        procs.wait_for(switched, timeout=self.timeout, what="nginx to switch to workers with the new config")
        return True


def _worker_pids(master: int) -> set[int]:
    """Workers that still accept connections (an old one retitles itself when told to quit)."""
    try:
        return {
            child.pid
            for child in psutil.Process(master).children()
            if "shutting down" not in " ".join(child.cmdline())
        }
    except psutil.NoSuchProcess:
        return set()


def start_nginx(cfg: FleetConfig, *, timeout: float = 10.0) -> int:
    """Start the master (it daemonizes itself) and wait until it answers /nginx-health."""
    ports = {"FLEET_GATEWAY_PORT": cfg.gateway_port} if cfg.gateway_http else {}
    ports.update({"FLEET_GATEWAY_TLS_PORT": cfg.gateway_tls_port} if cfg.tls else {})
    for setting, port in ports.items():
        if procs.port_open(cfg.gateway_host, port):
            # Say which setting to change instead of nginx's five bind() retries.
            raise GatewayError(f"{cfg.gateway_host}:{port} is already in use by another process ({setting})")
    result = subprocess.run(nginx_argv(cfg), capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise GatewayError(f"nginx did not start: {(result.stderr or result.stdout).strip()}")
    health = f"{cfg.gateway_url}/nginx-health"
    if not cfg.gateway_http:  # HTTPS only: a listening TLS port is as far as a check without the CA goes
        health = f"{cfg.gateway_tls_url} (FLEET_GATEWAY_TLS_PORT)"
    try:
        procs.wait_for(
            lambda: master_pid(cfg) is not None and (
                procs.http_ok(health) if cfg.gateway_http else procs.port_open(cfg.gateway_host, cfg.gateway_tls_port)),
            timeout=timeout,
            what=f"nginx to answer {health}",
        )
    except procs.ProcessError as exc:
        raise GatewayError(f"{exc}\n{procs.log_tail(error_log_path(cfg))}") from None
    pid = master_pid(cfg)
    assert pid is not None
    return pid
