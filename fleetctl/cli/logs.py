"""`fleetctl logs`: every source's lines merged in time order (the reading lives in fleetctl.logs)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from fleetctl.backends import Backend, UnknownInstance, existing_backends
from fleetctl.cli.base import app_context
from fleetctl.config import FleetConfig


class SinceType(click.ParamType):
    """--since: a duration back from now (30s, 5m, 2h, 1d) or an ISO time, as epoch seconds."""

    name = "since"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from fleetctl.logs import parse_since

        if isinstance(value, float):
            return value
        try:
            return parse_since(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class RegexType(click.ParamType):
    """--grep: a regular expression, compiled once so a bad one is a usage error."""

    name = "regex"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> re.Pattern[str]:
        if isinstance(value, re.Pattern):
            return value
        try:
            return re.compile(str(value))
        except re.error as exc:
            self.fail(f"{value!r} is not a regular expression: {exc}", param, ctx)


def _log_sources(cfg: FleetConfig, backends: list[Backend]) -> dict[str, Any]:
    """Services first, then every backend's instances (running, and stopped ones with a kept log)."""
    from fleetctl.daemons import pidfiles as daemons
    from fleetctl.logs import FileReader

    sources: dict[str, Any] = {name: FileReader(path) for name, path in daemons.log_files(cfg).items()}
    for backend in backends:
        sources.update(backend.log_readers())
    return sources


@click.command()
@click.argument("sources", nargs=-1)
@click.option("--since", type=SinceType(), default=None,
              help="Only lines from this long ago on (30s, 5m, 2h, 1d) or since an ISO time.")
@click.option("--grep", "pattern", type=RegexType(), default=None,
              help="Only lines matching this regular expression (e.g. a request id).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines, from every source, until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line: the line's own fields (or 'message'), 'source' and 'time'.")
@click.pass_context
def logs(ctx: click.Context, sources: tuple[str, ...], since: float | None, pattern: re.Pattern[str] | None,
         follow: bool, as_json: bool) -> None:
    """Instance, gateway and service logs, merged in time order.

    SOURCES are instance ids (ocr-8001), gateway (nginx's JSON access log), nginx (its error log),
    consul, redis, sync or autoscale; none means all of them. Logs of stopped process instances are kept and shown.
    Where no fleet runs in FLEET_HOME it says so on stderr, naming `fleetctl up`, then shows the logs the
    last one kept; with none kept, it exits 1.
    """
    from fleetctl import logs as fleet_logs
    from fleetctl.daemons import presence

    obj = app_context(ctx)
    backends = existing_backends(obj.cfg)  # asked once: -f rescans their instances, not the runtimes
    if not presence.running(obj.cfg) and not any(b.instances() for b in backends):
        message = presence.no_fleet_message(obj.cfg, Path.cwd())
        if not presence.has_logs(obj.cfg):
            raise presence.NoFleet(f"{message} (it has no logs either)")
        click.echo(f"note: {message}; these are the logs of the last one", err=True)
    try:
        chosen = fleet_logs.select(_log_sources(obj.cfg, backends), sources)
    except KeyError as exc:
        raise UnknownInstance(f"no running instance or log source {exc.args[0]!r} "
                              f"(sources: instance ids, gateway, nginx, consul, redis, sync, autoscale)") from None
    keep = fleet_logs.Filter(since, pattern)
    width = max((len(name) for name in chosen), default=0)

    def show(rec: Any) -> None:
        click.echo(rec.to_json() if as_json else rec.to_text(width))

    records, streams = fleet_logs.history(chosen, keep)
    for rec in records:
        show(rec)
    if not follow:
        return
    try:
        for rec in fleet_logs.follow(streams, keep, lambda: {} if sources else _log_sources(obj.cfg, backends)):
            show(rec)
    except KeyboardInterrupt:
        pass
