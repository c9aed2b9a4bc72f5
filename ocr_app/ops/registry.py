"""Consul self-registration, run by the gunicorn master (ocr_app/gunicorn_conf.py only wires hooks to it).

The instance keeps serving when Consul is away: a keeper thread retries in the background and
re-registers whenever the agent forgets the service (a restarted dev agent starts empty).
"""
from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import consul
import requests

from ocr_app.config import Settings
from ocr_app.engine.catalog import plan
from ocr_app.models.digests import instance_namespace
from ocr_app.models.profiles import ProfileError

log = logging.getLogger(__name__)

CHECK_INTERVAL = "1s"
CHECK_TIMEOUT = "2s"
DEREGISTER_AFTER = "1m"  # Consul's reaper works in minutes; nginx follows "passing" within seconds anyway
KEEPER_PERIOD = 5.0
TAGS = ["ocr-fleet"]


def consul_client(addr: str, token: str = "", timeout: float = 2.0) -> consul.Consul:
    """A client for 'host:port' (or 'http://host:port') with short timeouts: Consul must never stall us.
    `token` (OCR_CONSUL_TOKEN) is sent with every request; it is never logged."""
    addr = addr.split("://", 1)[-1].rstrip("/")
    host, _, port = addr.rpartition(":")
    return consul.Consul(host=host or "127.0.0.1", port=int(port or 8500), token=token or None,
                         connections_timeout=timeout)


class Registration:
    """This instance's entry in the Consul catalog."""

    def __init__(self, settings: Settings,
                 client_factory: Callable[[str, str], consul.Consul] = consul_client) -> None:
        self.settings = settings
        self._client = client_factory(settings.consul_addr, settings.consul_token) if settings.consul_addr else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self._client is not None

    @functools.cached_property
    def cache_namespace(self) -> str:
        """Hashed once: the model files do not change under a running instance."""
        return cache_namespace(self.settings)

    def service_definition(self) -> dict[str, Any]:
        s = self.settings
        url = f"http://{s.advertise_host}:{s.advertise_port}/ready"
        return {
            "name": s.service_name,
            "service_id": s.instance_id,
            "address": s.advertise_host,
            "port": s.advertise_port,
            "tags": TAGS,
            # cache_ns: what besides the bytes decides an answer; the gateway's cache keys on it.
            "meta": {"instance": s.instance_id, "pid": str(os.getpid()), "cache_ns": self.cache_namespace},
            "check": consul.Check.http(url, CHECK_INTERVAL, timeout=CHECK_TIMEOUT,
                                       deregister=DEREGISTER_AFTER),
        }

    def register(self) -> bool:
        if self._client is None:
            return False
        try:
            self._client.agent.service.register(**self.service_definition())
        except (consul.ConsulException, requests.RequestException, OSError) as exc:
            log.warning("consul: could not register %s at %s: %s", self.settings.instance_id,
                        self.settings.consul_addr, exc)
            return False
        log.info("consul: registered %s (%s:%d)", self.settings.instance_id, self.settings.advertise_host,
                 self.settings.advertise_port)
        return True

    def is_registered(self) -> bool:
        if self._client is None:
            return False
        try:
            return self.settings.instance_id in self._client.agent.services()
        except (consul.ConsulException, requests.RequestException, OSError):
            return False

    def deregister(self) -> bool:
        """Leave the catalog first on shutdown, so the gateway stops sending before we stop serving."""
        if self._stop.is_set() or self._client is None:
            return False
        self._stop.set()
        try:
            self._client.agent.service.deregister(self.settings.instance_id)
        except (consul.ConsulException, requests.RequestException, OSError) as exc:
            log.warning("consul: could not deregister %s: %s", self.settings.instance_id, exc)
            return False
        log.info("consul: deregistered %s", self.settings.instance_id)
        return True

    def start(self) -> None:
        """Register now if we can, and keep the registration alive in the background."""
        if self._client is None:
            log.info("consul: registration disabled (OCR_CONSUL_ADDR is empty)")
            return
        self.register()
        self._thread = threading.Thread(target=self._keep, name="consul-keeper", daemon=True)
        self._thread.start()

    def _keep(self) -> None:
        pause = 1.0
        while not self._stop.wait(pause):
            if self.is_registered() or self._stop.is_set():
                pause = KEEPER_PERIOD
                continue
            pause = KEEPER_PERIOD if self.register() else min(pause * 2, KEEPER_PERIOD)


def cache_namespace(settings: Settings) -> str:
    """What besides the bytes decides any answer of this instance (models.digests.instance_namespace), or
    "" if the models cannot be read (no gateway cache then). Light on purpose: no OpenCV or ONNX Runtime
    in the gunicorn master."""
    try:
        return instance_namespace(plan(settings), settings)
    except (ProfileError, OSError) as exc:
        log.warning("no cache namespace for the gateway (%s): its cache stands aside", exc)
        return ""
