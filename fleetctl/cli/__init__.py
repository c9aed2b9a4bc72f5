"""fleetctl's command line: one Click group (main.py) and its command modules."""
from fleetctl.cli.main import main

__all__ = ["main"]
