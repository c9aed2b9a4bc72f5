"""`python -m fleetctl`: the same entry point as the `fleetctl` console script."""
from fleetctl.cli.main import main

main()
