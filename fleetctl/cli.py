"""fleetctl: one Click group whose commands parse input and call plain functions.

Typed errors raised anywhere below are turned into exit codes in exactly one place,
`FleetGroup.invoke`: 0 ok, 1 error, 2 usage (Click's own), 3 timeout.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from fleetctl import config as fleet_config
from fleetctl.backends import Backend, FleetError, UnknownInstance, existing_backends, make_backend
from fleetctl.config import BACKENDS, ENGINES, ConfigError, FleetConfig

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3


class ExitError(click.ClickException):
    """A failure Click prints as 'Error: message' before exiting with code 1."""

    exit_code = EXIT_ERROR


class TimeoutExit(ExitError):
    """The fleet did not converge in time: exit code 3, so scripts can tell it from other errors."""

    exit_code = EXIT_TIMEOUT


def _translatable() -> tuple[type[BaseException], ...]:
    """Every error type that means 'could not do it' rather than 'fleetctl has a bug'."""
    from fleetctl import procs
    from fleetctl.consul_api import CONSUL_ERRORS
    from fleetctl.gateway import GatewayError

    return (FleetError, ConfigError, procs.ProcessError, GatewayError, *CONSUL_ERRORS)


class FleetGroup(click.Group):
    """The group that translates errors once, for the console script and for CliRunner alike."""

    def invoke(self, ctx: click.Context) -> Any:
        from fleetctl.fleet import ScaleTimeout

        try:
            return super().invoke(ctx)
        except ScaleTimeout as exc:
            pending = "".join(f"\n  still pending: {p}" for p in exc.pending)
            raise TimeoutExit(f"{exc}{pending}") from None
        except click.ClickException:
            raise
        except _translatable() as exc:
            raise ExitError(str(exc)) from None


@dataclass
class AppContext:
    """Shared per-invocation state in ctx.obj: the config, and clients made on first use."""

    cfg: FleetConfig
    make_consul: Callable[[FleetConfig], Any] | None = None
    _consul: Any = field(default=None, repr=False)

    def consul(self) -> Any:
        if self._consul is None:
            if self.make_consul is None:
                from fleetctl.consul_api import client_for

                self.make_consul = client_for
            self._consul = self.make_consul(self.cfg)
        return self._consul

    def backend(self, name: str | None) -> Backend:
        return make_backend(name or self.cfg.backend, self.cfg, report=_progress)

    def fleet(self, backend: Backend) -> Any:
        from fleetctl import upstream
        from fleetctl.fleet import Fleet

        return Fleet(cfg=self.cfg, backend=backend, consul=self.consul(),
                     upstream_members=upstream.upstream_members, reload_count=upstream.reload_count,
                     report=_progress)


def _progress(message: str) -> None:
    """Progress goes to stderr so stdout stays parseable (plans, JSON, the gateway URL)."""
    click.echo(message, err=True)


def _obj(ctx: click.Context) -> AppContext:
    obj = ctx.find_object(AppContext)
    if obj is None:  # pragma: no cover - the group always sets it
        raise click.UsageError("no fleet context")
    return obj


backend_option = click.option(
    "--backend", type=click.Choice(BACKENDS), default=None,
    help="Where instances run: host processes, docker containers, or the tasks of one Swarm service "
         "(swarm; up makes the engine a single-node swarm if it is in none) [default: FLEET_BACKEND or process].",
)
engine_option = click.option(
    "--engine", type=click.Choice(ENGINES), default=None,
    help="The OCR engine instances run: rapidocr, or PaddleOCR's own pipeline from its own venv (paddleocr; "
         "built when missing, see docs/engines.md) [default: OCR_ENGINE, else the engine `up` last chose, "
         "else rapidocr].",
)
timeout_option = click.option(
    "--timeout", type=click.FloatRange(min=1), default=180.0, show_default=True,
    help="Seconds to wait for the fleet to converge before exiting with code 3.",
)


@click.group(cls=FleetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ocr-fleet", prog_name="fleetctl")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Run and scale the OCR fleet: instances behind Consul, Redis and an nginx gateway.

    Settings come from FLEET_* environment variables (FLEET_HOME, FLEET_BACKEND, ports);
    the daemons fleetctl starts inherit them, so set them, not per-command flags.
    State lives in FLEET_HOME, by default ~/.local/state/ocr-fleet (or $XDG_STATE_HOME/ocr-fleet).
    """
    if ctx.obj is None:
        import os

        from fleetctl import cluster

        try:
            # The file layer: `up --advertise/--join` saved them in FLEET_HOME (the environment wins).
            from fleetctl import engines

            ctx.obj = AppContext(engines.apply_saved(cluster.apply_saved(fleet_config.load(), os.environ), os.environ))
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None


