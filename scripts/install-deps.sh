#!/usr/bin/env bash
# Install what the fleet and its tests need from outside PyPI: nginx (with its Lua
# module, for API keys and the gateway's cache), Redis, ab, fonts, jemalloc,
# Chromium, and the PDF tools that check searchable PDFs and that OCRmyPDF's
# PDF/A output needs (poppler-utils, qpdf, ghostscript), and Tesseract (OCRmyPDF's own
# engine, the bench's reference) from apt, Tesseract's language packs (the fleet's default
# set, and OSD for lang=auto), and Consul 1.8.7 (from Debian bullseye) into
# $FLEET_HOME/bin (by default fleetctl's, ~/.local/state/ocr-fleet/bin). Idempotent: when everything is present it only checks (~1 s).
# `fleetctl deps` runs the copy of this script that ships in the package.
#
# usage: scripts/install-deps.sh [--runtime] [--with-docker] [--lang-packs=PKG,PKG]
#   --runtime      only what a fleet runs: nginx, Redis, ab, Consul and the language
#                  packs (no fonts, no Chromium, no PDF tools: those are for the
#                  tests, the benchmark and OCRmyPDF's clients)
#   --with-docker  also install docker.io and debootstrap and start dockerd
#   --lang-packs=  the Tesseract packs to install instead of the default set (fleetctl
#                  passes those its FLEET_LANGS miss; empty: none)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONSUL_VERSION=1.8.7
CONSUL_SUITE=bullseye

# The packs of the catalog's DEFAULT_SET (ocr_app/models/languages.py; tests/fleet/test_langs_ops.py
# keeps the two equal) and Tesseract's script detection for lang=auto: 48 MB installed, 19 MB to fetch.
DEFAULT_LANG_PACKS="
    tesseract-ocr-ara tesseract-ocr-deu tesseract-ocr-ell tesseract-ocr-fra tesseract-ocr-heb tesseract-ocr-hin
    tesseract-ocr-kor tesseract-ocr-osd tesseract-ocr-pol tesseract-ocr-por tesseract-ocr-rus tesseract-ocr-spa
    tesseract-ocr-tam tesseract-ocr-tel tesseract-ocr-tha tesseract-ocr-tur tesseract-ocr-ukr tesseract-ocr-vie"

with_docker=0
runtime_only=0
lang_packs="$DEFAULT_LANG_PACKS"
for arg in "$@"; do
    case "$arg" in
        --with-docker) with_docker=1 ;;
        --runtime) runtime_only=1 ;;
        --lang-packs=*)
            lang_packs="${arg#--lang-packs=}"
            lang_packs="${lang_packs//,/ }"
            for pkg in $lang_packs; do
                [[ "$pkg" =~ ^tesseract-ocr-[a-z0-9-]+$ ]] || die "not a Tesseract language pack: $pkg"
            done
            ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument: $arg (see --help)" ;;
    esac
done

# package<TAB>how to tell it is there: a command name, or "dpkg" for a package
# that installs no command.
wanted="nginx	nginx
libnginx-mod-http-lua	dpkg
redis-server	redis-server
apache2-utils	ab
libjemalloc2	dpkg"
for pkg in $lang_packs; do
    wanted="$wanted
$pkg	dpkg"
done
if [ "$runtime_only" = 0 ]; then
    # The fonts bench/langpages.py sets its pages in: DejaVu (Latin, Greek, Cyrillic, Hebrew,
    # Arabic), Noto (Devanagari, Tamil, Telugu, Thai), Noto CJK (Hangul, Japanese), WenQuanYi
    # Zen Hei (Han).
    wanted="$wanted
fonts-dejavu-core	dpkg
fonts-noto-core	dpkg
fonts-noto-cjk	dpkg
fonts-wqy-zenhei	dpkg
chromium	chromium
procps	pgrep
poppler-utils	pdftotext
qpdf	qpdf
ghostscript	gs
tesseract-ocr	tesseract"
fi
if [ "$with_docker" = 1 ]; then
    wanted="$wanted
docker.io	dockerd
debootstrap	debootstrap"
fi

is_present() {  # PACKAGE PROBE
    if [ "$2" = dpkg ]; then
        dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
    else
        command -v "$2" >/dev/null 2>&1
    fi
}

