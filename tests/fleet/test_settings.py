"""The one table of fleet settings: load, fleet_env, instance_env and the config hash all follow it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleetctl.backends.environment import config_hash, instance_env
from fleetctl.config import ConfigError, FleetConfig, default_home, load
from fleetctl.daemons.pidfiles import fleet_env
from fleetctl.fleet.status import InstanceRow, rss_warnings


@dataclass(frozen=True)
class WithProfile(FleetConfig):
    """What another setting costs: this one line, nothing else."""

    profile: str = field(default="", metadata={"env": "OCR_PROFILE", "instance": True})


def test_a_new_instance_setting_is_one_line() -> None:
    plain, fast = WithProfile(), WithProfile(profile="fast")
    assert "OCR_PROFILE" not in instance_env(plain, "ocr-1", 1)  # empty: the instance's own default
    assert instance_env(fast, "ocr-1", 1)["OCR_PROFILE"] == "fast"
    assert config_hash(plain, "process") != config_hash(fast, "process")
    assert fleet_env(fast)["OCR_PROFILE"] == "fast"
    assert "OCR_PROFILE" not in fleet_env(plain) or fleet_env(plain)["OCR_PROFILE"] == ""


def test_fleet_env_rebuilds_the_same_config(tmp_path: Path) -> None:
    cfg = FleetConfig(home=tmp_path, backend="docker", consul_addr="10.0.0.1:8500", gateway_port=18080,
                      base_port=19000, image="x:1", workers=2, threads=2, max_upload_mb=19.5, rss_warn_mb=300.0)
    assert load(fleet_env(cfg)) == cfg
    managed = FleetConfig(home=tmp_path)
    assert load({**fleet_env(managed), "FLEET_CONSUL_ADDR": ""}) == managed


def test_instances_log_json_under_fleetctl() -> None:
    assert instance_env(FleetConfig(), "ocr-1", 1)["OCR_LOG_FORMAT"] == "json"
    assert instance_env(load({"FLEET_HOME": "/x", "OCR_LOG_FORMAT": "text"}), "ocr-1", 1)["OCR_LOG_FORMAT"] == "text"
    with pytest.raises(ConfigError, match="OCR_LOG_FORMAT='xml' is not one of json, text"):
        load({"FLEET_HOME": "/x", "OCR_LOG_FORMAT": "xml"})


def test_max_upload_mb_is_a_float_like_the_instance_s() -> None:
    cfg = load({"FLEET_HOME": "/x", "OCR_MAX_UPLOAD_MB": "0.5"})
    assert cfg.max_upload_mb == 0.5
    assert instance_env(cfg, "ocr-1", 1)["OCR_MAX_UPLOAD_MB"] == "0.5"
    assert instance_env(FleetConfig(), "ocr-1", 1)["OCR_MAX_UPLOAD_MB"] == "20"
    assert config_hash(cfg, "process") != config_hash(FleetConfig(), "process")


def test_fleet_only_settings_do_not_shape_instances() -> None:
    cfg = FleetConfig()
    for change in ({"rss_warn_mb": 10.0}, {"gateway_port": 9999}, {"base_port": 9000}, {"image": "other:tag"}):
        assert config_hash(cfg.replace(**change), "process") == config_hash(cfg, "process"), change
    assert config_hash(cfg, "docker") != config_hash(cfg.replace(image="other:tag"), "docker")


@pytest.mark.parametrize("env, message", [
    ({"FLEET_GATEWAY_PORT": "0"}, "FLEET_GATEWAY_PORT=0 must be between 1 and 65535"),
    ({"FLEET_BASE_PORT": "80000"}, "FLEET_BASE_PORT=80000 must be between 1 and 65535"),
    ({"FLEET_CONSUL_PORT": "http"}, "FLEET_CONSUL_PORT='http' is not a whole number"),
    ({"OCR_MAX_UPLOAD_MB": "lots"}, "OCR_MAX_UPLOAD_MB='lots' is not a number"),
    ({"OCR_MAX_UPLOAD_MB": "0"}, "OCR_MAX_UPLOAD_MB=0 must be at least 0.001"),
    ({"OCR_WORKERS": "0"}, "OCR_WORKERS=0 must be between 1 and 64"),
    ({"FLEET_RSS_WARN_MB": "-1"}, "FLEET_RSS_WARN_MB=-1 must be at least 0"),
    ({"FLEET_BACKEND": "kubernetes"}, "FLEET_BACKEND='kubernetes' is not one of process, docker, swarm"),
    ({"OCR_THREADS": "1e9"}, "OCR_THREADS='1e9' is not a whole number"),
])
def test_bad_values_name_their_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load({"FLEET_HOME": "/x", **env})
    assert str(err.value) == message


def test_default_home_is_per_user_not_per_directory() -> None:
    assert default_home({"HOME": "/home/u"}) == Path("/home/u/.local/state/ocr-fleet")
    assert default_home({"HOME": "/home/u", "XDG_STATE_HOME": "/s"}) == Path("/s/ocr-fleet")
    assert load({"HOME": "/home/u"}).home == Path("/home/u/.local/state/ocr-fleet")
    assert load({"HOME": "/home/u", "FLEET_HOME": "/f"}).home == Path("/f")


def row(iid: str, rss: float | None) -> InstanceRow:
    return InstanceRow(id=iid, backend="process", address="127.0.0.1:1", port=1, healthy=True, health="passing",
                       in_upstream=True, rss_mb=rss, uptime_s=1.0, requests=0, cache_hit_ratio=None)


def test_rss_warnings_name_the_instance_and_the_limit() -> None:
    rows = [row("ocr-1", 300.0), row("ocr-2", 1500.4), row("ocr-3", None)]
    assert rss_warnings(rows, 1024.0) == ["ocr-2: RSS 1500 MiB is above FLEET_RSS_WARN_MB=1024"]
    assert rss_warnings(rows, 0) == []
    assert len(rss_warnings(rows, 100.5)) == 2


def test_decode_slots_and_orientation_reach_the_instances() -> None:
    cfg = load({"OCR_DECODE_SLOTS": "2", "OCR_ORIENTATION": "off"})
    env = instance_env(cfg, "ocr-1", 1)
    assert env["OCR_DECODE_SLOTS"] == "2" and env["OCR_ORIENTATION"] == "off"
    assert "OCR_ORIENTATION" not in instance_env(load({}), "ocr-1", 1)  # the instance's own default (auto)
    assert config_hash(cfg, "process") != config_hash(load({}), "process")
    with pytest.raises(ConfigError, match="OCR_ORIENTATION"):
        load({"OCR_ORIENTATION": "sideways"})