def _warn_oversubscription(cfg: FleetConfig, n: int) -> None:
    from fleetctl.fleet import oversubscription_warning

    warning = oversubscription_warning(cfg, n)
    if warning:
        click.secho(warning, fg="yellow", err=True)


def _note_other_backends(obj: AppContext, chosen: Backend) -> None:
    from fleetctl.fleet import other_backends_note

    note = other_backends_note(chosen, existing_backends(obj.cfg))
    if note:
        click.secho(note, fg="yellow", err=True)


def _print_plan(plan: Any) -> None:
    for line in plan.describe():
        click.echo(line)


class BoundsType(click.ParamType):
    """--autoscale MIN:MAX, two whole numbers with 1 <= MIN <= MAX."""

    name = "min:max"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        m = re.fullmatch(r" *([0-9]{1,6}) *: *([0-9]{1,6}) *", str(value))
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
            self.fail(f"{value!r} is not MIN:MAX with 1 <= MIN <= MAX (e.g. 1:3)", param, ctx)
        return int(m.group(1)), int(m.group(2))


@main.command()
@click.option("-n", "--instances", type=click.IntRange(min=0), default=2, show_default=True,
              help="How many instances to run (with --autoscale: to start with, kept within MIN:MAX).")
@backend_option
@timeout_option
@click.option("--no-install", is_flag=True,
              help="Fail, naming the command to run, instead of installing a missing nginx, Redis or Consul.")
@click.option("--autoscale", "bounds", type=BoundsType(), default=None,
              help="Also run the autoscaler as a managed daemon between MIN and MAX instances "
                   "(see `fleetctl autoscale --help`; its log: `fleetctl logs autoscale`).")
@click.option("--advertise", metavar="ADDR", default=None,
              help="This host's IPv4 address, for a fleet of several hosts (docs/multihost.md): a real Consul "
                   "agent, and every service listening on ADDR [default: FLEET_ADVERTISE; none: one machine].")
@click.option("--join", metavar="ADDR[,ADDR]", default=None,
              help="Hosts already in the fleet to join (their --advertise addresses) [default: FLEET_JOIN]. "
                   "Both flags are saved in FLEET_HOME for the commands that follow.")
@click.option("--auth", is_flag=True, default=None,
              help="/api/ needs an API key (fleetctl keys create) [default: FLEET_AUTH or off].")
@click.option("--tls", is_flag=True, default=None,
              help="Also serve HTTPS on FLEET_GATEWAY_TLS_PORT (8443) with FLEET_TLS_CERT/FLEET_TLS_KEY, "
                   "or a self-signed pair made in FLEET_HOME/tls [default: FLEET_TLS or off].")
@click.option("--cache", is_flag=True, default=None,
              help="nginx answers repeated identical uploads itself, for OCR_CACHE_TTL "
                   "[default: FLEET_GATEWAY_CACHE or off].")
