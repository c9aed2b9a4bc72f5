"""The errors every part of fleetctl raises; the CLI's main turns them into exit codes (cli/base.py)."""
from __future__ import annotations


class FleetError(Exception):
    """Something fleetctl cannot do; the CLI turns it into exit code 1 with its message."""

    exit_code = 1


class GatewayError(RuntimeError):
    """Something about the gateway's config or process went wrong; the message says what."""
