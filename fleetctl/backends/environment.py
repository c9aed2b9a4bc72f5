"""The environment an instance gets, and the hash of it that shows drift (compose's config hash)."""
from __future__ import annotations

import hashlib
import json

from fleetctl.backends import langs
from fleetctl.cluster import acl, redis_auth
from fleetctl.config import FleetConfig, instance_settings


def config_hash(cfg: FleetConfig, backend: str, artifact: str = "") -> str:
    """Hash of everything that shapes an instance, so drift shows and gets replaced (compose's idea):
    what it runs, and the environment it gets except its own identity."""
    env = instance_env(cfg, "", 0)
    # The gateway's address is the fleet's, not the instance's shape: a moved gateway only sends
    # documents' pages back to local OCR until instances are replaced (ocr_app/jobs/fanout.py falls back).
    for own in ("OCR_PORT", "OCR_INSTANCE_ID", "OCR_GATEWAY_URL"):
        env.pop(own)
    relevant: dict[str, object] = {"backend": backend, "artifact": artifact, "env": env}
    if backend == "docker":
        relevant["image"] = cfg.image
    blob = json.dumps(relevant, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _consul_token(cfg: FleetConfig) -> dict[str, str]:
    """OCR_CONSUL_TOKEN when the fleet's Consul has ACLs: the instances' own small token."""
    token = acl.role_token(cfg, "instance")
    return {"OCR_CONSUL_TOKEN": token} if token else {}


def instance_env(cfg: FleetConfig, spec_id: str, port: int) -> dict[str, str]:
    """The OCR_* environment an instance gets: its identity, where Consul and Redis are, and the
    instance settings of the table in fleetctl/config.py (see docs/architecture.md)."""
    return {
        "OCR_HOST": cfg.gateway_host,  # other hosts' gateways dial it there in cluster mode
        "OCR_PORT": str(port),
        "OCR_INSTANCE_ID": spec_id,
        "OCR_CONSUL_ADDR": cfg.consul_address,
        **_consul_token(cfg),
        "OCR_REDIS_URL": redis_auth.url(cfg),  # with our Redis's password in cluster mode
        "OCR_SERVICE_NAME": cfg.service_name,
        **instance_settings(cfg),
        # The same languages on every instance, so that any of them can take any page (FLEET_LANGS).
        langs.INSTANCE_VAR: langs.instance_value(cfg),
        "OCR_GATEWAY_URL": cfg.gateway_url,  # a document's pages go back through it to the whole fleet
    }