install_apt_packages() {
    local missing=() pkg probe
    while IFS=$'\t' read -r pkg probe; do
        is_present "$pkg" "$probe" || missing+=("$pkg")
    done <<<"$wanted"
    if [ ${#missing[@]} -eq 0 ]; then
        log "apt packages: all present"
        return 0
    fi
    log "apt packages: installing ${missing[*]}"
    hold_services
    # Wait for a concurrent apt/dpkg instead of failing on its lock.
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
    as_root "${apt[@]}" update
    as_root "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
}

# The packages' services must not start: the fleet runs its own nginx and Redis
# on its own ports (a system Redis would hold 6379), and start-dockerd.sh starts
# dockerd. A policy-rc.d saying "no" is in place only while apt runs, unless
# the machine has one already.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_MARK="# temporary: scripts/install-deps.sh of ocr-fleet"
hold_services() {
    if [ -e "$POLICY_RC" ] && ! grep -qx "$POLICY_MARK" "$POLICY_RC" 2>/dev/null; then
        return 0
    fi
    log "apt packages: holding service starts while apt runs ($POLICY_RC)"
    printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" | as_root tee "$POLICY_RC" >/dev/null
    as_root chmod 0755 "$POLICY_RC"
    at_exit release_services
}
release_services() {
    if grep -qx "$POLICY_MARK" "$POLICY_RC" 2>/dev/null; then
        as_root rm -f "$POLICY_RC"
    fi
}

consul_version() {  # BINARY -> "1.8.7", or nothing
    "$1" version 2>/dev/null | sed -n 's/^Consul v\([0-9][0-9.]*\).*/\1/p' | head -n 1
}

# Consul left Debian after bullseye: fetch its .deb from the bullseye suite of
# the machine's own mirror with a private apt state, so the system's sources,
# lists and caches are untouched, and unpack only the binary.
fetch_consul() {
    local dest="$1" mirror keyrings=() k tmp
    mirror="$(debian_mirror)" || die "no Debian mirror found in the apt sources (set FLEET_DEBIAN_MIRROR)"
    for k in /usr/share/keyrings/debian-archive-$CONSUL_SUITE-automatic.gpg \
        /usr/share/keyrings/debian-archive-$CONSUL_SUITE-stable.gpg; do
        [ -r "$k" ] && keyrings+=("$k")
    done
    if [ ${#keyrings[@]} -eq 0 ]; then
        # Older debian-archive-keyring: the combined keyring still holds them.
        k=/usr/share/keyrings/debian-archive-keyring.gpg
        [ -r "$k" ] || die "no Debian archive keyring to verify $CONSUL_SUITE (apt-get install debian-archive-keyring)"
        keyrings=("$k")
    fi

    temp_dir tmp
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/deb" "$tmp/root"
    local signed_by
    signed_by="$(IFS=,; printf '%s' "${keyrings[*]}")"
    printf 'deb [signed-by=%s] %s %s main\n' "$signed_by" "$mirror" "$CONSUL_SUITE" >"$tmp/sources.list"
    local apt_opts=(
        -q
        -o "Dir::Etc::SourceList=$tmp/sources.list"
        -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$tmp/lists"
        -o "Dir::Cache=$tmp/cache"
        # The private dirs are root-only; skip the _apt download sandbox.
        -o APT::Sandbox::User=root
    )
    log "consul: fetching $CONSUL_SUITE's consul package from $mirror"
    apt-get "${apt_opts[@]}" update >"$tmp/update.log" 2>&1 || {
        cat "$tmp/update.log" >&2
        die "apt-get update for $CONSUL_SUITE failed"
    }
    (cd "$tmp/deb" && apt-get "${apt_opts[@]}" download consul) >&2
    dpkg-deb -x "$tmp"/deb/consul_*.deb "$tmp/root"
    [ -x "$tmp/root/usr/bin/consul" ] || die "the consul package has no usr/bin/consul"
    local got
    got="$(consul_version "$tmp/root/usr/bin/consul")"
    [ "$got" = "$CONSUL_VERSION" ] || die "expected Consul $CONSUL_VERSION, the package has '$got'"
    mkdir -p "$(dirname "$dest")"
    install -m 0755 "$tmp/root/usr/bin/consul" "$dest.tmp.$$"
    mv -f "$dest.tmp.$$" "$dest"
}

install_consul() {
    local home dest found
    home="$(fleet_home)"
    dest="$home/bin/consul"
    if found="$(command -v consul)"; then
        log "consul: using $found (v$(consul_version "$found"))"
        return 0
    fi
    if [ -x "$dest" ] && [ "$(consul_version "$dest")" = "$CONSUL_VERSION" ]; then
        log "consul: $dest is v$CONSUL_VERSION"
        return 0
    fi
    fetch_consul "$dest"
    log "consul: installed $dest (v$(consul_version "$dest"))"
}

install_apt_packages
install_consul
if [ "$with_docker" = 1 ]; then
    bash "$FLEET_REPO_ROOT/scripts/start-dockerd.sh"
fi
