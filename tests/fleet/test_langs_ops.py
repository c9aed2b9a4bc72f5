"""The fleet's languages as operations sees them: FLEET_LANGS, `fleetctl deps --langs`, `up --langs`, the
instances' OCR_LANGS, and the default packs install-deps.sh brings.

The packs are real Debian packages installed with apt (one small pack is removed and installed again),
the commands run as a user runs them (`python -m fleetctl`), with a FLEET_HOME of their own.
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from helpers import REPO, consul_binary, find_font, free_port
from PIL import Image, ImageDraw, ImageFont

from fleetctl.backends import config_hash, instance_env, langs
from fleetctl.config import ConfigError, FleetConfig, load
from ocr_app.models import languages as catalog

# Irish: a pack of 0.6 MB that nothing else here uses, so the install test may remove it first.
SPARE_CODE, SPARE_PACK = "ga", "tesseract-ocr-gle"


def fleet_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """fleetctl's environment for an isolated fleet: its own home (with this host's Consul, so that nothing
    but languages is missing) and ports nobody listens on."""
    (tmp_path / "home" / "bin").mkdir(parents=True, exist_ok=True)
    if not (tmp_path / "home" / "bin" / "consul").exists():
        (tmp_path / "home" / "bin" / "consul").symlink_to(consul_binary())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "OCR_"))}
    env.update({"FLEET_HOME": str(tmp_path / "home"), "FLEET_GATEWAY_PORT": str(free_port()),
                "FLEET_CONSUL_PORT": str(free_port()), "FLEET_REDIS_PORT": str(free_port()),
                "FLEET_BASE_PORT": str(free_port())})
    env.update(extra)
    return env


def fleetctl(env: Mapping[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleetctl", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, env=dict(env), cwd=REPO)


def partial_tessdata(tmp_path: Path, names: tuple[str, ...]) -> Path:
    """A Tesseract data folder holding only these traineddata files (links to this host's)."""
    real = catalog.find_tessdata()
    assert real is not None, "Tesseract data is missing: run scripts/install-deps.sh"
    folder = tmp_path / "tessdata"
    folder.mkdir()
    for name in names:
        (folder / f"{name}.traineddata").symlink_to(real / f"{name}.traineddata")
    return folder


# --- the set ------------------------------------------------------------------------------------

def test_the_set_accepts_iso_and_tesseract_codes_in_order_without_repeats() -> None:
    assert [lang.code for lang in langs.parse("ru, deu,de,ARA,hin")] == ["ru", "de", "ar", "hi"]
    assert [lang.code for lang in langs.parse("")] == list(catalog.DEFAULT_SET)
    assert [lang.code for lang in langs.parse("default,it")] == [*catalog.DEFAULT_SET, "it"]


@pytest.mark.parametrize("codes, named", [
    ("de,xx", "'xx'"),
    ("../etc", "'../etc'"),
    ("de,x" + "y" * 10_000, "'xyyyyyyyyyyy…'"),
])
def test_unknown_codes_are_refused_naming_them_and_the_list(codes: str, named: str) -> None:
    with pytest.raises(langs.LangsError) as caught:
        langs.parse(codes)
    message = str(caught.value)
    assert named in message and "GET /api/languages" in message and len(message) < 200


def test_too_many_codes_are_refused_and_an_error_stays_short() -> None:
    with pytest.raises(langs.LangsError, match="501 languages named; at most 200"):
        langs.parse(",".join(["de"] * 501))
    with pytest.raises(langs.LangsError, match=r"'zz4' and 195 more \(GET /api/languages"):
        langs.parse(",".join(f"zz{i}" for i in range(200)))


@pytest.mark.parametrize("value", ["de;ru", "de,,ru/", "de\x00", "x" * 13])
def test_fleet_langs_that_is_no_list_of_codes_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="FLEET_LANGS=.* is not a comma-separated list of language codes"):
        load({"FLEET_LANGS": value, "HOME": "/nonexistent"})


def test_every_instance_gets_the_fleet_set_and_a_new_set_is_drift(tmp_path: Path) -> None:
    default = FleetConfig(home=tmp_path)
    assert instance_env(default, "ocr-1", 8001)["OCR_LANGS"] == ",".join(catalog.DEFAULT_SET)
    chosen = default.replace(langs="rus,de,ar")
    assert instance_env(chosen, "ocr-1", 8001)["OCR_LANGS"] == "ru,de,ar"
    assert instance_env(chosen, "ocr-2", 8002)["OCR_LANGS"] == "ru,de,ar"  # the same on every instance
    for backend in ("process", "docker", "swarm"):
        assert config_hash(default, backend) != config_hash(chosen, backend)
    assert config_hash(chosen, "process") == config_hash(default.replace(langs="ru,de,ar"), "process")


def test_install_deps_default_packs_are_the_catalogs_default_set() -> None:
    """install-deps.sh runs before any venv exists, so it keeps its own copy of the list: the same one."""
    script = (REPO / "scripts" / "install-deps.sh").read_text()
    match = re.search(r'^DEFAULT_LANG_PACKS="([^"]*)"', script, re.M)
    assert match, "install-deps.sh has no DEFAULT_LANG_PACKS"
    assert sorted(match.group(1).split()) == catalog.packages(catalog.DEFAULT_SET)


