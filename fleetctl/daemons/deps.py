"""The programs a fleet runs besides Python: find them, or install them.

Installing runs the packaged copy of scripts/install-deps.sh (the script `make deps` runs), so
a checkout and an installed fleetctl install the same things the same way: nginx, Redis and ab
from apt, and a pinned Consul into FLEET_HOME/bin. The fleet's languages (FLEET_LANGS,
fleetctl/backends/langs.py) are Tesseract's Debian packs, installed by the same script and apt path.
"""
from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence

from fleetctl import procs, resources
from fleetctl.backends import langs
from fleetctl.backends.langs import Language
from fleetctl.config import FleetConfig
from fleetctl.errors import FleetError

# nginx-lua: Debian's libnginx-mod-http-lua, which API keys and the gateway's cache need (a module, not a program).
RUNTIME_TOOLS = ("nginx", "nginx-lua", "redis-server", "consul", "ab")
INSTALL_HINT = "fleetctl deps"


class DepsError(FleetError):
    """A program the fleet needs is missing or could not be installed; the message says what to run."""


def needed(cfg: FleetConfig) -> tuple[str, ...]:
    """What `up` starts itself: nginx always, Consul and Redis unless external ones are configured."""
    tools = ["nginx"]
    tools += ["nginx-lua"] if cfg.auth or cfg.gateway_cache else []
    tools += ["consul"] if cfg.managed_consul else []
    tools += ["redis-server"] if cfg.managed_redis else []
    return tuple(tools)


def locate(cfg: FleetConfig, tools: Sequence[str] = RUNTIME_TOOLS) -> dict[str, str | None]:
    """Each tool's path as fleetctl would run it (FLEET_HOME/bin, then PATH, then sbin), or None."""
    return {tool: _lua_module() if tool == "nginx-lua" else procs.find_binary(tool, cfg.home) for tool in tools}


def _lua_module() -> str | None:
    from fleetctl.errors import GatewayError
    from fleetctl.gateway.nginx import lua_modules

    try:
        return str(lua_modules()[-1])
    except GatewayError:
        return None


def missing(cfg: FleetConfig, tools: Sequence[str] = RUNTIME_TOOLS) -> list[str]:
    return [tool for tool, path in locate(cfg, tools).items() if path is None]


def missing_message(names: Sequence[str], also: str = "") -> str:
    """What is missing and the exact command that installs it (the --no-install failure)."""
    return (f"{', '.join(names)} not found in FLEET_HOME/bin or on PATH: run `{INSTALL_HINT}` to install "
            f"{'it' if len(names) == 1 else 'them'}{also}")


def install_argv(*, with_docker: bool = False, packs: Sequence[str] = ()) -> list[str]:
    """The installer's command line: the runtime set, plus Docker and these language packs when asked.

    `--lang-packs` replaces the script's own default packs, so an empty list installs no language.
    """
    argv = ["bash", str(resources.script("install-deps.sh")), "--runtime", f"--lang-packs={','.join(packs)}"]
    return argv + ["--with-docker"] if with_docker else argv


def install(cfg: FleetConfig, *, with_docker: bool = False, languages: Sequence[Language] = (),
            report: Callable[[str], None] = lambda _line: None) -> None:
    """Run the installer for this FLEET_HOME, with the packs these languages miss, passing its progress
    lines to `report` as they come."""
    from fleetctl.daemons.pidfiles import fleet_env  # the installer must see this fleet's FLEET_HOME

    packs = langs.missing_packages(languages, langs.tessdata_dir()) if languages else []
    tail: list[str] = []
    with subprocess.Popen(install_argv(with_docker=with_docker, packs=packs), env=fleet_env(cfg), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            report(line)
            tail = [*tail[-19:], line]
    if proc.returncode != 0:
        raise DepsError(f"installing the fleet's programs failed (exit {proc.returncode}):\n" + "\n".join(tail))
    still = missing(cfg)
    if still:
        raise DepsError(f"the installer finished but {', '.join(still)} still cannot be found "
                        f"(is /usr/sbin on PATH?)")
    unread = langs.missing_packages(languages, langs.tessdata_dir()) if languages else []
    if unread:
        raise DepsError(f"the installer finished but the data of {', '.join(unread)} is not in "
                        f"{langs.tessdata_dir() or 'any Tesseract data folder'} (set {langs.TESSDATA_VAR})")


def ensure(cfg: FleetConfig, *, allow_install: bool, report: Callable[[str], None],
           langs_on_host: bool = True) -> list[str]:
    """Make sure `up` can start its services and read the fleet's languages; installs what is missing
    unless told not to. `langs_on_host` is False for docker and swarm, whose image carries the packs.

    Returns what was installed (empty when everything was there).
    """
    absent = missing(cfg, needed(cfg))
    languages = langs.fleet_set(cfg) if langs_on_host else ()
    packs = langs.missing_packages(languages, langs.tessdata_dir()) if languages else []
    if not absent and not packs:
        return []
    if not allow_install:
        if absent:
            raise DepsError(missing_message(absent, " (or `fleetctl up` without --no-install)"))
        raise DepsError(f"the fleet's languages need {', '.join(packs)}: run `{langs.install_hint(languages)}` "
                        "(or `fleetctl up` without --no-install)")
    report(f"installing {', '.join([*absent, *packs])} (as `{INSTALL_HINT}` does; --no-install fails instead)")
    install(cfg, languages=languages, report=report)
    return [*absent, *packs]


def describe(found: dict[str, str | None], languages: Sequence[Language]) -> list[str]:
    """`fleetctl deps`'s report: where each program is, then each language's pack and whether its data is here."""
    tessdata = langs.tessdata_dir()
    packs = langs.check(languages, tessdata)
    width = max(map(len, [*found, "tessdata", *(f"lang {p.lang.code}" for p in packs)]))
    lines = [f"{tool.ljust(width)}  {path or 'missing'}" for tool, path in found.items()]
    lines += [f"{('lang ' + p.lang.code).ljust(width)}  {'present' if p.present else 'missing'}  "
              f"{p.package}  {p.lang.name}" for p in packs]
    lines.append(f"{'lang auto'.ljust(width)}  {'present' if langs.osd_present(tessdata) else 'missing'}  "
                 f"{langs.catalog.OSD_PACKAGE}  script detection")
    lines.append(f"{'tessdata'.ljust(width)}  {tessdata or 'missing'}")
    return lines
