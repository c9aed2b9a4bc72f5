"""fleetctl: one Click group whose commands parse input and call plain functions.

The fleet's lifecycle (up, scale, autoscale, status, down, deps) is here; logs and the gateway's
commands live in cli_logs and cli_gateway, the shared plumbing in cli_base.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from fleetctl import config as fleet_config
from fleetctl.backends import Backend, existing_backends
from fleetctl.cli.base import (
    AppContext,
    ExitError,
    FleetGroup,
    app_context,
    backend_option,
    engine_option,
    progress,
    timeout_option,
)
from fleetctl.cli.gateway import keys, render, sync
from fleetctl.cli.logs import logs
from fleetctl.config import ConfigError, FleetConfig

__all__ = ["AppContext", "FleetGroup", "main"]


@click.group(cls=FleetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ocr-fleet", prog_name="fleetctl")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Run and scale the OCR fleet: instances behind Consul, Redis and an nginx gateway.

    Settings come from FLEET_* environment variables (FLEET_HOME, FLEET_BACKEND, ports);
    the daemons fleetctl starts inherit them, so set them, not per-command flags.
    State lives in FLEET_HOME, by default ~/.local/state/ocr-fleet (or $XDG_STATE_HOME/ocr-fleet),
    `make up`'s too: one fleet per user, found from any directory. Where none runs there, scale,
    status, logs and down say so and name `fleetctl up`.
    """
    if ctx.obj is None:
        import os

        from fleetctl.cluster import agent as cluster

        try:
            # The file layer: `up --advertise/--join` saved them in FLEET_HOME (the environment wins).
            from fleetctl.backends import engines, langs

            cfg = engines.apply_saved(cluster.apply_saved(fleet_config.load(), os.environ), os.environ)
            ctx.obj = AppContext(langs.apply_saved(cfg, os.environ))
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None


def _with_langs(cfg: FleetConfig, codes: str | None, flag: str) -> FleetConfig:
    """The config with a --langs list applied; an unknown code (there or in FLEET_LANGS) is refused at once."""
    from fleetctl.backends import langs

    try:
        if codes is not None:
            langs.parse(codes)  # names the unknown codes before the pattern would
            cfg = cfg.replace(langs=codes)
        langs.fleet_set(cfg)
    except (ConfigError, langs.LangsError) as exc:
        raise click.BadParameter(str(exc), param_hint=flag if codes is not None else None) from None
    return cfg


def _warn_oversubscription(cfg: FleetConfig, n: int) -> None:
    from fleetctl.fleet.orchestrate import oversubscription_warning

    warning = oversubscription_warning(cfg, n)
    if warning:
        click.secho(warning, fg="yellow", err=True)


def _note_other_backends(obj: AppContext, chosen: Backend) -> None:
    from fleetctl.fleet.orchestrate import other_backends_note

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
                   "agent with ACLs (deny by default), a Redis with a password, and every service listening on "
                   "ADDR [default: FLEET_ADVERTISE; none: one machine, no ACLs or password].")
