#!/usr/bin/env bash
# Build the instance image from a host-built wheelhouse, so that nothing inside
# `docker build` touches the network and no image has to be pullable.
#
# usage: scripts/build-image.sh [--force] [--plan] [TAG]   (TAG default: $FLEET_IMAGE or ocr-fleet:latest)
#   --force  rebuild even when TAG already carries the current source hash
#   --plan   print what the image would carry (tag, languages, packs) and build nothing
# environment:
#   FLEET_LANGS            the languages the image carries, comma-separated codes (de,ru,ar;
#                          default: the catalog's default set, ocr_app/models/languages.py):
#                          their Tesseract packs and tesseract-ocr-osd, Debian packages of data
#                          only, fetched once on the host with apt-get download into
#                          FLEET_CACHE_DIR/debs and unpacked in the image's build, offline
#   BASE_IMAGE             base with python3 3.11 (default python:3.11-slim); used when
#                          present locally, else pulled (FLEET_PULL=1), else replaced by
#                          a Debian minbase bootstrapped from the machine's apt mirror
#   FLEET_PULL             1: try `docker pull BASE_IMAGE` (off by default: a machine
#                          without registry access would only wait for it)
#   FLEET_PULL_TIMEOUT     seconds for that pull (default 60)
#   FLEET_BOOTSTRAP_IMAGE  tag of the bootstrapped base (default ocr-fleet-base:bookworm)
#   FLEET_BOOTSTRAP_SUITE  Debian suite to bootstrap (default bookworm: python3 is 3.11)
#   FLEET_PYTHON           Python 3.11 that builds the wheels (default: .venv's, else python3)
#   FLEET_CACHE_DIR        where dependency wheels are cached, keyed by the requirements
#                          and the base, and the language packs (default ~/.cache/ocr-fleet)
# The image is labelled ocr-fleet.source-hash (which covers the language packs) and
# ocr-fleet.langs; an up-to-date image is not rebuilt.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

force=0
plan=0
tag=""
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --plan) plan=1 ;;
        -h | --help) usage; exit 0 ;;
        -*) die "unknown option: $arg (see --help)" ;;
        *) [ -z "$tag" ] || die "more than one TAG given"; tag="$arg" ;;
    esac
done
tag="${tag:-${FLEET_IMAGE:-ocr-fleet:latest}}"
base_image="${BASE_IMAGE:-python:3.11-slim}"
bootstrap_image="${FLEET_BOOTSTRAP_IMAGE:-ocr-fleet-base:bookworm}"
bootstrap_suite="${FLEET_BOOTSTRAP_SUITE:-bookworm}"
HASH_LABEL=ocr-fleet.source-hash
# What decides the image's content besides the dependency versions: these
# files, and what the wheel takes from the packages (setup.cfg: their modules
# and package data: static/*, and nginx/ and scripts/ through fleetctl/data/),
# not bench results or notes.
HASHED_FILES=(Dockerfile .dockerignore pyproject.toml setup.cfg setup.py MANIFEST.in
    scripts/build-image.sh scripts/lib.sh)
HASHED_DIRS=(ocr_app fleetctl)
cd "$FLEET_REPO_ROOT"

image_exists() {
    docker image inspect "$1" >/dev/null 2>&1
}

pick_python() {
    local py
    for py in "${FLEET_PYTHON:-}" "$FLEET_REPO_ROOT/.venv/bin/python" python3.11 python3; do
        if [ -z "$py" ] || ! command -v "$py" >/dev/null 2>&1; then
            continue
        fi
        if "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null &&
            "$py" -m pip --version >/dev/null 2>&1; then
            printf '%s\n' "$py"
            return 0
        fi
    done
    die "no Python 3.11 with pip found (the image's wheels are cp311); set FLEET_PYTHON"
}

