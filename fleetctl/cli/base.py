"""What every fleetctl command shares: the exit codes, the error translation, the context object.

Typed errors raised anywhere below a command are turned into exit codes in exactly one place,
`FleetGroup.invoke`: 0 ok, 1 error, 2 usage (Click's own), 3 timeout.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from fleetctl.backends import Backend, FleetError, make_backend
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
    from fleetctl.cluster.consul_api import CONSUL_ERRORS
    from fleetctl.errors import GatewayError

    return (FleetError, ConfigError, procs.ProcessError, GatewayError, *CONSUL_ERRORS)


class FleetGroup(click.Group):
    """The group that translates errors once, for the console script and for CliRunner alike."""

    def invoke(self, ctx: click.Context) -> Any:
        from fleetctl.fleet.orchestrate import ScaleTimeout

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
                from fleetctl.cluster.consul_api import client_for

                self.make_consul = client_for
            self._consul = self.make_consul(self.cfg)
        return self._consul

    def backend(self, name: str | None) -> Backend:
        return make_backend(name or self.cfg.backend, self.cfg, report=progress)

    def fleet(self, backend: Backend) -> Any:
        from fleetctl.fleet.orchestrate import Fleet
        from fleetctl.gateway import upstream

        return Fleet(cfg=self.cfg, backend=backend, consul=self.consul(),
                     upstream_members=upstream.upstream_members, reload_count=upstream.reload_count,
                     report=progress)


def progress(message: str) -> None:
    """Progress goes to stderr so stdout stays parseable (plans, JSON, the gateway URL)."""
    click.echo(message, err=True)


def app_context(ctx: click.Context) -> AppContext:
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
