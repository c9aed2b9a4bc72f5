"""The gateway's certificate: the user's (FLEET_TLS_CERT/FLEET_TLS_KEY), or a self-signed pair for local use.

The self-signed pair is made once with the openssl command line (installed with nginx's OpenSSL) under
FLEET_HOME/tls/ and reused, so a client can pin it with `curl --cacert FLEET_HOME/tls/gateway.crt`.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from fleetctl.config import FleetConfig
from fleetctl.errors import GatewayError

DAYS = 825  # the longest validity clients still accept for a server certificate


def tls_dir(cfg: FleetConfig) -> Path:
    return cfg.home / "tls"


def self_signed_paths(cfg: FleetConfig) -> tuple[Path, Path]:
    return tls_dir(cfg) / "gateway.crt", tls_dir(cfg) / "gateway.key"


def certificate(cfg: FleetConfig) -> tuple[Path, Path]:
    """(certificate, key) the gateway serves: the configured pair, else the self-signed one (made if absent)."""
    if cfg.tls_cert or cfg.tls_key:
        if not (cfg.tls_cert and cfg.tls_key):
            raise GatewayError("set both FLEET_TLS_CERT and FLEET_TLS_KEY (or neither, for a self-signed pair)")
        pair = Path(cfg.tls_cert).absolute(), Path(cfg.tls_key).absolute()
        for path, name in zip(pair, ("FLEET_TLS_CERT", "FLEET_TLS_KEY"), strict=True):
            if not path.is_file():
                raise GatewayError(f"{name}={path} is not a readable file")
        return pair
    cert, key = self_signed_paths(cfg)
    if not (cert.is_file() and key.is_file()):
        make_self_signed(cert, key, cfg.gateway_host)
    return cert, key


def make_self_signed(cert: Path, key: Path, host: str) -> None:
    """A self-signed certificate for localhost, 127.0.0.1 and the gateway's host; key readable by us only."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise GatewayError("openssl not found: install it, or set FLEET_TLS_CERT and FLEET_TLS_KEY")
    cert.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    names = {"DNS:localhost", "IP:127.0.0.1", f"IP:{host}" if host.replace(".", "").isdigit() else f"DNS:{host}"}
    tmp_key, tmp_cert = key.with_suffix(".key.tmp"), cert.with_suffix(".crt.tmp")
    result = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", str(DAYS),
         "-subj", "/CN=ocr-fleet gateway", "-addext", "subjectAltName=" + ",".join(sorted(names)),
         "-keyout", str(tmp_key), "-out", str(tmp_cert)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if result.returncode != 0:
        raise GatewayError(f"openssl could not make a self-signed certificate: {result.stderr.strip()}")
    tmp_key.chmod(0o600)
    tmp_key.replace(key)
    tmp_cert.replace(cert)
