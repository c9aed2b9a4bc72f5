"""Files fleetctl reads at run time, shipped inside the package (fleetctl/data/).

In the source tree fleetctl/data/nginx and fleetctl/data/scripts link to the top-level nginx/ and
scripts/ folders; a build copies the files in, so an installed fleetctl never looks for a checkout.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_path(*parts: str) -> Path:
    """A packaged file or folder, e.g. data_path("nginx", "nginx.conf.tmpl")."""
    return Path(str(resources.files("fleetctl").joinpath("data", *parts)))


def script(name: str) -> Path:
    """One of the packaged setup scripts (install-deps.sh, start-dockerd.sh)."""
    return data_path("scripts", name)
