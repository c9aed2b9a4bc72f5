"""The gateway's commands: the sync loop, a dry render of its upstream, and API keys."""
from __future__ import annotations

import json

import click

from fleetctl.cli.base import ExitError, app_context, progress


@click.command()
@click.option("--once", is_flag=True, help="One pass: render, compare, validate, reload if changed.")
@click.pass_context
def sync(ctx: click.Context, once: bool) -> None:
    """Keep the nginx upstream in step with Consul (the loop `up` runs as a daemon)."""
    from fleetctl.gateway import upstream
    from fleetctl.gateway.nginx import NginxReloader

    obj = app_context(ctx)
    if once:
        changed = upstream.sync_once(obj.cfg, obj.consul(), NginxReloader(obj.cfg))
        click.echo("upstream changed" if changed else "upstream unchanged")
        return
    code = upstream.run_sync_daemon(obj.cfg)
    if code:
        raise ExitError("the sync loop stopped with an error (see the log above)")


@click.command()
@click.pass_context
def render(ctx: click.Context) -> None:
    """Print the upstream config the sync loop would write now (changes nothing)."""
    from fleetctl.gateway import upstream

    obj = app_context(ctx)
    _, members = upstream.passing_members(obj.consul(), obj.cfg.service_name, None, "")
    click.echo(upstream.render_upstream(members, obj.cfg), nl=False)



@click.group()
def keys() -> None:
    """API keys for the gateway (FLEET_AUTH=1, `up --auth`): only their hashes are kept, in Consul."""


@keys.command("create")
@click.argument("name")
@click.option("--rate", default="", help="This key's rate limit in nginx's form (10r/s, 600r/m) "
                                         "[default: FLEET_RATE, or none].")
@click.pass_context
def keys_create(ctx: click.Context, name: str, rate: str) -> None:
    """Make a key for client NAME and print it, alone, on the last line: it is shown only this once."""
    from fleetctl.gateway import keys as api_keys

    obj = app_context(ctx)
    key, secret = api_keys.create(obj.consul(), obj.cfg, name, rate)
    progress(f"created key {key.name!r} (rate {key.rate or obj.cfg.rate or 'unlimited'}); "
              f"send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
    click.echo(secret)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    """Every key's name, rate and creation time (never the key)."""
    import datetime

    from fleetctl.gateway import keys as api_keys

    obj = app_context(ctx)
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
    from fleetctl.gateway import keys as api_keys

    obj = app_context(ctx)
    api_keys.revoke(obj.consul(), obj.cfg, name)
    click.echo(f"revoked {name}")