# source_files: NUL-separated paths of the files a build uses: tracked and new,
# not ignored, still present.
source_files() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' f; do { [ -f "$f" ] || [ -L "$f" ]; } && printf '%s\0' "$f"; done
    else
        find . \( -name .git -o -name .venv -o -name .venv-paddle -o -name .fleet -o -name __pycache__ \) -prune \
            -o \( -type f -o -type l \) -printf '%P\0'
    fi
}

# source_hash: the hashed files' names and contents, the constraints and the
# requested base image.
source_hash() {
    {
        source_files | while IFS= read -r -d '' f; do
            local d keep=0
            for d in "${HASHED_FILES[@]}"; do [ "$f" = "$d" ] && keep=1; done
            for d in "${HASHED_DIRS[@]}"; do
                case "$f" in "$d"/*.py | "$d"/*/static/* | "$d"/static/*) keep=1 ;; esac
            done
            case "$f" in nginx/* | scripts/*.sh) keep=1 ;; esac
            [ "$keep" = 1 ] && printf '%s\0' "$f"
        done | LC_ALL=C sort -z | xargs -0 -r sha256sum
        printf 'base=%s\n' "$base_image"
        printf 'langs=%s packs=%s\n' "$lang_codes" "$lang_packs"
        cat "$constraints"
    } | sha256sum | cut -c1-16
}

# Nothing may stay mounted in a tree that is about to be removed.
unmount_below() {
    local m
    { grep -o " $1/[^ ]*" /proc/self/mounts 2>/dev/null || true; } | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}

# Bootstrap a Debian minbase with python3 from the machine's mirror and import
# it as BOOTSTRAP_IMAGE (the caller checks it is not there yet).
bootstrap_base() {
    local mirror parent="$work/bootstrap" rootfs="$work/bootstrap/rootfs" t0=$SECONDS
    mirror="$(debian_mirror)" || die "no Debian mirror found in the apt sources (set FLEET_DEBIAN_MIRROR)"
    mkdir -p "$parent"
    log "base: bootstrapping Debian $bootstrap_suite minbase from $mirror (once; cached as $bootstrap_image)"
    if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$bootstrap_suite" "$rootfs" "$mirror" >"$parent/debootstrap.log" 2>&1; then
        tail -n 30 "$parent/debootstrap.log" >&2
        [ -r "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
        unmount_below "$rootfs"
        die "debootstrap failed"
    fi
    unmount_below "$rootfs"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/debootstrap
    tar --numeric-owner -C "$rootfs" -cf - . |
        docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
            --message "Debian $bootstrap_suite minbase + python3 (scripts/build-image.sh)" \
            - "$bootstrap_image" >/dev/null
    log "base: imported $bootstrap_image in $((SECONDS - t0))s"
}

resolve_base() {
    if image_exists "$base_image"; then
        resolved_base="$base_image"
    elif [ "${FLEET_PULL:-0}" = 1 ] && {
        log "base: pulling $base_image"
        timeout "${FLEET_PULL_TIMEOUT:-60}" docker pull -q "$base_image" >/dev/null
    }; then
        resolved_base="$base_image"
    else
        log "base: $base_image is not available locally (set FLEET_PULL=1 to try pulling it)"
        resolved_base="$bootstrap_image"
        if image_exists "$bootstrap_image"; then
            log "base: using cached $bootstrap_image"
        else
            command -v debootstrap >/dev/null 2>&1 ||
                die "debootstrap is not installed; run scripts/install-deps.sh --with-docker"
            [ "$(id -u)" -eq 0 ] || die "bootstrapping a base image needs root"
            # It takes about two minutes, mostly dpkg: let pip work meanwhile.
            # In a process group of its own (set -m), so that stop_bootstrap can
            # end debootstrap and its children too.
            set -m
            bootstrap_base &
            bootstrap_pid=$!
            set +m
            at_exit stop_bootstrap
        fi
    fi
}

# stop_bootstrap: on an early exit, end a bootstrap still running and unmount
# what it mounted before its directory is removed.
stop_bootstrap() {
    [ -n "$bootstrap_pid" ] || return 0
    kill -TERM -- "-$bootstrap_pid" 2>/dev/null || true
    wait "$bootstrap_pid" 2>/dev/null || true
    unmount_below "$work/bootstrap/rootfs"
}

# wait_base: the base image exists once this returns.
wait_base() {
    if [ -n "$bootstrap_pid" ]; then
        wait "$bootstrap_pid" || die "could not bootstrap $bootstrap_image"
        bootstrap_pid=""
    fi
}

# Environment markers are evaluated for the interpreter that installs: the base's
# python3 may be an older 3.11 than the host's (Debian's 3.11.2 needs
# async-timeout for redis, 3.11.7 does not). Let the base's own pip resolve the
# wheelhouse offline and add whatever it reports missing, until it resolves.
complete_wheelhouse() {
    local round out missing
    for round in 1 2 3 4 5; do
        if out="$(docker run --rm --network none -v "$context/wheelhouse:/wheels:ro" "$resolved_base" \
            sh -c 'python3 -m venv /tmp/venv >/dev/null &&
                   /tmp/venv/bin/pip install -q --disable-pip-version-check --dry-run --no-index \
                       --find-links /wheels/deps --find-links /wheels/app "ocr-fleet[server]"' 2>&1)"; then
            return 0
        fi
        missing="$(printf '%s\n' "$out" | sed -n 's/.*No matching distribution found for \([^;]*\).*/\1/p' | sort -u)"
        if [ -z "$missing" ]; then
            printf '%s\n' "$out" >&2
            die "the wheelhouse does not install on $resolved_base"
        fi
        log "wheels: $resolved_base also needs: ${missing//$'\n'/ }"
        # shellcheck disable=SC2086  # one requirement per word
        quietly "$work/pip-extra.log" "$python" -m pip wheel -c "$constraints" -w "$context/wheelhouse/deps" $missing
    done
    die "the wheelhouse is still incomplete for $resolved_base after $round rounds"
}

# wheel_cache_dir: where the dependency wheels for these requirements, pins and
# base are kept (the base must exist).
wheel_cache_dir() {
    local key
    key="$({
        "$python" - "${app_wheels[@]}" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    print("\n".join(l for l in zf.read(meta).decode().splitlines() if l.startswith("Requires-Dist:")))
EOF
        cat "$constraints"
        docker image inspect -f '{{.Id}}' "$resolved_base"
    } | sha256sum | cut -c1-16)"
    printf '%s/%s\n' "$wheel_cache_root" "$key"
}