def test_the_default_set_brings_the_fonts_of_the_generated_pages() -> None:
    """Every font bench/langpages.py asks fontconfig for comes from a package install-deps.sh brings."""
    from bench.langpages import SCRIPTS

    script = (REPO / "scripts" / "install-deps.sh").read_text()
    for wanted in sorted({s.package for s in SCRIPTS.values()}):
        assert re.search(rf"^{wanted}\tdpkg$", script, re.M), wanted


# --- fleetctl deps and up ---------------------------------------------------------------------

def test_deps_check_reports_each_language_of_the_set(tmp_path: Path) -> None:
    result = fleetctl(fleet_env(tmp_path), "deps", "--check", "--langs", "de,ru,ar,hi")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for code, pack in (("de", "deu"), ("ru", "rus"), ("ar", "ara"), ("hi", "hin")):
        assert any(re.fullmatch(rf"lang {code} +present +tesseract-ocr-{pack} +\w+", line) for line in lines), lines
    assert any(re.fullmatch(r"lang auto +present +tesseract-ocr-osd +script detection", line) for line in lines)
    assert not any(line.startswith("lang es") for line in lines)  # only the languages asked for


def test_deps_check_names_the_missing_packs_and_the_command(tmp_path: Path) -> None:
    tessdata = partial_tessdata(tmp_path, ("osd", "deu"))
    result = fleetctl(fleet_env(tmp_path, OCR_TESSDATA=str(tessdata)), "deps", "--check", "--langs", "de,ru,ar")
    assert result.returncode == 1
    assert re.search(r"^lang de +present", result.stdout, re.M)
    assert re.search(r"^lang ru +missing +tesseract-ocr-rus", result.stdout, re.M)
    assert "tesseract-ocr-ara, tesseract-ocr-rus not installed: run `fleetctl deps --langs de,ru,ar`" in result.stderr


@pytest.mark.parametrize("command", [["deps", "--check"], ["up", "-n", "0", "--no-install"]])
def test_unknown_codes_are_a_usage_error_before_anything_runs(tmp_path: Path, command: list[str]) -> None:
    env = fleet_env(tmp_path)
    result = fleetctl(env, *command, "--langs", "de,klingon")
    assert result.returncode == 2
    assert "unknown language code 'klingon' (GET /api/languages on the gateway lists every code)" in result.stderr
    from_env = fleetctl({**env, "FLEET_LANGS": "de,klingon"}, *command)
    assert from_env.returncode == 2 and "FLEET_LANGS: unknown language code 'klingon'" in from_env.stderr
    assert not (tmp_path / "home" / "run").exists()  # nothing started


def test_up_without_install_fails_naming_the_packs_and_the_command(tmp_path: Path) -> None:
    tessdata = partial_tessdata(tmp_path, ("osd", "deu"))
    env = fleet_env(tmp_path, OCR_TESSDATA=str(tessdata))
    result = fleetctl(env, "up", "-n", "0", "--no-install", "--langs", "de,ru")
    assert result.returncode == 1
    assert ("the fleet's languages need tesseract-ocr-rus: run `fleetctl deps --langs de,ru` "
            "(or `fleetctl up` without --no-install)") in result.stderr
    assert not (tmp_path / "home" / "run").exists()  # failed before any service started


@pytest.mark.timeout(600)
def test_deps_langs_installs_a_missing_pack_with_apt_then_only_checks(tmp_path: Path) -> None:
    subprocess.run(["dpkg", "--remove", SPARE_PACK], capture_output=True, timeout=300, check=False)
    tessdata = catalog.find_tessdata()
    assert tessdata is not None and not catalog.traineddata("gle", tessdata).exists()
    env = fleet_env(tmp_path)
    first = fleetctl(env, "deps", "--langs", f"de,{SPARE_CODE}", timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"apt packages: installing {SPARE_PACK}" in first.stderr  # only the missing one
    assert re.search(rf"^lang {SPARE_CODE} +present +{SPARE_PACK} +Irish$", first.stdout, re.M)
    assert catalog.traineddata("gle", tessdata).is_file()
    second = fleetctl(env, "deps", "--langs", f"de,{SPARE_CODE}")
    assert second.returncode == 0 and "installing" not in second.stderr, second.stderr


def test_up_langs_is_saved_for_the_commands_that_follow(tmp_path: Path) -> None:
    """`up --langs` and a later `scale` must give instances the same set, or scale would replace them all."""
    cfg = FleetConfig(home=tmp_path).replace(langs="ru,ar")
    langs.save(cfg)
    again = langs.apply_saved(FleetConfig(home=tmp_path), {})
    assert langs.instance_value(again) == "ru,ar"
    assert langs.apply_saved(FleetConfig(home=tmp_path, langs="de"), {"FLEET_LANGS": "de"}).langs == "de"


def test_help_texts_name_the_options() -> None:
    env = {**os.environ, "FLEET_HOME": "/nonexistent-home"}
    for command in ("deps", "up"):
        result = fleetctl(env, command, "--help")
        assert result.returncode == 0
        assert "--langs CODES" in result.stdout and "FLEET_LANGS" in result.stdout


# --- the image ---------------------------------------------------------------------------------

def build_plan(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(REPO / "scripts" / "build-image.sh"), "--plan"], capture_output=True,
                          text=True, timeout=60, check=False, env={**os.environ, **env})