@engine_option
@click.pass_context
def up(ctx: click.Context, instances: int, backend: str | None, timeout: float, no_install: bool,
       bounds: tuple[int, int] | None, advertise: str | None, join: str | None,
       auth: bool | None, tls: bool | None, cache: bool | None, engine: str | None) -> None:
    """Install what is missing, start the managed services, scale to N instances and print the gateway
    URL, then the HTTPS one with --tls (idempotent).

    Without --auth/--tls/--cache the gateway is open plain HTTP with no cache of its own, as FLEET_AUTH,
    FLEET_TLS and FLEET_GATEWAY_CACHE say (off by default); `up` again without the flags turns them off.
    """
    from fleetctl import cluster, deps, engines, services
    from fleetctl.fleet import scale as converge

    obj = _obj(ctx)
    if advertise is not None or join is not None:
        try:
            obj.cfg = cluster.validate(obj.cfg.replace(advertise=advertise, join=join))
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None
    obj.cfg = obj.cfg.replace(auth=1 if auth else None, tls=1 if tls else None,
                              gateway_cache=1 if cache else None, engine=engine)
    chosen = obj.backend(backend)  # first: a missing Docker fails before services start
    if bounds is not None:
        from fleetctl.autoscale import policy_from

        policy_from(obj.cfg, *bounds)  # a bad FLEET_AUTOSCALE_* fails here, not in the daemon's log
        instances = max(bounds[0], min(bounds[1], instances))
    deps.ensure(obj.cfg, allow_install=not no_install, report=_progress)
    engines.ensure(obj.cfg, allow_install=not no_install, report=_progress)
    engines.save(obj.cfg)
    services.ensure_services(obj.cfg)
    cluster.save(obj.cfg)  # once its services run this way: later commands on this host follow them
    _warn_oversubscription(obj.cfg, bounds[1] if bounds else instances)
    _note_other_backends(obj, chosen)
    converge(obj.fleet(chosen), instances, timeout=timeout,
             show_plan=lambda p: None if p.is_noop else _print_plan(p))
    if bounds is not None:
        pid = services.ensure_autoscaler(obj.cfg, chosen.name, *bounds)
        _progress(f"autoscaler running (pid {pid}) between {bounds[0]} and {bounds[1]} instance(s)")
    if obj.cfg.gateway_http:
        click.echo(obj.cfg.gateway_url)
    if obj.cfg.tls:
        click.echo(obj.cfg.gateway_tls_url)


@main.command()
@click.option("--min", "lo", type=click.IntRange(min=1), default=None, help="Never fewer instances than this.")
@click.option("--max", "hi", type=click.IntRange(min=1), default=None, help="Never more instances than this.")
@backend_option
@click.option("--scale-down-window", type=click.FloatRange(min=0), default=None,
              help="Seconds of low load before scaling down [default: FLEET_AUTOSCALE_DOWN_WINDOW or 300].")
@click.option("--scale-up-window", type=click.FloatRange(min=0), default=None,
              help="Seconds load must stay above target before scaling up "
                   "[default: FLEET_AUTOSCALE_UP_WINDOW or 5].")
@click.option("--cooldown", type=click.FloatRange(min=0), default=None,
              help="Seconds between two scaling actions [default: FLEET_AUTOSCALE_COOLDOWN or 30].")
@click.option("--poll", type=click.FloatRange(min=0.2, max=60), default=None,
              help="Seconds between two looks at /metrics [default: FLEET_AUTOSCALE_POLL or 2].")
@click.option("--target", type=click.FloatRange(min=0.1), default=None,
              help="In-flight plus queued OCR jobs per worker to aim at [default: FLEET_AUTOSCALE_TARGET or 2].")