# dependency_wheels: every dependency as a wheel in the context, from the cache
# when possible (saves pip's resolution, ~1 min); else collected by pip on the
# host, completed for the base, and cached. A base still being bootstrapped
# is new, so its wheels cannot be cached yet: pip runs meanwhile.
dependency_wheels() {
    local cache
    wheel_cache_root="${FLEET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ocr-fleet}/wheels"
    if [ -z "$bootstrap_pid" ]; then
        cache="$(wheel_cache_dir)"
        if [ -f "$cache/.complete" ]; then
            log "wheels: dependencies from the cache ($cache)"
            cp -l "$cache"/*.whl "$context/wheelhouse/deps/" 2>/dev/null ||
                cp "$cache"/*.whl "$context/wheelhouse/deps/"
            return 0
        fi
    fi
    log "wheels: collecting dependencies"
    # The instance's dependencies: the wheel with its `server` extra (the bare wheel is the light client).
    quietly "$work/pip-deps.log" "$python" -m pip wheel -c "$constraints" -w "$context/wheelhouse/deps" "${app_wheels[0]}[server]"
    rm -f "$context"/wheelhouse/deps/ocr_fleet-*.whl
    wait_base
    complete_wheelhouse
    cache="$(wheel_cache_dir)"
    # Keep this set and the two most recent others.
    mkdir -p "$wheel_cache_root"
    cp -r "$context/wheelhouse/deps" "$cache.tmp.$$"
    touch "$cache.tmp.$$/.complete"
    rm -rf "$cache"
    mv "$cache.tmp.$$" "$cache"
    find "$wheel_cache_root" -mindepth 1 -maxdepth 1 -type d -name '????????????????' -printf '%T@ %p\n' |
        sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -rf
}

# resolve_langs: FLEET_LANGS (or the default set) as ISO codes and as the Debian packs that
# carry them (plus OSD), read from the catalog, which is plain Python with no dependencies.
resolve_langs() {
    local out
    out="$("$python" - "${FLEET_LANGS:-}" <<'EOF'
import runpy, sys
catalog = runpy.run_path("ocr_app/models/languages.py")
raw = [c.strip() for c in sys.argv[1].split(",") if c.strip()] or ["default"]
codes, unknown = [], []
for code in raw:
    if code.lower() == "default":
        codes += list(catalog["DEFAULT_SET"])
        continue
    try:
        if len(code) > 12:
            raise LookupError(code)
        codes.append(catalog["resolve"](code).code)
    except LookupError:
        unknown.append(code[:12])
if unknown:
    sys.exit("FLEET_LANGS: unknown language codes " + ", ".join(map(repr, unknown))
             + " (GET /api/languages on the gateway lists every code)")
codes = list(dict.fromkeys(codes))
print(",".join(codes))
print(" ".join(catalog["packages"](codes)))
EOF
)" || die "FLEET_LANGS=${FLEET_LANGS:0:80} does not name languages of the catalog"
    lang_codes="$(printf '%s\n' "$out" | sed -n 1p)"
    lang_packs="$(printf '%s\n' "$out" | sed -n 2p)"
}

# lang_debs: the packs' .deb files in the context, from FLEET_CACHE_DIR/debs, where the
# host's apt fetches the ones it lacks (data only, architecture all, no dependencies).
lang_debs() {
    local cache pkg missing=() found
    cache="${FLEET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ocr-fleet}/debs"
    mkdir -p "$cache" "$context/debs"
    for pkg in $lang_packs; do
        compgen -G "$cache/${pkg}_*.deb" >/dev/null || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "langs: fetching ${missing[*]} with apt-get download (once; cached in $cache)"
        (cd "$cache" && apt-get -q download "${missing[@]}") >"$work/apt-download.log" 2>&1 || {
            tail -n 20 "$work/apt-download.log" >&2
            die "apt-get download failed (run \`apt-get update\`, or scripts/install-deps.sh, first)"
        }
    fi
    for pkg in $lang_packs; do
        found="$(compgen -G "$cache/${pkg}_*.deb" | sort -V | tail -n 1)"
        cp "$found" "$context/debs/"
    done
    log "langs: $lang_codes ($(du -ch "$context"/debs/*.deb | tail -n 1 | cut -f1) of packs)"
}

if [ "$plan" = 1 ]; then
    python="$(pick_python)"
    resolve_langs
    printf 'tag %s\nlangs %s\npacks %s\n' "$tag" "$lang_codes" "$lang_packs"
    exit 0
fi
"$FLEET_REPO_ROOT/scripts/start-dockerd.sh"
# One build at a time on this engine: a second one waits, then usually finds
# the image up to date.
exec 9>"${TMPDIR:-/tmp}/ocr-fleet-build-image.lock"
if ! flock -n 9; then
    log "waiting for another image build to finish"
    flock 9
fi
start=$SECONDS
python="$(pick_python)"
bootstrap_pid=""
wheel_cache_root=""
work=""
temp_dir work
context="$work/context"
mkdir -p "$context/wheelhouse/app" "$context/wheelhouse/deps"
cp Dockerfile .dockerignore "$context/"
resolve_langs

# Pin dependencies to the development venv's versions when there is one, so
# that the image runs what the tests ran.
constraints="$work/constraints.txt"
: >"$constraints"
if [ -x .venv/bin/python ]; then
    .venv/bin/python -m pip list -q --format=freeze --exclude-editable 2>/dev/null |
        grep -v '^ocr-fleet==' >"$constraints" || true
fi

hash="$(source_hash)"
if [ "$force" = 0 ] && image_exists "$tag" &&
    [ "$(docker image inspect -f "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$tag")" = "$hash" ]; then
    log "$tag is up to date (source hash $hash); --force rebuilds"
    exit 0
fi

# 1. The base (bootstrapped in the background if need be, while pip works): the
# dependency wheels are checked against its interpreter.
resolve_base

# 2. The application wheel, from a clean copy of the source, so that building
# it never writes into the work tree.
mkdir -p "$work/src"
source_files | tar --null -T - -cf - | tar -C "$work/src" -xf -
log "wheels: building the ocr-fleet wheel with $("$python" --version)"
quietly "$work/pip-app.log" "$python" -m pip wheel --no-deps -w "$context/wheelhouse/app" "$work/src"
app_wheels=("$context"/wheelhouse/app/*.whl)

# 3. Every dependency as a wheel (cp311, manylinux), and the language packs.
lang_debs
dependency_wheels
wait_base
log "wheels: $(find "$context/wheelhouse" -name '*.whl' | wc -l) wheels, $(du -sh "$context/wheelhouse" | cut -f1) ($((SECONDS - start))s)"

# 4. The image; --network none proves the build is offline.
log "image: building $tag on $resolved_base"
iidfile="$work/iid"
DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build -q --force-rm --network none --iidfile "$iidfile" \
    --build-arg "BASE_IMAGE=$resolved_base" --build-arg "SOURCE_HASH=$hash" \
    --label "ocr-fleet.base-image=$resolved_base" --label "ocr-fleet.langs=$lang_codes" \
    "$context" >/dev/null
image_id="$(cat "$iidfile")"

# 5. Smoke test before tagging: the native wheels must load in this base.
docker run --rm --network none "$image_id" \
    python3 -c 'import cv2, onnxruntime, rapidocr, ocr_app, fleetctl; print("image imports: cv2", cv2.__version__, "onnxruntime", onnxruntime.__version__)' >&2 ||
    die "the built image cannot import its packages"
# ... and Tesseract must find every language of the set where the instance looks.
docker run --rm --network none -i "$image_id" python3 - "$lang_codes" >&2 <<'EOF' ||
import importlib.util, sys
from ocr_app.models import languages as catalog
folder = catalog.find_tessdata()
codes = sys.argv[1].split(",")
missing = [c for c in codes if not catalog.has_data(catalog.resolve(c), folder)]
if missing or folder is None or not catalog.traineddata(catalog.OSD_DATA, folder).is_file():
    sys.exit(f"image langs: no data for {missing or 'osd'} in {folder}")
if importlib.util.find_spec("tesserocr"):  # the PyPI wheel, with its own libtesseract, offline
    import tesserocr
    with tesserocr.PyTessBaseAPI(path=str(folder), lang=catalog.resolve(codes[0]).tesseract[0]):
        pass
    print("image langs:", ",".join(codes), "in", folder, "read by tesserocr", tesserocr.__version__)
else:
    print("image langs:", ",".join(codes), "in", folder)
EOF
    die "the built image does not carry the languages $lang_codes"
docker tag "$image_id" "$tag"
# Drop the images this one replaced (dangling now); the layer cache stays.
docker image prune -f --filter "label=$HASH_LABEL" >/dev/null ||
    log "warning: could not prune replaced images"
log "image: $tag built (${image_id#sha256:}, source hash $hash, $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%d MB", $1 / 1e6}'), $((SECONDS - start))s)"