def test_image_plan_carries_the_default_set_or_fleet_langs() -> None:
    default = build_plan(FLEET_LANGS="")
    assert default.returncode == 0, default.stderr
    assert f"langs {','.join(catalog.DEFAULT_SET)}\n" in default.stdout
    assert f"packs {' '.join(catalog.packages(catalog.DEFAULT_SET))}\n" in default.stdout
    chosen = build_plan(FLEET_LANGS="ru,jpn,de")
    assert chosen.returncode == 0, chosen.stderr
    assert ("langs ru,ja,de\n"
            "packs tesseract-ocr-deu tesseract-ocr-jpn tesseract-ocr-osd tesseract-ocr-rus\n") in chosen.stdout
    refused = build_plan(FLEET_LANGS="ru,xx")
    assert refused.returncode == 1 and "unknown language codes 'xx'" in refused.stderr


def test_an_image_without_the_sets_languages_is_named_with_the_build_that_has_them() -> None:
    wanted = langs.parse("ru,ar,it")
    assert [lang.code for lang in langs.image_gaps({langs.IMAGE_LABEL: "de,ru,ar"}, wanted)] == ["it"]
    assert langs.image_gaps({}, wanted) == list(wanted)  # an image from before languages carries none
    assert langs.image_gaps(None, wanted) == list(wanted)


@pytest.fixture(scope="module")
def image() -> str:
    """The image as `make image` builds it with the default set (a no-op when it is up to date)."""
    tag = os.environ.get("FLEET_IMAGE", "ocr-fleet:latest")
    built = subprocess.run(["bash", str(REPO / "scripts" / "build-image.sh"), tag], capture_output=True, text=True,
                           timeout=2400, check=False, env={**os.environ, "FLEET_LANGS": ""})
    assert built.returncode == 0, built.stderr[-3000:]
    return tag


@pytest.mark.docker
@pytest.mark.timeout(2400)
def test_image_carries_the_default_set_where_the_instance_looks(image: str) -> None:
    """Labelled with its languages, their traineddata in Debian's folder, read with no network."""
    label = subprocess.run(["docker", "image", "inspect", "-f", '{{ index .Config.Labels "ocr-fleet.langs" }}',
                            image], capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert label == ",".join(catalog.DEFAULT_SET)
    probe = ("import json; from ocr_app.models import languages as L; d = L.find_tessdata(); "
             "print(json.dumps([str(d), sorted(p.stem for p in d.glob('*.traineddata'))]))")
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", image, "python3", "-c", probe],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    folder, names = json.loads(out)
    assert folder == "/usr/share/tesseract-ocr/5/tessdata"
    wanted = {n for code in catalog.DEFAULT_SET for n in catalog.resolve(code).tesseract} | {"osd"}
    assert wanted <= set(names), names

    # Read with no network: tesserocr (from the wheelhouse) on a Russian line sent on stdin.
    picture = Image.new("L", (640, 120), 255)
    ImageDraw.Draw(picture).text((20, 30), "ПРИВЕТ МИР", font=ImageFont.truetype(find_font("DejaVuSans.ttf"), 48),
                                 fill=0)
    png = io.BytesIO()
    picture.save(png, format="PNG")
    read = ("import io, sys, tesserocr; from PIL import Image; from ocr_app.models import languages as L;"
            "api = tesserocr.PyTessBaseAPI(path=str(L.find_tessdata()) + '/', lang='rus', psm=7);"
            "api.SetImage(Image.open(io.BytesIO(sys.stdin.buffer.read()))); print(api.GetUTF8Text().strip())")
    text = subprocess.run(["docker", "run", "--rm", "-i", "--network", "none", image, "python3", "-c", read],
                          input=png.getvalue(), capture_output=True, timeout=120, check=True).stdout.decode()
    assert text.strip() == "ПРИВЕТ МИР", text


@pytest.mark.docker
@pytest.mark.timeout(2400)
def test_up_on_docker_refuses_a_set_the_image_does_not_carry(image: str, tmp_path: Path) -> None:
    env = fleet_env(tmp_path, FLEET_IMAGE=image)
    result = fleetctl(env, "up", "-n", "0", "--backend", "docker", "--no-install", "--langs", "ru,it")
    assert result.returncode == 1
    assert f"image {image} does not carry it (it has {','.join(catalog.DEFAULT_SET)}): build one with " \
           "`FLEET_LANGS=ru,it make image`" in result.stderr, result.stderr
    assert not (tmp_path / "home" / "run").exists()  # refused before any service started