@timeout_option
@click.option("--stop", is_flag=True, help="Stop the autoscaler that `up --autoscale` started, and exit.")
@click.pass_context
def autoscale(ctx: click.Context, lo: int | None, hi: int | None, backend: str | None,
              scale_down_window: float | None, scale_up_window: float | None, cooldown: float | None,
              poll: float | None, target: float | None, timeout: float, stop: bool) -> None:
    """Size the fleet from load between --min and --max, in the foreground until Ctrl-C.

    Every poll reads each instance's /metrics: in-flight and queued OCR jobs decide the count
    (jobs / target per worker), the CPU the instances use keeps a busy fleet from shrinking.
    Like Kubernetes' HPA, it scales up once load stays high for the up window, scales down only
    after the scale-down window, and waits the cooldown between actions; scale-down drains as
    `scale` does. Each decision is logged with its reason; `fleetctl status` shows the target
    and the last decision. `fleetctl up --autoscale MIN:MAX` runs this as a managed daemon.
    """
    from fleetctl import autoscale as scaler_mod
    from fleetctl import services
    from fleetctl.fleet import scale as converge

    obj = _obj(ctx)
    if stop:
        stopped = services.stop_autoscaler(obj.cfg)
        click.echo("autoscaler stopped" if stopped else "no autoscaler was running")
        return
    if lo is None or hi is None:
        raise click.UsageError("--min and --max are both required (or --stop)")
    obj.cfg = obj.cfg.replace(autoscale_down_window=scale_down_window, autoscale_up_window=scale_up_window,
                              autoscale_cooldown=cooldown, autoscale_poll=poll, autoscale_target=target)
    policy = scaler_mod.policy_from(obj.cfg, lo, hi)
    chosen = obj.backend(backend)
    _require_consul(obj)

    def log_plan(plan: Any) -> None:
        for line in plan.describe():
            scaler_mod.log.info("plan: %s", line)

    def apply(fleet: Any, n: int) -> Any:
        return converge(fleet, n, timeout=timeout, show_plan=log_plan)

    fleet = obj.fleet(chosen)
    fleet.report = lambda message: scaler_mod.log.info("%s", message)  # timestamped, in the decision log
    scaler = scaler_mod.Autoscaler(fleet=fleet, policy=policy, apply=apply)
    scaler_mod.run_daemon(scaler, obj.cfg.autoscale_poll)


@main.command()
@click.argument("n", type=click.IntRange(min=0))
@backend_option
@click.option("--no-wait", is_flag=True,
              help="Return once new instances are started (removed ones still drain).")
@timeout_option
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.pass_context
def scale(
    ctx: click.Context, n: int, backend: str | None, no_wait: bool, timeout: float, dry_run: bool
) -> None:
    """Converge to N instances: start missing ones, replace stale ones, drain and stop extra ones."""
    from fleetctl.fleet import make_plan
    from fleetctl.fleet import scale as converge

    obj = _obj(ctx)
    chosen = obj.backend(backend)
    if dry_run:
        _print_plan(make_plan(obj.fleet(chosen), n))  # only the runtime is asked: needs no service
        return
    _warn_oversubscription(obj.cfg, n)
    _require_consul(obj)
    _note_other_backends(obj, chosen)
    converge(obj.fleet(chosen), n, wait=not no_wait, timeout=timeout, show_plan=_print_plan)


def _require_consul(obj: AppContext) -> None:
    """Scaling needs the agent and the sync loop; say so instead of timing out later."""
    from fleetctl.consul_api import reachable

    if not reachable(obj.consul()):
        raise ExitError(f"Consul at {obj.cfg.consul_address} is not reachable: run `fleetctl up` first")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """One row per instance (health, upstream, memory, uptime, traffic) and per managed service.

    Warns on stderr about instances whose RSS is above FLEET_RSS_WARN_MB (default 1024; 0: off).
    """
    from fleetctl import services, upstream
    from fleetctl.status import collect, render_table

    obj = _obj(ctx)
    result = collect(obj.cfg, existing_backends(obj.cfg), obj.consul(),
                     members=upstream.upstream_members, services=services.service_states)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=False))
    else:
        click.echo(render_table(result))
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


@main.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop every instance (all backends) and every managed service; leaves no process behind."""
    from fleetctl import services
    from fleetctl.fleet import down as fleet_down

    obj = _obj(ctx)
    services.stop_autoscaler(obj.cfg)  # first: it would restart the instances stopped below
    count = fleet_down(obj.cfg, existing_backends(obj.cfg), obj.consul(), services.stop_services, _progress)
    click.echo(f"stopped {count} instance(s) and the managed services")


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
    from fleetctl import services
    from fleetctl.logs import FileReader

    sources: dict[str, Any] = {name: FileReader(path) for name, path in services.log_files(cfg).items()}
    for backend in backends:
        sources.update(backend.log_readers())
    return sources


@main.command()
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
    """
    from fleetctl import logs as fleet_logs

    obj = _obj(ctx)
    backends = existing_backends(obj.cfg)  # asked once: -f rescans their instances, not the runtimes
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