@click.option("--join", metavar="ADDR[,ADDR]", default=None,
              help="Hosts already in the fleet to join (their --advertise addresses) [default: FLEET_JOIN]. "
                   "Needs the first host's Consul ACL token in FLEET_CONSUL_TOKEN and gossip key in "
                   "FLEET_CONSUL_ENCRYPT (its FLEET_HOME/consul.token and gossip.key). A host running the "
                   "single-machine default (no --advertise) cannot be joined: refused at once. "
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
@click.option("--langs", "lang_codes", metavar="CODES", default=None,
              help="The fleet's languages, comma-separated ISO 639-1 or Tesseract codes (de,ru,ar,hi; `default` "
                   "stands for the default set): every instance gets them as OCR_LANGS, and their missing "
                   "Tesseract packs are installed (process backend; the image carries its own). Saved in "
                   "FLEET_HOME for the commands that follow [default: FLEET_LANGS, else the set `up` last "
                   "chose, else the default set].")
@click.pass_context
def up(ctx: click.Context, instances: int, backend: str | None, timeout: float, no_install: bool,
       bounds: tuple[int, int] | None, advertise: str | None, join: str | None,
       auth: bool | None, tls: bool | None, cache: bool | None, engine: str | None,
       lang_codes: str | None) -> None:
    """Install what is missing, start the managed services, scale to N instances and print the gateway
    URL, then the HTTPS one with --tls (idempotent).

    Without --auth/--tls/--cache the gateway is open plain HTTP with no cache of its own, as FLEET_AUTH,
    FLEET_TLS and FLEET_GATEWAY_CACHE say (off by default); `up` again without the flags turns them off.
    """
    from fleetctl.autoscale import daemon as autoscale_daemon
    from fleetctl.backends import engines, langs
    from fleetctl.cluster import acl, gossip
    from fleetctl.cluster import agent as cluster
    from fleetctl.daemons import deps, services
    from fleetctl.fleet.orchestrate import scale as converge

    obj = app_context(ctx)
    obj.cfg = _with_langs(obj.cfg, lang_codes, "--langs")
    if advertise is not None or join is not None:
        try:
            obj.cfg = cluster.validate(obj.cfg.replace(advertise=advertise, join=join))
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None
    obj.cfg = obj.cfg.replace(auth=1 if auth else None, tls=1 if tls else None,
                              gateway_cache=1 if cache else None, engine=engine)
    chosen = obj.backend(backend)  # first: a missing Docker fails before services start
    if chosen.name == "process":
        engines.require_server(obj.cfg)  # a light install fails before anything is installed or started
    else:  # docker and swarm instances read the image's language packs, not this host's
        langs.check_image(obj.cfg, getattr(chosen, "client", None))
    if bounds is not None:
        from fleetctl.autoscale.loop import policy_from

        policy_from(obj.cfg, *bounds)  # a bad FLEET_AUTOSCALE_* fails here, not in the daemon's log
        instances = max(bounds[0], min(bounds[1], instances))
    deps.ensure(obj.cfg, allow_install=not no_install, report=progress, langs_on_host=chosen.name == "process")
    engines.ensure(obj.cfg, allow_install=not no_install, report=progress)
    engines.save(obj.cfg)
    langs.save(obj.cfg)
    services.ensure_services(obj.cfg)
    cluster.save(obj.cfg)  # once its services run this way: later commands on this host follow them
    if obj.cfg.clustered and not obj.cfg.join and gossip.encrypted(obj.cfg):
        progress("Consul gossip is encrypted: hosts that join need FLEET_CONSUL_ENCRYPT set to the key "
                  "in FLEET_HOME/gossip.key")
    if obj.cfg.clustered and not obj.cfg.join and acl.enabled(obj.cfg):
        progress("Consul has ACLs: hosts that join need FLEET_CONSUL_TOKEN set to the management token "
                  "in FLEET_HOME/consul.token")
    _warn_oversubscription(obj.cfg, bounds[1] if bounds else instances)
    _note_other_backends(obj, chosen)
    converge(obj.fleet(chosen), instances, timeout=timeout,
             show_plan=lambda p: None if p.is_noop else _print_plan(p))
    if bounds is not None:
        pid = autoscale_daemon.ensure(obj.cfg, chosen.name, *bounds)
        progress(f"autoscaler running (pid {pid}) between {bounds[0]} and {bounds[1]} instance(s)")
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
    from fleetctl.autoscale import daemon as autoscale_daemon
    from fleetctl.autoscale import loop as scaler_mod
    from fleetctl.fleet.orchestrate import scale as converge

    obj = app_context(ctx)
    if stop:
        stopped = autoscale_daemon.stop(obj.cfg)
        click.echo("autoscaler stopped" if stopped else "no autoscaler was running")
        return
    if lo is None or hi is None:
        raise click.UsageError("--min and --max are both required (or --stop)")
    obj.cfg = obj.cfg.replace(autoscale_down_window=scale_down_window, autoscale_up_window=scale_up_window,
                              autoscale_cooldown=cooldown, autoscale_poll=poll, autoscale_target=target)
    policy = scaler_mod.policy_from(obj.cfg, lo, hi)
    chosen = obj.backend(backend)
    _require_fleet(obj)

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
    """Converge to N instances: start missing ones, replace stale ones, drain and stop extra ones.

    Needs the fleet `fleetctl up` started in FLEET_HOME: where none runs (or not its gateway), it
    exits 1 at once, naming `fleetctl up`, and starts nothing (--dry-run still prints the plan).
    """
    from fleetctl.daemons import presence
    from fleetctl.fleet.orchestrate import make_plan
    from fleetctl.fleet.orchestrate import scale as converge

    obj = app_context(ctx)
    chosen = obj.backend(backend)
    if dry_run:
        _print_plan(make_plan(obj.fleet(chosen), n))  # only the runtime is asked: needs no service
        if not presence.running(obj.cfg):
            progress(f"note: {presence.no_fleet_message(obj.cfg, Path.cwd())}")
        return
    _require_fleet(obj)
    _warn_oversubscription(obj.cfg, n)
    _note_other_backends(obj, chosen)
    converge(obj.fleet(chosen), n, wait=not no_wait, timeout=timeout, show_plan=_print_plan)


def _require_fleet(obj: AppContext) -> None:
    """New instances join this home's gateway through Consul: without either, say so now (naming
    `fleetctl up`) rather than start instances that time out waiting for an upstream."""
    from fleetctl.cluster.consul_api import reachable
    from fleetctl.daemons import presence

    presence.require_gateway(obj.cfg, presence.running(obj.cfg), Path.cwd())
    if not reachable(obj.consul()):
        raise ExitError(f"Consul at {obj.cfg.consul_address} is not reachable: run `fleetctl up` first")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """One row per instance (health, upstream, memory, uptime, traffic) and per managed service.

    Where no fleet runs in FLEET_HOME it says so, naming `fleetctl up`, and exits 0 (--json: the same
    shape, every service stopped, the message in `warnings`). Warns on stderr about a gateway that is
    not running, and about instances whose RSS is above FLEET_RSS_WARN_MB (default 1024; 0: off).
    """
    from fleetctl.autoscale import daemon as autoscale_daemon
    from fleetctl.daemons import presence
    from fleetctl.fleet.status import collect, render_table
    from fleetctl.gateway import upstream

    obj = app_context(ctx)
    alive = presence.running(obj.cfg)
    result = collect(obj.cfg, existing_backends(obj.cfg), obj.consul(),
                     members=upstream.upstream_members, services=autoscale_daemon.service_states)
    nothing = not alive and not result.instances
    missing = presence.gateway_missing(alive)
    if nothing:
        result.warnings.insert(0, presence.no_fleet_message(obj.cfg, Path.cwd()))
    elif missing:
        result.warnings.insert(0, presence.gateway_message(obj.cfg, missing))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=False))
    elif nothing:
        click.echo(result.warnings[0])
        return
    else:
        click.echo(render_table(result))
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


