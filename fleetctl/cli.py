"""fleetctl: the command line that runs the fleet (filled in by the fleet work)."""
import click


@click.group()
def main() -> None:
    """Run and scale the OCR fleet."""