@main.command()
@click.option("--check", is_flag=True, help="Only report; exit 1 if something is missing.")
@click.option("--with-docker", is_flag=True, help="Also install Docker (for --backend docker) and start it.")
@engine_option
@click.pass_context
def deps(ctx: click.Context, check: bool, with_docker: bool, engine: str | None) -> None:
    """Install or find what the fleet runs: nginx, Redis and ab (apt) and Consul (FLEET_HOME/bin).

    With --engine paddleocr also (re)build that engine's venv (FLEET_PADDLE_VENV, by default beside
    fleetctl's venv). Idempotent and quick when everything is present; prints where each program was found.
    """
    from fleetctl import deps as fleet_deps
    from fleetctl import engines

    obj = _obj(ctx)
    if engine == engines.PADDLE:
        cfg = obj.cfg.replace(engine=engine)
        if check:
            click.echo(f"paddleocr venv  {engines.instance_python(cfg)}")
        else:
            engines.build_paddle_venv(cfg, report=_progress)
    if not check and (with_docker or fleet_deps.missing(obj.cfg)):
        fleet_deps.install(obj.cfg, with_docker=with_docker, report=_progress)
    found = fleet_deps.locate(obj.cfg)
    width = max(map(len, found))
    for tool, path in found.items():
        click.echo(f"{tool.ljust(width)}  {path or 'missing'}")
    absent = [tool for tool, path in found.items() if path is None]
    if absent:
        raise ExitError(fleet_deps.missing_message(absent))


@main.command()
@click.option("--once", is_flag=True, help="One pass: render, compare, validate, reload if changed.")
@click.pass_context
def sync(ctx: click.Context, once: bool) -> None:
    """Keep the nginx upstream in step with Consul (the loop `up` runs as a daemon)."""
    from fleetctl import upstream
    from fleetctl.gateway import NginxReloader

    obj = _obj(ctx)
    if once:
        changed = upstream.sync_once(obj.cfg, obj.consul(), NginxReloader(obj.cfg))
        click.echo("upstream changed" if changed else "upstream unchanged")
        return
    code = upstream.run_sync_daemon(obj.cfg)
    if code:
        raise ExitError("the sync loop stopped with an error (see the log above)")


@main.command()
@click.pass_context
def render(ctx: click.Context) -> None:
    """Print the upstream config the sync loop would write now (changes nothing)."""
    from fleetctl import upstream

    obj = _obj(ctx)
    _, backends = upstream.passing_backends(obj.consul(), obj.cfg.service_name, None, "")
    click.echo(upstream.render_upstream(backends, obj.cfg), nl=False)



@main.group()
def keys() -> None:
    """API keys for the gateway (FLEET_AUTH=1, `up --auth`): only their hashes are kept, in Consul."""


@keys.command("create")
@click.argument("name")
@click.option("--rate", default="", help="This key's rate limit in nginx's form (10r/s, 600r/m) "
                                         "[default: FLEET_RATE, or none].")
@click.pass_context
def keys_create(ctx: click.Context, name: str, rate: str) -> None:
    """Make a key for client NAME and print it, alone, on the last line: it is shown only this once."""
    from fleetctl import keys as api_keys

    obj = _obj(ctx)
    key, secret = api_keys.create(obj.consul(), obj.cfg, name, rate)
    _progress(f"created key {key.name!r} (rate {key.rate or obj.cfg.rate or 'unlimited'}); "
              f"send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
    click.echo(secret)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    """Every key's name, rate and creation time (never the key)."""
    import datetime

    from fleetctl import keys as api_keys

    obj = _obj(ctx)
    _, found = api_keys.fetch(obj.consul(), obj.cfg)
    if as_json:
        click.echo(json.dumps([{"name": k.name, "rate": k.rate, "created": k.created} for k in found], indent=2))
        return
    for k in found:
        created = datetime.datetime.fromtimestamp(k.created, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        click.echo(f"{k.name}\t{k.rate or '-'}\t{created}")


@keys.command("revoke")
@click.argument("name")
@click.pass_context
def keys_revoke(ctx: click.Context, name: str) -> None:
    """Delete client NAME's key: every gateway refuses it within seconds (401)."""
    from fleetctl import keys as api_keys

    obj = _obj(ctx)
    api_keys.revoke(obj.consul(), obj.cfg, name)
    click.echo(f"revoked {name}")