@main.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop every instance (all backends) and every managed service; leaves no process behind.

    Where no fleet runs in FLEET_HOME it says so and exits 0: nothing was left running.
    """
    from fleetctl.autoscale import daemon as autoscale_daemon
    from fleetctl.daemons import presence, services
    from fleetctl.fleet.orchestrate import down as fleet_down

    obj = app_context(ctx)
    backends = existing_backends(obj.cfg)
    present = bool(presence.running(obj.cfg)) or any(b.instances() for b in backends)
    message = None if present else presence.no_fleet_message(obj.cfg, Path.cwd())  # before the sweep below
    autoscale_daemon.stop(obj.cfg)  # first: it would restart the instances stopped below
    # Swept even then: a service or an instance whose pid file was lost is found by its command line.
    count = fleet_down(obj.cfg, backends, obj.consul(), services.stop_services,
                       progress if present else lambda _line: None)
    if message is not None and not count:
        click.echo(f"nothing to stop: {message}")
    else:
        click.echo(f"stopped {count} instance(s) and the managed services")



@main.command()
@click.option("--check", is_flag=True, help="Only report; exit 1 if something is missing.")
@click.option("--with-docker", is_flag=True, help="Also install Docker (for --backend docker) and start it.")
@click.option("--langs", "lang_codes", metavar="CODES", default=None,
              help="Tesseract language packs to install (or, with --check, to look for): ISO 639-1 or "
                   "Tesseract codes, comma-separated (de,ru,ar,hi; `default`: the default set) "
                   "[default: the fleet's set, FLEET_LANGS, else the default set].")
@engine_option
@click.pass_context
def deps(ctx: click.Context, check: bool, with_docker: bool, lang_codes: str | None, engine: str | None) -> None:
    """Install or find what the fleet runs: nginx, Redis and ab (apt), Consul (FLEET_HOME/bin) and the
    Tesseract packs of the fleet's languages (apt: tesseract-ocr-<code>, and tesseract-ocr-osd for lang=auto).

    With --engine paddleocr also (re)build that engine's venv (FLEET_PADDLE_VENV, by default beside
    fleetctl's venv). Idempotent and quick when everything is present; prints where each program was found
    and, per language, its pack and whether its data is there.
    """
    from fleetctl.backends import engines, langs
    from fleetctl.daemons import deps as fleet_deps

    obj = app_context(ctx)
    try:
        chosen = langs.parse(lang_codes) if lang_codes is not None else langs.fleet_set(obj.cfg)
    except langs.LangsError as exc:
        raise click.BadParameter(str(exc), param_hint="--langs" if lang_codes is not None else None) from None
    if engine == engines.PADDLE:
        cfg = obj.cfg.replace(engine=engine)
        if check:
            click.echo(f"paddleocr venv  {engines.instance_python(cfg)}")
        else:
            engines.build_paddle_venv(cfg, report=progress)
    packs = langs.missing_packages(chosen, langs.tessdata_dir())
    if not check and (with_docker or packs or fleet_deps.missing(obj.cfg)):
        fleet_deps.install(obj.cfg, with_docker=with_docker, languages=chosen, report=progress)
    found = fleet_deps.locate(obj.cfg)
    for line in fleet_deps.describe(found, chosen):
        click.echo(line)
    absent = [tool for tool, path in found.items() if path is None]
    if absent:
        raise ExitError(fleet_deps.missing_message(absent))
    still = langs.missing_packages(chosen, langs.tessdata_dir())
    if still:
        raise ExitError(f"{', '.join(still)} not installed: run `{langs.install_hint(chosen)}` to install "
                        f"{'it' if len(still) == 1 else 'them'}")


for _command in (logs, sync, render, keys):
    main.add_command(_command)
